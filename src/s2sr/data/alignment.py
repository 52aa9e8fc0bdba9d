"""Aligning a reference scene with Sentinel-2: the global sub-pixel shift (phase
correlation on up to 16 windows spread over the overlap) and the robust per-band
radiometric fit of the reference to Sentinel-2 on clear pixels, both on the reference
degraded to the Sentinel-2 grid.
"""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from s2sr.core.errors import DataError
from s2sr.data.degrade import block_mean, degrade
from s2sr.data.masks import band_cloud_mask
from s2sr.data.overlap import ScenePair
from s2sr.data.registration import ShiftEstimate, global_shift
from s2sr.data.sensor_fit import huber_fit


def sample_windows(width: int, height: int, size: int, n: int = 4) -> list[Window]:
    """Up to ``n x n`` windows spread over the overlap; at least 2 x 2 when it is small."""
    size = max(min(size, width // 2, height // 2), min(48, width, height))
    cols = np.linspace(0, width - size, n).round().astype(int)
    rows = np.linspace(0, height - size, n).round().astype(int)
    return [Window(int(c), int(r), size, size) for r in sorted(set(rows))
            for c in sorted(set(cols))]


def to_lr(pair: ScenePair, hr: np.ndarray, valid: np.ndarray, mask: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The reference ``(C, h*s, w*s)`` degraded onto the Sentinel-2 grid, with its valid
    and given cloud masks (a Sentinel-2 pixel is valid when all its target pixels are)."""
    s = pair.opts.scale
    filled = np.where(valid[None], hr, np.nanmedian(hr[:, valid], axis=1)[:, None, None]
                      if valid.any() else 0)
    deg = degrade(filled, s, pair.opts.lr_mtf)
    vdeg = block_mean(valid[None].astype(np.float32), s)[0] > 0.999
    mdeg = None if mask is None else block_mean(mask[None].astype(np.float32), s)[0] > 0
    return deg, vdeg, mdeg


def estimate_alignment(pair: ScenePair) -> ShiftEstimate:
    """Global shift (Sentinel-2 pixels) of the reference relative to Sentinel-2."""
    pairs_ = []
    for w in sample_windows(int(pair.window.width), int(pair.window.height), 256):
        lr, lvalid, lcloud = pair.read_lr(w)
        hr, hvalid, hmask = pair.read_hr(w)
        deg, dvalid, _ = to_lr(pair, hr, hvalid, hmask)
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


def fit_radiometry(pair: ScenePair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band gain, offset and robust residual of reference -> Sentinel-2."""
    xs: list[list[np.ndarray]] = [[] for _ in pair.opts.bands]
    ys: list[list[np.ndarray]] = [[] for _ in pair.opts.bands]
    for w in sample_windows(int(pair.window.width), int(pair.window.height), 256):
        lr, lvalid, lcloud = pair.read_lr(w)
        hr, hvalid, hmask = pair.read_hr(w)
        deg, dvalid, dmask = to_lr(pair, hr, hvalid, hmask)
        ok = lvalid & dvalid & ~lcloud
        # reference clouds: the given mask, else the brightness test on the reference as
        # read (its reflectance scale is only approximately right before the fit)
        ok &= ~(dmask if dmask is not None else band_cloud_mask(deg, pair.opts.bands))
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
