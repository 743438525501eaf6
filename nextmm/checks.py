"""Checking settings before any work: what each value may be, and a one-line error that says what to give.

    check({"top_p": 2}, {"top_p": (lambda v: number(v) and 0 < v <= 1, "a number in (0, 1]")})
    -> ConfigError("top_p=2: give a number in (0, 1]")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

from nextmm.errors import ConfigError

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
