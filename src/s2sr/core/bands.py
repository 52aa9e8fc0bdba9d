"""Sentinel-2 MSI band constants (no logic beyond name normalisation and look-up).

Values from the Sentinel-2 MSI product specification (S2-PDGS-TAS-DI-PSD) and the
processing-baseline 04.00 note: from 25 January 2022 L1C and L2A digital numbers carry an
additive offset of -1000 (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``), so that
``reflectance = (DN + offset) / QUANTIFICATION_VALUE``. Besides band names, processing
baselines are normalised here (:func:`parse_baseline`, the one reading of them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

#: Band name -> (native resolution in metres, central wavelength in nm, common name).
BANDS: Final[dict[str, tuple[int, float, str]]] = {
    "B01": (60, 442.7, "coastal"),
    "B02": (10, 492.4, "blue"),
    "B03": (10, 559.8, "green"),
    "B04": (10, 664.6, "red"),
    "B05": (20, 704.1, "rededge1"),
    "B06": (20, 740.5, "rededge2"),
    "B07": (20, 782.8, "rededge3"),
    "B08": (10, 832.8, "nir"),
    "B8A": (20, 864.7, "nir08"),
    "B09": (60, 945.1, "watervapour"),
    "B10": (60, 1373.5, "cirrus"),
    "B11": (20, 1613.7, "swir16"),
    "B12": (20, 2202.4, "swir22"),
}

#: The 10 m bands s2sr super-resolves by default, in the order models expect them.
DEFAULT_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B08")
RGB_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04")
#: The six 20 m bands s2sr sharpens with the 10 m bands' guidance (issue 22).
BANDS_20M: Final[tuple[str, ...]] = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: The ten bands of ``--bands all`` (the 10 m and 20 m bands), in Sentinel-2 order; the
#: 60 m bands (B01, B09, B10) are not super-resolved.
TEN_BANDS: Final[tuple[str, ...]] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: The near-infrared bands the cloud-shadow test uses, by preference (10 m, then narrow).
NIR_BANDS: Final[tuple[str, ...]] = ("B08", "B8A")

#: ``band_id`` order used in the SAFE product metadata (MTD_MSIL1C.xml / MTD_MSIL2A.xml).
SAFE_BAND_IDS: Final[tuple[str, ...]] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)

#: Digital numbers are reflectance x 10000 in every Sentinel-2 product.
QUANTIFICATION_VALUE: Final[float] = 10000.0
#: Additive DN offset from processing baseline 04.00 on.
BASELINE_04_OFFSET: Final[float] = -1000.0

_COMMON = {v[2]: k for k, v in BANDS.items()}
_COMMON.update({"nir": "B08", "rededge": "B05", "swir1": "B11", "swir2": "B12"})
_BAND_RE = re.compile(r"^B0?(\d{1,2}A?)$")


def normalize_band_name(name: str) -> str | None:
    """Map a band label to its canonical Sentinel-2 name, or ``None`` if it is not one.

    Accepts ``B02``, ``B2``, ``b02``, ``B8A``, ``blue``, ``nir`` and labels such as
    ``"B04 (red)"`` or ``"B02_10m"``.
    """
    text = name.strip()
    if not text:
        return None
    head = re.split(r"[\s(_:,-]", text, maxsplit=1)[0].upper()
    match = _BAND_RE.match(head)
    if match:
        number = match.group(1)
        candidate = "B8A" if number == "8A" else f"B{int(number.rstrip('A')):02d}"
        if number.endswith("A") and number != "8A":
            return None
        return candidate if candidate in BANDS else None
    rest = text[len(head):].lstrip()
    if rest and not rest.startswith(("(", "_")):
        return _COMMON.get(text.lower())  # "red edge" is not "red"
    return _COMMON.get(text.lower()) or _COMMON.get(head.lower())



def asks_all_bands(bands: str | Sequence[str] | None) -> bool:
    """Whether ``--bands`` (or ``bands=``) asks for the ten-band product (``all``).

    Raises:
        ValueError: ``all`` beside band names (naming the 60 m bands when they are asked).
    """
    names = [bands] if isinstance(bands, str) else list(bands or [])
    if not any(str(b).strip().lower() == "all" for b in names):
        return False
    others = [str(b) for b in names if str(b).strip().lower() != "all"]
    if others:
        sixty = [b for b in others if normalize_band_name(b) in ("B01", "B09", "B10")]
        why = ("the 60 m bands (B01, B09, B10) are not super-resolved" if sixty
               else "all is the ten bands B02-B12")
        raise ValueError(f"--bands all cannot be combined with band names "
                         f"({', '.join(others)[:80]}): {why}; pass --bands all alone")
    return True


def described_bands(descriptions: Sequence[str | None]) -> list[str | None]:
    """The Sentinel-2 band each of a file's band descriptions names, in the file's order
    (``None`` for a blank or foreign description): the one description -> band matching of
    every reader."""
    return [normalize_band_name(d) if d and d.strip() else None for d in descriptions]

def parse_baseline(value: object) -> str | None:
    """A processing baseline as ``"NN.NN"``; ``None`` when ``value`` is absent (``None`` or
    blank).

    Raises:
        ValueError: ``value`` is no baseline (text that is not one, a negative, NaN or
            boolean value, more than two decimals, beyond 99.99 or below 01.00).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("is not a baseline such as 05.09")
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"[Nn]?(\d{2})(\d{2})", text) if text[:1] in "Nn" else None
        if match:
            text = f"{match.group(1)}.{match.group(2)}"
        elif re.fullmatch(r"[Nn]\d{2}\.\d{2}", text):
            text = text[1:]
        if not re.fullmatch(r"\d{1,2}(?:\.\d{1,2})?", text):
            raise ValueError("is not a baseline such as 05.09")
        number = float(text)
    elif isinstance(value, int) and abs(value) > 10**6:
        raise ValueError("is outside 01.00-99.99 (baselines are such as 05.09)")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError("is not a finite number (baselines are such as 05.09)")
    hundredths = round(number * 100)
    if abs(number * 100 - hundredths) > 1e-6:
        raise ValueError("is not a baseline such as 05.09 (two decimals at most)")
    if not 100 <= hundredths <= 9999:
        raise ValueError("is outside 01.00-99.99 (baselines are such as 05.09)")
    return f"{hundredths // 100:02d}.{hundredths % 100:02d}"


