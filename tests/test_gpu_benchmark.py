import importlib.util
import json
from pathlib import Path

import pytest
import torch

from nextmm.model import NextMM

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_full_size.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_full_size", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_reduced_mode_measures_every_step_under_every_memory_setting(tmp_path):
    bench = load_bench()
    report = bench.main(["--reduced", "--bandwidth", "2e10", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))
    settings = report["memory_settings"]
    assert list(settings) == ["resident", "offload", "offload+int8", "offload+nf4", "sequential+nf4"]
    for measured in settings.values():
        assert {"encode", "llm", "decode_image", "decode_audio", "decode_video"} <= set(measured["steps"])
        assert [tuple(o) for o in measured["outputs"]] == [("image", 0), ("audio", 0), ("video", 0)]
        assert measured["measured_peak_gib"] is None  # CUDA only
    assert [name for name, measured in settings.items() if measured["llm_quantized"]] == [
        "offload+int8", "offload+nf4", "sequential+nf4"]
    estimates = [measured["estimated_peak_gib"] for measured in settings.values()]
    assert all(e > 0 for e in estimates) and estimates == sorted(estimates, reverse=True) and estimates[0] > estimates[-1]
    training = report["training_step"]
    assert training["tokens_per_s"] > 0 and training["trainable_parameters"] > 0
    check_stage3_step(training["stage3_mixed"], shortest=60, longest=240)

    decoding = report["decoding"]
    assert decoding["tokens"] == 16 and decoding["bandwidth_bytes_per_s"] == 2e10
    cfg = bench.random_weights_config("tiny")
    cfg.llm.architecture.intermediate_size = 128  # as --reduced builds it, for bitsandbytes' CPU kernel
    llm = NextMM.from_config(cfg).llm
    assert decoding["llm_weight_bytes"] == sum(4 * p.numel() for p in llm.parameters())  # float32
    bound = decoding["bandwidth_bytes_per_s"] / decoding["llm_weight_bytes"]
    assert decoding["bound_tokens_per_s"] == pytest.approx(bound, abs=0.1)
    assert set(decoding["options"]) == set(bench.DECODE_OPTIONS)
    for option in decoding["options"].values():
        assert option["tokens_per_s"] == pytest.approx(16 / option["llm_s"], rel=1e-2)
        assert option["fraction_of_bound"] == pytest.approx(option["tokens_per_s"] / bound, rel=1e-2)
    batches = report["batch_throughput"]
    assert batches["outputs"] == ["image"] and set(batches["sizes"]) == {"1", "4"}
    for size, measured in batches["sizes"].items():
        assert measured["turns_per_min"] == pytest.approx(int(size) / measured["batch_s"] * 60, rel=1e-2)


def check_stage3_step(mixed, *, shortest, longest):
    """The stage-3 step of mixed lengths, as --reduced measures it on CPU: consistent numbers, packing runs fewer rows
    and tokens than padding for the same real tokens and the same loss, the fused AdamW where asked."""
    assert mixed["mixed_precision"] == "no"  # bf16 autocast only on a CUDA device that has bf16
    assert mixed["real_tokens"] == sum(mixed["sample_tokens"])
    assert all(shortest <= n <= longest for n in mixed["sample_tokens"])
    cases = mixed["cases"]
    assert set(cases) == {"padded_unfused", "padded_fused", "packed_unfused", "packed_fused"}
    for name, case in cases.items():
        assert case["optimizer_fused"] == name.endswith("_fused")
        assert case["step_s"] > 0 and case["mfu"] is None and case["peak_gib"] is None  # CPU
        assert case["real_tokens_per_s"] == pytest.approx(mixed["real_tokens"] / case["step_s"], rel=2e-2)
        assert case["tokens_processed"] == case["rows"] * case["row_length"] >= mixed["real_tokens"]
        assert case["start_loss"] == pytest.approx(cases["padded_unfused"]["start_loss"], rel=1e-5)
    padded, packed = cases["padded_fused"], cases["packed_fused"]
    assert padded["rows"] == mixed["samples"] and padded["row_length"] == max(mixed["sample_tokens"])
    assert padded["tokens_processed"] > mixed["real_tokens"]
    assert packed["rows"] < padded["rows"] and packed["tokens_processed"] < padded["tokens_processed"]


def test_the_stage3_step_of_mixed_lengths_is_measured_padded_and_packed(one_thread):
    import argparse

    bench = load_bench()
    cfg = bench.random_weights_config("tiny")
    model = bench.build(cfg, torch.device("cpu"), torch.float32, bench.MemoryPlan("resident"))
    args = argparse.Namespace(batch=2, length=16, train_steps=1, mixed_batch=6, mixed_shortest=60, mixed_length=240)
    training = bench.bench_training_step(model, torch.device("cpu"), args)
    assert training["tokens_per_s"] > 0 and training["mfu"] is None
    check_stage3_step(training["stage3_mixed"], shortest=60, longest=240)


def test_bandwidth_comes_from_the_device_name_or_the_override(monkeypatch):
    bench = load_bench()
    cuda = torch.device("cuda")
    for name, rate in [("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H200", 4.8e12), ("NVIDIA A100-SXM4-80GB", 2.0e12),
                       ("NVIDIA H100 PCIe", None), ("NVIDIA L4", None)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert bench.device_bandwidth(cuda, None) == rate
        assert bench.device_bandwidth(cuda, 1e12) == 1e12


def test_a_merged_option_runs_on_a_copy_without_an_earlier_compiled_forward(tiny_model):
    bench = load_bench()
    llm = tiny_model.llm
    llm.get_base_model()._compiled_call = "compiled for the unmerged LLM"
    try:
        with bench.decode_option(tiny_model, {"merge_for_inference": True, "kv_cache": "static"}):
            assert tiny_model.llm is not llm and not hasattr(tiny_model.llm, "_compiled_call")
            assert tiny_model.config.llm.kv_cache == "static"
        assert tiny_model.llm is llm and tiny_model.config.llm.kv_cache == "dynamic"
    finally:
        del llm.get_base_model()._compiled_call


def test_random_weights_config_drops_every_weights_path():
    bench = load_bench()
    cfg = bench.random_weights_config("nextgpt_7b")
    assert cfg.llm.path is None and cfg.llm.tokenizer is None and cfg.encoder.checkpoint is None
    assert cfg.trained is None and all(cfg.decoders[m].path is None for m in ("image", "audio", "video"))
    assert cfg.llm.architecture.hidden_size == 4096
