"""The three stage recipes on the tiny model and the fixture data: run, checkpoint, learn, resume, skip bad data."""

import importlib
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nextmm import cli
from nextmm.cli import compose_config
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.weights.trained import save_trained_parts

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("encoder_side", "decoder_side", "modality_switching")
EXPECTED_CHANGES = {
    "encoder_side": {"input_projector"},
    "decoder_side": {"output_projectors.image", "output_projectors.audio", "output_projectors.video", "new_tokens"},
    "modality_switching": {"input_projector", "lora", "new_tokens",
                           "output_projectors.image", "output_projectors.audio", "output_projectors.video"},
}


def recipe(stage):
    return importlib.import_module(f"nextmm.recipes.{stage}")


def overrides(root, out, *extra):
    return [f"data.root={root}", f"output_dir={out}", "data.num_workers=0", "logging.every=1000", *extra]


def train(stage, root, out, *extra):
    return recipe(stage).train(compose_config(f"stage/{stage}", overrides(root, out, *extra)))


def trained_tensors(folder):
    adapter = folder / "adapter" / "adapter_model.safetensors"
    return {**load_file(folder / "projectors.safetensors"), **load_file(adapter)}


def part(name):
    if name.startswith("output_projectors."):
        return ".".join(name.split(".")[:2])
    if name.startswith("input_projector."):
        return "input_projector"
    return "lora" if ".lora_" in name else "new_tokens"


@pytest.fixture(scope="module")
def chain(root, tmp_path_factory):
    """The three stages, 3 steps each, each starting from the one before: stage -> (start folder, output, result)."""
    base = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)  # as the recipe seeds before building: LoRA and new-token rows draw from the global RNG
    fresh = save_trained_parts(NextMM.from_config("tiny"), base / "fresh")
    runs = {}
    enc, dec, ms = base / "enc", base / "dec", base / "ms"
    runs["encoder_side"] = (fresh, enc, train("encoder_side", root, enc, "train.max_steps=3", "data.num_workers=1"))
    start = enc / "checkpoints" / "step-00000003"  # a checkpoint folder works as init_from too
    result = train("decoder_side", root, dec, "train.max_steps=3", f"init_from={start}", "logging.tracker=tensorboard")
    runs["decoder_side"] = (start / "model", dec, result)
    start = dec / "final"
    result = train("modality_switching", root, ms, "train.max_steps=3", f"init_from={start}")
    runs["modality_switching"] = (start, ms, result)
    return runs


@pytest.mark.parametrize("stage", STAGES)
def test_three_steps_write_a_checkpoint_and_a_loadable_final(chain, stage):
    _, out, result = chain[stage]
    assert len(result["losses"]) == 3 and all(torch.isfinite(torch.tensor(result["losses"])))
    checkpoint = out / "checkpoints" / "step-00000003"
    names = {p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file()}
    assert {"model/projectors.safetensors", "model/adapter/adapter_model.safetensors",
            "training.pt", "rng-0.pt", "run.yaml"} <= names
    assert not list((out / "checkpoints").glob(".*"))  # nothing half-written left behind
    loaded = NextMM.from_config(out / "final")  # model=<output_dir>/final
    final = trained_tensors(out / "final")
    torch.testing.assert_close(loaded.input_projector.proj.weight, final["input_projector.proj.weight"])


@pytest.mark.parametrize("stage", STAGES)
def test_only_the_declared_parts_change(chain, stage):
    start, out, _ = chain[stage]
    before, after = trained_tensors(start), trained_tensors(out / "final")
    assert before.keys() == after.keys()
    assert {part(name) for name in after if not torch.equal(before[name], after[name])} == EXPECTED_CHANGES[stage]


def test_tensorboard_tracker_writes_events(chain):
    _, out, _ = chain["decoder_side"]
    assert list((out / "decoder_side").glob("events.out.tfevents.*"))


OVERFIT = {  # data, extra overrides: a few samples seen over and over
    # a frozen random LLM initialised at std 0.02 has logits within about +-1 whatever its input; a wider
    # init gives it a logit range like a trained one's, which the input projector can then steer
    "encoder_side": ("cc3m", ["optimizer.lr=3e-2", "+model.llm.architecture.initializer_range=0.2"]),
    "decoder_side": ("cc3m", ["optimizer.lr=1e-2"]),
    "modality_switching": ("t2m", ["optimizer.lr=1e-2"]),
}


@pytest.mark.parametrize("stage", STAGES)
def test_loss_falls_well_below_its_start_on_a_tiny_set(root, tmp_path, stage):
    data, extra = OVERFIT[stage]
    steady = ["optimizer.warmup_steps=0", "optimizer.schedule=constant", "optimizer.max_grad_norm=100"]
    result = train(stage, root, tmp_path, f"data={data}", "train.max_steps=40", "checkpoint.every=1000", *steady, *extra)
    losses = result["losses"]
    assert min(losses[-5:]) < 0.75 * losses[0], losses


