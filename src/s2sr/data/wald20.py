"""Wald pairs with the 20 m bands: ``s2sr pairs degrade`` given 10 m and 20 m bands.

Every band is degraded by the pair's ``scale`` (Wald protocol, as DSen2 was trained): the
10 m bands (B02 B03 B04 B08) give their own pair as for the 10 m models (input at
``10 x scale`` m, target the real 10 m bands), and that input is the *guide* of the 20 m
bands (B05 B06 B07 B8A B11 B12), whose input is them degraded to ``20 x scale`` m and whose
target is the real 20 m bands. Both groups are stored in one pair
(:mod:`s2sr.data.bandgroups`), patch for patch on the same ground: a patch of ``p`` input
pixels of the 10 m bands holds ``p / 2`` of the 20 m bands, so ``--patch`` and ``--stride``
must be even. Degradation is the documented blur and block mean
(:func:`s2sr.data.degrade.degrade`) of each group on its own grid.

The bands are read as ``s2sr predict --bands all`` reads them
(:func:`s2sr.io.multires.open_multires`): from the scene itself (a SAFE product, a per-band
folder such as BigEarthNet's or OSCD's, a STAC item) or with a second raster
(``DegradeOptions.input_20m``: a 20 m GeoTIFF beside a 10 m one). Their grid must nest in
the 10 m grid, checked from the geotransforms: a half-pixel offset, other pixel sizes or
another CRS are refused, never resampled. Patches start on the first 10 m pixel where both
grids have a whole 20 m pixel (:class:`s2sr.io.multires.GridNesting`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.core.errors import DataError, UsageError
from s2sr.data.options import BuildOptions, DegradeOptions, pair_id_for
from s2sr.data.patches import Patch, PatchCutter
from s2sr.data.store import PairStore
from s2sr.data.wald_strips import AGREEMENT, StripPlan, strip_cuts
from s2sr.io.base import GeoMeta, Scene
from s2sr.io.multires import GridNesting, MultiResScene, open_multires

log = logging.getLogger(__name__)

#: Native pixel sizes (metres) of the two band groups.
FINE_M, COARSE_M = 10.0, 20.0


def split_bands(bands: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(10 m bands, 20 m bands)`` of ``bands``, each in the order given.

    Raises:
        UsageError: a 60 m band beside them (s2sr does not sharpen B01, B09, B10).
    """
    fine = tuple(b for b in bands if b in DEFAULT_BANDS)
    coarse = tuple(b for b in bands if b in BANDS_20M)
    other = [b for b in bands if b not in fine + coarse]
    if fine and coarse and other:
        raise UsageError(f"--bands {','.join(other)}: only the 10 m and 20 m bands pair "
                         "together (the 60 m bands B01, B09, B10 are out); drop them")
    return fine, coarse


def _check_fine(meta: GeoMeta, path: Path) -> None:
    """Refuse 10 m bands that a projected CRS says are not at 10 m."""
    if meta.crs is not None and meta.crs.is_projected:
        res = meta.res[0]
        if abs(res - FINE_M) > 0.005 * FINE_M:
            raise DataError(f"{path} has {res:g} m pixels: the 20 m Wald pairs need the 10 m "
                            "bands at their native 10 m (and the 20 m bands at 20 m); give "
                            "the product's own bands, not resampled ones")
    else:
        log.warning("%s is not in a projected CRS: its pixels are taken as 10 m and its 20 m "
                    "bands' as 20 m (Sentinel-2's)", path)


