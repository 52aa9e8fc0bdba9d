"""Building validated Sentinel-2 / reference-sensor patch pairs from two scenes.

Steps (see ``s2sr pairs build --help`` and docs/datasets.md):

1. read both scenes (any CRS, resolution, dtype) and map the reference's bands;
2. intersect footprints; reproject the reference onto the grid aligned with the
   Sentinel-2 pixels at (Sentinel-2 pixel size / scale) through a GDAL warped VRT
   (average resampling when downscaling, cubic otherwise), read window by window;
3. estimate the global sub-pixel shift between Sentinel-2 and the reference degraded to
   the Sentinel-2 grid by phase correlation on up to 16 windows, and fold its correction
   into the warp (one resampling only); refuse the pair when windows disagree;
4. masks: nodata on either side; clouds and shadows (L2A SCL when found next to the
   bands, a reference mask when given, otherwise the brightness/whiteness test);
5. robust per-band fit of the reference to Sentinel-2 on clear pixels; refuse pairs too
   far apart in time or too cloudy over the overlap;
6. cut patches with a stride; per-patch statistics; 7. automatic validation.

Steps 1-2 and the masks are :mod:`s2sr.data.overlap`, step 3 and 5's fit
:mod:`s2sr.data.alignment`, the options and their checks :mod:`s2sr.data.options`; this
module reads the patches block by block, and :mod:`s2sr.data.patches` (shared with
:mod:`s2sr.data.wald`) cuts and stores them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from affine import Affine
from rasterio.windows import Window

from s2sr.core.errors import DataError, InputNotFoundError
from s2sr.core.files import remove_quietly, replace_all
from s2sr.data.alignment import estimate_alignment, fit_radiometry, to_lr
from s2sr.data.dates import scene_date
from s2sr.data.degrade import degrade
from s2sr.data.masks import band_cloud_mask, dilate
from s2sr.data.options import BuildOptions, check_build_options, pair_id_for
from s2sr.data.overlap import ScenePair
from s2sr.data.patches import Patch, PatchCutter
from s2sr.data.registration import ShiftEstimate
from s2sr.data.stats import patch_stats
from s2sr.data.store import PairStore
from s2sr.io.outputs import check_output_dir

log = logging.getLogger(__name__)


def _patch_origins(length: int, patch: int, stride: int) -> list[int]:
    return list(range(0, length - patch + 1, stride))


#: Patches per block read at once: bounds memory whatever the scene width.
BLOCK_PATCHES = 16


def _blocks(pair: ScenePair) -> Iterator[tuple[int, list[int], Window]]:
    """Row-major blocks of up to ``BLOCK_PATCHES`` patches: (row, patch columns, window)."""
    k = pair.opts.degrade_factor
    p = pair.opts.patch * k
    stride = (pair.opts.stride or pair.opts.patch) * k
    cols = _patch_origins(int(pair.window.width), p, stride)
    for r in _patch_origins(int(pair.window.height), p, stride):
        for b in range(0, len(cols), BLOCK_PATCHES):
            group = cols[b:b + BLOCK_PATCHES]
            yield r, group, Window(group[0], r, group[-1] + p - group[0], p)


def build_pair(lr: str | os.PathLike[str], hr: str | os.PathLike[str],
               dataset: str | os.PathLike[str], opts: BuildOptions | None = None
               ) -> dict[str, Any]:
    """Add one Sentinel-2 / reference scene pair to a dataset (created if absent).

    Returns:
        The pair's summary as in ``s2sr pairs info --json``.
    """
    return _build_or_prepare(lr, hr, dataset, opts, commit=True)


def prepare_pair(lr: str | os.PathLike[str], hr: str | os.PathLike[str],
                 dataset: str | os.PathLike[str], opts: BuildOptions | None = None
                 ) -> PreparedPair:
    """Everything :func:`build_pair` does but the commit: the pair's arrays stay
    temporaries in the dataset's ``arrays/`` (named after this process), for one writer
    to commit with :func:`commit_prepared` (many pairs on a Dask cluster,
    :mod:`s2sr.batch.many_pairs`)."""
    return cast(PreparedPair, _build_or_prepare(lr, hr, dataset, opts, commit=False))


@dataclass(frozen=True)
class PreparedPair:
    """A pair cut but not committed: its id, info, patch rows and array files as
    ``(final path, temporary path)``."""

    pair_id: str
    info: dict[str, Any]
    rows: list[dict[str, Any]]
    arrays: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Written:
    """A finished temporary array file (the part of an NpyWriter commit_pair uses)."""

    path: Path
    tmp: Path

    def publish(self) -> None:
        replace_all([(self.tmp, self.path)])

    def discard(self) -> None:
        remove_quietly(self.tmp)


def commit_prepared(store: PairStore, prepared: PreparedPair) -> dict[str, Any]:
    """Commit a :class:`PreparedPair` into ``store`` (atomically, under its lock).

    Returns:
        The pair's summary as in ``s2sr pairs info --json``.
    """
    written = [_Written(Path(a), Path(b)) for a, b in prepared.arrays]
    store.commit_pair(prepared.pair_id, prepared.info, prepared.rows,
                      written)  # type: ignore[arg-type]
    return store.summary()["pairs"][prepared.pair_id]


def _build_or_prepare(lr: str | os.PathLike[str], hr: str | os.PathLike[str],
                      dataset: str | os.PathLike[str], opts: BuildOptions | None,
                      commit: bool) -> Any:
    opts = opts or BuildOptions()
    check_build_options(opts)
    lr, hr = Path(lr), Path(hr)
    for p in (lr, hr):
        if not p.exists():
            raise InputNotFoundError(f"input {p} does not exist: check the path")
    # building into an existing dataset is a feature; a file, or a folder inside an
    # input, is not
    check_output_dir(dataset, overwrite=True, inputs=[lr, hr, opts.hr_mask])
    k = opts.degrade_factor
    kind = opts.kind or f"SE{10 * k:g}>RE{10 * k / opts.scale:g}"
    pair = ScenePair(lr, hr, opts)
    try:
        return _build(pair, lr, hr, Path(dataset), kind, commit)
    finally:
        pair.close()


def _time_gap(pair: ScenePair) -> float | None:
    lr_date = scene_date(pair.lr_path, pair.scene.meta.tags, pair.opts.lr_date)
    hr_date = scene_date(pair.hr_path, pair.ref.tags(), pair.opts.hr_date)
    if lr_date is None or hr_date is None:
        log.warning("acquisition date unknown for %s: pass --lr-date/--hr-date to check the "
                    "time gap", pair.lr_path if lr_date is None else pair.hr_path)
        return None
    gap = abs((lr_date - hr_date).days)
    if gap > pair.opts.max_days:
        raise DataError(
            f"the scenes are {gap} days apart ({lr_date} vs {hr_date}), more than --max-days "
            f"{pair.opts.max_days:g}: pair scenes closer in time or raise --max-days"
        )
    return float(gap)


def _build(pair: ScenePair, lr: Path, hr: Path, root: Path, kind: str, commit: bool = True
           ) -> Any:
    opts = pair.opts
    gap = _time_gap(pair)
    est = estimate_alignment(pair)
    if not est.reliable:
        raise DataError(f"cannot estimate the shift between {lr} and {hr} reliably "
                        f"({est.reason}): check that both show the same place and are not "
                        "covered by clouds")
    pair.shift = est.shift
    gains, offsets, _ = fit_radiometry(pair)
    k_deg = opts.degrade_factor
    p = opts.patch * k_deg  # patch size on the native Sentinel-2 grid
    stride = (opts.stride or opts.patch) * k_deg
    n_rows = len(_patch_origins(int(pair.window.height), p, stride))
    cols = _patch_origins(int(pair.window.width), p, stride)
    n = n_rows * len(cols)
    store = PairStore(root, create=True)
    try:
        return _cut(pair, store, n, kind, gap, est, gains, offsets, commit)
    except BaseException:
        store.abandon()  # a refused pair leaves no empty dataset behind
        raise


def _cut(pair: ScenePair, store: PairStore, n: int, kind: str, gap: float | None,
         est: ShiftEstimate, gains: np.ndarray, offsets: np.ndarray, commit: bool = True
         ) -> Any:
    """Cut the pair's ``n`` patches into ``store``, check its cloud, commit it (or, with
    ``commit=False``, return it as a :class:`PreparedPair`)."""
    opts = pair.opts
    lr, hr = pair.lr_path, pair.hr_path
    s, k_deg = opts.scale, opts.degrade_factor
    pid = pair_id_for(lr, hr, kind, opts)
    cutter = PatchCutter(store, pid, n, len(opts.bands), opts.patch, s)
    tally = _CloudTally()
    cutter.cut(_patches(pair, gains, offsets, tally))
    meta = pair.scene.meta
    crs = meta.crs.to_string() if meta.crs else ""
    # grids of the stored arrays, anchored at the Sentinel-2 scene's top-left corner: the
    # input grid is the Sentinel-2 grid (coarsened k times), the target grid the same
    # divided by the scale. The reference was read shifted by ``shift_px`` so that its
    # content is registered to Sentinel-2: in Sentinel-2's georeferencing, which the
    # manifest uses, a target patch covers exactly the ground of its input patch (in the
    # reference file's own georeferencing it lies ``shift_px`` Sentinel-2 pixels away).
    rows = cutter.rows(
        opts.thresholds, meta.transform * Affine.scale(k_deg),
        meta.transform * Affine.scale(k_deg / s),
        {"kind": kind, "site": opts.site, "split": opts.split, "lr_scene": str(lr),
         "hr_scene": str(hr), "crs": crs},
        lr_offset=(int(pair.window.row_off) // k_deg, int(pair.window.col_off) // k_deg))
    info = {
        "kind": kind, "site": opts.site, "split": opts.split, "lr_scene": str(lr),
        "hr_scene": str(hr), "scale": s, "patch": opts.patch, "stride": opts.stride or
        opts.patch, "degrade_factor": k_deg,
        "bands": list(opts.bands), "shift_px": [est.shift[0], est.shift[1]],
        "shift_spread_px": est.spread, "gain": gains.tolist(), "offset": offsets.tolist(),
        "time_gap_days": gap, "cloud_fraction": tally.fraction(), "crs": crs,
        "lr_window": [int(pair.window.row_off), int(pair.window.col_off),
                      int(pair.window.height), int(pair.window.width)],
        "lr_array": cutter.lr_file.name, "hr_array": cutter.hr_file.name,
        "thresholds": opts.thresholds.as_dict(),
    }
    if not commit:
        return PreparedPair(pid, info, rows, cutter.temporaries())
    return cutter.commit(info, rows)


@dataclass
class _CloudTally:
    """Clear and cloudy valid pixels of the overlap, counted while the patches are cut."""

    clear: int = 0
    cloud: int = 0

    def fraction(self) -> float:
        return self.cloud / (self.clear + self.cloud)

    def check(self, lr: Path, hr: Path, max_cloud: float) -> None:
        """Refuse an overlap with no valid pixel, all cloud, or more than ``max_cloud``."""
        if self.clear + self.cloud == 0:
            raise DataError(f"the overlap of {lr} and {hr} holds no valid pixels (all "
                            "nodata): choose scenes with data over the same place")
        cloud_frac = self.fraction()
        if cloud_frac >= 0.999:
            raise DataError(f"the overlap of {lr} and {hr} is entirely cloud: choose a "
                            "clear pair")
        if cloud_frac > max_cloud:
            raise DataError(
                f"{cloud_frac:.0%} of the overlap is cloud or shadow, more than --max-cloud "
                f"{max_cloud:.0%}: choose a clearer pair or raise --max-cloud"
            )


def _patches(pair: ScenePair, gains: np.ndarray, offsets: np.ndarray, tally: _CloudTally
             ) -> Iterator[Patch]:
    """The pair's patches, block by block: Sentinel-2 and the radiometrically fitted
    reference, with their agreement; once all are seen, the overlap's cloud is checked."""
    opts = pair.opts
    s, k_deg = opts.scale, opts.degrade_factor
    p = opts.patch * k_deg  # patch size on the native Sentinel-2 grid
    for r, block_cols, strip in _blocks(pair):
        lrefl, lvalid, lcloud = pair.read_lr(strip)
        href, hvalid, hmask = pair.read_hr(strip)
        href = href * gains[:, None, None] + offsets[:, None, None]
        deg, dvalid, dmask = to_lr(pair, href, hvalid, hmask)
        hcloud = dmask if dmask is not None else band_cloud_mask(deg, opts.bands)
        valid = lvalid & dvalid
        cloud = dilate(lcloud | hcloud, opts.cloud_buffer) & valid
        tally.clear += int((valid & ~cloud).sum())
        tally.cloud += int(cloud.sum())
        for c in block_cols:
            x = c - int(strip.col_off)
            v, cl = valid[:, x:x + p], cloud[:, x:x + p]
            lpatch = lrefl[:, :, x:x + p]
            st = patch_stats(lpatch, deg[:, :, x:x + p], v & ~cl)
            hpatch = href[:, :, x * s:(x + p) * s]
            if k_deg > 1:
                lpatch = degrade(lpatch, k_deg, opts.lr_mtf)
                hpatch = degrade(hpatch, k_deg, opts.hr_mtf)
            yield Patch((r // k_deg, c // k_deg), lpatch, hpatch,
                        {"nodata": float(1 - v.mean()), "cloud": float(cl.mean()), **st})
    tally.check(pair.lr_path, pair.hr_path, opts.max_cloud)
