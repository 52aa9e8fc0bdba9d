"""Digital numbers (DN) <-> reflectance, and the dtypes s2sr reads: the one place for both.

Sentinel-2 products store reflectance x 10000 (``QUANTIFICATION_VALUE``) as integers, from
processing baseline 04.00 on with an additive offset (see :mod:`s2sr.io.processing_baseline`); a
file may instead say how through GDAL's band scale/offset, or hold float reflectance. Inside
s2sr a scene's bands carry ``reflectance = DN * gain + offset`` (:class:`GeoMeta`'s
``gains``/``offsets``). Pair datasets store reflectance x 10000 as int16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from s2sr.core.bands import QUANTIFICATION_VALUE
from s2sr.core.errors import DataError
from s2sr.core.safe_text import printable

#: DN per unit of reflectance for integer data that says nothing else (and pair datasets).
DN_SCALE = QUANTIFICATION_VALUE
#: Dtypes s2sr reads: integer DN (reflectance x 10000) or float reflectance.
SUPPORTED_DTYPES = ("uint16", "int16", "uint32", "int32", "float32", "float64")
#: GDAL band scales accepted (reflectance per DN): Sentinel-2 DN 1e-4, Landsat Collection 2
#: 2.75e-5, reflectance 1; beyond these the values would vanish in or overflow float32.
GDAL_SCALE_RANGE = (1e-7, 100.0)
#: Largest GDAL band offset accepted, in reflectance (Sentinel-2 -0.1, Landsat -0.2).
MAX_GDAL_OFFSET = 10.0
#: Largest reflectance accepted in an input: snow and bright clouds reach about 1.5, so more
#: than 10 means the values are not reflectance (float DN, a wrong scale, an overflow).
MAX_REFLECTANCE = 10.0
#: Dtypes of reference (high-resolution) scenes in pairs: also 8-bit imagery (0-255).
REFERENCE_DTYPES = ("uint8", *SUPPORTED_DTYPES)


def is_integer(dtype: str) -> bool:
    """Whether ``dtype`` (a numpy dtype name) is an integer type."""
    return bool(np.issubdtype(np.dtype(dtype), np.integer))


def check_dtype(dtype: str, path: str) -> None:
    """Refuse a scene dtype outside :data:`SUPPORTED_DTYPES`.

    Raises:
        DataError: naming the dtype and the conversion that fixes it.
    """
    if dtype not in SUPPORTED_DTYPES:
        raise DataError(
            f"{path} has unsupported dtype {dtype}: s2sr reads reflectance as uint16/int16 "
            "(x 10000) or float32 (0-1); convert it, e.g. gdal_translate -ot UInt16"
        )


def check_reference_dtype(dtype: str, path: str) -> None:
    """Refuse a reference scene dtype outside :data:`REFERENCE_DTYPES`."""
    if dtype not in REFERENCE_DTYPES:
        raise DataError(f"reference {path} has unsupported dtype {dtype}")


def default_gain(dtype: str) -> float:
    """Reflectance per DN of a band that says nothing: 1 / 10000 for integers, 1 for floats."""
    return 1.0 / DN_SCALE if is_integer(dtype) else 1.0


def reference_gain(dtype: str) -> float:
    """Approximate reflectance per DN of a reference scene: 8-bit data spans 0-255, other
    integers are reflectance x 10000, floats reflectance (pairs fit the exact gain later)."""
    return 1.0 / 255.0 if dtype == "uint8" else default_gain(dtype)


def gdal_gains(
    dataset: Any, indexes: Sequence[int], path: str
) -> tuple[list[float], list[float], bool]:
    """DN -> reflectance of an open dataset's bands: GDAL scale/offset when set, else
    :func:`default_gain`.

    Args:
        dataset: an open rasterio dataset.
        indexes: 1-based band indexes.
        path: the file, for messages.

    Returns:
        Gains, offsets (reflectance units) and whether the file set them (GDAL scale/offset).

    Raises:
        DataError: a scale of 0, negative, NaN or infinite, or a NaN/infinite offset.
    """
    gains, offsets, explicit = [], [], False
    for idx in indexes:
        scale, offset = dataset.scales[idx - 1], dataset.offsets[idx - 1]
        low, high = GDAL_SCALE_RANGE
        if not (math.isfinite(scale) and math.isfinite(offset) and low <= scale <= high
                and abs(offset) <= MAX_GDAL_OFFSET):
            raise DataError(
                f"{printable(path)} band {idx} has GDAL scale {scale:g} and offset {offset:g}: "
                f"s2sr takes a scale of {low:g} to {high:g} reflectance per DN (0.0001 for "
                f"Sentinel-2 DN) and an offset within +-{MAX_GDAL_OFFSET:g}; fix them, e.g. "
                "gdal_edit.py -scale 0.0001 -offset 0 FILE, or re-export the file"
            )
        if (scale, offset) != (1.0, 0.0):
            gains.append(float(scale))
            offsets.append(float(offset))
            explicit = True
        else:
            gains.append(default_gain(dataset.dtypes[idx - 1]))
            offsets.append(0.0)
    return gains, offsets, explicit


def to_reflectance(dn: np.ndarray, gains: Sequence[float], offsets: Sequence[float]
                   ) -> np.ndarray:
    """DN ``(C, h, w)`` -> float32 reflectance ``DN * gain + offset`` (per band)."""
    g = np.asarray(gains, np.float32)[:, None, None]
    o = np.asarray(offsets, np.float32)[:, None, None]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: inf, refused by callers
        return dn.astype(np.float32) * g + o


def from_scaled(dn: np.ndarray) -> np.ndarray:
    """Reflectance x 10000 (plain Sentinel-2 DN, pair arrays) -> float32 reflectance."""
    return dn.astype(np.float32) / np.float32(DN_SCALE)


def to_int16_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance -> int16 DN x 10000 as pair datasets store it (anything not finite, i.e.
    missing, becomes 0; values beyond int16 are clipped)."""
    return np.clip(np.rint(np.nan_to_num(refl * DN_SCALE, nan=0.0, posinf=0.0,
                                         neginf=0.0)), -32768, 32767).astype(np.int16)


