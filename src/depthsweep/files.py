"""Atomic file writes: readers (and a crash) see the old file or the whole new one, never half;
and data made plain for the JSON files the project writes."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def plain_data(x: Any) -> Any:
    """`x` (dicts, lists, tuples, numbers) with numpy's numbers as Python's and NaN or infinity
    (not estimated) as None: what JSON holds as data."""
    if isinstance(x, dict):
        return {k: plain_data(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain_data(v) for v in x]
    if hasattr(x, "item"):  # a numpy scalar
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
