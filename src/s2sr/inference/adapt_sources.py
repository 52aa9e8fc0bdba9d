"""What scene adaptation (:mod:`s2sr.inference.adapt`) trains on: clean windows of the
scene it will predict, read as reflectance.

* Streamed: at most :data:`MAX_READ_PIXELS` pixels per band, as up to :data:`MAX_WINDOWS`
  windows spread evenly over the scene (a scene that fits is read whole).
* Clean pixels only: nodata, saturated samples, non-finite or implausible values (over
  :data:`s2sr.core.dn.MAX_REFLECTANCE`) and clouds (:func:`s2sr.data.masks.brightness_mask`
  at :data:`CLOUD_BRIGHT`, grown by :data:`CLOUD_BUFFER` px) never enter a patch; windows
  with under :data:`MIN_CLEAN_SHARE` of their patch positions clean are dropped.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window

from s2sr.core.bands import visible_indices
from s2sr.core.dn import MAX_REFLECTANCE
from s2sr.core.errors import DataError
from s2sr.data.masks import brightness_mask, dilate
from s2sr.data.synthetic import Source, missing_integral, psf_margin
from s2sr.inference.encoding import DnEncoding
from s2sr.io.base import Scene

#: Side of a window read (px), pixels per band read at most, and windows at most.
WINDOW = 256
MAX_READ_PIXELS = 16 * WINDOW * WINDOW
MAX_WINDOWS = 16
#: Clouds: mean visible reflectance above this and white (Fmask's whiteness < 0.7). The
#: masks' default 0.22 (and its dark test) took 61 % of abudhabi (sand and city) and the
#: sea of the coasts; 0.4 leaves every test place and the hazy eolearn_slovenia_0 whole and
#: still takes 9 % of ukis_clouds (benchmarks/adapt_gain.py; docs/benchmarks.md).
CLOUD_BRIGHT = 0.4
#: Cloud masks are grown by this many pixels.
CLOUD_BUFFER = 2
#: Share of a window's patch positions that must be clean for it to be used.
MIN_CLEAN_SHARE = 0.25


def spread_windows(height: int, width: int, side: int) -> list[tuple[int, int, int, int]]:
    """Up to :data:`MAX_WINDOWS` ``(row, col, h, w)`` windows spread evenly over the grid."""
    wh, ww = min(side, height), min(side, width)
    ny, nx = math.ceil(height / wh), math.ceil(width / ww)
    cap = max(1, min(MAX_WINDOWS, MAX_READ_PIXELS // (wh * ww)))
    while ny * nx > cap:  # thin out the longer axis first: stay spread over the scene
        if ny * wh >= nx * ww and ny > 1:
            ny -= 1
        else:
            nx -= 1
    rows = np.linspace(0, height - wh, ny).round().astype(int) if ny > 1 else [0]
    cols = np.linspace(0, width - ww, nx).round().astype(int) if nx > 1 else [0]
    return [(int(r), int(c), wh, ww) for r in rows for c in cols]


def _clean_share(valid: np.ndarray, size: int) -> float:
    """Share of the ``size``-square positions of ``valid`` that hold no masked pixel."""
    h, w = valid.shape
    if h < size or w < size:
        return 0.0
    ii = missing_integral(valid)
    bad = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    return float((bad == 0).mean())


def read_sources(scene: Scene, scale: int, patch: int) -> list[Source]:
    """Clean windows of ``scene`` as training sources (reflectance and a clean mask).

    Raises:
        DataError: the scene is too small for one patch, or too empty (one line each).
    """
    meta = scene.meta
    need = patch * scale + 2 * psf_margin(scale)
    if min(meta.height, meta.width) < need:
        raise DataError(
            f"{meta.source} ({meta.width}x{meta.height} px) is too small to adapt on at "
            f"x{scale} (needs at least {need}x{need} px): predict without --adapt "
            "(or --adapt auto), or give a larger scene")
    radiometry = DnEncoding(meta.dtype, meta.gains, meta.offsets, meta.nodata)
    visible = visible_indices(meta.bands)
    sources = []
    for r, c, h, w in spread_windows(meta.height, meta.width, max(WINDOW, need)):
        dn = scene.read(Window(c, r, w, h))
        clean = radiometry.valid_mask(dn)
        sat = radiometry.saturated_mask(dn)
        if sat is not None:
            clean &= ~sat.any(axis=0)
        with np.errstate(invalid="ignore"):
            refl = radiometry.to_reflectance(dn)
            clean &= np.isfinite(refl).all(axis=0) & (np.abs(refl) <= MAX_REFLECTANCE).all(0)
        refl = np.where(clean[None], refl, 0.0).astype(np.float32)
        clouds = brightness_mask(refl, visible, None, bright=CLOUD_BRIGHT) \
            if len(visible) == 3 else np.zeros_like(clean)
        clean &= ~dilate(clouds & clean, CLOUD_BUFFER)
        share = _clean_share(clean, need)
        if share >= MIN_CLEAN_SHARE:
            sources.append(Source(f"{meta.source}@{r},{c}", refl, clean, weight=share))
    if not sources:
        raise DataError(
            f"{meta.source} is too empty to adapt on: no {need}x{need} px area free of "
            "nodata, clouds and saturated pixels in the windows read; predict without "
            "--adapt (or --adapt auto)")
    return sources
