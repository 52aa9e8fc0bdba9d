"""Sensor-like degradation for Wald-protocol pairs.

A sensor's point spread function is approximated by a Gaussian whose modulation transfer
function (MTF) at the Nyquist frequency of the *coarse* grid equals a given value. For a
Gaussian PSF of standard deviation ``sigma`` (fine pixels), ``MTF(f) = exp(-2 pi^2 sigma^2
f^2)``; at the coarse Nyquist ``f = 1 / (2 r)`` cycles per fine pixel (``r`` = decimation
factor) this gives ``sigma = r * sqrt(-2 ln MTF) / pi``. The blurred image is then averaged
over ``r x r`` blocks (the detector's footprint), so coarse pixel ``(i, j)`` covers fine
pixels ``[r i, r i + r) x [r j, r j + r)`` exactly, as on a geographic grid; the Gaussian
is narrowed so that blur and block mean together have the requested MTF.

Default Nyquist MTF values are typical of the sensors' published figures: Sentinel-2 MSI
about 0.3 for the 10 m bands (ESA S2 Data Quality Reports give 0.25-0.35), RapidEye about
0.3, a generic value of 0.3 otherwise.

One kernel serves every path: :func:`gaussian_kernel1d` (cut at :data:`TRUNCATE` standard
deviations, scipy's rule) is applied here to arrays and by :mod:`s2sr.data.degrade_torch`
to tensors, both with mirrored edges, so the two degradations agree.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from s2sr.core.errors import UsageError

#: Nyquist MTF per sensor preset.
SENSOR_MTF: dict[str, float] = {"sentinel2": 0.30, "rapideye": 0.30, "generic": 0.30,
                                "planetscope": 0.25, "spot": 0.30}


def gaussian_sigma(factor: int, mtf: float) -> float:
    """Gaussian PSF sigma (fine pixels) with MTF ``mtf`` at the coarse Nyquist frequency."""
    if not 0 < mtf < 1:
        raise UsageError(f"MTF at Nyquist must be in (0, 1), got {mtf}")
    return factor * math.sqrt(-2.0 * math.log(mtf)) / math.pi


#: Gaussian kernels are cut at this many standard deviations (scipy's ``gaussian_filter``
#: default, so :func:`blur` equals it).
TRUNCATE = 4.0


def kernel_radius(sigma: float) -> int:
    """Half-width (fine pixels) of the Gaussian kernel of ``sigma``: ``round(4 sigma)``."""
    return int(TRUNCATE * sigma + 0.5)


def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian ``(2 r + 1,)`` float64, ``r`` = :func:`kernel_radius`.

    The one kernel of the degradation: the numpy (:func:`blur`) and torch
    (:func:`s2sr.data.degrade_torch.blur_torch`) paths both apply it separably.
    """
    if not sigma > 0:
        raise UsageError(f"Gaussian sigma must be positive, got {sigma}")
    r = kernel_radius(sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 / (sigma * sigma) * x**2)
    return k / k.sum()


def blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``(C, H, W)`` (or ``(H, W)``) per band, edges mirrored; float32.

    Equal to ``scipy.ndimage.gaussian_filter(band, sigma, mode="mirror")`` on each band;
    ``sigma <= 0`` returns a float32 copy.
    """
    if sigma <= 0:
        return array.astype(np.float32, copy=True)
    k = gaussian_kernel1d(sigma)
    rows = ndimage.correlate1d(array.astype(np.float32, copy=False), k, axis=-2,
                               mode="mirror")
    return ndimage.correlate1d(rows, k, axis=-1, mode="mirror")


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of ``(C, H, W)``; trailing rows/cols are dropped."""
    c, h, w = array.shape
    h2, w2 = h // factor, w // factor
    view = array[:, :h2 * factor, :w2 * factor].reshape(c, h2, factor, w2, factor)
    return view.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def degrade(array: np.ndarray, factor: int, mtf: float = 0.3) -> np.ndarray:
    """Simulate a sensor with ``factor`` times coarser pixels.

    Args:
        array: ``(C, H, W)`` reflectance.
        factor: integer decimation factor (2 for 10 m -> 20 m).
        mtf: the coarse sensor's MTF at its Nyquist frequency.

    Returns:
        ``(C, H // factor, W // factor)`` float32.
    """
    if factor < 1:
        raise UsageError(f"degradation factor must be >= 1, got {factor}")
    if factor == 1:
        return array.astype(np.float32, copy=True)
    return block_mean(blur(array, degradation_sigma(factor, mtf)), factor)


def box_mtf(factor: int, frequency: float) -> float:
    """MTF of a ``factor``-sample block mean at ``frequency`` (cycles per fine pixel)."""
    if frequency == 0:
        return 1.0
    return abs(math.sin(math.pi * factor * frequency)
               / (factor * math.sin(math.pi * frequency)))


def degradation_sigma(factor: int, mtf: float) -> float:
    """Gaussian sigma that, with the block mean, gives ``mtf`` at the coarse Nyquist.

    The block mean already blurs (MTF ``1 / (r sin(pi / 2r))`` at Nyquist: 0.707 for
    r = 2); the Gaussian supplies the rest.
    """
    residual = min(mtf / box_mtf(factor, 1 / (2 * factor)), 0.999)
    return gaussian_sigma(factor, residual)