def test_resumed_run_repeats_the_uninterrupted_losses_exactly(root, tmp_path):
    # dropout (LoRA), denoising noise, DataLoader workers, gradient accumulation and a cosine schedule
    # whose length does not depend on where an invocation stops
    common = ["data=t2m", "train.batch_size=1", "train.gradient_accumulation_steps=2", "data.num_workers=1",
              "optimizer.warmup_steps=2", "optimizer.total_steps=6", "optimizer.lr=1e-2", "loss.denoising_weight=1.0",
              "checkpoint.every=2"]
    # and a weight average, whose state travels in the checkpoint
    common += ["ema.decay=0.8"]
    straight = train("modality_switching", root, tmp_path / "straight", *common, "train.max_steps=6")["losses"]
    first = train("modality_switching", root, tmp_path / "stopped", *common, "train.max_steps=3")["losses"]
    second = train("modality_switching", root, tmp_path / "stopped", *common, "train.max_steps=6", "resume=true")
    assert first + second["losses"] == straight
    kept = sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000006"]  # every 2 steps and at the end, the newest 2 kept
    averaged = trained_tensors(tmp_path / "straight" / "final")
    resumed = trained_tensors(tmp_path / "stopped" / "final")
    for name in averaged:
        torch.testing.assert_close(resumed[name], averaged[name], rtol=0, atol=0)
    last = trained_tensors(tmp_path / "stopped" / "checkpoints" / "step-00000006" / "model")
    assert any(not torch.equal(last[name], averaged[name]) for name in averaged)  # the checkpoint keeps the step's own
    with pytest.raises(ConfigError, match=r"averaged the weights with ema=\{'decay': 0.8, 'start': 0\}: resume with"):
        train("modality_switching", root, tmp_path / "stopped", *common[:-1], "train.max_steps=8", "resume=true")


def test_ema_decay_1_keeps_the_mean_of_the_steps_after_start(root, tmp_path):
    steps = ["data=t2m", "optimizer.lr=1e-2", "optimizer.warmup_steps=0", "train.max_steps=4", "checkpoint.every=1",
             "checkpoint.keep_last=4"]
    train("modality_switching", root, tmp_path, *steps, "ema.decay=1", "ema.start=1")
    each = [trained_tensors(tmp_path / "checkpoints" / f"step-{step:08d}" / "model") for step in (2, 3, 4)]
    final = trained_tensors(tmp_path / "final")
    assert any(not torch.equal(final[name], each[-1][name]) for name in final)
    for name in final:
        torch.testing.assert_close(final[name], sum(weights[name] for weights in each) / 3)


@pytest.mark.parametrize(("setting", "message"), [
    ("ema.decay=1.5", r"ema.decay=1.5 must lie in \(0, 1\]: 0.999 averages exponentially, 1 is the plain mean"),
    ("ema.start=3", r"ema.start=3 must be a whole number of steps from 0 to train.max_steps - 1 \(2\)"),
])
def test_a_bad_ema_setting_is_a_config_error(root, tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        train("decoder_side", root, tmp_path, "data=cc3m", "train.max_steps=3", "ema.decay=0.9", setting)


def test_bad_samples_are_skipped_counted_and_reported(root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = train("encoder_side", root / "bad", tmp_path, "data=cc3m", "train.batch_size=5", "train.max_steps=2",
                       "data.max_bad_share=0.9")
    assert result["losses"] and (result["bad"], result["seen"]) == (8, 10)
    assert "skipped bad sample cc3m.json#1: image file not found" in caplog.text
    assert "skipped bad sample cc3m.json#3: empty caption" in caplog.text
    assert "skipped 8 of 10 samples (80.00%) as bad" in caplog.text


def test_too_many_bad_samples_stop_the_run_with_one_line(root, tmp_path, capsys):
    argv = overrides(root / "bad", tmp_path, "data=cc3m", "train.batch_size=5", "train.max_steps=5",
                     "data.bad_check_after=5")
    with pytest.raises(SystemExit) as exit_info:
        cli.run("stage/encoder_side", recipe("encoder_side").main, argv)
    assert exit_info.value.code == cli.USAGE_ERROR
    last = capsys.readouterr().err.strip().splitlines()[-1]  # under the progress bar
    assert last.startswith("error: 4 of 5 samples were bad (80.0%), more than data.max_bad_share=0.05 (first: ")
    assert last.endswith("fix the data or raise data.max_bad_share")


def test_init_from_checks_names_and_shapes_strictly(root, tmp_path):
    other = save_trained_parts(NextMM.from_config("tiny", overrides=["output_projector.width=16"]), tmp_path / "other")
    with pytest.raises(ConfigError, match="does not fit this model"):
        train("decoder_side", root, tmp_path / "out", "data=cc3m", "train.max_steps=1", f"init_from={other}")


def test_an_existing_run_is_continued_only_when_asked(chain, root):
    _, out, _ = chain["encoder_side"]
    with pytest.raises(ConfigError, match="already holds checkpoints: pass resume=true"):
        train("encoder_side", root, out, "train.max_steps=3")


def test_missing_output_dir_is_an_error_in_the_python_api():
    # (on the command line output_dir defaults to Hydra's run folder: tests/test_cli_hydra.py)
    with pytest.raises(ConfigError, match=r"^set output_dir=<folder> \(checkpoints and the final trained parts go there\)$"):
        recipe("decoder_side").main(compose_config("stage/decoder_side", ["model=tiny"]))


@pytest.mark.slow
def test_a_bf16_run_keeps_frozen_weights_in_bf16_and_learns_as_a_float32_one(root, tmp_path):
    """train.mixed_precision=bf16 from the command line (its own process: accelerate fixes the precision once per
    process): the log says the frozen pretrained weights were kept in bf16, the losses follow the float32 run's, and
    the trained parts are saved in float32."""
    import subprocess
    import sys

    out = tmp_path / "bf16"
    command = [sys.executable, "-m", "nextmm", "train", "modality_switching", *overrides(root, out),
               "train.max_steps=3", "train.mixed_precision=bf16"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    logged = "\n".join(path.read_text() for path in out.glob("*.log")) + result.stderr
    assert "frozen pretrained parameters kept in bf16" in logged
    bf16 = torch.load(out / "checkpoints" / "step-00000003" / "training.pt", weights_only=True)["losses"]
    fp32 = train("modality_switching", root, tmp_path / "fp32", "train.max_steps=3")["losses"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.02)
    assert {tensor.dtype for tensor in trained_tensors(out / "final").values()} == {torch.float32}
