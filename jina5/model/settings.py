"""Numeric settings checked where a config hands them over, before anything loads: a bad value is an
error naming its config key, what the number means and the value given (``data.datasets.news.batch_size=0:
must be a positive integer (rows per step of this dataset)``), never a ``ZeroDivisionError`` later."""

from __future__ import annotations

import math
from typing import Any


def positive_int(value: Any, key: str, meaning: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else ValueError naming ``key`` and ``meaning``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}={value!r}: must be a positive integer ({meaning})")
    return value


def non_negative(value: Any, key: str, meaning: str) -> float:
    """``value`` if it is a finite number >= 0 (not a bool), else ValueError naming ``key``, ``meaning``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key}={value!r}: must be a finite number >= 0 ({meaning})")
    return float(value)