def band_index(bands: Sequence[str], band: str) -> int | None:
    """Position of ``band`` in ``bands`` (names compared after :func:`normalize_band_name`,
    so ``"nir"`` and ``"B8"`` find ``B08``), or ``None`` when it is not there."""
    wanted = normalize_band_name(band)
    for i, name in enumerate(bands):
        if normalize_band_name(name) == wanted:
            return i
    return None


def nir_index(bands: Sequence[str]) -> int | None:
    """Position of the NIR band in ``bands`` (``B08``/``nir``, else ``B8A``), or ``None``."""
    for band in NIR_BANDS:
        found = band_index(bands, band)
        if found is not None:
            return found
    return None


def visible_indices(bands: Sequence[str]) -> tuple[int, ...]:
    """Positions of the visible bands in ``bands``: B02, B03, B04 where all three are there,
    otherwise the first three bands that are not the NIR."""
    found = [band_index(bands, b) for b in RGB_BANDS]
    if all(i is not None for i in found):
        return tuple(i for i in found if i is not None)
    nir = nir_index(bands)
    return tuple(i for i in range(len(bands)) if i != nir)[:3]


#: Rough reflectance mean and standard deviation of land scenes per band, used to
#: normalise the input of an untrained model (training replaces them with dataset values).
TYPICAL_MEAN: Final[dict[str, float]] = {
    "B01": 0.10, "B02": 0.08, "B03": 0.09, "B04": 0.09, "B05": 0.13, "B06": 0.21,
    "B07": 0.24, "B08": 0.26, "B8A": 0.27, "B09": 0.27, "B10": 0.01, "B11": 0.21, "B12": 0.14,
}
TYPICAL_STD: Final[dict[str, float]] = {
    "B01": 0.04, "B02": 0.05, "B03": 0.05, "B04": 0.06, "B05": 0.06, "B06": 0.07,
    "B07": 0.08, "B08": 0.09, "B8A": 0.09, "B09": 0.08, "B10": 0.01, "B11": 0.08, "B12": 0.07,
}
