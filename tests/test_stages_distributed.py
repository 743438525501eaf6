"""A stage under `accelerate launch` with two CPU processes: DDP over gloo, from a fresh clone's command line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.data_fixtures import make_fixture_data
from fixtures.network import free_port
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_encoder_side_runs_with_two_processes(tmp_path):
    data = make_fixture_data(tmp_path / "data")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(ROOT / "tests" / "fixtures" / "train_ranks.py"), str(tmp_path), "data=pairs", f"data.root={data}", f"output_dir={out}",
        "train.max_steps=2", "train.batch_size=2", "data.num_workers=0", "logging.every=1",
        "checkpoint.every=1", "ema.decay=1",  # final/ = the mean of the two steps' weights
    ]
    # this checkout's nextmm, whichever is installed: the script's folder, not the working directory, starts sys.path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stderr and "MULTI_CPU" in done.stderr
    assert "no bad samples among 8" in done.stderr  # 2 processes x 2 steps x 2 samples, disjoint shards
    checkpoint = out / "checkpoints" / "step-00000002"
    assert (checkpoint / "rng-0.pt").is_file() and (checkpoint / "rng-1.pt").is_file()
    checkpoints = out / "checkpoints"
    steps = [load_file(checkpoints / f"step-{step:08d}" / "model" / "projectors.safetensors") for step in (1, 2)]
    final = load_file(out / "final" / "projectors.safetensors")
    assert not torch.equal(final["input_projector.proj.weight"], steps[1]["input_projector.proj.weight"])
    for name in final:
        torch.testing.assert_close(final[name], (steps[0][name] + steps[1][name]) / 2)
    # DDP: both processes end with the same trained weights, final/'s (the average is copied into the model)
    ranks = [load_file(tmp_path / f"rank-{rank}.safetensors") for rank in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and any(name.startswith("input_projector.") for name in ranks[0])
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], final[name], rtol=0, atol=0, msg=name)
