import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_full_size.py"


@pytest.mark.slow
def test_reduced_mode_measures_every_step_with_and_without_offload(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_full_size", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--reduced", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    for mode in ("resident", "offload"):
        steps = report[mode]["steps"]
        assert {"encode", "llm", "decode_image", "decode_audio", "decode_video"} <= set(steps)
        assert [tuple(o) for o in report[mode]["outputs"]] == [("image", 0), ("audio", 0), ("video", 0)]
    training = report["training_step"]
    assert training["tokens_per_s"] > 0 and training["trainable_parameters"] > 0


def test_random_weights_config_drops_every_weights_path():
    spec = importlib.util.spec_from_file_location("gpu_full_size", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = bench.random_weights_config("nextgpt_7b")
    assert cfg.llm.path is None and cfg.llm.tokenizer is None and cfg.encoder.checkpoint is None
    assert cfg.trained is None and all(cfg.decoders[m].path is None for m in ("image", "audio", "video"))
    assert cfg.llm.architecture.hidden_size == 4096
