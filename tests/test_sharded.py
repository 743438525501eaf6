"""Sharded engines without a GPU: the shipped accelerate configs as accelerate reads them, the checkpoint path a
sharded engine takes (its Accelerator faked: accelerate 1.15 runs FSDP and DeepSpeed only on GPUs), the refusals.
The runs themselves are in test_stages_distributed.py, for 2 GPUs."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn
from torch.distributed.fsdp import CPUOffloadPolicy, StateDictType
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

from nextmm.cli import compose_config
from nextmm.conf.accelerate.__main__ import main as config_path
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.training.checkpoints import Checkpoints, ModuleWeights, TrainedParts
from nextmm.training.run import start_run
from nextmm.training.sharded import check_engine, configure_engine
from nextmm.weights.trained import save_trained_parts

CONFIGS = Path(__file__).resolve().parents[1] / "nextmm" / "conf" / "accelerate"


def launcher_env(config: Path) -> tuple:
    """What `accelerate launch --config_file <config>` hands its processes: (parsed args, environment)."""
    args, defaults, mixed_precision_from_config = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(config), "train.py"]))
    if args.use_deepspeed:  # as accelerate's launch_command does before its DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_fsdp_config_shards_each_llm_layer_and_checkpoints_sharded(monkeypatch, tiny_model):
    args, env = launcher_env(CONFIGS / "fsdp.yaml")
    assert args.use_fsdp and not args.use_deepspeed
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # reads the launcher's environment, as in each process
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert {type(m).__name__ for m in tiny_model.llm.modules()} >= {"LlamaDecoderLayer"}  # the unit exists
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert not isinstance(plugin.cpu_offload, CPUOffloadPolicy) and not plugin.activation_checkpointing


def test_deepspeed_config_is_zero2_with_the_optimizer_on_the_cpu(monkeypatch):
    args, env = launcher_env(CONFIGS / "deepspeed_zero2_offload.yaml")
    assert args.use_deepspeed and not args.use_fsdp
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ds = DeepSpeedPlugin().deepspeed_config
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "none"
    # left to the run: configure_engine fills them from train.batch_size and optimizer.max_grad_norm
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_clipping"] == "auto"
    assert ds["gradient_accumulation_steps"] == "auto"  # accelerate fills it from train.gradient_accumulation_steps


def test_config_paths_for_accelerate_launch(capsys):
    assert config_path(["fsdp"]) == 0
    assert Path(capsys.readouterr().out.strip()) == CONFIGS / "fsdp.yaml"
    assert config_path(["zero3"]) == 2
    assert "one of: deepspeed_zero2_offload, fsdp" in capsys.readouterr().err


class ShardedAccelerator:
    """What Checkpoints asks of an Accelerator, answered in one process as under a sharded engine: save_state
    writes a shard file, get_state_dict returns ``gathered``; the calls are recorded."""

    is_main_process, num_processes, process_index = True, 1, 0

    def __init__(self, distributed_type, gathered=None):
        self.distributed_type, self.gathered, self.calls = distributed_type, gathered, []

    def wait_for_everyone(self):
        pass

    def save_state(self, folder, **kwargs):
        self.calls.append(("save_state", Path(folder).name, kwargs))
        Path(folder).mkdir(parents=True)
        (Path(folder) / "shard-0.distcp").write_bytes(b"shard")

    def load_state(self, folder, **kwargs):
        self.calls.append(("load_state", Path(folder).relative_to(Path(folder).parents[1]).as_posix(), kwargs))

    def get_state_dict(self, module):
        self.calls.append(("get_state_dict",))
        return self.gathered

    def unwrap_model(self, module):
        return module


@pytest.fixture(scope="module")
def wrapped():
    """The tiny model inside a module, as a stage's loss holds it when accelerate prepares it."""
    holder = nn.Module()
    holder.model = NextMM.from_config("tiny")
    return holder


