"""Which reference-sensor band plays which Sentinel-2 band.

Presets (1-based band indexes of the reference file):

- ``rapideye``: Blue, Green, Red, RedEdge, NIR -> B02=1, B03=2, B04=3, B08=5
- ``planetscope4``: Blue, Green, Red, NIR -> B02=1, B03=2, B04=3, B08=4
- ``planetscope8``: Coastal, Blue, Green I, Green, Yellow, Red, RedEdge, NIR
  -> B02=2, B03=4, B04=6, B08=8
- ``spot``: SPOT 6/7 multispectral as delivered (Red, Green, Blue, NIR)
  -> B02=3, B03=2, B04=1, B08=4
- ``rgbn``: generic Blue, Green, Red, NIR -> B02=1, B03=2, B04=3, B08=4
- ``auto`` (default): from the reference's band descriptions (``blue``, ``B2``, ``nir``...)

An explicit map is ``B02=1,B03=2,B04=3,B08=5``.
"""

from __future__ import annotations

from collections.abc import Sequence

from s2sr.core.bands import described_bands, normalize_band_name
from s2sr.core.errors import BandError, UsageError

PRESETS: dict[str, dict[str, int]] = {
    "rapideye": {"B02": 1, "B03": 2, "B04": 3, "B08": 5},
    "planetscope4": {"B02": 1, "B03": 2, "B04": 3, "B08": 4},
    "planetscope8": {"B02": 2, "B03": 4, "B04": 6, "B08": 8},
    "spot": {"B02": 3, "B03": 2, "B04": 1, "B08": 4},
    "rgbn": {"B02": 1, "B03": 2, "B04": 3, "B08": 4},
}


def parse_band_map(text: str | None) -> dict[str, int] | None:
    """``None``/``auto`` -> ``None``; a preset name or ``B02=1,...`` -> band -> index."""
    if text is None or text.strip().lower() == "auto":
        return None
    key = text.strip().lower()
    if key in PRESETS:
        return dict(PRESETS[key])
    mapping: dict[str, int] = {}
    for item in text.split(","):
        name, _, index = item.partition("=")
        band = normalize_band_name(name)
        if band is None or not index.strip().isdigit() or int(index) < 1:
            raise UsageError(
                f"--band-map item {item!r} is not BAND=INDEX: use e.g. B02=1,B03=2,B04=3,B08=5 "
                f"or a preset ({', '.join(PRESETS)})"
            )
        mapping[band] = int(index)
    return mapping


def resolve_band_map(mapping: dict[str, int] | None, descriptions: Sequence[str | None],
                     count: int, wanted: Sequence[str], source: str) -> dict[str, int]:
    """Band -> 1-based index in the reference for each wanted Sentinel-2 band."""
    if mapping is None:
        mapping = {}
        for idx, band in enumerate(described_bands(descriptions), start=1):
            if band is not None and band not in mapping:
                mapping[band] = idx
        if not mapping and count == len(wanted):
            mapping = {b: k for k, b in enumerate(wanted, start=1)}
    missing = [b for b in wanted if b not in mapping]
    if missing:
        raise BandError(
            f"reference {source} has no band for {', '.join(missing)}: pass --band-map "
            f"(a preset: {', '.join(PRESETS)}; or e.g. B02=1,B03=2,B04=3,B08=4)"
        )
    bad = [f"{b}={mapping[b]}" for b in wanted if mapping[b] > count]
    if bad:
        raise BandError(f"--band-map {', '.join(bad)} exceeds the {count} band(s) of {source}")
    return {b: mapping[b] for b in wanted}
