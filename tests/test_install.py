"""Installed like a library: a wheel built from this tree, in a fresh venv, runs one turn from another folder."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    # a copy of the source, so that no build/ folder of an earlier build leaks stale files into the wheel
    source = tmp_path_factory.mktemp("source") / "nextmm"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "outputs",
                                                                "multirun", "runs", "data", ".ipynb_checkpoints"))
    # no build isolation: setuptools comes with the test extra, and nothing is downloaded
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)])
    (built,) = dist.glob("nextmm-*.whl")
    return built


def test_the_wheel_holds_the_configs_and_the_default_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nextmm/conf/generate.yaml" in names and "nextmm/conf/model/toyworld.yaml" in names
    assert "nextmm/conf/hydra/job_logging/nextmm.yaml" in names
    shipped = {n for n in names if n.startswith("nextmm/toyworld/checkpoint/")}
    in_tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nextmm/toyworld/checkpoint").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert shipped == in_tree
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "nextmm = nextmm.cli.commands:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_a_turn_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    # the dependencies come from this environment (nothing to download); nextmm itself only from the wheel
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    bin_dir = venv / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
         "-q", str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}  # the suite's own nextmm must not leak in
    where = run([str(bin_dir / "python"), "-c", "import nextmm; print(nextmm.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    done = run([str(bin_dir / "nextmm"), "generate", "prompt=surf vlog", "output_dir=out", "device=cpu", "quiet=true"],
               cwd=elsewhere, env=env)
    result_file = elsewhere / done.stdout.strip().splitlines()[-1]
    result = json.loads(result_file.read_text())
    assert result_file.parent == elsewhere / "out" and result["model"] == "toyworld"
    assert {item["modality"] for item in result["outputs"]} == {"image", "audio", "video"}, result
    assert all((elsewhere / "out" / item["path"]).stat().st_size > 0 for item in result["outputs"])
    assert result["text"].strip()