@pytest.mark.parametrize("engine, save_kwargs, load_kwargs", [
    (DistributedType.FSDP, {}, {}),
    (DistributedType.DEEPSPEED, {"exclude_frozen_parameters": True}, {"load_module_strict": False}),
])
def test_sharded_checkpoints_go_through_accelerate_state(wrapped, tmp_path, monkeypatch, engine, save_kwargs,
                                                         load_kwargs):
    model = wrapped.model
    gathered = {f"model.{key}": torch.zeros_like(value) for key, value in model.state_dict().items()}
    accelerator = ShardedAccelerator(engine, gathered)
    checkpoints = Checkpoints(tmp_path, accelerator, 2, TrainedParts(model), OmegaConf.create({"seed": 0}))
    assert checkpoints.sharded
    folder = checkpoints.save(3, {"scheduler": {"last_epoch": 3}}, wrapped)
    assert accelerator.calls == [("save_state", "engine", save_kwargs), ("get_state_dict",)]
    assert (folder / "engine" / "shard-0.distcp").is_file()
    assert json.loads((folder / "engine.json").read_text()) == {"distributed_type": engine.value, "num_processes": 1}
    # model/ holds the gathered trained parts (zeros here), not the process's own tensors
    projectors = load_file(folder / "model" / "projectors.safetensors")
    assert not torch.equal(model.input_projector.proj.weight, torch.zeros_like(model.input_projector.proj.weight))
    assert all(not tensor.any() for tensor in projectors.values())

    def no_whole_weights(self, folder):
        raise AssertionError("a sharded run loads its weights from engine/, not model/")

    monkeypatch.setattr(TrainedParts, "load", no_whole_weights)
    accelerator.calls.clear()
    state = checkpoints.restore(folder, wrapped)
    assert accelerator.calls == [("load_state", "step-00000003/engine", load_kwargs)]
    assert state["step"] == 3 and state["scheduler"] == {"last_epoch": 3}


def test_ddp_checkpoints_stay_whole_on_the_main_process(wrapped, tmp_path):
    accelerator = ShardedAccelerator(DistributedType.MULTI_CPU)
    checkpoints = Checkpoints(tmp_path, accelerator, 2, TrainedParts(wrapped.model), OmegaConf.create({"seed": 0}))
    folder = checkpoints.save(1, {}, wrapped)
    assert not checkpoints.sharded and accelerator.calls == [] and not (folder / "engine").exists()
    saved = load_file(folder / "model" / "projectors.safetensors")
    torch.testing.assert_close(saved["input_projector.proj.weight"], wrapped.model.input_projector.proj.weight)
    (folder / "engine.json").unlink()  # a checkpoint written before engine.json existed still resumes
    assert checkpoints.restore(folder, wrapped)["step"] == 1 and accelerator.calls == []


def test_gathered_state_writes_the_trained_parts_of_a_sharded_model(tiny_model, tmp_path):
    own = save_trained_parts(tiny_model, tmp_path / "own")
    state = tiny_model.state_dict()
    same = save_trained_parts(tiny_model, tmp_path / "same", state)
    for name in ("projectors.safetensors", "adapter/adapter_model.safetensors"):
        expected, found = load_file(own / name), load_file(same / name)
        assert expected.keys() == found.keys() and all(torch.equal(found[k], expected[k]) for k in expected)
    state = {key: value + 1 for key, value in state.items()}  # the gathered tensors are written, not the model's
    changed = save_trained_parts(tiny_model, tmp_path / "changed", state)
    adapter = load_file(changed / "adapter" / "adapter_model.safetensors")
    lora = next(name for name in adapter if ".lora_A." in name)
    assert not torch.equal(adapter[lora], load_file(own / "adapter" / "adapter_model.safetensors")[lora])


