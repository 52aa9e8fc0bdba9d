"""The two scenes of a Sentinel-2 / reference pair, opened: their overlap on the
Sentinel-2 grid, and reads of either side there, the reference warped onto the target grid
(Sentinel-2 pixel / scale) through a GDAL warped VRT (average resampling when downscaling,
cubic otherwise), with the valid and cloud masks of each side.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from s2sr.core.dn import check_reference_dtype, reference_gain
from s2sr.core.errors import DataError
from s2sr.data.bandmap import parse_band_map, resolve_band_map
from s2sr.data.masks import band_cloud_mask, scl_mask
from s2sr.data.options import BuildOptions
from s2sr.io.base import Scene
from s2sr.io.nodata import valid_mask
from s2sr.io.raster import Resampling, open_reference, warped
from s2sr.io.scene import open_scene


def _find_scl(lr: Path) -> Path | None:
    if not lr.is_dir():
        return None
    found = sorted(p for p in lr.rglob("*") if re.search(r"SCL(_20m)?\.(tif|jp2)$", p.name))
    return found[0] if found else None


class ScenePair:
    """Both scenes opened, the overlap window and the warp of the reference onto it.

    Attributes:
        window: the overlap, in Sentinel-2 pixels (snapped inwards, 1 px margin, starting
            on a multiple of the degrade factor).
        lr_transform: the grid of the overlap (Sentinel-2 pixels).
        shift: ``(dy, dx)`` Sentinel-2 pixels by which the reference is read shifted (set
            once the alignment is estimated).
        ref_indexes: the reference's 1-based band indexes, in ``opts.bands`` order.
    """

    def __init__(self, lr: Path, hr: Path, opts: BuildOptions) -> None:
        self.opts = opts
        self.lr_path, self.hr_path = lr, hr
        self.scene: Scene = open_scene(lr, bands=opts.bands)
        self.ref = open_reference(hr)
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
        self.ref_gain = reference_gain(self.ref.dtypes[0])
        check_reference_dtype(self.ref.dtypes[0], str(hr))
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
        self.scl_ds = open_reference(self.scl) if self.scl else None
        self.mask_ds = open_reference(opts.hr_mask) if opts.hr_mask else None
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
              resampling: Resampling) -> Any:
        return warped(ds, crs=self.scene.meta.crs, transform=transform, width=width,
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
            cloud = band_cloud_mask(refl, self.opts.bands)
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
