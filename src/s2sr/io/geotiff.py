"""Multi-band rasters (GeoTIFF/COG, JPEG 2000, a VRT of local files) as a :class:`Scene`.

Bands are found by their descriptions (``B02``, ``blue``, ``B04 (red)``...) or named by
position with ``--bands``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from s2sr.core.bands import described_bands, normalize_band_name
from s2sr.core.dn import gdal_gains
from s2sr.core.errors import BandError, UsageError
from s2sr.core.safe_text import printable
from s2sr.io.base import SCENE_LOGGER, BandRef, Scene, build_scene, select_bands
from s2sr.io.gdal_safety import open_raster
from s2sr.io.processing_baseline import apply_offsets

log = logging.getLogger(SCENE_LOGGER)


def _described_names(descriptions: Sequence[str | None]) -> tuple[list[str | None], list[str]]:
    """Sentinel-2 names of a file's bands by description, and the descriptions it has."""
    names = described_bands(descriptions)
    present = [d.strip() for d in descriptions if d and d.strip()]
    return names, present


def _by_position(band_names: Sequence[str], count: int, path: str) -> list[str | None]:
    names = [normalize_band_name(n) for n in band_names]
    bad = [raw for raw, n in zip(band_names, names, strict=True) if n is None]
    if bad:
        raise UsageError(f"--bands names {bad} are not Sentinel-2 bands: use B02, B03, ...")
    dupes = sorted({n for n in names if names.count(n) > 1 and n is not None})
    if dupes:
        raise UsageError(f"--bands names {', '.join(dupes)} more than once: name each band once")
    return list(names)


def _check_duplicates(described: Sequence[str | None], descriptions: Sequence[str | None],
                      count: int, path: str) -> None:
    """Refuse band descriptions naming one band twice (which of them is it?)."""
    seen: dict[str, int] = {}
    for idx, name in enumerate(described, start=1):
        if name is None:
            continue
        if name in seen:
            raise BandError(
                f"{printable(path)} has two bands described as {name} (bands {seen[name]} and "
                f"{idx}: {printable(repr(descriptions[seen[name] - 1]), 40)}, "
                f"{printable(repr(descriptions[idx - 1]), 40)}): s2sr cannot tell which is "
                f"{name}; fix the descriptions, or pass --bands naming all {count} bands of "
                "the file in order")
        seen[name] = idx


def open_geotiff(
    path: str, bands: Sequence[str] | None, band_names: Sequence[str] | None,
    dn_offset: float | None = None,
) -> Scene:
    """Open a multi-band raster; bands are found by description or named by position.

    Args:
        path: the raster (GeoTIFF, COG, JPEG 2000, or a VRT of local files).
        bands: the bands to read, in order; ``None`` for all the file's (or ``band_names``).
        band_names: ``--bands``. When the file's band descriptions are Sentinel-2 names, these
            *select* among them (any order, a subset); otherwise they name the file's bands
            by position and must name every band.
        dn_offset: additive DN offset overriding the detected processing baseline.
    """
    dataset = open_raster(path)
    try:
        names, selected, present = _file_band_names(dataset, band_names, path)
        available: dict[str, BandRef] = {}
        for idx, name in enumerate(names, start=1):
            if name is not None and name not in available:
                available[name] = BandRef(path, idx, dataset)
        bands, available = _bands_to_read(dataset, path, bands, band_names, names, selected,
                                          present, available)
        refs = select_bands(available, bands, path, "")
        gains, offsets, explicit = gdal_gains(dataset, [r.index for r in refs], path)
        tags = dict(dataset.tags())
        # a JPEG 2000 band file is a product's; a GeoTIFF export is DN = reflectance x 10000
        # unless its date says baseline 04.00 or later (a "Copernicus Sentinel data" licence
        # tag is no reason to warn on every run)
        s2_files = path.lower().endswith(".jp2")
        gains, offsets = apply_offsets(bands, gains, offsets, explicit,
                                        dataset.dtypes[refs[0].index - 1], dn_offset, path, tags,
                                        s2_files)
        nodata = dataset.nodatavals[refs[0].index - 1]
        return build_scene(refs, bands, path, [dataset], gains, offsets, nodata, tags)
    except Exception:
        dataset.close()
        raise


