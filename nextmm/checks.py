"""Checking settings before any work: what each value may be, and a one-line error that says what to give.

    check({"top_p": 2}, {"top_p": (lambda v: number(v) and 0 < v <= 1, "a number in (0, 1]")})
    -> ConfigError("top_p=2: give a number in (0, 1]")
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from nextmm.errors import ConfigError

if TYPE_CHECKING:
    import torch

Rule = tuple[Callable[[object], bool], str]  # (whether a value is allowed, what to give instead)


def number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(low: int, high: float = math.inf) -> Callable[[object], bool]:
    """An int (not a bool) from ``low`` to ``high``."""
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def flag(value) -> bool:
    return isinstance(value, bool)


def check(values: Mapping[str, object], rules: Mapping[str, Rule], required: Collection[str] = ()) -> None:
    """Raise a ConfigError for the first value a rule refuses. A key missing from ``values``, or None, is not
    checked, unless it is ``required``."""
    for key, (valid, meaning) in rules.items():
        value = values.get(key)
        if (value is not None or key in required) and not valid(value):
            raise ConfigError(f"{key}={value}: give {meaning}")


def resolve_device(name) -> torch.device:
    """``auto`` (CUDA when present), cpu, mps, cuda or cuda:<n>, checked against the machine."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(name)):
        raise ConfigError(f"device={name}: give auto, cpu, cuda, cuda:<n> or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available: use device=cpu or device=auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s), from cuda:0")
    return torch.device(name)


def resolve_dtype(name, device: torch.device) -> torch.dtype:
    """``auto`` (float16 on CUDA, else float32), float32, float16 or bfloat16."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ConfigError(f"unknown dtype {name!r}: use auto, {', '.join(dtypes)}")
    return dtypes[name]
