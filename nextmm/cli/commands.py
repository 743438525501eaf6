"""``nextmm <command> [key=value ...]`` (also ``python -m nextmm <command> ...``): every command by one name.

    nextmm generate prompt="surf vlog"                      one turn, written to files
    nextmm train encoder_side model=tiny output_dir=runs/s1  a training recipe (``nextmm train`` lists them)
    nextmm generate --help                                   the command's config and keys

Each command is a module with ``main(cfg)`` and a config in nextmm/conf/; ``cli.run`` makes it a Hydra
application, so Hydra's flags (``--cfg job``, ``-m``, ``--info``) work after the command's name.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from nextmm import cli


class Command(NamedTuple):
    module: str  # has main(cfg)
    config: str  # nextmm/conf/<config>.yaml
    summary: str


COMMANDS = {
    "generate": Command("nextmm.cli.generate", "generate", "one turn: text and files for each medium asked for"),
    "chat": Command("nextmm.cli.chat", "chat", "a conversation in the terminal, outputs written per turn"),
    "serve": Command("nextmm.cli.serve", "serve", "a web page and an OpenAI-style HTTP API on one loaded model"),
    "inspect": Command("nextmm.cli.inspect", "inspect", "a model's parts, sizes and what is missing"),
    "eval": Command("nextmm.toyworld.eval", "eval", "the toyworld evaluation (captioning, switching, people's words)"),
    "benchmark": Command("nextmm.benchmark.run", "benchmark", "the paper's tables: one task's metrics on its data set"),
    "download": Command("nextmm.weights.download", "download", "fetch the real weights a model config needs"),
    "convert": Command("nextmm.weights.convert", "convert", "the official NExT-GPT checkpoint to nextmm's format"),
    "precompute": Command("nextmm.data.precompute", "precompute", "the frozen encoder's features or the decoders' targets"),
    "world": Command("nextmm.toyworld.build", "toyworld", "the toyworld data set (scenes, captions, instructions)"),
}
RECIPES = {
    "encoder_side": Command("nextmm.recipes.encoder_side", "stage/encoder_side", "stage 1: the input projector"),
    "decoder_side": Command("nextmm.recipes.decoder_side", "stage/decoder_side", "stage 2: the output projectors"),
    "modality_switching": Command("nextmm.recipes.modality_switching", "stage/modality_switching",
                                  "stage 3: LoRA and projectors on instructions"),
    "pretrain_encoder": Command("nextmm.toyworld.pretrain_encoder", "stage/pretrain_encoder",
                                "toyworld: the tiny ImageBind, by InfoNCE"),
    "pretrain_llm": Command("nextmm.toyworld.pretrain_llm", "stage/pretrain_llm", "toyworld: the tiny LLM"),
    "pretrain_decoders": Command("nextmm.toyworld.pretrain_decoders", "stage/pretrain_decoders",
                                 "toyworld: the tiny diffusion decoders"),
    "toyworld": Command("nextmm.toyworld.rebuild", "stage/toyworld", "toyworld: every step above, then export"),
}


def program() -> str:
    """How the user started us, for usage lines: ``nextmm`` (console script) or ``python -m nextmm``."""
    return "nextmm" if Path(sys.argv[0]).name == "nextmm" else "python -m nextmm"


def usage(title: str, table: dict[str, Command], prefix: str) -> str:
    width = max(map(len, table))
    lines = [f"usage: {prefix} <{title}> [key=value ...]   ({prefix} <{title}> --help: its keys)", ""]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in table.items()]
    return "\n".join(lines)


def complete(argv: list[str]) -> None:
    """Shell completion: ``eval "$(nextmm --shell-completion install=bash)"`` once, then tab completes commands,
    recipes and each command's keys. Hydra asks ``nextmm -sc query=bash`` with the typed line in COMP_LINE."""
    if not argv[1:2] or not argv[1].startswith("query="):  # install= / uninstall=: Hydra's script, for `nextmm`
        cli.run("generate", lambda cfg: None, argv, command="nextmm")
    words = os.environ.get("COMP_LINE", "").split()[1:]
    table = COMMANDS
    if words[:1] == ["train"]:
        table, words = RECIPES, words[1:]
    typing_name = not words or (len(words) == 1 and not os.environ.get("COMP_LINE", "").endswith(" "))
    if typing_name or words[0] not in table:
        names = [*table, "train"] if table is COMMANDS else list(table)
        print(" ".join(name for name in names if name.startswith(words[0] if words else "")))
        sys.exit(0)
    os.environ["COMP_LINE"] = " ".join(["nextmm", *words[1:]]) + (" " if os.environ["COMP_LINE"].endswith(" ") else "")
    command = table[words[0]]
    cli.run(command.config, importlib.import_module(command.module).main, argv, command="nextmm")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command named first in ``argv`` (default ``sys.argv[1:]``) with the rest of it; exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-sc"], ["--shell-completion"]):
        complete(argv)
    prog = program()
    table, title, prefix = COMMANDS, "command", prog
    if argv[:1] == ["train"]:
        table, title, prefix, argv = RECIPES, "recipe", f"{prog} train", argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        text = usage(title, table, prefix)
        if table is COMMANDS:
            text += f"\n  {'train':<{max(map(len, table))}}  a training recipe ({prog} train: the list)"
        print(text, file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else cli.USAGE_ERROR)
    name, rest = argv[0], argv[1:]
    if name not in table:
        known = [*table, "train"] if table is COMMANDS else list(table)
        print(f"error: unknown {title} {name!r}: choose one of {', '.join(known)}", file=sys.stderr)
        sys.exit(cli.USAGE_ERROR)
    command = table[name]
    module = importlib.import_module(command.module)
    cli.run(command.config, module.main, rest, command=f"{prefix} {name}")
