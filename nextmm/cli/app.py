"""``run``: a command as a Hydra application, with user errors as one line on stderr and exit code 2.

Run folders: a command whose config has ``output_dir`` (generate, chat, the stages) is a run. Its folder is
``output_dir`` when given, else a new one of Hydra's (``outputs/<date>/<time>-<6 hex digits>/``, or
``multirun/<date>/<time>-<6 hex digits>/<job>/`` under ``-m``). A training run's folder gets ``.hydra/``
(config.yaml, hydra.yaml, overrides.yaml) and its log file ``<command>.log``; a turn's folder holds the turn only.
Other commands (inspect, eval, convert, ...) write no run folder.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nextmm.checks import check, flag, whole
from nextmm.cli.overrides import (
    MULTIRUN_FLAGS,
    compose,
    compose_config,
    first_values,
    hydra_text,
    is_hydra_override,
    is_sweep,
    split_argv,
    take_apart,
    value_text,
)
from nextmm.errors import ConfigError, UserError

USAGE_ERROR = 2
INTERRUPTED = 130  # the shell's code for Ctrl-C
CONFIG_PACKAGE = "pkg://nextmm.conf"


def hydra_overrides(config_name: str, cfg: DictConfig, overrides: Sequence[str], multirun: bool) -> list[str]:
    """The Hydra settings a command runs with, unless the user set them: job name, logging, run folder.

    A run's folder is output_dir when given (``hydra.run.dir``), else output_dir becomes Hydra's run folder.
    """
    given = {o.lstrip("+~").partition("=")[0] for o in overrides if is_hydra_override(o)}
    job = config_name.rpartition("/")[2]
    settings = {"hydra.job.name": job}
    if _is_run(cfg):
        # a training run keeps .hydra/ and its log file; a turn's folder (generate, chat) holds the turn only
        settings["hydra/job_logging"] = "nextmm" if cfg.hydra.output_subdir is not None else "nextmm_console"
        output_dir = value_text(overrides, "output_dir")
        if output_dir is not None and output_dir.strip("'\" ") == "":
            raise ConfigError("output_dir is empty: give a folder, or leave output_dir out for a new one under "
                              "outputs/")
        if output_dir not in (None, "null"):
            if multirun and not is_sweep(f"output_dir={output_dir}") and "${" not in output_dir:
                raise ConfigError(
                    f"under -m every job would write output_dir={output_dir}: leave output_dir unset (each job "
                    "gets multirun/<date>/<time>/<job>/) or make it differ, e.g. "
                    "output_dir='runs/sweep/${hydra:job.num}'"
                )
            if "${" not in output_dir:
                _check_writable(Path(output_dir))
            settings["hydra.run.dir"] = hydra_text(output_dir)
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
        flags, overrides = split_argv(argv)
        multirun = any(flag in MULTIRUN_FLAGS for flag in flags)
        task_overrides = [o for o in overrides if not is_hydra_override(o)]
        check_added_or_removed(config_name, task_overrides)
        apart = take_apart(task_overrides)
        if apart.path is not None and any(is_sweep(o) for o in apart.model_overrides):
            raise ConfigError("model.* keys of a checkpoint folder cannot be swept; sweep model=<folder>,<folder>")
        # Hydra reports a bad override in several lines with exit code 1: check them here first.
        cfg = apart.apply(compose(config_name, first_values(apart.overrides), return_hydra_config=True))
        check_common_keys(cfg)
        own_hydra = [o for o in overrides if is_hydra_override(o)]
        hydra_argv = flags + apart.overrides + own_hydra + hydra_overrides(config_name, cfg, overrides, multirun)
    except UserError as error:
        _fail(error)

    codes: list[int] = []
    given_dir = value_text(overrides, "output_dir")
    existed = given_dir not in (None, "null") and Path(given_dir).exists()
    new_folders = _new_folders(given_dir, multirun)

    def job(cfg: DictConfig) -> None:
        cfg = apart.apply(cfg)
        quiet_libraries()
        if cfg.get("quiet") is True:
            quiet_everything()
        def undo() -> None:
            if _is_run(cfg) and not existed:
                _undo_run_folder(Path(HydraConfig.get().runtime.output_dir), HydraConfig.get().job.name)
                for folder in new_folders:  # and the folders above it that were made for it, when empty
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()

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
        except RuntimeError as error:
            if type(error).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                raise
            undo()
            print(f"error: {out_of_memory(error)}", file=sys.stderr)
            sys.exit(1)

    saved = sys.argv
    sys.argv = [command, *hydra_argv]
    try:
        hydra.main(config_path=CONFIG_PACKAGE, config_name=config_name, version_base=None)(job)()
    finally:
        sys.argv = saved
    sys.exit(max(codes, default=0))


def check_added_or_removed(config_name: str, overrides: Sequence[str]) -> None:
    """``+key=`` adds a key and ``~key`` removes one: neither is right for a command's own (top-level) keys, which
    its config lists: an added one is read by nothing (a typo, silently ignored), a removed one is needed."""
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if override.startswith("~") and "." not in key:
            raise ConfigError(f"bad override: {override} removes a key this command reads: set it instead ({key}=...)")
    added = [o for o in overrides if o.startswith("+") and "." not in o.lstrip("+").partition("=")[0]]
    if added:
        known = compose_config(config_name, []).keys()
        for override in added:
            if override.lstrip("+").partition("=")[0] not in known:
                raise ConfigError(f"bad override: {override} adds a key this command does not read (see --help for "
                                  "the keys)")


def check_common_keys(cfg: DictConfig) -> None:
    """Keys many commands share, checked for every command before it runs (a command checks its own keys)."""
    workers = (whole(0), "a whole number of worker processes >= 0")
    rules = {"seed": (whole(0), "a whole number >= 0"), "num_workers": workers, "workers": workers,
             "quiet": (flag, "true or false"), "overwrite": (flag, "true or false")}
    check({key: cfg[key] for key in rules if key in cfg}, rules)


def _new_folders(output_dir: str | None, multirun: bool) -> list[Path]:
    """The folders a run's folder will add to the disk above it (itself included when given), innermost first;
    known before Hydra makes them, so that a run that leaves nothing removes them again."""
    if output_dir in (None, "null"):  # Hydra's outputs/<date>/<time>-<hex>: the run folder itself is always new
        path = Path("multirun" if multirun else "outputs", time.strftime("%Y-%m-%d"))
    elif "${" in output_dir:
        return []
    else:
        path = Path(output_dir)
    path = path.absolute()
    return [folder for folder in (path, *path.parents) if not folder.exists()]


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


def out_of_memory(error: Exception) -> str:
    """One line for a GPU that ran out of memory: torch's own first sentence, and what to set instead."""
    said = str(error).strip().split(". ")[0].rstrip(".") or "CUDA out of memory"
    return (f"the GPU ran out of memory ({said}): nothing half-written is left. To answer, set memory=auto (or "
            "memory=offload, model.llm.quantize=nf4; README \"Memory\"); to train, a smaller train.batch_size or a "
            "sharded accelerate config (docs/training.md)")


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
