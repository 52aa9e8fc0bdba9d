"""One degradation: the numpy and torch paths share the kernel and agree, edges included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from s2sr.core.errors import UsageError
from s2sr.data.degrade import (
    blur,
    degrade,
    gaussian_kernel1d,
    kernel_radius,
)
from s2sr.data.degrade_torch import back_project, blur_torch, degrade_torch, mirror_pad
from support.rasters import texture


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("mtf", [0.15, 0.3, 0.45, 0.6])
def test_numpy_and_torch_degradations_agree(scale: int, mtf: float) -> None:
    hr = texture((48, 60), bands=3, seed=scale)
    want = degrade(hr, scale, mtf)
    got = degrade_torch(torch.from_numpy(hr)[None], scale, mtf)[0].numpy()
    assert got.shape == want.shape == (3, 48 // scale, 60 // scale)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 7), (3, 12), (1, 9), (20, 2)])
def test_agreement_when_the_kernel_is_wider_than_the_image(shape: tuple[int, int]) -> None:
    """A kernel wider than the image mirrors the image again and again, in both paths."""
    img = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
    assert kernel_radius(9.0) > 2 * min(shape)  # several reflections deep
    for sigma in (0.8, 3.0, 9.0):
        np.testing.assert_allclose(blur_torch(torch.from_numpy(img)[None], sigma)[0].numpy(),
                                   blur(img, sigma), atol=1e-6)


def test_blur_is_scipys_gaussian_filter_with_one_truncation_rule() -> None:
    img = texture((40, 33), bands=2, seed=4)
    for sigma in (0.36, 1.26, 2.47):
        want = np.stack([ndimage.gaussian_filter(b, sigma, mode="mirror") for b in img])
        np.testing.assert_array_equal(blur(img, sigma), want)
        k = gaussian_kernel1d(sigma)
        r = int(4 * sigma + 0.5)
        assert kernel_radius(sigma) == r and k.shape == (2 * r + 1,)
        assert k.sum() == pytest.approx(1.0) and np.array_equal(k, k[::-1])
        assert k[0] == pytest.approx(k[r] * np.exp(-0.5 * (r / sigma) ** 2))
    with pytest.raises(UsageError, match="sigma must be positive"):
        gaussian_kernel1d(0.0)
    np.testing.assert_array_equal(blur(img, 0.0), img)


@pytest.mark.parametrize("pad", [1, 3, 7, 20])
def test_mirror_pad_is_the_mirror_pattern(pad: int) -> None:
    img = np.arange(2 * 4 * 6, dtype=np.float32).reshape(1, 2, 4, 6)
    want = np.pad(img, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
    np.testing.assert_array_equal(mirror_pad(torch.from_numpy(img), pad).numpy(), want)
    one = torch.ones(1, 1, 1, 5)
    assert mirror_pad(one, pad).shape == (1, 1, 1 + 2 * pad, 5 + 2 * pad)


def test_factor_one_and_bad_factor() -> None:
    x = torch.rand(1, 2, 8, 8)
    assert torch.equal(degrade_torch(x, 1), x)
    with pytest.raises(UsageError, match="factor must be >= 1"):
        degrade_torch(x, 0)


@pytest.mark.parametrize("scale", [2, 4])
def test_back_projection_makes_the_output_reproduce_its_input(scale: int) -> None:
    hr = texture((64, 64), bands=2, seed=1)
    lr = torch.from_numpy(degrade(hr, scale))[None]
    start = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="nearest")
    before = (degrade_torch(start, scale) - lr).abs().mean()
    fixed = back_project(start, lr, scale, iterations=5)
    after = (degrade_torch(fixed, scale) - lr).abs().mean()
    assert fixed.shape == start.shape and after < 0.1 * before


def test_inference_does_not_import_evaluation() -> None:
    """Back-projection lives beside the degradation: predicting needs no evaluation code."""
    code = ("import sys, s2sr.inference; "
            "print(sorted(m for m in sys.modules if m.startswith('s2sr.evaluation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
