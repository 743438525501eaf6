"""Running a nextmm command: Hydra composes the config from ``key=value`` overrides.

We compose with Hydra's API rather than ``@hydra.main`` so that every user error (an unknown model, a
bad override, a missing file) is one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nextmm.config import available_models, conf_dir, load_model_config
from nextmm.errors import ConfigError, UserError

USAGE_ERROR = 2


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides; ``model=`` takes a name or a checkpoint folder."""
    overrides = list(overrides)
    model_path = None
    for i, override in enumerate(overrides):
        key, _, value = override.partition("=")
        if key == "model" and value not in available_models():
            if not (Path(value) / "config.yaml").is_file():
                raise ConfigError(
                    f"unknown model config {value!r}: available are {', '.join(available_models())} "
                    "(or give a checkpoint folder with config.yaml)"
                )
            model_path, overrides[i] = value, None
    overrides = [o for o in overrides if o is not None]
    model_overrides = [o for o in overrides if o.startswith("model.")]
    other = overrides if model_path is None else [o for o in overrides if not o.startswith("model.")]
    try:
        with initialize_config_dir(str(conf_dir()), version_base=None):
            cfg = compose(config_name=config_name, overrides=other)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"bad override: {_first_line(error)} (see --help for the keys)") from None
    if model_path is not None:
        OmegaConf.set_struct(cfg, False)
        cfg.model = load_model_config(model_path, [o.removeprefix("model.") for o in model_overrides])
    return cfg


def run(
    config_name: str,
    task: Callable[[DictConfig], int | None],
    argv: Sequence[str] | None = None,
    *,
    command: str | None = None,
) -> None:
    """Compose the config, run ``task(cfg)``, exit. User errors: one line on stderr, exit code 2.

    ``command`` is how the user starts it, for --help (default ``python -m nextmm.<config_name>``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        command = command or f"python -m nextmm.{config_name}"
        print(f"usage: {command} [key=value ...]\n\nconfig (conf/{config_name}.yaml):")
        print(OmegaConf.to_yaml(compose_config(config_name, [])))
        sys.exit(0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    try:
        code = task(compose_config(config_name, argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    sys.exit(code or 0)


def quiet_libraries() -> None:
    """Keep the libraries' notices (deprecations, resizing explanations) off a command's output."""
    import diffusers
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
