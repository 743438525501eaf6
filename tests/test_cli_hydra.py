"""Every command is a Hydra application: --cfg, -m sweeps into their own run folders, .hydra/ and the log file."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from nextmm import cli
from nextmm.recipes import encoder_side

ROOT = Path(__file__).resolve().parents[1]




def run_stage(argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.run("stage/encoder_side", encoder_side.main, argv, command="python -m nextmm train encoder_side")
    return exit_info.value.code


def tiny_run(root, *extra):
    return ["model=tiny", "data=cc3m", f"data.root={root}", "data.num_workers=0", "train.max_steps=1",
            "train.batch_size=2", "logging.every=1000", *extra]


def test_cfg_job_prints_the_composed_config_and_runs_nothing(capsys, tmp_path):
    assert run_stage(["model=tiny", "seed=7", f"output_dir={tmp_path / 'run'}", "--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["trainable"] == ["input_projector"]
    assert printed["model"]["name"] == "tiny" and printed["output_dir"] == str(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_writes_its_config_overrides_and_log_into_output_dir(root, tmp_path):
    out = tmp_path / "run"
    assert run_stage(tiny_run(root, f"output_dir={out}", "seed=3")) == 0
    assert (out / "final" / "projectors.safetensors").is_file()
    assert yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["seed"] == 3
    assert "seed=3" in yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
    logged = (out / "encoder_side.log").read_text()  # the stage's INFO lines, with times
    assert "[nextmm.training.checkpoints][INFO] - trained parts written to" in logged


def test_a_multirun_sweep_gives_each_job_its_own_run_folder(root, tmp_path):
    sweep = tmp_path / "sweep"
    assert run_stage(["-m", *tiny_run(root, "seed=0,1", f"hydra.sweep.dir={sweep}")]) == 0
    for job, seed in enumerate((0, 1)):
        folder = sweep / str(job)
        assert (folder / "final" / "projectors.safetensors").is_file()
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        assert config["seed"] == seed and config["output_dir"] == "${hydra:runtime.output_dir}"
        assert (folder / "checkpoints" / "step-00000001").is_dir()
    first, second = (load_file(sweep / job / "final" / "projectors.safetensors") for job in ("0", "1"))
    assert any(not torch.equal(first[name], second[name]) for name in first)  # two seeds, two models


def test_without_output_dir_a_stage_runs_in_hydras_folder(root, tmp_path):
    assert run_stage(tiny_run(root, f"hydra.run.dir={tmp_path / 'hydra_run'}")) == 0
    assert (tmp_path / "hydra_run" / "final" / "projectors.safetensors").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["nope=1"], "error: bad override: Could not override 'nope'. (see --help for the keys)"),
    (["-m", "seed=0,1", "output_dir=runs/x"], "error: under -m every job would write output_dir=runs/x: leave "
     "output_dir unset (each job gets multirun/<date>/<time>/<job>/) or make it differ, e.g. "
     "output_dir='runs/sweep/${hydra:job.num}'"),
    (["-m", "seed=0,1", "nope=2"], "error: bad override: Could not override 'nope'. (see --help for the keys)"),
    (["seed=[0,"], "error: bad override: "),
])
def test_user_errors_stay_one_line_with_exit_code_2(capsys, argv, message):
    assert run_stage(["model=tiny", *argv]) == cli.USAGE_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(message)


def test_commands_without_a_run_folder_write_nothing(tmp_path, monkeypatch, capsys, tiny_model):
    from nextmm.cli.inspect import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.run("inspect", main, ["model=tiny"])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["input_projector"] == sum(
        p.numel() for p in tiny_model.input_projector.parameters())
    assert list(tmp_path.iterdir()) == []


def test_hydras_flags_work_on_a_real_command_line(tmp_path):
    import subprocess

    command = [sys.executable, "-m", "nextmm", "train", "encoder_side", "--info", "defaults"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "model/tiny" in done.stdout and "data/pairs" in done.stdout


@pytest.mark.slow
def test_a_sweep_runs_through_a_launcher_plugin(root, tmp_path):
    """hydra/launcher=submitit_local: the plugin behind hydra/launcher=slurm, each job in its own process."""
    import subprocess

    command = [sys.executable, "-m", "nextmm", "train", "encoder_side", "-m", "hydra/launcher=submitit_local",
               "model=tiny", "data=pairs", f"data.root={root}", "train.max_steps=1", "data.num_workers=0",
               "logging.every=1000", "seed=0,1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit
    for job, seed in (("0", 0), ("1", 1)):
        assert (sweep / job / "final" / "projectors.safetensors").is_file()
        assert yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())["seed"] == seed


def test_the_slurm_launcher_config_composes(capsys):
    assert run_stage(["model=tiny", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                      "-p", "hydra.launcher"]) == 0
    launcher = yaml.safe_load(capsys.readouterr().out)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["tasks_per_node"]) == ("gpu", 1, 1)


@pytest.mark.parametrize("setting, message", [
    ("train.batch_size=0", "train.batch_size=0: give a whole number of samples >= 1"),
    ("train.max_steps=0", "train.max_steps=0: give a whole number of steps >= 1"),
    ("optimizer.lr=-1", "optimizer.lr=-1: give a learning rate above 0"),
    ("data.num_workers=-1", "data.num_workers=-1: give a whole number of worker processes >= 0"),
    ("seed=abc", "seed=abc: give a whole number >= 0"),
])
def test_a_stage_s_bad_setting_is_one_line_before_anything_is_built(root, tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert run_stage(tiny_run(root, f"output_dir={out}", setting)) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {message}" and "Traceback" not in err
    assert not out.exists()


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(root, tmp_path, capsys):
    assert run_stage(tiny_run(root, f"output_dir={tmp_path / 'run'}", "resume=true")) == 0
    err = capsys.readouterr().err
    assert "resume=true, but" in err and "holds no checkpoint: starting at step 0" in err
