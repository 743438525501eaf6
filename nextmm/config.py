"""Finding and composing configs: model names map to nextmm/conf/model/<name>.yaml, paths to saved configs."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from nextmm.errors import ConfigError

MODEL_KEYS = ("encoder", "llm", "decoders")  # what every model config has: a saved one without them is not one


def conf_dir() -> Path:
    """The config folder, nextmm/conf/ (the package nextmm.conf, which Hydra reads as pkg://nextmm.conf)."""
    return Path(str(files("nextmm.conf")))


def package_root() -> Path:
    """The installed nextmm package: the shipped configs and the toyworld model live under it."""
    return Path(str(files("nextmm")))


def available_models() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "model").glob("*.yaml"))


def load_model_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """A model config by name (``"tiny"``), or from a saved checkpoint folder or a YAML file."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "config.yaml").is_file():
        path = path / "config.yaml"
    if path.suffix in (".yaml", ".yml") and path.is_file():
        try:
            cfg = OmegaConf.load(path)
        except Exception as error:  # noqa: BLE001 (YAML's and OmegaConf's many error types: the file is the user's)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{path} is not a readable model config ({first}): give the config.yaml nextmm "
                              "wrote") from None
        missing = [key for key in MODEL_KEYS if not (isinstance(cfg, DictConfig) and key in cfg)]
        if missing:
            raise ConfigError(f"{path} does not describe a model (no {', '.join(missing)}): give the config.yaml "
                              "nextmm wrote")
        if path.name == "config.yaml" and (path.parent / "projectors.safetensors").is_file():
            # A folder of trained parts: load them, with the tokenizer saved beside them.
            cfg.trained = str(path.parent)
            if (path.parent / "tokenizer").is_dir():
                cfg.llm.tokenizer = str(path.parent / "tokenizer")
        cfg.merge_with_dotlist(list(overrides))
        return cfg
    name = str(name_or_path)
    if name not in available_models():
        raise ConfigError(
            f"unknown model config {name!r}: available are {', '.join(available_models())} "
            "(or give a checkpoint folder with config.yaml)"
        )
    # The group file composed as the primary config lands under "model.", so its overrides do too.
    overrides = [f"model.{o}" if not o.startswith(("model.", "+", "~")) else o for o in overrides]
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its search path has nextmm/conf/
            cfg = compose(config_name=f"model/{name}", overrides=list(overrides))
        else:
            with initialize_config_dir(str(conf_dir()), version_base=None):
                cfg = compose(config_name=f"model/{name}", overrides=list(overrides))
    except HydraException as error:
        raise ConfigError(f"bad override for model {name!r}: {str(error).splitlines()[0]}") from None
    OmegaConf.resolve(cfg)
    return cfg.model  # a group file composed as the primary config lands under its group's key


def resolve_path(path: str | Path | None) -> Path | None:
    """A config path: absolute, or relative to the working directory, else to the package (``toyworld/checkpoint``)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    in_package = package_root() / path
    return in_package if in_package.exists() else path
