"""Degradation, registration, radiometric fit, masks and validation (pure functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from s2sr.core.errors import UsageError
from s2sr.data.degrade import block_mean, box_mtf, degradation_sigma, degrade, gaussian_sigma
from s2sr.data.masks import brightness_mask, dilate
from s2sr.data.registration import apply_shift, estimate_shift, global_shift
from s2sr.data.sensor_fit import huber_fit
from s2sr.data.validation import Thresholds, robust_z, validate
from support.rasters import texture
from support.shared import SENTINEL2, requires_shared


@pytest.mark.parametrize(("factor", "mtf"), [(2, 0.3), (4, 0.2), (2, 0.5)])
def test_degradation_mtf_matches_the_model(factor: int, mtf: float) -> None:
    """At the coarse Nyquist the model gives ``mtf``; a sinusoid at half of it keeps the
    amplitude the model predicts (Gaussian x block mean)."""
    sigma = degradation_sigma(factor, mtf)

    def model(f: float) -> float:
        return math.exp(-2 * math.pi**2 * sigma**2 * f**2) * box_mtf(factor, f)

    assert model(1 / (2 * factor)) == pytest.approx(mtf, rel=1e-6)
    f = 1 / (4 * factor)
    n = 512 * factor
    wave = np.sin(2 * np.pi * f * np.arange(n) + 0.3)
    img = np.broadcast_to(wave, (64, n))[None].astype(np.float32)
    out = degrade(img, factor, mtf)[0, 8]
    amplitude = 2 * np.abs(np.fft.rfft(out))[out.size // 4] / out.size
    assert amplitude == pytest.approx(model(f), rel=0.02)


def test_degradation_shapes_and_constants() -> None:
    img = np.full((3, 40, 30), 0.2, np.float32)
    out = degrade(img, 4)
    assert out.shape == (3, 10, 7)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)
    np.testing.assert_allclose(block_mean(np.arange(16.0).reshape(1, 4, 4), 2)[0],
                               [[2.5, 4.5], [10.5, 12.5]])
    assert gaussian_sigma(2, math.exp(-math.pi**2 / 8)) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        gaussian_sigma(2, 1.5)


@pytest.mark.parametrize("shift", [(0.3, -0.45), (-1.2, 0.7), (0.0, 0.05)])
def test_phase_correlation_recovers_known_shift(shift: tuple[float, float]) -> None:
    img = texture((160, 160), 1, seed=3)[0]
    moved = apply_shift(img, shift)
    (dy, dx), _ = estimate_shift(img, moved)
    # the shift that aligns ``moved`` back onto ``img`` is minus the applied one
    assert (-dy, -dx) == pytest.approx(shift, abs=0.05)


@requires_shared
def test_phase_correlation_on_real_sentinel2() -> None:
    with rasterio.open(SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif") as ds:
        img = ds.read(3).astype(np.float32) / 10000
    moved = apply_shift(img, (0.37, -0.61))
    est = global_shift([(img[r:r + 128, c:c + 128], moved[r:r + 128, c:c + 128])
                        for r in (0, 200, 400) for c in (0, 200, 400)])
    assert est.reliable
    assert (-est.shift[0], -est.shift[1]) == pytest.approx((0.37, -0.61), abs=0.05)


def test_unrelated_images_are_unreliable() -> None:
    pairs = [(texture((96, 96), 1, seed=s)[0], texture((96, 96), 1, seed=100 + s)[0])
             for s in range(6)]
    assert not global_shift(pairs).reliable


def test_huber_fit_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.4, 20000)
    y = 0.93 * x + 0.012 + rng.normal(0, 0.003, x.size)
    bad = rng.random(x.size) < 0.15
    y[bad] = rng.uniform(0.3, 0.8, bad.sum())  # clouds / changes
    fit = huber_fit(x, y)
    assert fit.gain == pytest.approx(0.93, rel=0.01)
    assert fit.offset == pytest.approx(0.012, abs=0.002)


def test_brightness_mask_finds_white_clouds_not_bright_soil() -> None:
    refl = np.full((4, 30, 30), 0.08, np.float32)
    refl[:, 5:15, 5:15] = np.array([0.45, 0.46, 0.47, 0.5])[:, None, None]  # white cloud
    refl[:, 20:28, 20:28] = np.array([0.15, 0.25, 0.35, 0.4])[:, None, None]  # red soil
    refl[:, 2, 28] = 0.5  # a single bright roof pixel
    mask = brightness_mask(refl)
    assert mask[5:15, 5:15].all()
    assert not mask[20:28, 20:28].any() and not mask[2, 28]
    assert dilate(mask, 2)[3:17, 3:17].all() and not dilate(mask, 2)[18, 18]


def test_validation_reasons_and_outliers() -> None:
    n = 20
    stats = {"nodata": np.zeros(n), "cloud": np.zeros(n), "shift": np.full(n, 0.1),
             "corr": np.full(n, 0.95) + np.linspace(0, 0.01, n),
             "ssim": np.full(n, 0.9), "residual": np.full(n, 0.002)}
    stats["nodata"][0] = 0.2
    stats["cloud"][1] = 0.3
    stats["corr"][2] = 0.2
    stats["shift"][3] = 1.4
    stats["residual"][4] = 0.2
    stats["corr"][5] = 0.7  # passes the 0.6 threshold but is an outlier in this scene
    reasons = validate(stats, Thresholds())
    assert reasons[:6] == ["nodata", "cloud", "changed", "misregistered", "radiometry",
                           "outlier-corr"]
    assert reasons[6:] == [""] * (n - 6)
    assert robust_z(np.ones(5)).tolist() == [0.0] * 5
    with pytest.raises(UsageError, match="unknown threshold"):
        Thresholds.from_dict({"max_clouds": 1})
