"""Simulated Sentinel-2 + reference scene pairs with known perturbations.

No public co-located Sentinel-2 / 5 m reference pair exists offline, so the pair builder
is proven on pairs simulated from real imagery: a real image plays the truth on the fine
grid; Sentinel-2 is the truth degraded by the Sentinel-2 MTF and decimated; the reference
is the truth with known perturbations (sub-pixel shift, per-band gain and offset, band
mixing, a different blur, pasted clouds, a changed region). The builder must recover the
shift and gains and reject the cloudy and changed patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine

from s2sr.core.bands import DEFAULT_BANDS
from s2sr.core.dn import to_uint16_dn
from s2sr.data.degrade import blur, degrade
from s2sr.data.registration import apply_shift
from s2sr.io.raster import write_geotiff

BANDS = DEFAULT_BANDS


@dataclass
class Perturbation:
    """What is done to the reference (shift in Sentinel-2 pixels, [dy, dx])."""

    shift: tuple[float, float] = (0.0, 0.0)
    gain: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    offset: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    mix: float = 0.0  # fraction of B02 mixed into B03
    blur_sigma: float = 0.0  # extra Gaussian blur of the reference (fine pixels)
    cloud: np.ndarray | None = None  # (H, W) fine-grid cloud mask to paste
    change: tuple[int, int, int, int] | None = None  # fine-grid rows/cols changed
    noise: float = 0.002
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def make_pair(truth: np.ndarray, scale: int, pert: Perturbation, lr_path: Path,
              hr_path: Path, *, crs: str = "EPSG:32633", lr_res: float = 10.0,
              origin: tuple[float, float] = (500000.0, 5000000.0),
              hr_border: int = 0) -> None:
    """Write a Sentinel-2 scene and a reference scene simulated from ``truth``.

    Args:
        truth: ``(4, H, W)`` reflectance on the fine grid (H, W multiples of ``scale``).
        scale: fine pixels per Sentinel-2 pixel.
        pert: perturbations of the reference.
        lr_path: Sentinel-2 GeoTIFF to write (uint16, x 10000, band descriptions).
        hr_path: reference GeoTIFF to write (uint16, x 10000, blue/green/red/nir).
        hr_border: fine pixels cropped from each side of the reference, so that the
            footprints differ.
    """
    rng = np.random.default_rng(pert.seed)
    lr = degrade(truth, scale, 0.3)
    lr += rng.normal(0, pert.noise, lr.shape).astype(np.float32)
    x0, y0 = origin
    lr_t = Affine(lr_res, 0, x0, 0, -lr_res, y0)
    _write(lr_path, lr, lr_t, crs, BANDS)
    ref = apply_shift(truth, (pert.shift[0] * scale, pert.shift[1] * scale))
    if pert.blur_sigma > 0:
        ref = blur(ref, pert.blur_sigma)
    if pert.mix:
        ref[1] = (1 - pert.mix) * ref[1] + pert.mix * ref[0]
    ref = ref * np.asarray(pert.gain, np.float32)[:, None, None] + np.asarray(
        pert.offset, np.float32)[:, None, None]
    if pert.change is not None:
        r0, r1, c0, c1 = pert.change
        # the area looks different on the later date: its content mirrored both ways
        block = ref[:, r0:r1, c0:c1]
        ref[:, r0:r1, c0:c1] = block[:, ::-1, ::-1].copy()
    if pert.cloud is not None:
        ref[:, pert.cloud] = np.asarray([0.55, 0.56, 0.57, 0.6], np.float32)[:, None]
    ref += rng.normal(0, pert.noise, ref.shape).astype(np.float32)
    b = hr_border
    if b:
        ref = ref[:, b:-b, b:-b]
    hr_res = lr_res / scale
    hr_t = Affine(hr_res, 0, x0 + b * hr_res, 0, -hr_res, y0 - b * hr_res)
    _write(hr_path, ref, hr_t, crs, ("blue", "green", "red", "nir"))


def _write(path: Path, refl: np.ndarray, transform: Affine, crs: str,
           names: tuple[str, ...]) -> None:
    # DN from 1: 0 is nodata
    write_geotiff(path, to_uint16_dn(refl, min_dn=1), transform=transform, crs=crs,
                  descriptions=names, nodata=0)
