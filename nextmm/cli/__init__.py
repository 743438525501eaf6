"""Running a nextmm command: every command is a Hydra application.

``cli.run`` hands the command line to ``hydra.main``, so Hydra's own flags work on every command:
``--cfg job|hydra|all``, ``--info``, ``--hydra-help``, ``--shell-completion``, ``-m`` sweeps and launcher
plugins (``hydra/launcher=submitit_slurm``). Before Hydra sees them, the overrides are composed once with
Hydra's compose API, so that a user error (an unknown key, a bad value, an unknown model) is one line on
stderr with exit code 2 rather than Hydra's report. ``compose_config`` is the same composition for the
Python API, notebooks and tests.

Run folders: a command whose config has ``output_dir`` (generate, chat, the stages) is a run. Its folder is
``output_dir`` when given, else Hydra's (``outputs/<date>/<time>/``, or ``multirun/<date>/<time>/<job>/``
under ``-m``), and Hydra writes ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml) and the run's log
file ``<command>.log`` into it. Other commands (inspect, eval, convert, ...) write no run folder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nextmm.config import available_models, conf_dir, load_model_config
from nextmm.errors import ConfigError, UserError

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for Ctrl-C
CONFIG_PACKAGE = "pkg://nextmm.conf"
# Hydra's flags that take the next argument as their value
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                    "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"}
MULTIRUN_FLAGS = {"-m", "--multirun"}


# Values taken as typed, never parsed by Hydra's grammar nor interpolated: a prompt is text, whatever characters
# it holds (quotes, commas, brackets, "=", "${...}", emoji), and a media path may hold any of them too. A media
# value that starts with "[" is a list in Hydra's syntax: image=[a.png,b.png].
TEXT_KEYS = ("prompt",)
PATH_KEYS = ("image", "audio", "video")


def compose_config(config_name: str, overrides: Sequence[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose ``nextmm/conf/<config_name>.yaml`` with overrides; ``model=`` takes a name or a checkpoint folder,
    and ``prompt=`` (and a media path) is taken verbatim."""
    apart = _take_apart(overrides)
    return apart.apply(_compose(config_name, apart.overrides, return_hydra_config))


def _compose(config_name: str, overrides: Sequence[str], return_hydra_config: bool) -> DictConfig:
    try:
        with hydra.initialize_config_dir(str(conf_dir()), version_base=None):
            return hydra.compose(config_name=config_name, overrides=list(overrides),
                                 return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"bad override: {_first_line(error)} (see --help for the keys)") from None


@dataclass
class _Apart:
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
            cfg[key] = _literal(value)
        return cfg


def _hydra_text(text: str) -> str:
    """``text`` as a value Hydra's override grammar reads back as the same string: quoted unless plain."""
    if re.fullmatch(r"[\w./~@%+:${}-]*", text) or text[:1] in ("'", '"'):
        return text
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)  # backslashes before a quote doubled
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"


def _literal(text: str) -> str:
    """``text`` as an OmegaConf string that reads back as itself: each "${" escaped, so nothing is interpolated
    (the backslashes right before one doubled, as OmegaConf reads them there)."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)


def _take_apart(overrides: Sequence[str]) -> _Apart:
    path, verbatim, rest = None, {}, []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and (key in TEXT_KEYS or (key in PATH_KEYS and not value.startswith("["))):
            verbatim[key] = value  # the last one wins, as in Hydra
            continue
        if sep and key == "output_dir":  # a folder name with spaces, commas or brackets; "${...}" still resolves
            override = f"output_dir={_hydra_text(value)}"
        if key == "model" and value not in available_models():
            if not (Path(value) / "config.yaml").is_file():
                raise ConfigError(
                    f"unknown model config {value!r}: available are {', '.join(available_models())} "
                    "(or give a checkpoint folder with config.yaml)"
                )
            path = value
        rest.append(override)
    if path is None:
        return _Apart(rest, verbatim=verbatim)
    model_overrides = [o for o in rest if o.startswith("model.")]
    rest = [o for o in rest if o != f"model={path}" and not o.startswith("model.")]
    return _Apart(rest, path, model_overrides, verbatim)


def _split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
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


def _is_hydra_override(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _first_values(overrides: Sequence[str]) -> list[str]:
    """Each sweep override (``seed=0,1,2``, ``lr=range(1,3)``) replaced by its first value, for validation."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"bad override: {_first_line(error)} (see --help for the keys)") from None
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


def _value_text(overrides: Sequence[str], key: str) -> str | None:
    """The value of ``key=...`` as typed (the last one wins, as in Hydra), or None."""
    found = None
    for override in overrides:
        name, sep, value = override.lstrip("+").partition("=")
        if sep and name == key:
            found = value
    return found


