"""Errors in what a user asked for or gave: the data, the options, the run directory.

They are setup errors: raised before anything trains or is recorded, and reported as their message
alone (experiments.run exits with USER_ERROR; HYDRA_FULL_ERROR=1 shows the traceback). Everything
else that goes wrong during training is recorded in the run's run.json as a failure.
"""

from __future__ import annotations

import math
import os

# Exit codes of experiments.run, documented in the README.
UNEXPECTED = 1  # a fault no check foresaw, outside a run's record (a bug, an unwritable directory)
USER_ERROR = 2  # bad data, option or directory: nothing trained
RUN_FAILED = 3  # a run (or, in a sweep, any run) failed; the others went on
INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal, as a shell reports it


def full_error() -> bool:
    """HYDRA_FULL_ERROR=1: a fault raised with its traceback, not said in one line."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class OptionError(UserError, ValueError):
    """An option outside its valid range."""


class DataError(UserError, ValueError):
    """The data set is missing, incomplete or not in the official format."""


def check_count(
    name: str, value: object, minimum: int, maximum: int | None = None, none: str | None = None
) -> None:
    """An integer option `name` from `minimum` to `maximum` (or None, where `none` says what None
    means): an OptionError naming it otherwise. bool is refused: YAML's true is not a count."""
    if value is None and none:
        return
    also = f", or {none}" if none else ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"{name}={value!r}: must be an integer >= {minimum}{also}")
    if maximum is not None and value > maximum:
        raise OptionError(f"{name}={value!r}: must be at most {maximum:,}")


def check_flag(name: str, value: object) -> None:
    """A yes/no option `name`: true or false, an OptionError naming it otherwise. Hydra passes
    `no`, `off` or a typo as text, which Python reads as true (data.download=no downloaded)."""
    if not isinstance(value, bool):
        raise OptionError(f"{name}={value!r}: must be true or false")


def check_number(
    name: str, value: object, low: float, high: float = math.inf, above_low: bool = False
) -> None:
    """A number option `name` from `low` (above it, with `above_low`) to `high`: an OptionError
    naming it otherwise, before it reaches code that would fail on it mid-run (a warm-up lr of
    "abc" failed at the first step the warm-up applies, in a sweep after the shallow runs)."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    if not number or value < low or (above_low and value == low) or value > high:
        bottom = f" {'>' if above_low else '>='} {low:g}" if low > -math.inf else ""
        top = f" and <= {high:g}" if high < math.inf else ""
        raise OptionError(f"{name}={value!r}: must be a number{bottom}{top}")
