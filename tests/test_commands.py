"""``nextmm <command>``: one entry point for every command and recipe, with Hydra's flags and shell completion."""

import pytest
import yaml

from nextmm.cli import commands


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        commands.main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_no_command_lists_them_all_and_is_a_usage_error(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and out == ""
    assert all(name in err for name in [*commands.COMMANDS, "train"])


def test_train_lists_the_recipes(capsys):
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    assert all(f"  {name} " in out for name in commands.RECIPES)


def test_an_unknown_command_is_one_line_naming_the_known_ones(capsys):
    code, _, err = run(["genrate", "prompt=hi"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "unknown command 'genrate'" in err and "generate" in err
    code, _, err = run(["train", "stage9"], capsys)
    assert code == 2 and "unknown recipe 'stage9'" in err and "encoder_side" in err


def test_a_recipe_prints_its_composed_job_config(capsys):
    code, out, _ = run(["train", "encoder_side", "model=tiny", "seed=7", "--cfg", "job"], capsys)
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["seed"] == 7 and cfg["model"]["name"] == "tiny" and cfg["trainable"] == ["input_projector"]


def test_each_command_runs_its_own_config(capsys):
    for name, command in commands.COMMANDS.items():
        code, out, _ = run([name, "--cfg", "job"], capsys)
        assert code == 0, name
        assert isinstance(yaml.safe_load(out), dict), name


@pytest.mark.parametrize("line, expected", [
    ("nextmm ge", {"generate"}),
    ("nextmm train mod", {"modality_switching"}),
    ("nextmm generate temp", {"temperature="}),
    ("nextmm train encoder_side optimizer.l", {"optimizer.lr="}),
    ("nextmm generate model=", {"model=tiny", "model=toyworld", "model=nextgpt_7b"}),
])
def test_shell_completion_completes_commands_recipes_and_keys(line, expected, monkeypatch, capsys):
    monkeypatch.setenv("COMP_LINE", line)
    code, out, _ = run(["-sc", "query=bash"], capsys)
    assert code == 0
    assert set(out.split()) == expected


@pytest.mark.parametrize("argv, message", [
    (["eval", "seed=abc"], "seed=abc: give a whole number >= 0"),
    (["world", "output=unused", "seed=-3"], "seed=-3: give a whole number >= 0"),
    (["world", "output=unused", "workers=-2"], "workers=-2: give a whole number of worker processes >= 0"),
    (["precompute", "output=unused", "num_workers=1.5"], "num_workers=1.5: give a whole number of worker processes >= 0"),
    (["generate", "prompt=hi", "quiet=maybe"], "quiet=maybe: give true or false"),
])
def test_keys_many_commands_share_are_checked_for_every_command(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2 and err.strip() == f"error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_the_completion_script_is_for_the_nextmm_command(capsys):
    code, out, _ = run(["--shell-completion", "install=bash"], capsys)
    assert code == 0
    assert "hydra_bash_completion nextmm" in out and "-sc query=bash" in out
