"""Tests of s2sr.losses.metrics against skimage and independent numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from s2sr.core.errors import DataError, UsageError
from s2sr.losses.metrics import (
    Conventions,
    crop_border,
    evaluate_pair,
    psnr,
    psnr_bands,
    spectral_angle,
    ssim,
    ssim_bands,
)
from support.shared import SENTINEL2, needs_shared

REAL_S2 = SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif"


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A random reflectance-like target and a noisy prediction, (4, 48, 40)."""
    rng = np.random.default_rng(0)
    target = rng.uniform(0.02, 0.4, (4, 48, 40))
    pred = target + rng.normal(0, 0.02, target.shape)
    return pred, target


def _skimage_psnr(pred: np.ndarray, target: np.ndarray, data_range: float, crop: int) -> list:
    sl = (slice(crop, -crop or None), slice(crop, -crop or None))
    return [
        peak_signal_noise_ratio(target[b][sl], pred[b][sl], data_range=data_range)
        for b in range(pred.shape[0])
    ]


def _skimage_ssim(pred: np.ndarray, target: np.ndarray, crop: int, **kw: object) -> list:
    sl = (slice(crop, -crop or None), slice(crop, -crop or None))
    return [structural_similarity(pred[b][sl], target[b][sl], **kw) for b in range(len(pred))]


@pytest.mark.parametrize("crop", [0, 2, 4])
def test_psnr_matches_skimage(pair: tuple[np.ndarray, np.ndarray], crop: int) -> None:
    pred, target = pair
    conv = Conventions(data_range=1.0, crop=crop)
    got = psnr_bands(pred, target, conv)
    assert got.shape == (4,) and got.dtype == np.float64
    np.testing.assert_allclose(got, _skimage_psnr(pred, target, 1.0, crop), rtol=1e-12)
    assert psnr(pred, target, conv) == pytest.approx(float(np.mean(got)))


