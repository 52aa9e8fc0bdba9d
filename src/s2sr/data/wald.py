"""Degraded (Wald-protocol) pairs from one scene: ``s2sr pairs degrade``.

The target is the scene at ``target`` metres (the scene itself, or degraded once, for
20>10-style pairs from a 5 m reference); the input is the scene degraded to ``input``
metres. Degradation is the documented sensor-like blur plus block averaging of
:mod:`s2sr.data.degrade`. The scene is processed in strips of patches, so its size does
not matter.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from s2sr.core.bands import BANDS
from s2sr.core.constants import SCALES
from s2sr.core.errors import DataError, InputNotFoundError, UsageError
from s2sr.data.options import BuildOptions, DegradeOptions, check_degrade_options, pair_id_for
from s2sr.data.patches import Patch, PatchCutter
from s2sr.data.store import PairStore
from s2sr.data.wald20 import COARSE_M, FINE_M, degrade_bands, split_bands
from s2sr.data.wald_strips import AGREEMENT, StripPlan, strip_cuts
from s2sr.io.base import GeoMeta, Scene
from s2sr.io.outputs import check_output_dir
from s2sr.io.scene import open_scene

log = logging.getLogger(__name__)


def nominal(metres: float) -> str:
    """A pixel size as pair kinds write it: 9.99 -> "10", 2.5 -> "2.5"."""
    return f"{round(metres):d}" if metres >= 2 else f"{metres:.2g}"


#: Nominal pixel size (metres) of a sensor code's bands, taken when a scene does not say.
SENSOR_PIXEL_M = {"SE": 10.0}


def native_pixel_size(path: Path, crs: Any, res: float, opts: DegradeOptions) -> float:
    """The scene's pixel size in metres: from a projected CRS; otherwise (EPSG:4326, no
    CRS, GCPs only) the sensor's nominal size, as ``s2sr predict`` takes any scene for
    Sentinel-2 10 m pixels, with a warning. Only ``--levels`` (metres) without a known
    size, or a sensor without a nominal size, needs ``--resolution``.

    Raises:
        UsageError: the size is needed and unknown. DataError: a projected CRS with a bad
            pixel size.
    """
    if crs is not None and crs.is_projected:
        if not (math.isfinite(res) and res > 0):
            raise DataError(f"{path} has a bad pixel size ({res!r}): fix its georeferencing "
                            "or pass --resolution")
        return float(res)
    why = ("has a geographic CRS (pixels in degrees)" if crs is not None
           else "is not georeferenced")
    nominal_m = SENSOR_PIXEL_M.get(opts.sensor)
    if nominal_m is not None and all(BANDS.get(b, (0,))[0] == COARSE_M for b in opts.bands):
        nominal_m = COARSE_M  # Sentinel-2's 20 m bands alone
    if opts.levels is None and nominal_m is not None:
        log.warning("%s %s: its pixels are taken as %g m, Sentinel-2's (as s2sr predict "
                    "takes them); pass --resolution if they are not", path, why, nominal_m)
        return nominal_m
    need = ("--levels are in metres" if opts.levels is not None
            else f"--sensor {opts.sensor[:20]!r} has no nominal pixel size")
    raise UsageError(f"{path} {why}, so its pixel size in metres is unknown and {need}: "
                     "pass --resolution (its pixel size in metres, e.g. 10)")


def _factors(native: float, opts: DegradeOptions) -> tuple[int, int, float, float]:
    if opts.levels is None:
        scale = opts.scale or 2
        target, inp = native, native * scale
    else:
        inp, target = opts.levels
    ft, fi = target / native, inp / native
    if abs(ft - round(ft)) > 1e-3 or abs(fi - round(fi)) > 1e-3 or round(ft) < 1:
        raise UsageError(
            f"--levels {inp:g},{target:g} are not whole multiples of the scene's {native:g} m "
            "pixels: choose levels that are (e.g. 20,10 for a 10 m scene)"
        )
    ft_i, fi_i = round(ft), round(fi)
    scale = fi_i // ft_i
    if fi_i % ft_i or scale not in SCALES:
        raise UsageError(f"--levels {inp:g},{target:g} give a ratio of {fi / ft:g}: use 2 or 4")
    if opts.scale is not None and opts.scale != scale:
        raise UsageError(f"--scale {opts.scale} contradicts --levels {inp:g},{target:g} "
                         f"(ratio {scale}): give one or make them agree")
    return ft_i, fi_i, inp, target


def degrade_scene(scene_path: str | os.PathLike[str], dataset: str | os.PathLike[str],
                  opts: DegradeOptions | None = None) -> dict[str, Any]:
    """Add Wald pairs made from one scene to a dataset; returns the pair's summary.

    10 m and 20 m bands together in ``opts.bands`` make one pair of both
    (:func:`s2sr.data.wald20.degrade_bands`); other bands, a pair of the bands given.
    """
    opts = opts or DegradeOptions()
    check_degrade_options(opts)
    path = Path(scene_path)
    if not path.exists():
        raise InputNotFoundError(f"input {path} does not exist: check the path")
    fine, coarse = split_bands(opts.bands)
    extra = [Path(opts.input_20m)] if opts.input_20m is not None else []
    if extra and not extra[0].exists():
        raise InputNotFoundError(f"--input-20m {extra[0]} does not exist: check the path")
    # adding to an existing dataset is a feature; a file, or a folder inside the input,
    # is not
    check_output_dir(dataset, overwrite=True, inputs=[path, *extra])
    if extra and not (fine and coarse):
        raise UsageError("--input-20m holds the 20 m bands that SCENE's 10 m bands guide: "
                         "name both in --bands (e.g. --bands all); to pair the 20 m bands "
                         "alone, give their raster as SCENE")
    if fine and coarse:
        ft, fi, inp, _ = _factors(FINE_M, opts)
        kind = f"{opts.sensor}{nominal(inp)}>{opts.sensor}{nominal(FINE_M * ft)}"
        return degrade_bands(path, dataset, opts, fi // ft, kind)
    with open_scene(path, bands=opts.bands) as scene:
        levels = _levels(path, scene.meta, opts)
        store = PairStore(dataset, create=True)
        try:
            return _cut(scene, path, store, levels, opts)
        except BaseException:
            store.abandon()  # a refused scene leaves no empty dataset behind
            raise


@dataclass(frozen=True)
class _Levels:
    """Where a scene's Wald patches are: the native pixel size (m), the target and input
    pixels as multiples of it (``ft``, ``fi``) and in metres, the pair kind, the patch
    origins (native pixels)."""

    native: float
    ft: int
    fi: int
    input_m: float
    target_m: float
    kind: str
    rows: list[int]
    cols: list[int]

    @property
    def scale(self) -> int:
        return self.fi // self.ft


def _levels(path: Path, meta: GeoMeta, opts: DegradeOptions) -> _Levels:
    """The scene's :class:`_Levels`; refuses a scene smaller than one patch."""
    native = opts.resolution if opts.resolution is not None else \
        native_pixel_size(path, meta.crs, meta.res[0], opts)
    ft, fi, inp_m, tgt_m = _factors(native, opts)
    kind = f"{opts.sensor}{nominal(inp_m)}>{opts.sensor}{nominal(tgt_m)}"
    p = opts.patch
    stride = opts.stride or p
    span = p * fi  # native pixels per input patch
    cols = list(range(0, meta.width - span + 1, stride * fi))
    rows = list(range(0, meta.height - span + 1, stride * fi))
    if not cols or not rows:
        raise DataError(f"{path} ({meta.width}x{meta.height} px) is smaller than one "
                        f"{p} px patch at {inp_m:g} m ({span} px): use a smaller --patch")
    return _Levels(native, ft, fi, inp_m, tgt_m, kind, rows, cols)


