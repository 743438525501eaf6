"""The command line's overrides: composed with Hydra's compose API, checked before Hydra runs a command.

``compose_config`` is the composition the Python API, notebooks and tests use; ``take_apart`` keeps what Hydra's
grammar must not parse (a prompt, a media path, a checkpoint folder given as ``model=``) apart and sets it after.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nextmm.config import available_models, conf_dir, load_model_config
from nextmm.errors import ConfigError

# Hydra's flags that take the next argument as their value
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                    "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"}
MULTIRUN_FLAGS = {"-m", "--multirun"}

# Values taken as typed, never parsed by Hydra's grammar nor interpolated: a prompt is text, whatever characters
# it holds (quotes, commas, brackets, "=", "${...}", emoji), and a media path may hold any of them too. A media
# value that starts with "[" is a list in Hydra's syntax: image=[a.png,b.png].
TEXT_KEYS = ("prompt",)
PATH_KEYS = ("image", "audio", "video", "prompts")


def compose_config(config_name: str, overrides: Sequence[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose ``nextmm/conf/<config_name>.yaml`` with overrides; ``model=`` takes a name or a checkpoint folder,
    and ``prompt=`` (and a media path) is taken verbatim."""
    apart = take_apart(overrides)
    return apart.apply(compose(config_name, apart.overrides, return_hydra_config))


def compose(config_name: str, overrides: Sequence[str], return_hydra_config: bool) -> DictConfig:
    try:
        with hydra.initialize_config_dir(str(conf_dir()), version_base=None):
            return hydra.compose(config_name=config_name, overrides=list(overrides),
                                 return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"bad override: {first_line(error)} (see --help for the keys)") from None


@dataclass
class Apart:
    """The overrides Hydra parses, and what is taken out of them for ``apply`` to set after composing.

    Hydra knows only the model configs in nextmm/conf/model/; a trained checkpoint folder (``model=<folder>``)
    brings its own config.yaml, which ``apply`` puts in place of the composed ``model`` node, with its
    ``model.*`` overrides. Text and paths (TEXT_KEYS, PATH_KEYS) are set as typed.
    """

    overrides: list[str]
    path: str | None = None
    model_overrides: list[str] = field(default_factory=list)
    verbatim: dict[str, str] = field(default_factory=dict)

    def apply(self, cfg: DictConfig) -> DictConfig:
        if self.path is not None:
            OmegaConf.set_struct(cfg, False)
            cfg.model = load_model_config(self.path, [o.removeprefix("model.") for o in self.model_overrides])
        for key, value in self.verbatim.items():
            if key not in cfg:
                raise ConfigError(f"bad override: {key}= is not a key of this command (see --help for the keys)")
            cfg[key] = literal(value)
        return cfg


def hydra_text(text: str) -> str:
    """``text`` as a value Hydra's override grammar reads back as the same string: quoted unless plain."""
    if re.fullmatch(r"[\w./~@%+:${}-]*", text) or text[:1] in ("'", '"'):
        return text
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)  # backslashes before a quote doubled
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"


def literal(text: str) -> str:
    """``text`` as an OmegaConf string that reads back as itself: each "${" escaped, so nothing is interpolated
    (the backslashes right before one doubled, as OmegaConf reads them there)."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)


def take_apart(overrides: Sequence[str]) -> Apart:
    path, verbatim, rest = None, {}, []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and (key in TEXT_KEYS or (key in PATH_KEYS and not value.startswith("["))):
            verbatim[key] = value  # the last one wins, as in Hydra
            continue
        if sep and key == "output_dir":  # a folder name with spaces, commas or brackets; "${...}" still resolves
            override = f"output_dir={hydra_text(value)}"
        if key == "model" and value not in available_models():
            if not (Path(value) / "config.yaml").is_file():
                raise ConfigError(
                    f"unknown model config {value!r}: available are {', '.join(available_models())} "
                    "(or give a checkpoint folder with config.yaml)"
                )
            path = value
        rest.append(override)
    if path is None:
        return Apart(rest, verbatim=verbatim)
    model_overrides = [o for o in rest if o.startswith("model.")]
    rest = [o for o in rest if o != f"model={path}" and not o.startswith("model.")]
    return Apart(rest, path, model_overrides, verbatim)


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) apart from the ``key=value`` overrides."""
    flags, overrides = [], []
    args = iter(argv)
    for arg in args:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE and "=" not in arg:
                flags.append(next(args, ""))
        else:
            overrides.append(arg)
    return flags, overrides


def is_hydra_override(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def first_values(overrides: Sequence[str]) -> list[str]:
    """Each sweep override (``seed=0,1,2``, ``lr=range(1,3)``) replaced by its first value, for validation."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"bad override: {first_line(error)} (see --help for the keys)") from None
    out = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()), None)
            if first is None:
                raise ConfigError(f"bad override: {text!r} sweeps over no value")
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def value_text(overrides: Sequence[str], key: str) -> str | None:
    """The value of ``key=...`` as typed (the last one wins, as in Hydra), or None."""
    found = None
    for override in overrides:
        name, sep, value = override.lstrip("+").partition("=")
        if sep and name == key:
            found = value
    return found


def is_sweep(override: str) -> bool:
    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except HydraException:
        return False


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