@needs_shared(REAL_S2, "a real Sentinel-2 crop")
def test_psnr_ssim_match_skimage_on_real_sentinel2() -> None:
    rasterio = pytest.importorskip("rasterio")
    from scipy.ndimage import gaussian_filter

    with rasterio.open(REAL_S2) as src:
        target = src.read(window=((100, 228), (100, 228))).astype(np.float64) / 10000.0
    rng = np.random.default_rng(1)
    pred = np.stack([gaussian_filter(b, 1.0) for b in target])
    pred += rng.normal(0, 0.005, pred.shape)
    conv = Conventions(data_range=1.0, crop=2)
    np.testing.assert_allclose(
        psnr_bands(pred, target, conv), _skimage_psnr(pred, target, 1.0, 2), rtol=1e-12
    )
    expected = _skimage_ssim(
        pred, target, 2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    np.testing.assert_allclose(ssim_bands(pred, target, conv), expected, rtol=1e-12)
    assert 20 < psnr(pred, target, conv) < 60
    assert 0 < ssim(pred, target, conv) < 1


def test_ssim_matches_skimage_gaussian(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    conv = Conventions(crop=2)
    expected = _skimage_ssim(
        pred, target, 2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    got = ssim_bands(pred, target, conv)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert ssim(pred, target, conv) == pytest.approx(float(np.mean(expected)))


def test_ssim_matches_skimage_uniform(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    conv = Conventions(crop=1, ssim_gaussian=False, ssim_window=7)
    expected = _skimage_ssim(pred, target, 1, data_range=1.0, win_size=7)
    np.testing.assert_allclose(ssim_bands(pred, target, conv), expected, rtol=1e-12)


def test_border_corruption_ignored_by_crop(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    corrupted = pred.copy()
    corrupted[:, :3, :] = 5.0
    corrupted[:, :, -3:] = -5.0
    for crop in (3, 4):
        conv = Conventions(crop=crop)
        np.testing.assert_array_equal(
            psnr_bands(corrupted, target, conv), psnr_bands(pred, target, conv)
        )
        np.testing.assert_array_equal(
            ssim_bands(corrupted, target, conv), ssim_bands(pred, target, conv)
        )
    # Without enough crop the corruption shows.
    conv0 = Conventions(crop=0)
    assert psnr(corrupted, target, conv0) < psnr(pred, target, conv0) - 10
    assert psnr(corrupted, target, Conventions(crop=2)) < psnr(pred, target, Conventions(crop=2))


def test_crop_border_shapes() -> None:
    a = np.zeros((3, 10, 12))
    assert crop_border(a, 0).shape == (3, 10, 12)
    assert crop_border(a, 2).shape == (3, 6, 8)
    assert crop_border(a[0], 4).shape == (2, 4)
    with pytest.raises(UsageError, match="leaves nothing"):
        crop_border(a, 5)
    with pytest.raises(UsageError):
        crop_border(a, -1)


def test_crop_larger_than_image_raises(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    with pytest.raises(UsageError, match="leaves nothing"):
        psnr(pred, target, Conventions(crop=20))
    with pytest.raises(UsageError, match="smaller than the SSIM window"):
        ssim(pred, target, Conventions(crop=15))


def test_identical_images() -> None:
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 0.5, (3, 32, 32))
    conv = Conventions(crop=2)
    assert np.all(np.isposinf(psnr_bands(img, img.copy(), conv)))
    assert psnr(img, img, conv) == float("inf")
    np.testing.assert_allclose(ssim_bands(img, img, conv), 1.0)
    assert ssim(img, img, conv) == pytest.approx(1.0)
    result = evaluate_pair(img, img, conv)
    assert result["psnr"] == float("inf") and result["ssim"] == pytest.approx(1.0)


def test_data_range_convention_dn_vs_reflectance(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    refl = Conventions(data_range=1.0, crop=2)
    dn = Conventions(data_range=10000.0, crop=2)
    np.testing.assert_allclose(
        psnr_bands(pred * 10000, target * 10000, dn), psnr_bands(pred, target, refl), rtol=1e-10
    )
    np.testing.assert_allclose(
        ssim_bands(pred * 10000, target * 10000, dn), ssim_bands(pred, target, refl), rtol=1e-8
    )
    # The classic mistake: DN data scored with data range 1 is off by 80 dB (20*log10(1e4)).
    wrong = psnr(pred * 10000, target * 10000, refl)
    assert wrong == pytest.approx(psnr(pred, target, refl) - 80.0)


def test_evaluate_pair_keys_and_torch_input(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    conv = Conventions(crop=2)
    result = evaluate_pair(torch.from_numpy(pred).float(), torch.from_numpy(target), conv)
    assert set(result) == {"psnr", "ssim", "psnr_bands", "ssim_bands"}
    assert all(isinstance(v, float) for v in result["psnr_bands"] + result["ssim_bands"])
    assert len(result["psnr_bands"]) == 4
    f32 = pred.astype(np.float32).astype(np.float64)
    assert result["psnr"] == pytest.approx(psnr(f32, target, conv))
    assert result["ssim"] == pytest.approx(ssim(f32, target, conv))


def test_single_band_2d_input(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    conv = Conventions(crop=2)
    assert psnr_bands(pred[0], target[0], conv).shape == (1,)
    assert psnr(pred[0], target[0], conv) == pytest.approx(psnr_bands(pred, target, conv)[0])


def test_shape_mismatch_raises(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    conv = Conventions(crop=2)
    for fn in (psnr, ssim, psnr_bands, ssim_bands, evaluate_pair):
        with pytest.raises(UsageError, match=r"\(4, 48, 38\).*\(4, 48, 40\)"):
            fn(pred[:, :, :38], target, conv)
    with pytest.raises(UsageError, match="does not match"):
        spectral_angle(pred[:3], target)


def test_non_finite_raises(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    bad = pred.copy()
    bad[0, 5, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        psnr(bad, target, Conventions(crop=0))


def test_conventions_resolve_describe_dict() -> None:
    conv = Conventions()
    assert conv.crop is None
    with pytest.raises(UsageError, match="resolve"):
        psnr(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), conv)
    resolved = conv.resolve(2)
    assert resolved.crop == 2 and Conventions(crop=0).resolve(4).crop == 0
    text = resolved.describe()
    assert "\n" not in text
    for part in ("reflectance", "data range 1", "border crop 2 px", "Gaussian window 11",
                 "sigma 1.5", "K1 0.01", "K2 0.03", "averaged over bands"):
        assert part in text
    assert "unresolved" in conv.describe()
    assert "uniform window 7" in Conventions(ssim_gaussian=False, ssim_window=7).describe()
    d = resolved.as_dict()
    assert d == {"data_range": 1.0, "crop": 2, "ssim_window": 11, "ssim_gaussian": True,
                 "ssim_sigma": 1.5}
    assert Conventions(**d) == resolved


@pytest.mark.parametrize(
    "kwargs",
    [{"data_range": 0.0}, {"crop": -1}, {"ssim_window": 8, "ssim_gaussian": False},
     {"ssim_window": 7}, {"ssim_sigma": -1.0}],
)
def test_conventions_validation(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        Conventions(**kwargs)


def _sam_reference(pred: np.ndarray, target: np.ndarray) -> float:
    p = pred.reshape(pred.shape[0], -1)
    t = target.reshape(target.shape[0], -1)
    dot = (p * t).sum(0)
    norms = np.sqrt((p**2).sum(0)) * np.sqrt((t**2).sum(0))
    ok = norms > 0
    return float(np.degrees(np.arccos(np.clip(dot[ok] / norms[ok], -1, 1))).mean())


def test_spectral_angle() -> None:
    rng = np.random.default_rng(5)
    target = rng.uniform(0.01, 0.5, (4, 16, 16))
    assert spectral_angle(2 * target, target) == 0.0
    assert spectral_angle(target, target) == 0.0
    # A fixed rotation in the plane of the first two bands.
    theta = np.deg2rad(10.0)
    rot = target.copy()
    rot[0] = np.cos(theta) * target[0] - np.sin(theta) * target[1]
    rot[1] = np.sin(theta) * target[0] + np.cos(theta) * target[1]
    sam = spectral_angle(rot, target)
    assert sam > 0
    assert sam == pytest.approx(_sam_reference(rot, target), rel=1e-9)
    noisy = target + rng.normal(0, 0.05, target.shape)
    assert spectral_angle(noisy, target) == pytest.approx(_sam_reference(noisy, target), rel=1e-9)
    # Orthogonal spectra: 90 degrees.
    a = np.zeros((2, 2, 2))
    b = np.zeros((2, 2, 2))
    a[0], b[1] = 1.0, 1.0
    assert spectral_angle(a, b) == pytest.approx(90.0)


def test_spectral_angle_ignores_zero_pixels() -> None:
    rng = np.random.default_rng(6)
    target = rng.uniform(0.01, 0.5, (3, 8, 8))
    pred = target + rng.normal(0, 0.02, target.shape)
    expected = spectral_angle(pred, target)
    pred2, target2 = pred.copy(), target.copy()
    target2[:, 0, 0] = 0.0
    pred2[:, 0, 1] = 0.0
    valid = np.ones((8, 8), bool)
    valid[0, :2] = False
    ref = _sam_reference(pred[:, valid][:, :, None], target[:, valid][:, :, None])
    assert spectral_angle(pred2, target2) == pytest.approx(ref, rel=1e-9)
    assert spectral_angle(pred2, target2) != pytest.approx(expected, rel=1e-12)
    with pytest.raises(DataError):
        spectral_angle(np.zeros((3, 4, 4)), target[:, :4, :4])
