"""Small synthetic scenes with the 10 m and the 20 m bands (issue 22): a 10 m + 20 m
GeoTIFF pair, a per-band folder at both resolutions, SAFE L1C/L2A products (folder or
``.zip``), and tiny guided models saved as weights files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from affine import Affine

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.multires_engine import BandsSuperResolver
from s2sr.models import build_model, save_model
from support.rasters import UTM_TRANSFORM, field, make_safe, write_geotiff, zip_product

#: The 20 m grid of :data:`UTM_TRANSFORM`'s 10 m grid (same origin).
UTM_20M = UTM_TRANSFORM @ Affine.scale(2)


def scene_arrays(side20: int = 48, seed: int = 0, dtype: str = "uint16"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(4, 2 side20, 2 side20)`` 10 m and ``(6, side20, side20)`` 20 m DN fields."""
    hr = field((2 * side20, 2 * side20), 4, seed=seed, dtype=dtype)
    lr = field((side20, side20), 6, seed=seed + 1, dtype=dtype)
    return hr, lr


def write_pair(folder: Path, hr: np.ndarray, lr: np.ndarray, *,
               lr_transform: Affine = UTM_20M, lr_crs: str | None = "EPSG:32633",
               nodata: float | None = None, lr_nodata: float | None = None,
               lr_bands: tuple[str, ...] = BANDS_20M) -> tuple[Path, Path]:
    """A 4-band 10 m GeoTIFF and a 6-band 20 m GeoTIFF, described by band name."""
    folder.mkdir(parents=True, exist_ok=True)
    a = write_geotiff(folder / "scene_10m.tif", hr, nodata=nodata, descriptions=DEFAULT_BANDS)
    b = write_geotiff(folder / "scene_20m.tif", lr, transform=lr_transform, crs=lr_crs,
                      nodata=lr_nodata if lr_nodata is not None else nodata,
                      descriptions=lr_bands)
    return a, b


def write_band_folder(folder: Path, hr: np.ndarray, lr: np.ndarray,
                      lr_bands: tuple[str, ...] = BANDS_20M) -> Path:
    """A BigEarthNet-like folder: one GeoTIFF per band, 10 m and 20 m files side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "S2A_MSIL2A_20170613T101031_87_48"
    for k, band in enumerate(DEFAULT_BANDS):
        write_geotiff(folder / f"{stem}_{band}.tif", hr[k:k + 1], descriptions=None)
    for k, band in enumerate(lr_bands):
        write_geotiff(folder / f"{stem}_{band}.tif", lr[k:k + 1], transform=UTM_20M,
                      descriptions=None)
    return folder


def make_safe_multires(root: Path, hr: np.ndarray, lr: np.ndarray, *, level: str = "L2A",
                       baseline: str = "04.00", as_zip: bool = False) -> Path:
    """A miniature SAFE product with the 10 m bands and the six 20 m bands (an L2A's
    ``R20m/*_B05_20m.jp2``, an L1C's ``*_B05.jp2`` beside the 10 m files)."""
    safe = make_safe(root, hr, level=level, baseline=baseline)
    granule = next((safe / "GRANULE").iterdir()) / "IMG_DATA"
    folder = granule / "R20m" if level == "L2A" else granule
    suffix = "_20m" if level == "L2A" else ""
    for k, band in enumerate(BANDS_20M):
        write_geotiff(folder / f"T33UUB_20230601T102031_{band}{suffix}.jp2", lr[k:k + 1],
                      transform=UTM_20M, descriptions=None, driver="JP2OpenJPEG",
                      QUALITY=100, REVERSIBLE="YES")
    for aux in safe.rglob("*.aux.xml"):
        aux.unlink()
    return zip_product(safe) if as_zip else safe


def tiny_guided(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    """A tiny guided model of the six 20 m bands (random weights, deterministic)."""
    torch.manual_seed(seed)
    model = build_model("guided-edsr-tiny", bands=BANDS_20M, scale=scale,
                        guide_bands=DEFAULT_BANDS, guide_scale=2, n_resblocks=2)
    return model.eval()


def tiny_hr_model(seed: int = 1, n_resblocks: int = 8) -> torch.nn.Module:
    """A tiny x2 EDSR of the 10 m bands (8 blocks: its receptive field, 20 10 m pixels,
    is wider than :func:`tiny_guided`'s 8 20 m pixels, so that it sets a 5 m tile's
    context)."""
    torch.manual_seed(seed)
    return build_model("edsr-tiny", bands=DEFAULT_BANDS, scale=2,
                       n_resblocks=n_resblocks).eval()


def save(model: torch.nn.Module, path: Path) -> Path:
    """``model`` saved as an s2sr weights file at ``path``."""
    save_model(model, path)
    return path


def engine(guided: torch.nn.Module, hr_model: torch.nn.Module | None,
           tile: int | None = None) -> BandsSuperResolver:
    """A ten-band engine over a 1000^2 20 m scene of uint16 DN x 1e-4 (nothing is read)."""
    enc = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, None)
    lr_enc = DnEncoding("uint16", (1e-4,) * 6, (0.0,) * 6, None)
    return BandsSuperResolver(guided, hr_model, 1000, 1000, enc, lr_enc, tile)


def snow_scene(side: int, field: tuple[slice, slice] | None, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Vegetation-like float32 reflectance ``(4, 2 side, 2 side)`` and ``(6, side, side)``,
    with a snow field (bright visible and NIR, dark SWIR) over the 20 m pixels ``field``
    (``None``: no snow)."""
    rng = np.random.default_rng(seed)
    guide = (np.array([0.04, 0.06, 0.05, 0.30])[:, None, None]
             + 0.02 * rng.random((4, 2 * side, 2 * side))).astype(np.float32)
    lr = (np.array([0.08, 0.20, 0.25, 0.30, 0.20, 0.10])[:, None, None]
          + 0.02 * rng.random((6, side, side))).astype(np.float32)
    if field is not None:
        r, c = field
        h, w = r.stop - r.start, c.stop - c.start
        fine = (slice(2 * r.start, 2 * r.stop), slice(2 * c.start, 2 * c.stop))
        guide[(slice(None), *fine)] = 0.8 + 0.1 * rng.random((4, 2 * h, 2 * w))
        lr[(slice(0, 4), *field)] = 0.75 + 0.1 * rng.random((4, h, w))
        lr[(slice(4, 6), *field)] = 0.05 + 0.02 * rng.random((2, h, w))
    return guide, lr