@pytest.mark.parametrize("saved, runs, error", [
    ({"distributed_type": "FSDP", "num_processes": 2}, ("MULTI_GPU", 2), "written under FSDP, this run is MULTI_GPU"),
    ({"distributed_type": "MULTI_GPU", "num_processes": 2}, ("DEEPSPEED", 2), "under MULTI_GPU, this run is DEEPSPEED"),
    ({"distributed_type": "FSDP", "num_processes": 2}, ("DEEPSPEED", 2), "under FSDP, this run is DEEPSPEED"),
    ({"distributed_type": None, "num_processes": 2}, ("FSDP", 2), "under DDP or one process, this run is FSDP"),
    ({"distributed_type": "FSDP", "num_processes": 4}, ("FSDP", 2), "written by 4 processes; resume with the same"),
])
def test_a_checkpoint_of_another_engine_or_size_is_refused(saved, runs, error):
    accelerator = SimpleNamespace(distributed_type=DistributedType(runs[0]), num_processes=runs[1])
    with pytest.raises(ConfigError, match=error):
        check_engine(saved, accelerator, Path("out/checkpoints/step-00000002"))


def test_ddp_and_single_process_checkpoints_resume_across_those_two():
    accelerator = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=2)
    check_engine({"distributed_type": "MULTI_GPU", "num_processes": 2}, accelerator, Path("x"))
    check_engine({"distributed_type": None, "num_processes": 2}, accelerator, Path("x"))


def test_resume_refuses_a_sharded_checkpoint_before_building_anything(root, tmp_path):
    step = tmp_path / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (step / "engine.json").write_text(json.dumps({"distributed_type": "FSDP", "num_processes": 1}))
    cfg = compose_config("stage/encoder_side", [f"data.root={root}", f"output_dir={tmp_path}", "resume=true"])
    with pytest.raises(ConfigError, match=r"step-00000002 was written under FSDP, this run is NO: resume with the "
                                          r"accelerate config it was launched with") as error:
        start_run(cfg, "encoder_side")
    assert "\n" not in str(error.value)


def test_pretraining_recipes_refuse_a_sharded_engine(tmp_path):
    with pytest.raises(ConfigError, match="FSDP: only the NExT-GPT stages run under a sharded engine"):
        Checkpoints(tmp_path, ShardedAccelerator(DistributedType.FSDP), 1, ModuleWeights(net=nn.Linear(2, 2)),
                    OmegaConf.create({}))


def deepspeed_accelerator(**plugin):
    return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                           state=SimpleNamespace(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2, **plugin)))


def stage_settings(**optimizer):
    return OmegaConf.create({"train": {"batch_size": 3},
                             "optimizer": {"max_grad_norm": 0.5, "betas": [0.9, 0.999], **optimizer}})


def test_deepspeed_takes_the_stage_batch_size_and_clipping():
    accelerator = deepspeed_accelerator(offload_optimizer_device="cpu")
    configure_engine(accelerator, stage_settings())
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_clipping"] == 0.5


def test_deepspeed_settings_that_would_change_the_run_are_refused():
    with pytest.raises(ConfigError, match=r"DeepSpeed config sets gradient_clipping=1.0, the run "
                                          r"optimizer.max_grad_norm=0.5: make them equal"):
        configure_engine(deepspeed_accelerator(gradient_clipping=1.0), stage_settings())
    with pytest.raises(ConfigError, match=r"optimizer.betas=\[0.9, 0.95\]: with the optimizer offloaded, DeepSpeed's "
                                          r"CPU Adam steps with betas \[0.9, 0.999\]"):
        configure_engine(deepspeed_accelerator(offload_optimizer_device="cpu"), stage_settings(betas=[0.9, 0.95]))
    configure_engine(deepspeed_accelerator(), stage_settings(betas=[0.9, 0.95]))  # not offloaded: AdamW as it is


def test_fsdp_refuses_a_weight_average():
    accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP)
    with pytest.raises(ConfigError, match=r"ema.decay=0.99: the weight average is not supported under FSDP"):
        configure_engine(accelerator, OmegaConf.create({"ema": {"decay": 0.99, "start": 0}}))
    configure_engine(accelerator, OmegaConf.create({"ema": {"decay": None, "start": 0}}))
