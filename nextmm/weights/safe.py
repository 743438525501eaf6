"""Reading weight files without ever running code: safetensors, or torch files of plain tensors.

    read_safetensors(path)      {name: tensor}; a file that is not safetensors is refused in one line
    read_plain_tensors(path)    torch.load(weights_only=True); a file holding Python objects is refused in one line
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nextmm.errors import ConfigError


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ConfigError(not_safetensors(path, error)) from None


def not_safetensors(path: str | Path, error: BaseException) -> str:
    return (f"{path} is not a valid safetensors file ({_first_line(error)}): nextmm reads it only as safetensors and "
            "refuses it; write it again with nextmm or download it again")


def read_plain_tensors(path: str | Path, *, advice: str = "give a state dict of tensors"):
    """What ``torch.save`` wrote, through torch's weights-only unpickler: tensors, dicts, lists, numbers. A refusal
    is one ConfigError line ending with ``advice``; nothing is ever loaded another way."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler's refusals, zip and torch errors alike
        raise ConfigError(f"{path} cannot be read as plain tensors ({refusal(error)}); nextmm never unpickles code: "
                          f"{advice}") from None


def refusal(error: BaseException) -> str:
    """The informative line of torch's weights-only refusal (the global it refused), else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if any(mark in line for mark in ("Unsupported global", "Unsupported operand", "GLOBAL")):
            return line.removeprefix("WeightsUnpickler error: ").split(". Please")[0].rstrip(".")
    return lines[0] if lines else type(error).__name__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