def _plans(ms: MultiResScene, scale: int, opts: DegradeOptions
           ) -> tuple[StripPlan, StripPlan]:
    """The patch origins of both groups, in each raster's pixels: every
    ``stride * scale`` 10 m pixels of the extent both cover, a whole patch in it."""
    p, stride = opts.patch, opts.stride or opts.patch
    span = p * scale  # 10 m pixels per patch
    n: GridNesting = ms.nesting
    rows = list(range(0, 2 * n.height - span + 1, stride * scale))
    cols = list(range(0, 2 * n.width - span + 1, stride * scale))
    if not rows or not cols:
        raise DataError(f"{ms.hr.meta.source} and its 20 m bands share less than one {p} px "
                        f"patch at {FINE_M * scale:g} m ({span} px at 10 m): use a smaller "
                        "--patch")
    plan10 = StripPlan(scale, 1, p, [n.hr_row + r for r in rows], [n.hr_col + c for c in cols],
                       opts.mtf, opts.gain, _picks(ms.hr.meta.bands, split_bands(opts.bands)[0]))
    plan20 = StripPlan(scale, 1, p // 2, [n.lr_row + r // 2 for r in rows],
                       [n.lr_col + c // 2 for c in cols], opts.mtf, opts.gain,
                       _picks(ms.lr.meta.bands, split_bands(opts.bands)[1]))
    return plan10, plan20


def _picks(have: tuple[str, ...], want: tuple[str, ...]) -> tuple[int, ...] | None:
    """Positions of ``want`` among a scene's bands ``have`` (``None``: all, in order)."""
    return None if want == have else tuple(have.index(b) for b in want)


def check_bands_options(opts: DegradeOptions, scale: int) -> None:
    """Refuse options the 20 m pairs cannot honour (odd patch or stride, other levels)."""
    if opts.patch % 2 or (opts.stride or 0) % 2:
        raise UsageError(f"--patch {opts.patch} / --stride {opts.stride}: with the 20 m bands "
                         "both must be even (a 10 m patch holds half as many 20 m pixels)")
    if opts.resolution is not None and opts.resolution != FINE_M:
        raise UsageError(f"--resolution {opts.resolution:g}: with the 20 m bands the 10 m "
                         "bands are at 10 m; leave --resolution out")
    if opts.levels is not None and tuple(opts.levels) != (FINE_M * scale, FINE_M):
        raise UsageError(f"--levels {opts.levels[0]:g},{opts.levels[1]:g}: with the 20 m bands "
                         "the targets are the native bands; use --scale 2 or 4")


def degrade_bands(path: Path, dataset: str | os.PathLike[str], opts: DegradeOptions,
                  scale: int, kind: str) -> dict[str, Any]:
    """Add the 10 m and 20 m bands' Wald pairs of one scene to a dataset (see the module).

    Args:
        path: the scene (its 10 m bands, and its 20 m ones unless ``opts.input_20m``).
        dataset: the dataset folder. opts: the options (bands of both groups).
        scale: the degradation factor (2 or 4). kind: the pair kind (the 10 m bands').

    Returns:
        The pair's summary as in ``s2sr pairs info --json``.
    """
    check_bands_options(opts, scale)
    path20 = Path(opts.input_20m) if opts.input_20m is not None else path
    with open_multires(path, opts.input_20m) as ms:
        _check_fine(ms.hr.meta, path)
        plans = _plans(ms, scale, opts)
        offset = (ms.nesting.hr_row - 2 * ms.nesting.lr_row,
                  ms.nesting.hr_col - 2 * ms.nesting.lr_col)
        store = PairStore(dataset, create=True)
        try:
            return _cut((ms.hr, ms.lr), (path, path20), store, plans, opts, kind, offset)
        except BaseException:
            store.abandon()  # a refused scene leaves no empty dataset behind
            raise


def _patches(scene10: Scene, scene20: Scene, plans: tuple[StripPlan, StripPlan],
             opts: DegradeOptions, fine: tuple[str, ...]) -> Iterator[Patch]:
    """Both groups' patches, side by side; nodata counts a 10 m input pixel missing in
    either group. Refuses a scene without valid pixels."""
    any_valid = False
    cuts10 = strip_cuts(scene10, plans[0], fine if opts.cloud_test else None,
                        opts.cloud_buffer)
    for c10, c20 in zip(cuts10, strip_cuts(scene20, plans[1]), strict=True):
        v = c10.valid & np.repeat(np.repeat(c20.valid, 2, axis=0), 2, axis=1)
        nodata = float(1 - v.mean())
        any_valid = any_valid or nodata < 1
        cloud = 0.0 if c10.cloud is None else float((c10.cloud & v).mean())
        yield Patch(c10.origin, c10.lr, c10.hr, {"nodata": nodata, "cloud": cloud,
                                                 **AGREEMENT}, ((c20.lr, c20.hr),))
    if not any_valid:
        raise DataError(f"{scene10.meta.source} holds no valid pixels where its 20 m bands "
                        "are: choose a scene with data")


def _cut(scenes: tuple[Scene, Scene], paths: tuple[Path, Path], store: PairStore,
         plans: tuple[StripPlan, StripPlan], opts: DegradeOptions, kind: str,
         offset: tuple[int, int]) -> dict[str, Any]:
    """Cut both groups' patches into ``store`` and commit them as one pair."""
    (scene10, scene20), (path, path20) = scenes, paths
    meta = scene10.meta
    fine, coarse = split_bands(opts.bands)
    plan10 = plans[0]
    p, scale = opts.patch, plan10.fi
    pid = pair_id_for(path, path20, kind, BuildOptions(scale=scale, patch=p,
                                                       stride=opts.stride, bands=opts.bands))
    cutter = PatchCutter(store, pid, len(plan10.rows) * len(plan10.cols), len(fine), p,
                         scale, groups=[(len(coarse), p // 2)])
    cutter.cut(_patches(scene10, scene20, plans, opts, fine))
    crs = meta.crs.to_string() if meta.crs else ""
    common = {"kind": kind, "site": opts.site, "split": opts.split, "lr_scene": str(path),
              "hr_scene": str(path), "crs": crs}
    rows = cutter.rows(opts.thresholds, plan10.input_grid(meta.transform),
                       plan10.target_grid(meta.transform), common)
    lr20, hr20 = cutter.group_files[0]
    in10, in20 = FINE_M * scale, COARSE_M * scale
    info = {
        **{k: v for k, v in common.items() if k != "crs"}, "input_20m": str(path20),
        "scale": scale, "patch": p, "stride": opts.stride or p, "bands": list(fine),
        "shift_px": [0.0, 0.0], "shift_spread_px": 0.0, "gain": [1.0] * len(fine),
        "offset": [0.0] * len(fine), "time_gap_days": 0.0,
        "cloud_fraction": float(np.mean(cutter.stats["cloud"])), "crs": crs,
        "levels_m": [in10, FINE_M], "native_m": FINE_M, "mtf": opts.mtf,
        "lr_array": cutter.lr_file.name, "hr_array": cutter.hr_file.name,
        "groups": [{"bands": list(coarse), "patch": p // 2, "lr_array": lr20.name,
                    "hr_array": hr20.name}],
        "band_resolution_m": {**{b: [in10, FINE_M] for b in fine},
                              **{b: [in20, COARSE_M] for b in coarse}},
        "grid_offset_px": list(offset), "thresholds": opts.thresholds.as_dict(),
    }
    return cutter.commit(info, rows)