def to_uint16_dn(refl: np.ndarray, min_dn: int = 0) -> np.ndarray:
    """Reflectance -> uint16 DN x 10000 as Sentinel-2 products store it, clipped to
    ``[min_dn, 65535]`` (``min_dn=1`` keeps every pixel off nodata 0)."""
    return np.clip(np.rint(refl * DN_SCALE), min_dn, 65535).astype(np.uint16)


def implausible(refl: np.ndarray, ok: np.ndarray) -> tuple[int, float, np.ndarray] | None:
    """The first band of reflectance ``(C, h, w)`` holding, where ``ok`` (``(C|1, h, w)``)
    is set, a value above :data:`MAX_REFLECTANCE` or not finite; ``None`` when none does.

    Returns:
        The band's index, its largest such value (``inf`` for NaN/inf) and its ``(h, w)``
        mask of such pixels.
    """
    bad = ~(refl <= MAX_REFLECTANCE) & ok  # NaN/inf (overflow of DN x gain) included
    if not bad.any():
        return None
    band = int(np.argmax(bad.any(axis=(1, 2))))
    worst = np.nan_to_num(refl[band], nan=np.inf, posinf=np.inf)
    return band, float(np.max(np.where(bad[band], worst, -np.inf))), bad[band]


def implausible_message(band: int, top: float, row: int, col: int, dtype: str) -> str:
    """The one-line refusal of :func:`implausible` input, with the fix."""
    kind = "integer" if is_integer(dtype) else "float"
    return (f"input band {band + 1} reads as reflectance up to {top:g} (first at row {row}, "
            f"column {col}), beyond anything a surface reflects (about 1.5; "
            f"{MAX_REFLECTANCE:g} allowed): the {kind} values are not on the scale s2sr "
            "assumes (float rasters are read as reflectance 0-1, integers as reflectance x "
            "10000). If they are DN (reflectance x 10000), say so: gdal_edit.py -scale 0.0001 "
            "FILE, or convert with gdal_translate -ot UInt16; otherwise fix the file's scale")
