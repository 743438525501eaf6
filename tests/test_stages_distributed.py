"""A stage under `accelerate launch` with two processes: DDP over gloo on CPUs, from a fresh clone's command line;
FSDP and DeepSpeed ZeRO-2 (the shipped accelerate configs) on two GPUs, which run only where there are two."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.data_fixtures import make_fixture_data
from fixtures.network import free_port
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "nextmm" / "conf" / "accelerate"
CPU_DDP = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


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


def launch(accelerate_args, stage_args, *, timeout=600):
    """`accelerate launch <accelerate_args> --num_processes 2 -m nextmm train <stage_args>`, this checkout's nextmm."""
    command = [sys.executable, "-m", "accelerate.commands.launch", *accelerate_args, "--num_processes", "2",
               "--main_process_port", str(free_port()), "-m", "nextmm", "train", *stage_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def trained_parts(folder):
    return {**load_file(folder / "projectors.safetensors"), **load_file(folder / "adapter" / "adapter_model.safetensors")}


def resume_repeats_the_uninterrupted_run(tmp_path, accelerate_args, *, exact=True):
    """Stage 3 (LoRA in every LLM layer, both projectors, new token rows; dropout) for 4 steps straight, and
    for 2 steps then resumed to 4: the same losses at every step and the same final trained parts."""
    data = make_fixture_data(tmp_path / "data")
    common = ["modality_switching", "model=tiny", "data=t2m", f"data.root={data}", "train.batch_size=1",
              "data.num_workers=0", "optimizer.lr=1e-2", "optimizer.warmup_steps=1", "optimizer.total_steps=4",
              "checkpoint.every=2", "logging.every=1"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    done = launch(accelerate_args, [*common, f"output_dir={straight}", "train.max_steps=4"])
    launch(accelerate_args, [*common, f"output_dir={stopped}", "train.max_steps=2"])
    launch(accelerate_args, [*common, f"output_dir={stopped}", "train.max_steps=4", "resume=true"])
    losses = [torch.load(out / "checkpoints" / "step-00000004" / "training.pt", weights_only=True)["losses"]
              for out in (straight, stopped)]
    expected, resumed = trained_parts(straight / "final"), trained_parts(stopped / "final")
    assert len(losses[0]) == 4 and expected.keys() == resumed.keys()
    if exact:
        assert losses[1] == losses[0]
        for name in expected:
            assert torch.equal(resumed[name], expected[name]), name
    else:  # GPU kernels may reorder sums between runs; a lost optimizer or data state moves the loss by far more
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=0)
        for name in expected:
            torch.testing.assert_close(resumed[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    return done


@pytest.mark.slow
def test_ddp_resume_on_two_cpu_processes_repeats_the_uninterrupted_run(tmp_path):
    done = resume_repeats_the_uninterrupted_run(tmp_path, CPU_DDP)
    assert re.search(r"2 process\(es\) on cpu:0 \((DistributedType\.)?MULTI_CPU\)", done.stderr)
    checkpoint = tmp_path / "stopped" / "checkpoints" / "step-00000004"
    assert not (checkpoint / "engine").exists()  # DDP: the main process wrote the whole state
    assert '"distributed_type": "MULTI_CPU", "num_processes": 2' in (checkpoint / "engine.json").read_text()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs: accelerate 1.15 runs FSDP only on GPUs")
def test_fsdp_resume_from_sharded_checkpoints_repeats_the_uninterrupted_run(tmp_path):
    done = resume_repeats_the_uninterrupted_run(tmp_path, ["--config_file", str(CONFIGS / "fsdp.yaml")], exact=False)
    assert re.search(r"2 process\(es\) on cuda:\d \((DistributedType\.)?FSDP\)", done.stderr)
    engine = tmp_path / "stopped" / "checkpoints" / "step-00000004" / "engine"
    assert (engine / "pytorch_model_fsdp_0").is_dir() and (engine / "optimizer_0").is_dir()  # one shard per process


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2 or importlib.util.find_spec("deepspeed") is None,
                    reason="needs deepspeed and 2 CUDA GPUs: DeepSpeed runs only on GPUs")
def test_deepspeed_zero2_offload_resume_repeats_the_uninterrupted_run(tmp_path):
    config = str(CONFIGS / "deepspeed_zero2_offload.yaml")
    done = resume_repeats_the_uninterrupted_run(tmp_path, ["--config_file", config], exact=False)
    assert re.search(r"2 process\(es\) on cuda:\d \((DistributedType\.)?DEEPSPEED\)", done.stderr)
    engine = tmp_path / "stopped" / "checkpoints" / "step-00000004" / "engine" / "pytorch_model"
    assert sorted(path.name for path in engine.glob("*optim_states.pt")) == [  # ZeRO: each process its partition
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


@pytest.mark.slow
def test_slurm_script_launches_a_stage_on_one_node(tmp_path):
    """examples/slurm/train_stage.sbatch as sbatch would run it on 1 node of 2 processes (CPU: DDP over gloo),
    with SLURM's variables set by hand and stand-ins for srun (runs its command once, as the node's one task)
    and scontrol (names this machine as the job's first host)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && echo 127.0.0.1\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    data, out = make_fixture_data(tmp_path / "data"), tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "PYTHON": sys.executable,
           "SLURM_JOB_NODELIST": "node[01]", "SLURM_NNODES": "1", "SLURM_PROCID": "0", "GPUS_PER_NODE": "2",
           "MAIN_PORT": str(free_port())}
    env.pop("ACCELERATE_CONFIG", None)
    command = ["bash", str(ROOT / "examples" / "slurm" / "train_stage.sbatch"), "encoder_side", "data=pairs",
               f"data.root={data}", f"output_dir={out}", "train.max_steps=2", "train.batch_size=2",
               "data.num_workers=0", "logging.every=1"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nextmm: 1 node(s) x 2 processes, rendezvous at 127.0.0.1:" in done.stderr
    assert re.search(r"2 process\(es\) on cpu:0 \((DistributedType\.)?MULTI_CPU\)", done.stderr)
    assert "no bad samples among 8" in done.stderr  # 2 processes x 2 steps x 2 samples
    assert (out / "final" / "projectors.safetensors").is_file() and (out / "final" / "adapter").is_dir()
