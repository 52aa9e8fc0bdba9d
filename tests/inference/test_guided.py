"""The guided high-pass baseline of the 20 m bands (issue 22):
:func:`s2sr.inference.baselines.guided_highpass`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from s2sr.core.errors import UsageError
from s2sr.data.degrade import block_mean, degrade
from s2sr.inference.baselines import guided_highpass, guided_weights, upsample
from s2sr.losses.metrics import Conventions, psnr_bands
from support.shared import SENTINEL2, needs_shared

DSEN2_10M = SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif"
DSEN2_20M = SENTINEL2 / "dsen2_T33UUB_20170527_L1C_20m.tif"
#: Weights of the synthetic 20 m band on the four guide bands, and its intercept.
WEIGHTS = np.array([0.3, -0.5, 0.8, 0.2], np.float32)
INTERCEPT = 0.05


def _guide(side: int = 64, seed: int = 0) -> np.ndarray:
    """Four smooth-but-detailed random guide bands ``(4, side, side)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.random((side, side)), 1.0)
                     for _ in range(4)]).astype(np.float32)


def _linear_case(side: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coarse band, guide, fine truth): the band is a linear combination of the guide."""
    hr = _guide(side)
    truth = (np.tensordot(WEIGHTS, hr, axes=1) + INTERCEPT)[None].astype(np.float32)
    return block_mean(truth, 2), hr, truth


class TestExact:
    def test_linear_combination_recovered_where_bicubic_is_not(self) -> None:
        lr, hr, truth = _linear_case()
        out = guided_highpass(lr, hr)
        bicubic = upsample(lr, 2)
        assert out.shape == truth.shape and out.dtype == np.float32
        assert np.abs(out - truth).max() < 1e-5
        assert np.abs(bicubic - truth).max() > 0.05

    def test_weights_are_the_generating_ones(self) -> None:
        lr, hr, _ = _linear_case()
        coef = guided_weights(lr[0], block_mean(hr, 2), np.ones(lr.shape[1:], bool))
        np.testing.assert_allclose(coef, [*WEIGHTS, INTERCEPT], atol=1e-4)

    def test_band_unrelated_to_guide_stays_near_bicubic(self) -> None:
        rng = np.random.default_rng(3)
        lr = ndimage.gaussian_filter(rng.random((32, 32)), 1.0)[None].astype(np.float32)
        hr = _guide(64, seed=7)
        out = guided_highpass(lr, hr)
        # little injected detail: the regression finds (almost) no relation
        assert np.abs(out - upsample(lr, 2)).mean() < 0.1 * np.abs(lr - lr.mean()).mean()

    def test_scale_four_and_several_bands(self) -> None:
        hr = _guide(64)
        truth = np.stack([np.tensordot(WEIGHTS, hr, axes=1),
                          np.tensordot(WEIGHTS[::-1], hr, axes=1)]).astype(np.float32)
        out = guided_highpass(block_mean(truth, 4), hr, scale=4)
        assert out.shape == (2, 64, 64)
        assert np.abs(out - truth).max() < 1e-5


class TestRefusals:
    @pytest.mark.parametrize("hr_shape", [(4, 63, 64), (4, 64, 66), (4, 32, 32), (4, 128, 128)])
    def test_guide_not_exactly_scale_times_coarse_grid(self, hr_shape: tuple[int, ...]) -> None:
        with pytest.raises(UsageError, match="must be exactly 2 x the coarse grid 32x32"):
            guided_highpass(np.zeros((6, 32, 32), np.float32), np.zeros(hr_shape, np.float32))

    def test_missing_band_axis(self) -> None:
        with pytest.raises(UsageError, match="add a band axis"):
            guided_highpass(np.zeros((32, 32)), np.zeros((4, 64, 64)))

    @pytest.mark.parametrize("scale", [1, 0, -2, 2.5, True, 9])
    def test_bad_scale(self, scale: object) -> None:
        with pytest.raises(UsageError, match="guided scale"):
            guided_highpass(np.zeros((1, 8, 8)), np.zeros((4, 16, 16)), scale=scale)  # type: ignore[arg-type]

    def test_too_many_guide_bands(self) -> None:
        with pytest.raises(UsageError, match=r"1\.\.16 guide bands"):
            guided_highpass(np.zeros((1, 8, 8)), np.zeros((17, 16, 16)))

    def test_mask_on_the_wrong_grid(self) -> None:
        with pytest.raises(UsageError, match="nodata mask"):
            guided_highpass(np.zeros((1, 8, 8)), np.zeros((4, 16, 16)),
                            nodata_mask=np.zeros((8, 8), bool))

    def test_non_numeric(self) -> None:
        with pytest.raises(UsageError, match="real numbers"):
            guided_highpass(np.zeros((1, 8, 8), dtype=object), np.zeros((4, 16, 16)))


class TestNodata:
    def test_nan_in_band_is_nan_out_and_does_not_spoil_the_rest(self) -> None:
        lr, hr, truth = _linear_case()
        lr[0, 10:14, 5:9] = np.nan
        out = guided_highpass(lr, hr)
        assert np.isnan(out[0, 20:28, 10:18]).all()
        assert np.isnan(out).sum() == 64
        far = np.ones(out.shape[1:], bool)
        far[12:32, 2:26] = False  # bicubic's reach around the gap
        assert np.abs(out[0][far] - truth[0][far]).max() < 1e-5

    def test_nan_in_guide_and_mask(self) -> None:
        lr, hr, truth = _linear_case()
        hr[2, 40, 41] = np.nan
        mask = np.zeros(hr.shape[1:], bool)
        mask[0:3, 0:3] = True
        out = guided_highpass(lr, hr, nodata_mask=mask)
        assert np.isnan(out[0, 40:42, 40:42]).all()  # its whole coarse pixel
        assert np.isnan(out[0, 0:4, 0:4]).all()
        assert np.isfinite(out[0, 10:30, 10:30]).all()
        assert np.abs(out[0, 10:30, 10:30] - truth[0, 10:30, 10:30]).max() < 1e-5

    def test_all_nodata_is_all_nan_without_error(self) -> None:
        out = guided_highpass(np.full((2, 8, 8), np.nan), np.ones((4, 16, 16)))
        assert out.shape == (2, 16, 16) and np.isnan(out).all()


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32) / 10000.0


@needs_shared(DSEN2_20M, "the DSen2 T33UUB crop with its 20 m bands")
def test_wald_x2_gain_on_dsen2_red_edge() -> None:
    """Wald x2, MTF 0.30: guide 10 -> 20 m, bands 20 -> 40 m, truth = the real 20 m bands."""
    hr10, lr20 = _read(DSEN2_10M), _read(DSEN2_20M)
    truth = lr20
    out = guided_highpass(degrade(lr20, 2, 0.3), degrade(hr10, 2, 0.3))
    bicubic = upsample(degrade(lr20, 2, 0.3), 2)
    conv = Conventions().resolve(2)
    gain = psnr_bands(out, truth, conv) - psnr_bands(bicubic, truth, conv)
    assert (gain[:4] > 1.0).all(), gain  # B05 B06 B07 B8A
    assert gain[:4].mean() > 3.0, gain