def _file_band_names(dataset: Any, band_names: Sequence[str] | None, path: str
                     ) -> tuple[list[str | None], list[str] | None, list[str]]:
    """What ``--bands`` and the descriptions make of the file's bands.

    Returns:
        The Sentinel-2 name of each of the file's bands (None: unnamed); the bands
        ``--bands`` selects among described ones (None: it names the bands by position, or
        is absent); the file's non-empty descriptions.
    """
    described, present = _described_names(dataset.descriptions)
    by_desc = {n: i for i, n in enumerate(described, start=1) if n is not None}
    selected: list[str] | None = None
    if band_names is not None:
        wanted = _by_position(band_names, dataset.count, path)
        if all(n in by_desc for n in wanted):  # descriptions name them: select
            names: list[str | None] = list(described)
            selected = [n for n in wanted if n is not None]
        elif len(wanted) == dataset.count:  # name the file's bands by position
            names = wanted
        elif present:
            missing = [str(n) for n in wanted if n not in by_desc]
            raise UsageError(
                f"--bands {', '.join(missing)} not among the band descriptions of {path} "
                f"({', '.join(repr(d) for d in present)}): choose among them, or name all "
                f"{dataset.count} bands of the file in order"
            )
        else:
            raise UsageError(
                f"--bands names {len(wanted)} band(s) but {path} has {dataset.count} without "
                "descriptions: name every band of the file, in order"
            )
    else:
        names = list(described)
    if band_names is None or selected is not None:
        _check_duplicates(described, dataset.descriptions, dataset.count, path)
    return names, selected, present


def _bands_to_read(
    dataset: Any, path: str, bands: Sequence[str] | None, band_names: Sequence[str] | None,
    names: list[str | None], selected: list[str] | None, present: list[str],
    available: dict[str, BandRef],
) -> tuple[Sequence[str], dict[str, BandRef]]:
    """The bands to read (``bands``, else the selected or named ones) and the file's bands
    by name (undescribed ones named in order when their count fits).

    Raises:
        BandError: bands without Sentinel-2 names that s2sr would need, or a ``--bands``
            selection leaving out a needed band.
    """
    unknown = [d for d in present if normalize_band_name(d) is None]
    if bands is None:
        bands = selected
    if bands is None:
        if None in names:
            if present:
                raise BandError(
                    f"{path} has band descriptions that are not Sentinel-2 names "
                    f"({', '.join(repr(d) for d in unknown) or 'some empty'}): pass --bands "
                    "naming the file's bands in order, e.g. --bands B02,B03,B04,B08"
                )
            raise BandError(
                f"{path} has bands without Sentinel-2 names: pass --bands naming them in order"
            )
        bands = [n for n in names if n is not None]
    elif selected is not None and any(b not in selected for b in bands):
        left = ", ".join(b for b in bands if b not in selected)
        raise BandError(
            f"--bands {', '.join(selected)} leaves out {left} that s2sr needs here "
            f"({', '.join(bands)}): add it to --bands"
        )
    elif not available and not present:
        if dataset.count == len(bands):
            log.warning(
                "%s has no band descriptions: assuming its %d bands are %s in that order "
                "(pass --bands to say otherwise)", path, dataset.count, ", ".join(bands),
            )
            available = {b: BandRef(path, i, dataset) for i, b in enumerate(bands, start=1)}
        else:
            raise BandError(
                f"{path} has {dataset.count} band(s) without descriptions and s2sr needs "
                f"{', '.join(bands)}: pass --bands naming the file's bands in order"
            )
    elif band_names is None and unknown and any(b not in available for b in bands):
        raise BandError(
            f"{path} has band descriptions that are not Sentinel-2 names "
            f"({', '.join(repr(d) for d in unknown)}): pass --bands naming the file's "
            "bands in order, e.g. --bands B02,B03,B04,B08"
        )
    return bands, available
