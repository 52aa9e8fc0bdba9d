"""Building validated Sentinel-2 / reference-sensor patch pairs from two scenes.

Steps (see ``s2sr pairs build --help`` and the README):

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
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from s2sr.bands import DEFAULT_BANDS
from s2sr.data.bandmap import parse_band_map, resolve_band_map
from s2sr.data.dates import scene_date
from s2sr.data.degrade import SENSOR_MTF, block_mean, degrade
from s2sr.data.masks import brightness_mask, dilate, scl_mask
from s2sr.data.radiometry import huber_fit
from s2sr.data.registration import ShiftEstimate, global_shift
from s2sr.data.stats import patch_stats
from s2sr.data.store import DN_SCALE, PairStore, patch_rows
from s2sr.data.validation import Thresholds
from s2sr.errors import DataError, UsageError
from s2sr.io.nodata import valid_mask
from s2sr.io.outputs import check_output_dir
from s2sr.io.scene import Scene, _open_dataset, open_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """Options of ``s2sr pairs build`` (defaults follow the study)."""

    scale: int = 2
    patch: int = 96
    stride: int | None = None
    band_map: str | None = None
    bands: tuple[str, ...] = DEFAULT_BANDS
    site: str = "default"
    split: str = "train"
    lr_date: str | None = None
    hr_date: str | None = None
    max_days: float = 45.0
    max_cloud: float = 0.10
    hr_mask: str | None = None
    lr_mtf: float = SENSOR_MTF["sentinel2"]
    cloud_buffer: int = 2
    thresholds: Thresholds = field(default_factory=Thresholds)
    kind: str | None = None
    #: degrade both sides by this factor after alignment (SE20>RE10-style pairs): the
    #: Sentinel-2 patch with the Sentinel-2 MTF, the reference patch with ``hr_mtf``.
    degrade_factor: int = 1
    hr_mtf: float = SENSOR_MTF["rapideye"]


def pair_id_for(lr: str | Path, hr: str | Path, kind: str, opts: BuildOptions) -> str:
    """Deterministic id of a scene pair (re-adding it replaces it)."""
    stem = lambda p: re.sub(r"[^A-Za-z0-9]+", "-", Path(p).name.split(".")[0])[:40]  # noqa: E731
    key = f"{Path(lr).resolve()}|{Path(hr).resolve()}|{kind}|{opts.scale}|{opts.patch}|" \
          f"{opts.stride}|{opts.bands}"
    return f"{stem(lr)}__{stem(hr)}__{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _reference_gain(dtype: str) -> float:
    if dtype == "uint8":
        return 1.0 / 255.0
    return 1.0 / DN_SCALE if np.issubdtype(np.dtype(dtype), np.integer) else 1.0


def _find_scl(lr: Path) -> Path | None:
    if not lr.is_dir():
        return None
    found = sorted(p for p in lr.rglob("*") if re.search(r"SCL(_20m)?\.(tif|jp2)$", p.name))
    return found[0] if found else None


def _sample_windows(width: int, height: int, size: int, n: int = 4) -> list[Window]:
    """Up to ``n x n`` windows spread over the overlap; at least 2 x 2 when it is small."""
    size = max(min(size, width // 2, height // 2), min(48, width, height))
    cols = np.linspace(0, width - size, n).round().astype(int)
    rows = np.linspace(0, height - size, n).round().astype(int)
    return [Window(int(c), int(r), size, size) for r in sorted(set(rows))
            for c in sorted(set(cols))]


class _Pair:
    """Both scenes opened, the overlap window and the warp of the reference onto it."""

    def __init__(self, lr: Path, hr: Path, opts: BuildOptions) -> None:
        self.opts = opts
        self.lr_path, self.hr_path = lr, hr
        self.scene: Scene = open_scene(lr, bands=opts.bands)
        self.ref = _open_dataset(str(hr))
        self._owned: list[Any] = [self.ref]
        meta = self.scene.meta
        if meta.crs is None:
            raise DataError(f"Sentinel-2 scene {lr} has no CRS: pairs need georeferenced "
                            "scenes; assign one (gdal_edit.py -a_srs)")
        if not self.ref.crs:
            raise DataError(f"reference {hr} has no CRS: pairs need georeferenced scenes; "
                            "assign one (gdal_edit.py -a_srs)")
        mapping = resolve_band_map(parse_band_map(opts.band_map), self.ref.descriptions,
                                   self.ref.count, opts.bands, str(hr))
        self.ref_indexes = [mapping[b] for b in opts.bands]
        self.ref_gain = _reference_gain(self.ref.dtypes[0])
        if self.ref.dtypes[0] not in ("uint8", "uint16", "int16", "uint32", "int32",
                                      "float32", "float64"):
            raise DataError(f"reference {hr} has unsupported dtype {self.ref.dtypes[0]}")
        # resolutions, in the Sentinel-2 CRS units
        lb = transform_bounds(self.ref.crs, meta.crs, *self.ref.bounds)
        ref_res = (lb[2] - lb[0]) / self.ref.width
        self.target_res = meta.res[0] / opts.scale
        if ref_res > 1.25 * self.target_res:
            raise DataError(
                f"reference pixels ({ref_res:.3g}) are coarser than the target grid "
                f"({self.target_res:.3g} = Sentinel-2 pixel / {opts.scale}): the resolution "
                f"ratio does not match --scale {opts.scale}; use a smaller --scale or a finer "
                "reference"
            )
        self.resampling = Resampling.average if ref_res < 0.8 * self.target_res \
            else Resampling.cubic
        # overlap in Sentinel-2 pixels, snapped inwards, with a 1-pixel margin
        l0, b0, r0, t0 = meta.bounds
        left, bottom = max(l0, lb[0]), max(b0, lb[1])
        right, top = min(r0, lb[2]), min(t0, lb[3])
        if right <= left or top <= bottom:
            raise DataError(f"{lr} and {hr} do not overlap: pair scenes of the same place")
        win = from_bounds(left, bottom, right, top, transform=meta.transform)
        # the window starts on a multiple of the degrade factor, so the coarser grid of
        # SE20>RE10-style pairs is the Sentinel-2 grid coarsened from the scene's corner
        k = opts.degrade_factor
        c0 = -(-max(math.ceil(win.col_off - 1e-6) + 1, 0) // k) * k
        r0_ = -(-max(math.ceil(win.row_off - 1e-6) + 1, 0) // k) * k
        c1 = min(math.floor(win.col_off + win.width + 1e-6) - 1, meta.width)
        r1 = min(math.floor(win.row_off + win.height + 1e-6) - 1, meta.height)
        if c1 - c0 < opts.patch or r1 - r0_ < opts.patch:
            raise DataError(
                f"the overlap of {lr} and {hr} ({max(c1 - c0, 0)}x{max(r1 - r0_, 0)} "
                f"Sentinel-2 px) is smaller than one {opts.patch} px patch: pair scenes that "
                "overlap more or use a smaller --patch"
            )
        self.window = Window(c0, r0_, c1 - c0, r1 - r0_)
        self.lr_transform = meta.transform @ Affine.translation(c0, r0_)
        self.shift = (0.0, 0.0)
        self.scl = _find_scl(lr)
        self.scl_ds = _open_dataset(str(self.scl)) if self.scl else None
        self.mask_ds = _open_dataset(opts.hr_mask) if opts.hr_mask else None
        self._owned += [d for d in (self.scl_ds, self.mask_ds) if d is not None]

    def close(self) -> None:
        self.scene.close()
        for d in self._owned:
            d.close()

    def hr_transform(self) -> Affine:
        s = self.opts.scale
        dy, dx = self.shift
        return self.lr_transform @ Affine.scale(1 / s) @ Affine.translation(dx * s, dy * s)

    def _warp(self, ds: Any, transform: Affine, width: int, height: int,
              resampling: Resampling) -> WarpedVRT:
        return WarpedVRT(ds, crs=self.scene.meta.crs, transform=transform, width=width,
                         height=height, resampling=resampling)

    def read_lr(self, w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sentinel-2 reflectance, valid mask and cloud mask for a window of the overlap."""
        abs_w = Window(self.window.col_off + w.col_off, self.window.row_off + w.row_off,
                       w.width, w.height)
        dn = self.scene.read(abs_w)
        refl = self.scene.reflectance(dn)
        valid = valid_mask(dn, self.scene.meta.nodata) & np.isfinite(refl).all(axis=0)
        refl = np.where(valid[None], refl, np.float32(0))
        if self.scl_ds is not None:
            with self._warp(self.scl_ds, self.lr_transform, int(self.window.width),
                            int(self.window.height), Resampling.nearest) as vrt:
                cloud = scl_mask(vrt.read(1, window=w))
        else:
            cloud = brightness_mask(refl, nir=3 if refl.shape[0] > 3 else None)
        return refl, valid, cloud

    def read_hr(self, w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Reference reflectance (un-normalised), valid mask and given cloud mask, on the
        target grid, for an overlap window ``w`` given in Sentinel-2 pixels."""
        s = self.opts.scale
        hw = Window(w.col_off * s, w.row_off * s, w.width * s, w.height * s)
        size = (int(self.window.width) * s, int(self.window.height) * s)
        with self._warp(self.ref, self.hr_transform(), *size, self.resampling) as vrt:
            data = vrt.read(self.ref_indexes, window=hw, out_dtype="float32")
            valid = vrt.dataset_mask(window=hw) > 0
        valid &= valid_mask(data, self.ref.nodata) & np.isfinite(data).all(axis=0)
        data = np.where(valid[None], data, np.float32(0))
        mask = None
        if self.mask_ds is not None:
            with self._warp(self.mask_ds, self.hr_transform(), *size,
                            Resampling.nearest) as vrt:
                mask = vrt.read(1, window=hw) != 0
        return data * self.ref_gain, valid, mask


def _to_lr(pair: _Pair, hr: np.ndarray, valid: np.ndarray, mask: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = pair.opts.scale
    filled = np.where(valid[None], hr, np.nanmedian(hr[:, valid], axis=1)[:, None, None]
                      if valid.any() else 0)
    deg = degrade(filled, s, pair.opts.lr_mtf)
    vdeg = block_mean(valid[None].astype(np.float32), s)[0] > 0.999
    mdeg = None if mask is None else block_mean(mask[None].astype(np.float32), s)[0] > 0
    return deg, vdeg, mdeg


def estimate_alignment(pair: _Pair) -> ShiftEstimate:
    """Global shift (Sentinel-2 pixels) of the reference relative to Sentinel-2."""
    pairs_ = []
    for w in _sample_windows(int(pair.window.width), int(pair.window.height), 256):
        lr, lvalid, lcloud = pair.read_lr(w)
        hr, hvalid, hmask = pair.read_hr(w)
        deg, dvalid, _ = _to_lr(pair, hr, hvalid, hmask)
        ok = lvalid & dvalid & ~lcloud
        if ok.mean() < 0.5:
            continue
        a, b = lr.mean(axis=0), deg.mean(axis=0)
        a = np.where(ok, a, np.median(a[ok]))
        b = np.where(ok, b, np.median(b[ok]))
        pairs_.append((a, b))
    est = global_shift(pairs_)
    # phase correlation gives the shift that aligns the reference with Sentinel-2; the
    # reference content sits at minus that shift.
    return ShiftEstimate((-est.shift[0], -est.shift[1]), est.spread, est.windows,
                         est.reliable, est.reason)


def fit_radiometry(pair: _Pair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band gain, offset and robust residual of reference -> Sentinel-2."""
    xs: list[list[np.ndarray]] = [[] for _ in pair.opts.bands]
    ys: list[list[np.ndarray]] = [[] for _ in pair.opts.bands]
    for w in _sample_windows(int(pair.window.width), int(pair.window.height), 256):
        lr, lvalid, lcloud = pair.read_lr(w)
        hr, hvalid, hmask = pair.read_hr(w)
        deg, dvalid, dmask = _to_lr(pair, hr, hvalid, hmask)
        ok = lvalid & dvalid & ~lcloud
        # reference clouds: the given mask, else the brightness test on the reference as
        # read (its reflectance scale is only approximately right before the fit)
        ok &= ~(dmask if dmask is not None else brightness_mask(
            deg, nir=3 if deg.shape[0] > 3 else None))
        for b in range(len(pair.opts.bands)):
            xs[b].append(deg[b][ok])
            ys[b].append(lr[b][ok])
    fits = [huber_fit(np.concatenate(x), np.concatenate(y)) for x, y in zip(xs, ys,
                                                                           strict=True)]
    if any(f.samples < 100 for f in fits):
        raise DataError("too few clear pixels to fit the radiometry: the overlap is cloudy "
                        "or empty; choose a clearer pair")
    return (np.array([f.gain for f in fits]), np.array([f.offset for f in fits]),
            np.array([f.residual for f in fits]))


def _to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance -> int16 DN x 10000 (anything not finite, i.e. missing, becomes 0)."""
    return np.clip(np.rint(np.nan_to_num(refl * DN_SCALE, nan=0.0, posinf=0.0,
                                         neginf=0.0)), -32768, 32767).astype(np.int16)


def _patch_origins(length: int, patch: int, stride: int) -> list[int]:
    return list(range(0, length - patch + 1, stride))


#: Patches per block read at once: bounds memory whatever the scene width.
BLOCK_PATCHES = 16


def _blocks(pair: _Pair) -> Iterator[tuple[int, list[int], Window]]:
    """Row-major blocks of up to ``BLOCK_PATCHES`` patches: (row, patch columns, window)."""
    k = pair.opts.degrade_factor
    p = pair.opts.patch * k
    stride = (pair.opts.stride or pair.opts.patch) * k
    cols = _patch_origins(int(pair.window.width), p, stride)
    for r in _patch_origins(int(pair.window.height), p, stride):
        for b in range(0, len(cols), BLOCK_PATCHES):
            group = cols[b:b + BLOCK_PATCHES]
            yield r, group, Window(group[0], r, group[-1] + p - group[0], p)


def _check_number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                  allow_inf: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) \
        and not math.isnan(value) and (allow_inf or math.isfinite(value)) \
        and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"({lo:g}" if lo_open else f"[{lo:g}"
        raise UsageError(f"{name} {value!r} is out of range: give a number in {bound}, {hi:g}]")


#: Largest input patch side (pixels): a larger one would need gigabytes per block.
MAX_PATCH = 1024


def check_patch_options(patch: Any, stride: Any, cloud_buffer: Any, *, min_patch: int) -> None:
    """Refuse a patch size, stride or cloud buffer out of range (pairs build and degrade)."""
    if not isinstance(patch, int) or not min_patch <= patch <= MAX_PATCH:
        raise UsageError(f"--patch must be a whole number from {min_patch} to {MAX_PATCH}, "
                         f"got {patch!r}")
    if stride is not None and (not isinstance(stride, int)
                               or not 1 <= stride <= 100 * MAX_PATCH):
        raise UsageError(f"--stride must be a whole number from 1 to {100 * MAX_PATCH}, got "
                         f"{stride!r}")
    if not isinstance(cloud_buffer, int) or not 0 <= cloud_buffer <= 64:
        raise UsageError(f"cloud buffer must be 0-64 pixels, got {cloud_buffer!r}")


def check_build_options(opts: BuildOptions) -> None:
    """Refuse out-of-range options before any work (shared by the CLI and the API)."""
    if opts.scale not in (2, 4) or isinstance(opts.scale, bool):
        raise UsageError(f"--scale must be 2 or 4, got {opts.scale!r}")
    if not isinstance(opts.degrade_factor, int) or not 1 <= opts.degrade_factor <= 8:
        raise UsageError(f"--degrade must be a whole number from 1 to 8, got "
                         f"{opts.degrade_factor!r}")
    check_patch_options(opts.patch, opts.stride, opts.cloud_buffer, min_patch=16)
    _check_number("--max-days", opts.max_days, 0, math.inf, allow_inf=True)
    _check_number("--max-cloud", opts.max_cloud, 0, 1)
    _check_number("Sentinel-2 MTF", opts.lr_mtf, 0, 1, lo_open=True)
    _check_number("reference MTF", opts.hr_mtf, 0, 1, lo_open=True)


def build_pair(lr: str | os.PathLike[str], hr: str | os.PathLike[str],
               dataset: str | os.PathLike[str], opts: BuildOptions | None = None
               ) -> dict[str, Any]:
    """Add one Sentinel-2 / reference scene pair to a dataset (created if absent).

    Returns:
        The pair's summary as in ``s2sr pairs info --json``.
    """
    opts = opts or BuildOptions()
    check_build_options(opts)
    lr, hr = Path(lr), Path(hr)
    for p in (lr, hr):
        if not p.exists():
            from s2sr.errors import InputNotFoundError

            raise InputNotFoundError(f"input {p} does not exist: check the path")
    # building into an existing dataset is a feature; a file, or a folder inside an
    # input, is not
    check_output_dir(dataset, overwrite=True, inputs=[lr, hr, opts.hr_mask])
    k = opts.degrade_factor
    kind = opts.kind or f"SE{10 * k:g}>RE{10 * k / opts.scale:g}"
    pair = _Pair(lr, hr, opts)
    try:
        return _build(pair, lr, hr, Path(dataset), kind)
    finally:
        pair.close()


def _time_gap(pair: _Pair) -> float | None:
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


def _build(pair: _Pair, lr: Path, hr: Path, root: Path, kind: str) -> dict[str, Any]:
    opts = pair.opts
    gap = _time_gap(pair)
    est = estimate_alignment(pair)
    if not est.reliable:
        raise DataError(f"cannot estimate the shift between {lr} and {hr} reliably "
                        f"({est.reason}): check that both show the same place and are not "
                        "covered by clouds")
    pair.shift = est.shift
    gains, offsets, _ = fit_radiometry(pair)
    s, k_deg = opts.scale, opts.degrade_factor
    p = opts.patch * k_deg  # patch size on the native Sentinel-2 grid
    stride = (opts.stride or opts.patch) * k_deg
    n_rows = len(_patch_origins(int(pair.window.height), p, stride))
    cols = _patch_origins(int(pair.window.width), p, stride)
    n = n_rows * len(cols)
    store = PairStore(root, create=True)
    pid = pair_id_for(lr, hr, kind, opts)
    lr_file, hr_file, lr_arr, hr_arr = store.new_arrays(pid, n, len(opts.bands), opts.patch,
                                                        opts.patch * s)
    stats: dict[str, list[float]] = {k: [] for k in ("nodata", "cloud", "corr", "ssim",
                                                     "shift", "residual")}
    origins: list[tuple[int, int]] = []
    clear_px = cloud_px = 0
    try:
        k = 0
        for r, block_cols, strip in _blocks(pair):
            lrefl, lvalid, lcloud = pair.read_lr(strip)
            href, hvalid, hmask = pair.read_hr(strip)
            href = href * gains[:, None, None] + offsets[:, None, None]
            deg, dvalid, dmask = _to_lr(pair, href, hvalid, hmask)
            hcloud = dmask if dmask is not None else brightness_mask(
                deg, nir=3 if deg.shape[0] > 3 else None)
            valid = lvalid & dvalid
            cloud = dilate(lcloud | hcloud, opts.cloud_buffer) & valid
            clear_px += int((valid & ~cloud).sum())
            cloud_px += int(cloud.sum())
            for c in block_cols:
                x = c - int(strip.col_off)
                v, cl = valid[:, x:x + p], cloud[:, x:x + p]
                lpatch = lrefl[:, :, x:x + p]
                st = patch_stats(lpatch, deg[:, :, x:x + p], v & ~cl)
                stats["nodata"].append(float(1 - v.mean()))
                stats["cloud"].append(float(cl.mean()))
                for key, val in st.items():
                    stats[key].append(val)
                hpatch = href[:, :, x * s:(x + p) * s]
                if k_deg > 1:
                    lpatch = degrade(lpatch, k_deg, opts.lr_mtf)
                    hpatch = degrade(hpatch, k_deg, opts.hr_mtf)
                lr_arr[k] = _to_dn(lpatch)
                hr_arr[k] = _to_dn(hpatch)
                origins.append((r, c))
                k += 1
        lr_arr.flush()
        hr_arr.flush()
        total = clear_px + cloud_px
        if total == 0:
            raise DataError(f"the overlap of {lr} and {hr} holds no valid pixels (all "
                            "nodata): choose scenes with data over the same place")
        cloud_frac = cloud_px / total
        if cloud_frac >= 0.999:
            raise DataError(f"the overlap of {lr} and {hr} is entirely cloud: choose a "
                            "clear pair")
        if cloud_frac > opts.max_cloud:
            raise DataError(
                f"{cloud_frac:.0%} of the overlap is cloud or shadow, more than --max-cloud "
                f"{opts.max_cloud:.0%}: choose a clearer pair or raise --max-cloud"
            )
    except BaseException:
        lr_arr.discard()
        hr_arr.discard()
        raise
    meta = pair.scene.meta
    crs = meta.crs.to_string() if meta.crs else ""
    # grids of the stored arrays, anchored at the Sentinel-2 scene's top-left corner: the
    # input grid is the Sentinel-2 grid (coarsened k times), the target grid the same
    # divided by the scale. The reference was read shifted by ``shift_px`` so that its
    # content is registered to Sentinel-2: in Sentinel-2's georeferencing, which the
    # manifest uses, a target patch covers exactly the ground of its input patch (in the
    # reference file's own georeferencing it lies ``shift_px`` Sentinel-2 pixels away).
    lr_grid = meta.transform * Affine.scale(k_deg)
    hr_grid = meta.transform * Affine.scale(k_deg / s)
    rows = patch_rows(
        pid, [(r // k_deg, c // k_deg) for r, c in origins], stats, opts.thresholds,
        patch=opts.patch, scale=s, lr_grid=lr_grid, hr_grid=hr_grid,
        lr_offset=(int(pair.window.row_off) // k_deg, int(pair.window.col_off) // k_deg),
        common={"kind": kind, "site": opts.site, "split": opts.split, "lr_scene": str(lr),
                "hr_scene": str(hr), "crs": crs})
    info = {
        "kind": kind, "site": opts.site, "split": opts.split, "lr_scene": str(lr),
        "hr_scene": str(hr), "scale": s, "patch": opts.patch, "stride": opts.stride or
        opts.patch, "degrade_factor": k_deg,
        "bands": list(opts.bands), "shift_px": [est.shift[0], est.shift[1]],
        "shift_spread_px": est.spread, "gain": gains.tolist(), "offset": offsets.tolist(),
        "time_gap_days": gap, "cloud_fraction": cloud_frac, "crs": crs,
        "lr_window": [int(pair.window.row_off), int(pair.window.col_off),
                      int(pair.window.height), int(pair.window.width)],
        "lr_array": lr_file.name, "hr_array": hr_file.name,
        "thresholds": opts.thresholds.as_dict(),
    }
    try:
        store.commit_pair(pid, info, rows, (lr_arr, hr_arr))
    except BaseException:
        lr_arr.discard()
        hr_arr.discard()
        raise
    return store.summary()["pairs"][pid]

