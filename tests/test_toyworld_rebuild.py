"""The one-command toyworld rebuild (nextmm/toyworld/rebuild.py): its plan, skipping finished steps, failures, export."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import nextmm.toyworld.rebuild as rebuild
from nextmm.cli import compose_config
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES


def config(tmp_path, *extra):
    return compose_config("stage/toyworld", [f"output_dir={tmp_path / 'run'}", *extra])


def test_plan_runs_every_recipe_in_order_on_the_run_s_own_parts(tmp_path):
    cfg = config(tmp_path, "pretrain_llm.train.max_steps=7", "+world.concepts=[beach,city]")
    steps = rebuild.plan(cfg)
    run = tmp_path / "run"
    assert [s.name for s in steps] == ["world", "pretrain_encoder", "pretrain_llm", "pretrain_decoders",
                                       "features_pairs", "features_instructions",
                                       "encoder_side", "decoder_side", "modality_switching"]
    by_name = {s.name: s for s in steps}
    assert by_name["pretrain_llm"].argv[-1] == "train.max_steps=7"  # the config's overrides come last
    assert f"output={run / 'data'}" in by_name["world"].argv
    assert "concepts=[beach,city]" in by_name["world"].argv
    switching = by_name["modality_switching"].argv
    assert switching[:4] == ["-m", "nextmm", "train", "modality_switching"]
    assert "model=toyworld" in switching and "model.trained=null" in switching
    assert f"model.llm.path={run / 'pretrain_llm' / 'llm'}" in switching
    assert f"model.encoder.checkpoint={run / 'pretrain_encoder' / 'imagebind.pth'}" in switching
    assert all(f"model.decoders.{m}.path={run / 'pretrain_decoders' / m}" in switching for m in MODALITIES)
    assert f"init_from={run / 'decoder_side' / 'final'}" in switching  # each stage starts where the last ended
    assert f"init_from={run / 'encoder_side' / 'final'}" in by_name["decoder_side"].argv
    assert "data=toyworld_instructions" in switching and "data=toyworld_pairs" in by_name["encoder_side"].argv
    # the frozen encoder's features of each data set, computed once, read by the stages with input media
    for data, stage in (("toyworld_pairs", "encoder_side"), ("toyworld_instructions", "modality_switching")):
        precompute = by_name[f"features_{data.removeprefix('toyworld_')}"].argv
        assert precompute[:4] == ["-m", "nextmm", "precompute", "kind=features"] and f"data={data}" in precompute
        assert f"model.encoder.checkpoint={run / 'pretrain_encoder' / 'imagebind.pth'}" in precompute
        assert f"output={run / 'features' / data}" in precompute
        assert f"features={run / 'features' / data}" in by_name[stage].argv
    assert not any(arg.startswith("features=") for arg in by_name["decoder_side"].argv)


def test_the_stage_commands_compose(tmp_path):
    """Every stage step's overrides compose against its recipe's config (no unknown key, no bad group)."""
    steps = rebuild.plan(config(tmp_path))
    for step in steps[4:6]:
        assert step.argv[:3] == ["-m", "nextmm", "precompute"]
        assert compose_config("precompute", step.argv[3:]).kind == "features"
    for step in steps[6:]:
        assert step.argv[:3] == ["-m", "nextmm", "train"]
        cfg = compose_config(f"stage/{step.argv[3]}", step.argv[4:])
        assert cfg.model.name == "toyworld"
        assert cfg.model.trained is None


def fake_run(run: Path) -> None:
    """Every step's output, as files the export copies."""
    (run / "data").mkdir(parents=True)
    (run / "data" / "manifest.json").write_text("{}")
    (run / "pretrain_encoder").mkdir()
    torch.save({"w": torch.ones(2)}, run / "pretrain_encoder" / "imagebind.pth")
    (run / "pretrain_llm" / "llm").mkdir(parents=True)
    (run / "pretrain_llm" / "llm" / "config.json").write_text('{"vocab_size": 1374}')
    for modality in MODALITIES:
        (run / "pretrain_decoders" / modality).mkdir(parents=True)
        (run / "pretrain_decoders" / modality / "model_index.json").write_text("{}")
    (run / "pretrain_decoders" / "metrics.json").write_text("{}")
    for data in ("toyworld_pairs", "toyworld_instructions"):
        (run / "features" / data).mkdir(parents=True)
        (run / "features" / data / "index.json").write_text("{}")
    for stage in ("encoder_side", "decoder_side", "modality_switching"):
        (run / stage / "final").mkdir(parents=True)
    model = {"encoder": {"checkpoint": "x"}, "llm": {"path": "x", "tokenizer": "x", "architecture": {"vocab_size": 9}},
             "decoders": {m: {"path": "x"} for m in MODALITIES}}
    OmegaConf.save(OmegaConf.create(model), run / "modality_switching" / "final" / "config.yaml")


def test_finished_steps_are_skipped_and_the_export_points_at_itself(tmp_path, monkeypatch):
    fake_run(tmp_path / "run")
    monkeypatch.setattr(rebuild, "run_step", lambda step: pytest.fail(f"{step.name} ran again"))
    target = tmp_path / "export"
    rebuild.main(config(tmp_path, f"export={target}"))
    exported = torch.load(target / "imagebind.pth", weights_only=True)["w"]  # halved: the 40 MB budget
    assert exported.dtype == torch.float16 and exported.tolist() == [1.0, 1.0]
    assert (target / "llm" / "config.json").is_file()
    assert all((target / "decoders" / m / "model_index.json").is_file() for m in MODALITIES)
    saved = OmegaConf.load(target / "trained" / "config.yaml")
    assert saved.llm.path == saved.llm.tokenizer == str(target / "llm")
    assert saved.llm.architecture.vocab_size == 1374  # the run's tokenizer, whatever the config it trained with said
    assert saved.encoder.checkpoint == str(target / "imagebind.pth")
    assert saved.decoders.video.path == str(target / "decoders" / "video")


def test_only_missing_steps_run_and_their_times_are_recorded(tmp_path, monkeypatch):
    run = tmp_path / "run"
    fake_run(run)
    (run / "modality_switching" / "final" / "config.yaml").unlink()
    (run / "modality_switching" / "final").rmdir()
    ran = []
    monkeypatch.setattr(rebuild, "run_step", lambda step: ran.append(step.name) or 12.5)
    rebuild.main(config(tmp_path, "export=null"))
    assert ran == ["modality_switching"]
    timings = OmegaConf.load(run / "timings.json")
    assert timings.modality_switching == 12.5 and timings.total == 12.5


def test_a_failing_step_names_itself(tmp_path):
    step = rebuild.Step("pretrain_llm", ["-c", "import sys; sys.exit(3)"], tmp_path / "never")
    with pytest.raises(ConfigError, match="step pretrain_llm failed"):
        rebuild.run_step(step)
    rebuild.run_step(rebuild.Step("ok", ["-c", "pass"], tmp_path / "never"))  # exit code 0: no error


def test_output_dir_is_required(tmp_path):
    with pytest.raises(ConfigError, match="output_dir"):
        rebuild.main(compose_config("stage/toyworld", []))