def hydra_overrides(config_name: str, cfg: DictConfig, overrides: Sequence[str], multirun: bool) -> list[str]:
    """The Hydra settings a command runs with, unless the user set them: job name, logging, run folder.

    A run's folder is output_dir when given (``hydra.run.dir``), else output_dir becomes Hydra's run folder.
    """
    given = {o.lstrip("+~").partition("=")[0] for o in overrides if _is_hydra_override(o)}
    job = config_name.rpartition("/")[2]
    settings = {"hydra.job.name": job}
    if _is_run(cfg):
        # a training run keeps .hydra/ and its log file; a turn's folder (generate, chat) holds the turn only
        settings["hydra/job_logging"] = "nextmm" if cfg.hydra.output_subdir is not None else "nextmm_console"
        output_dir = _value_text(overrides, "output_dir")
        if output_dir not in (None, "null"):
            if multirun and not _is_sweep(f"output_dir={output_dir}") and "${" not in output_dir:
                raise ConfigError(
                    f"under -m every job would write output_dir={output_dir}: leave output_dir unset (each job "
                    "gets multirun/<date>/<time>/<job>/) or make it differ, e.g. "
                    "output_dir='runs/sweep/${hydra:job.num}'"
                )
            if "${" not in output_dir:
                _check_writable(Path(output_dir))
            settings["hydra.run.dir"] = _hydra_text(output_dir)
        else:  # Hydra's run folder, resolved inside the job (so .hydra/config.yaml says where it went)
            settings["output_dir"] = "${hydra:runtime.output_dir}"
            # a folder of its own for each run (or sweep), even for two started in the same second
            stamp = f"${{now:%Y-%m-%d}}/${{now:%H-%M-%S}}-{secrets.token_hex(3)}"
            settings["hydra.sweep.dir" if multirun else "hydra.run.dir"] = f"{'multirun' if multirun else 'outputs'}/{stamp}"
    else:
        settings.update({"hydra/job_logging": "nextmm_console", "hydra.run.dir": ".", "hydra.output_subdir": "null"})
    return [f"{key}={value}" for key, value in settings.items() if key not in given]


def _check_writable(folder: Path) -> None:
    """output_dir must be a folder this process can make or write in; checked before Hydra makes it."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output_dir={folder} is a file: give a folder")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write output_dir={folder}: {existing} is not writable; give a folder you can write")


def _is_run(cfg: DictConfig) -> bool:
    """Whether the command writes a run folder: its config has output_dir (``in`` is False while it is ???)."""
    return "output_dir" in cfg.keys()


def _is_sweep(override: str) -> bool:
    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except HydraException:
        return False


def run(
    config_name: str,
    task: Callable[[DictConfig], int | None],
    argv: Sequence[str] | None = None,
    *,
    command: str | None = None,
) -> None:
    """Run ``task(cfg)`` as a Hydra application, exit. User errors: one line on stderr, exit code 2.

    ``argv`` defaults to ``sys.argv[1:]``; ``command`` is how the user starts it, for --help (default
    ``nextmm <config_name>``; nextmm.cli.commands passes the real one).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command or f"nextmm {config_name}"
    try:
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: {command} [key=value ...]   (Hydra's flags: --hydra-help)\n\nconfig (nextmm/conf/{config_name}.yaml):")
            print(OmegaConf.to_yaml(compose_config(config_name, [])))
            sys.exit(0)
        flags, overrides = _split_argv(argv)
        multirun = any(flag in MULTIRUN_FLAGS for flag in flags)
        task_overrides = [o for o in overrides if not _is_hydra_override(o)]
        apart = _take_apart(task_overrides)
        if apart.path is not None and any(_is_sweep(o) for o in apart.model_overrides):
            raise ConfigError("model.* keys of a checkpoint folder cannot be swept; sweep model=<folder>,<folder>")
        # Hydra reports a bad override in several lines with exit code 1: check them here first.
        cfg = apart.apply(_compose(config_name, _first_values(apart.overrides), return_hydra_config=True))
        own_hydra = [o for o in overrides if _is_hydra_override(o)]
        hydra_argv = flags + apart.overrides + own_hydra + hydra_overrides(config_name, cfg, overrides, multirun)
    except UserError as error:
        _fail(error)

    codes: list[int] = []
    given_dir = _value_text(overrides, "output_dir")
    existed = given_dir not in (None, "null") and Path(given_dir).exists()

    def job(cfg: DictConfig) -> None:
        cfg = apart.apply(cfg)
        quiet_libraries()
        if cfg.get("quiet") is True:
            quiet_everything()
        def undo() -> None:
            if _is_run(cfg) and not existed:
                _undo_run_folder(Path(HydraConfig.get().runtime.output_dir), HydraConfig.get().job.name)

        try:
            codes.append(task(cfg) or 0)
        except UserError as error:
            undo()
            _fail(error)
        except KeyboardInterrupt:  # what was being written is removed whole (nextmm.atomic); say so in one line
            undo()
            print("interrupted: nothing half-written is left (a training run continues with resume=true)",
                  file=sys.stderr)
            sys.exit(INTERRUPTED)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            undo()
            print(f"error: no space left on the disk writing {error.filename or 'the outputs'}: nothing half-written "
                  "is left; free some space and run again", file=sys.stderr)
            sys.exit(1)

    saved = sys.argv
    sys.argv = [command, *hydra_argv]
    try:
        hydra.main(config_path=CONFIG_PACKAGE, config_name=config_name, version_base=None)(job)()
    finally:
        sys.argv = saved
    sys.exit(max(codes, default=0))


def _undo_run_folder(folder: Path, job: str) -> None:
    """A run that stopped at a user error leaves nothing: what Hydra wrote before it goes, if that is all there is."""
    ours = {folder / ".hydra", folder / f"{job}.log"}
    if not folder.is_dir() or any(path not in ours for path in folder.iterdir()):
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        handler.close()
        root.removeHandler(handler)
    shutil.rmtree(folder)


def _fail(error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def quiet_libraries() -> None:
    """Keep the libraries' notices (deprecations, resizing explanations) off a command's output."""
    import diffusers
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()


def quiet_everything() -> None:
    """``quiet=true``: only the command's own output (the answer and the paths) and its errors."""
    import diffusers
    import transformers

    logging.getLogger().setLevel(logging.WARNING)
    transformers.logging.disable_progress_bar()
    diffusers.logging.disable_progress_bar()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

