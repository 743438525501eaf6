"""``python -m nextmm chat``: an interactive multi-turn session over the Python API.

Type a message and press enter. Attach media to your next message with ``/image PATH``, ``/audio PATH``
or ``/video PATH``; ``/reset`` starts over, ``/quit`` (or end of input) leaves. Earlier turns and their
media stay in context. Each answer's media are written to ``output_dir/turn_<n>/``.

A turn that fails leaves the conversation as it was before it, and the session goes on: a user error (a bad
attachment, a prompt over the context) is one line; so is a full disk (the turn's media are not written); an
unexpected exception (a bug, a library's error) is one line that says so, its traceback appended to
``output_dir/errors.log``.
"""

from __future__ import annotations

import errno
import shutil
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig

from nextmm.cli.generate import answering_model, check_flag, resolve_device, resolve_dtype, turn_settings
from nextmm.errors import UserError
from nextmm.inference.conversation import Conversation
from nextmm.inference.outputs import claimed_folder, write_turn

COMMANDS = {"/image": "image", "/audio": "audio", "/video": "video"}
ERRORS_LOG = "errors.log"  # in output_dir: the tracebacks of turns that failed unexpectedly


def main(cfg: DictConfig) -> None:
    settings = turn_settings(cfg)
    output_dir = Path(cfg.output_dir)  # Hydra's run folder when not given (nextmm.cli.app.hydra_overrides)
    with claimed_folder(output_dir, overwrite=check_flag(cfg, "overwrite")):
        if output_dir.is_dir():  # empty, or overwrite=true: this session's turns only
            shutil.rmtree(output_dir)
        device = resolve_device(cfg.device)
        model = answering_model(cfg, device, resolve_dtype(cfg.dtype, device))
        converse(Conversation(model, progress=not cfg.quiet, **settings), output_dir, cfg)


def converse(conversation: Conversation, output_dir: Path, cfg: DictConfig) -> None:
    """Read messages from stdin until /quit or its end; each answer's media go to ``output_dir/turn_<n>/``."""
    attached: dict[str, list[str]] = {"image": [], "audio": [], "video": []}
    turn_number = 0
    print(f"nextmm chat ({cfg.model.name}): /image /audio /video PATH attach media, /reset, /quit")
    for line in sys.stdin:
        line = line.strip()
        command, _, argument = line.partition(" ")
        if command == "/quit":
            break
        if command == "/reset":
            conversation.reset()
            attached = {m: [] for m in attached}
            print("(conversation reset)")
            continue
        if command in COMMANDS:
            attached[COMMANDS[command]].append(argument.strip())
            print(f"(attached {COMMANDS[command]} {argument.strip()})")
            continue
        if not line and not any(attached.values()):
            continue
        try:
            turn = conversation.say(line, images=attached["image"], audios=attached["audio"], videos=attached["video"])
        except UserError as error:  # a bad attachment ends the turn, not the session
            print(f"error: {error}", file=sys.stderr)
            attached = {m: [] for m in attached}
            continue
        except Exception:  # noqa: BLE001 (a bug or a library's error ends the turn, not the session)
            report_internal_error(output_dir, line, "the turn is left out of the conversation")
            attached = {m: [] for m in attached}
            continue
        attached = {m: [] for m in attached}
        turn_number += 1
        print(turn.text)
        if turn.outputs:
            folder = output_dir / f"turn_{turn_number}"
            try:
                result = write_turn(turn, folder, prompt=line, model=cfg.model.name, seed=cfg.seed)
            except Exception as error:  # noqa: BLE001 (the answer stands; its media are lost, the session goes on)
                if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                    print(f"error: no space left on the disk writing {folder}: this turn's media were not written "
                          "(nothing half-written is left); free some space, the conversation goes on",
                          file=sys.stderr)
                else:
                    report_internal_error(output_dir, line, f"this turn's media were not written to {folder}")
                continue
            print(f"(media written to {result.parent})")


def report_internal_error(output_dir: Path, message: str, consequence: str) -> None:
    """The exception being handled, which is not the user's: one line on stderr, its traceback appended to
    ``output_dir/errors.log`` (or, where that cannot be written, the reason in the line)."""
    error = sys.exc_info()[1]
    text = str(error).strip()
    summary = type(error).__name__ + (f": {text.splitlines()[0]}" if text else "")
    log_path = output_dir / ERRORS_LOG
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}, the message {message!r}\n{traceback.format_exc()}\n")
        where = f"the traceback is in {log_path}"
    except OSError as log_error:
        where = f"its traceback could not be written to {log_path} ({log_error.strerror or log_error})"
    print(f"internal error, not caused by your input ({summary}): {where}, please report it; {consequence}, the "
          "conversation goes on", file=sys.stderr)
