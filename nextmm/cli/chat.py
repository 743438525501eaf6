"""``python -m nextmm chat``: an interactive multi-turn session over the Python API.

Type a message and press enter. Attach media to your next message with ``/image PATH``, ``/audio PATH``
or ``/video PATH``; ``/reset`` starts over, ``/quit`` (or end of input) leaves. Earlier turns and their
media stay in context. Each answer's media are written to ``output_dir/turn_<n>/``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from nextmm.cli.generate import check_flag, resolve_device, resolve_dtype, turn_settings
from nextmm.errors import UserError
from nextmm.inference.conversation import Conversation
from nextmm.inference.outputs import claimed_folder, write_turn
from nextmm.model import NextMM

COMMANDS = {"/image": "image", "/audio": "audio", "/video": "video"}


def main(cfg: DictConfig) -> None:
    settings = turn_settings(cfg)
    output_dir = Path(cfg.output_dir)  # Hydra's run folder when not given (nextmm.cli.app.hydra_overrides)
    with claimed_folder(output_dir, overwrite=check_flag(cfg, "overwrite")):
        if output_dir.is_dir():  # empty, or overwrite=true: this session's turns only
            shutil.rmtree(output_dir)
        device = resolve_device(cfg.device)
        model = NextMM.from_config(cfg.model, device=device, dtype=resolve_dtype(cfg.dtype, device),
                                   offload=cfg.offload)
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
        attached = {m: [] for m in attached}
        turn_number += 1
        print(turn.text)
        if turn.outputs:
            result = write_turn(turn, output_dir / f"turn_{turn_number}", prompt=line, model=cfg.model.name,
                                seed=cfg.seed)
            print(f"(media written to {result.parent})")
