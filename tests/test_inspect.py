import json
import subprocess
import sys

import pytest

from nextmm import cli
from nextmm.cli.inspect import main

KEYS = ["encoder", "input_projector", "llm", "lora", "output_projectors", "decoders", "trainable", "memory_gib"]


def inspect(capsys, model):
    with pytest.raises(SystemExit) as exit_:
        cli.run("inspect", main, [f"model={model}"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "inspect prints exactly one JSON line"
    return json.loads(out[0])


def test_full_size_counts_match_the_nextgpt_paper(capsys):
    report = inspect(capsys, "nextgpt_7b")
    assert list(report) == KEYS
    millions = lambda n: n / 1e6  # noqa: E731
    assert round(report["encoder"] / 1e9, 1) == 1.2  # ImageBind-huge
    assert int(millions(report["input_projector"])) == 4  # Linear 1024 -> 4096
    assert round(report["llm"] / 1e9) == 7  # Vicuna-7B
    assert int(millions(report["lora"])) == 33
    # The paper truncates: 31.96 M, 31.79 M and 32.09 M are its 31 M, 31 M and 32 M.
    assert {m: int(millions(n)) for m, n in report["output_projectors"].items()} == {
        "image": 31, "audio": 31, "video": 32}
    assert int(millions(report["decoders"]["audio"])) == 975  # AudioLDM-l-full
    assert round(report["decoders"]["video"] / 1e9, 1) == 1.8  # Zeroscope v2 576w
    assert round(report["decoders"]["image"] / 1e9, 2) == 1.07  # SD 1.5 without its safety checker
    trainable = report["trainable"]
    assert trainable["encoder_side"] == report["input_projector"]
    assert trainable["decoder_side"] == sum(report["output_projectors"].values()) + 2 * 38 * 4096
    assert trainable["modality_switching"] == (
        trainable["decoder_side"] + report["input_projector"] + report["lora"])
    # the estimated GPU memory of a full turn, lightest last (nextmm.inference.memory; tests/test_memory.py)
    memory = report["memory_gib"]
    assert list(memory) == ["resident", "offload", "offload+int8", "offload+nf4", "sequential+nf4"]
    assert memory["resident"] > 24 > memory["offload"] > 12 > memory["offload+int8"] > memory["sequential+nf4"]


def test_tiny_report_has_the_same_layout_and_is_small(capsys):
    report = inspect(capsys, "tiny")
    assert list(report) == KEYS
    total = sum(v if isinstance(v, int) else sum(v.values()) for k, v in report.items() if k != "trainable")
    assert total < 20_000_000


def test_unknown_model_is_one_line_listing_the_available_ones():
    result = subprocess.run([sys.executable, "-m", "nextmm", "inspect", "model=nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown model config 'nope': available are nextgpt_7b, tiny, toyworld (or give a checkpoint folder with config.yaml)"]
    assert "Traceback" not in result.stderr
