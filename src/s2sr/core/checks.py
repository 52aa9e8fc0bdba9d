"""Validation of numbers and choices: the one place that says what a bounded option accepts.

Options come from the command line, the API, configs and the headers of files, which may
be hostile. A number is accepted when it is a real number (``True`` is not 1), not NaN,
finite (unless infinity is allowed) and inside its interval; an integer option also refuses
``2.0``. :func:`shown` is how any refused value appears in a message: clipped, however large,
deep or circular it is.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Collection
from typing import Any

from s2sr.core.errors import UsageError

#: Characters of a value echoed in an error message.
MAX_SHOWN = 80
#: Largest ``--epoch-scale``: every stage's epochs are multiplied by it.
MAX_EPOCH_SCALE = 1e4

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 6
_REPR.maxdict = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for an error message: at most ``limit`` characters, built without
    ever producing the full text (a value from a file may be huge, deep or circular)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # an int too long to print (Python's digit limit)
        bits = value.bit_length() if isinstance(value, int) else 0
        text = (f"<an integer of about {int(bits * 0.30103) + 1} digits>" if bits
                else f"<a {type(value).__name__}>")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_number(value: Any, *, integer: bool = False, allow_inf: bool = False) -> bool:
    """Whether ``value`` is a real number (an integer with ``integer``), not a bool, not
    NaN, and finite unless ``allow_inf``."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    if integer:
        return True  # Python integers are exact at any size
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float's range: out of every finite interval
        return allow_inf
    return not math.isnan(number) and (allow_inf or math.isfinite(number))


def in_range(value: Any, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False, integer: bool = False, allow_inf: bool = False) -> bool:
    """Whether ``value`` is a number (:func:`is_number`) in ``[low, high]``; ``low_open`` /
    ``high_open`` leave an end out."""
    if not is_number(value, integer=integer, allow_inf=allow_inf):
        return False
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return bool(above and below)


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False,
             integer: bool = False) -> str:
    """The interval as a message writes it: ``[1, 64]``, ``(0, 10000]``, ``[0, 1e+06]``."""
    def text(end: float) -> str:
        return str(int(end)) if integer and math.isfinite(end) else f"{end:g}"

    bounds = f"{text(low)}, {text(high)}"
    return f"{'(' if low_open else '['}{bounds}{')' if high_open else ']'}"


def check_number(what: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False, integer: bool = False, allow_inf: bool = False,
                 fix: str = "") -> None:
    """Refuse ``value`` unless :func:`in_range`.

    Args:
        what: the option as the user wrote it (``--epoch-scale``, ``stages[0].lr``).
        value: the value given.
        low, high: the interval's ends.
        low_open, high_open: leave that end out.
        integer: only integers (``2.0`` is refused).
        allow_inf: accept infinity (NaN never).
        fix: appended to the message (``": fix it in the config"``).

    Raises:
        UsageError: ``"{what} must be a number in [low, high], got {value}{fix}"``.
    """
    if not in_range(value, low, high, low_open=low_open, high_open=high_open,
                    integer=integer, allow_inf=allow_inf):
        kind = "an integer" if integer else "a number"
        allowed = interval(low, high, low_open=low_open, high_open=high_open, integer=integer)
        raise UsageError(f"{what} must be {kind} in {allowed}, got {shown(value)}{fix}")


def check_choice(what: str, value: Any, choices: Collection[str]) -> str:
    """``value`` when it is one of ``choices`` (strings, or a mapping's keys).

    Raises:
        UsageError: ``"{what} must be one of a, b, got {value}"``.
    """
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{what} must be one of {', '.join(choices)}, got {shown(value)}")
    return value


def check_epoch_scale(epoch_scale: Any) -> float:
    """``--epoch-scale``: a number in ``(0, 10000]``, multiplying every stage's epochs."""
    check_number("--epoch-scale", epoch_scale, 0, MAX_EPOCH_SCALE, low_open=True)
    return float(epoch_scale)
