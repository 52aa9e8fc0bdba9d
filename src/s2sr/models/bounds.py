"""Bounds on model architecture options, checked before anything is built.

Options reach the model builders from training configs (YAML) and from the headers of
weights files, which may be hostile: a 262-byte file asking for ``n_resblocks: 100000000``
must be refused, not built. The limits are generous for real models (the study uses 8
blocks of 64 filters; EDSR-baseline 16 x 64, EDSR 32 x 256):

===================  =========================================
option               allowed
===================  =========================================
``n_resblocks``      integer, 1 to 64 (:data:`MAX_RESBLOCKS`)
``n_feats``          integer, 1 to 512 (:data:`MAX_FEATS`)
``res_scale``        finite number, > 0 and <= 10
``upsampler_norm``   ``None`` or ``"batch"``
``global_residual``  ``true`` or ``false``
``mean``             one finite number per band, abs <= 1000
``std``              one finite number per band, 1e-6 to 1000
bands                1 to 13 distinct Sentinel-2 band names
scale                2 or 4
===================  =========================================

At the largest bounds an EDSR has about 330 million parameters (1.3 GB in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from s2sr.core.bands import BANDS
from s2sr.core.checks import in_range, interval, shown
from s2sr.core.constants import SCALES
from s2sr.core.errors import SpecError

MAX_BANDS: Final[int] = len(BANDS)
MAX_RESBLOCKS: Final[int] = 64
MAX_FEATS: Final[int] = 512
MAX_RES_SCALE: Final[float] = 10.0
UPSAMPLER_NORMS: Final[tuple[str | None, ...]] = (None, "batch")
MAX_ABS_MEAN: Final[float] = 1000.0
STD_RANGE: Final[tuple[float, float]] = (1e-6, 1000.0)




def check_int(key: str, value: Any, low: int, high: int) -> int:
    """An integer (not a bool, not a float) in ``[low, high]``."""
    if not in_range(value, low, high, integer=True):
        raise SpecError(key, f"must be an integer from {low} to {high}, got {shown(value)}")
    return int(value)


def check_float(key: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if not in_range(value, low, high, low_open=low_open):
        raise SpecError(key, f"must be a finite number in "
                             f"{interval(low, high, low_open=low_open)}, got {shown(value)}")
    return float(value)


def check_bool(key: str, value: Any) -> bool:
    """Exactly ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise SpecError(key, f"must be true or false, got {shown(value)}")
    return value


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (compared by type as well, so ``1`` is not ``True``)."""
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        names = ", ".join("none" if c is None else repr(c) for c in choices)
        raise SpecError(key, f"must be one of {names}, got {shown(value)}")
    return value


def check_floats(key: str, values: Any, n: int, low: float, high: float) -> list[float]:
    """A list of exactly ``n`` finite numbers, each in ``[low, high]``."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise SpecError(key, f"must be a list of {n} numbers (one per band), got {shown(values)}")
    if len(values) != n:
        raise SpecError(key, f"must have {n} values (one per band), got {len(values)}")
    return [check_float(f"{key}[{i}]", v, low, high) for i, v in enumerate(values)]


def check_bands(bands: Any) -> tuple[str, ...]:
    """1 to 13 distinct Sentinel-2 band names, as a tuple."""
    if isinstance(bands, str | bytes) or not isinstance(bands, Sequence):
        raise SpecError("bands", f"must be a list of band names such as ['B02', 'B03'], "
                                 f"got {shown(bands)}")
    if not 1 <= len(bands) <= MAX_BANDS:
        raise SpecError("bands", f"must name 1 to {MAX_BANDS} bands, got {len(bands)}")
    unknown = [b for b in bands if not isinstance(b, str) or b not in BANDS]
    if unknown:
        raise SpecError("bands", f"has unknown Sentinel-2 band(s) {shown(unknown)}: "
                                 "use names such as B02, B8A")
    if len(set(bands)) != len(bands):
        raise SpecError("bands", f"names a band twice: {shown(list(bands))}")
    return tuple(bands)


def check_scale(scale: Any) -> int:
    """2 or 4."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise SpecError("scale", f"must be 2 or 4, got {shown(scale)}")
    return scale