def _cut(scene: Scene, path: Path, store: PairStore, levels: _Levels, opts: DegradeOptions
         ) -> dict[str, Any]:
    """Cut the scene's patches into ``store`` and commit them as one pair."""
    meta = scene.meta
    p, scale = opts.patch, levels.scale
    pid = pair_id_for(path, path, levels.kind, BuildOptions(scale=scale, patch=p,
                                                            stride=opts.stride, bands=opts.bands))
    cutter = PatchCutter(store, pid, len(levels.rows) * len(levels.cols), len(opts.bands), p,
                         scale)
    cutter.cut(_patches(scene, path, levels, opts))
    crs = meta.crs.to_string() if meta.crs else ""
    # input grid: the scene's pixels coarsened fi times; target grid: ft times; both
    # anchored at the scene's top-left corner (patch origins are multiples of fi)
    rows = cutter.rows(
        opts.thresholds, meta.transform * Affine.scale(levels.fi),
        meta.transform * Affine.scale(levels.ft),
        {"kind": levels.kind, "site": opts.site, "split": opts.split, "lr_scene": str(path),
         "hr_scene": str(path), "crs": crs})
    info = {
        "kind": levels.kind, "site": opts.site, "split": opts.split, "lr_scene": str(path),
        "hr_scene": str(path), "scale": scale, "patch": p, "stride": opts.stride or p,
        "bands": list(opts.bands), "shift_px": [0.0, 0.0], "shift_spread_px": 0.0,
        "gain": [1.0] * len(opts.bands), "offset": [0.0] * len(opts.bands),
        "time_gap_days": 0.0, "cloud_fraction": float(np.mean(cutter.stats["cloud"])),
        "crs": crs, "levels_m": [levels.input_m, levels.target_m], "native_m": levels.native,
        "mtf": opts.mtf, "lr_array": cutter.lr_file.name, "hr_array": cutter.hr_file.name,
        "band_resolution_m": {b: [levels.input_m, levels.target_m] for b in opts.bands},
        "thresholds": opts.thresholds.as_dict(),
    }
    return cutter.commit(info, rows)


def _patches(scene: Scene, path: Path, levels: _Levels, opts: DegradeOptions
             ) -> Iterator[Patch]:
    """The scene's patches, strip by strip: the target (the scene, or degraded ``ft``
    times) and the input (degraded ``fi`` times); refuses a scene without valid pixels."""
    plan = StripPlan(levels.fi, levels.ft, opts.patch, levels.rows, levels.cols, opts.mtf,
                     opts.gain)
    any_valid = False
    for cut in strip_cuts(scene, plan, opts.bands if opts.cloud_test else None,
                          opts.cloud_buffer):
        v = cut.valid
        nodata = float(1 - v.mean())
        any_valid = any_valid or nodata < 1
        cloud = 0.0 if cut.cloud is None else float((cut.cloud & v).mean())
        yield Patch(cut.origin, cut.lr, cut.hr, {"nodata": nodata, "cloud": cloud, **AGREEMENT})
    if not any_valid:
        raise DataError(f"{path} holds no valid pixels: choose a scene with data")
