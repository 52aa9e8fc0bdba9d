"""Training pairs made on the fly from real images, with the degradation drawn per patch.

A model trained on one fixed degradation (one Gaussian PSF) learns to undo exactly that
blur and over- or under-sharpens everything else: a user's scene differs in blur from
scene to scene, with processing level and with how it was resampled. So each training
patch gets its own simulated sensor, drawn from :class:`DegradationRange`:

* the point spread function: with probability ``block_only`` a plain block mean (the
  sharpest plausible input, e.g. data averaged to a coarser grid), otherwise a Gaussian +
  block mean whose MTF at the coarse Nyquist frequency is uniform in ``mtf`` (0.15: very
  soft; 0.6: sharper than Sentinel-2's ~0.3);
* a sub-pixel shift of the PSF (uniform within ``shift`` fine pixels in each axis), so that
  the network does not learn one fixed phase of the detector grid;
* noise at Sentinel-2 levels (Gaussian, std uniform in ``noise`` reflectance) and
  quantisation to the products' 1e-4 reflectance step;
* with probability ``haze``, haze on the scene itself (before the sensor: input and target
  alike): reflectance ``x -> gain * x + offset`` with ``gain`` uniform in ``HAZE_GAIN``
  and ``offset`` in ``HAZE_OFFSET``, the bright, flat, low-contrast surfaces of a hazy L1C
  scene (reflectance 0.3-0.45 in every band). Without them a model trained on clear scenes
  added a brightness-dependent offset between even and odd output columns or rows there,
  seen as 2-pixel stripes (issue 20: eolearn_slovenia_0; the same scene darkened by 0.15
  had none, brightened by 0.15 three times more).

:class:`SyntheticPairs` is a PyTorch dataset of such pairs over a list of real
high-resolution images (:class:`Source`); validation uses :func:`panel_degradations`, a
fixed set of cases spread over the same range, so a model is never selected on the one
degradation it was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from s2sr.core.constants import SCALES
from s2sr.core.dn import DN_SCALE
from s2sr.core.errors import UsageError
from s2sr.data.degrade import block_mean, blur, degradation_sigma, kernel_radius

#: Reflectance quantisation of Sentinel-2 products (DN = reflectance x 10000).
QUANTUM = 1.0 / DN_SCALE
#: Contrast and additive offset (reflectance) of the simulated haze (see the module doc).
HAZE_GAIN = (0.35, 1.0)
HAZE_OFFSET = (0.0, 0.35)


@dataclass(frozen=True)
class DegradationRange:
    """Where per-patch degradations are drawn from (see the module docstring).

    Attributes:
        mtf: (low, high) MTF at the coarse Nyquist of the Gaussian + block-mean PSF.
        block_only: probability of a plain block mean (no Gaussian).
        shift: largest sub-pixel PSF shift, fine pixels, per axis.
        noise: (low, high) Gaussian noise std, reflectance.
        quantize: quantisation step of the input, reflectance (0: none).
        haze: probability of haze on the scene (contrast and offset, see the module doc).
        haze_gain: (low, high) contrast of the hazy scene (default ``HAZE_GAIN``); a
            narrower range keeps the brightness offsets while lowering contrast less.
    """

    mtf: tuple[float, float] = (0.15, 0.6)
    block_only: float = 0.2
    shift: float = 0.25
    noise: tuple[float, float] = (0.0, 0.002)
    quantize: float = QUANTUM
    haze: float = 0.0
    haze_gain: tuple[float, float] = HAZE_GAIN

    def __post_init__(self) -> None:
        lo, hi = self.mtf
        if not (0 < lo <= hi < 1) or not all(map(math.isfinite, self.mtf)):
            raise UsageError(f"degradation mtf range must satisfy 0 < low <= high < 1, got "
                             f"{list(self.mtf)}")
        if not 0 <= self.block_only <= 1:
            raise UsageError(f"degradation block_only must be a probability in [0, 1], got "
                             f"{self.block_only}")
        if not 0 <= self.shift <= 1:
            raise UsageError(f"degradation shift must be in [0, 1] fine pixels, got "
                             f"{self.shift}")
        if not (0 <= self.noise[0] <= self.noise[1] <= 0.05):
            raise UsageError(f"degradation noise must satisfy 0 <= low <= high <= 0.05 "
                             f"(reflectance), got {list(self.noise)}")
        if not 0 <= self.quantize <= 0.01:
            raise UsageError(f"degradation quantize must be in [0, 0.01], got {self.quantize}")
        if not 0 <= self.haze <= 1:
            raise UsageError(f"degradation haze must be a probability in [0, 1], got "
                             f"{self.haze}")
        lo, hi = self.haze_gain
        if not (0.1 <= lo <= hi <= 1) or not all(map(math.isfinite, self.haze_gain)):
            raise UsageError(f"degradation haze_gain must satisfy 0.1 <= low <= high <= 1, "
                             f"got {list(self.haze_gain)}")


@dataclass(frozen=True)
class Degradation:
    """One drawn degradation: ``mtf`` None means a plain block mean; ``gain`` and
    ``offset`` are the haze on the scene (1 and 0: none)."""

    mtf: float | None
    shift: tuple[float, float] = (0.0, 0.0)
    noise: float = 0.0
    quantize: float = 0.0
    gain: float = 1.0
    offset: float = 0.0

    def haze(self, hr: np.ndarray) -> np.ndarray:
        """The scene ``hr`` under this degradation's haze (itself when there is none)."""
        if self.gain == 1.0 and self.offset == 0.0:
            return hr
        return (hr * np.float32(self.gain) + np.float32(self.offset)).astype(np.float32)

    @property
    def label(self) -> str:
        """Short name, e.g. ``block`` or ``mtf0.30``."""
        return "block" if self.mtf is None else f"mtf{self.mtf:.2f}"


def sample_degradation(rng: np.random.Generator, rng_range: DegradationRange) -> Degradation:
    """Draw one degradation from ``rng_range``."""
    block = rng.random() < rng_range.block_only
    mtf = None if block else float(rng.uniform(*rng_range.mtf))
    s = rng_range.shift
    shift = (float(rng.uniform(-s, s)), float(rng.uniform(-s, s))) if s > 0 else (0.0, 0.0)
    noise = float(rng.uniform(*rng_range.noise))
    gain, offset = 1.0, 0.0
    if rng_range.haze > 0 and rng.random() < rng_range.haze:  # no draw without haze: the
        gain = float(rng.uniform(*rng_range.haze_gain))  # runs before it reproduce
        offset = float(rng.uniform(*HAZE_OFFSET))
    return Degradation(mtf, shift, noise, rng_range.quantize, gain, offset)


def panel_degradations() -> list[Degradation]:
    """The fixed cases of the robustness panel: block mean; MTF 0.2, 0.3, 0.45, 0.6."""
    return [Degradation(None)] + [Degradation(m) for m in (0.2, 0.3, 0.45, 0.6)]


def psf_margin(scale: int) -> int:
    """Fine pixels of context a degradation needs on each side (multiple of ``scale``).

    The reach of the widest kernel (MTF 0.1, softer than any drawn PSF) plus 2 pixels
    for the sub-pixel shift.
    """
    m = kernel_radius(degradation_sigma(scale, 0.1)) + 2
    return m + (-m % scale)


def apply_degradation(hr: np.ndarray, scale: int, deg: Degradation,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Degrade ``(C, H, W)`` reflectance by ``scale`` with ``deg``.

    ``H`` and ``W`` must be multiples of ``scale``; edges are mirrored. Returns
    ``(C, H // scale, W // scale)`` float32.
    """
    sigma = 0.0 if deg.mtf is None else degradation_sigma(scale, deg.mtf)
    out = blur(hr, sigma)
    if deg.shift != (0.0, 0.0):
        for b in range(out.shape[0]):
            out[b] = ndimage.shift(out[b], deg.shift, order=3, mode="mirror")
    lr = block_mean(out, scale)
    if deg.noise > 0:
        gen = rng if rng is not None else np.random.default_rng(0)
        lr = lr + gen.normal(0.0, deg.noise, lr.shape).astype(np.float32)
    if deg.quantize > 0:
        lr = np.round(lr / deg.quantize) * deg.quantize
    return lr.astype(np.float32)


def missing_integral(valid: np.ndarray) -> np.ndarray:
    """Summed-area table ``(H + 1, W + 1)`` of the missing pixels of ``valid`` ``(H, W)``:
    a window's missing count is ``ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]``."""
    ii = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(~valid, axis=0), axis=1)
    return ii


@dataclass
class Source:
    """A real high-resolution image to cut patches from.

    Attributes:
        name: for reports.
        array: ``(C, H, W)`` float32 reflectance in the model's band order.
        valid: ``(H, W)`` True where every band holds data.
        weight: relative sampling weight per pixel (1: proportional to area).
    """

    name: str
    array: np.ndarray
    valid: np.ndarray
    weight: float = 1.0
    _integral: np.ndarray | None = field(default=None, repr=False)

    def fully_valid(self, r: int, c: int, size: int) -> bool:
        """Whether the ``size``-square window at ``(r, c)`` holds no missing pixel."""
        if self._integral is None:
            self._integral = missing_integral(self.valid)
        ii = self._integral
        bad = ii[r + size, c + size] - ii[r, c + size] - ii[r + size, c] + ii[r, c]
        return bool(bad == 0)


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    if k & 4:
        x = x[:, :, ::-1]
    return np.rot90(x, k & 3, axes=(1, 2))


class SyntheticPairs(Dataset[dict[str, Any]]):
    """``(lr, hr)`` pairs cut from real images, degraded on the fly.

    Items are repeatable: item ``i`` of epoch ``e`` always draws the same crop and
    degradation for a given ``seed`` (set ``.epoch`` to move on, as the trainer does).

    Args:
        sources: real images, in the model's bands.
        scale: 2 or 4.
        patch: input (LR) patch size; targets are ``patch * scale``.
        length: items per epoch.
        degradations: the range drawn from (training), ignored when ``fixed`` is given.
        fixed: cycle through these degradations deterministically (validation), with crops
            fixed too.
        augment: random flips and rotations of the target before degrading.
        seed: base seed.
    """

    def __init__(self, sources: Sequence[Source], scale: int, patch: int, length: int, *,
                 degradations: DegradationRange | None = None,
                 fixed: Sequence[Degradation] | None = None, augment: bool = True,
                 seed: int = 0) -> None:
        if scale not in SCALES:
            raise UsageError(f"scale must be 2 or 4, got {scale}")
        if patch < 4 or length < 1:
            raise UsageError(f"patch must be >= 4 and length >= 1, got {patch}, {length}")
        self.sources = [s for s in sources if min(s.array.shape[1:]) >= patch * scale
                        + 2 * psf_margin(scale)]
        if not self.sources:
            raise UsageError(f"no training image is large enough for {patch} px inputs at "
                             f"x{scale}: use a smaller patch")
        self.scale, self.patch, self.length = scale, patch, length
        self.range = degradations or DegradationRange()
        self.fixed = list(fixed) if fixed else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        areas = np.array([s.valid.sum() * s.weight for s in self.sources], np.float64)
        self.probs = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        epoch = 0 if self.fixed else self.epoch
        return np.random.default_rng([self.seed, epoch, index])

    def draw(self, index: int) -> tuple[Source, int, int, Degradation, int]:
        """The source, crop origin, degradation and dihedral transform of an item."""
        rng = self._rng(index)
        margin = psf_margin(self.scale)
        size = self.patch * self.scale + 2 * margin
        for _ in range(64):
            src = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
            h, w = src.array.shape[1:]
            r = int(rng.integers(0, h - size + 1))
            c = int(rng.integers(0, w - size + 1))
            if src.fully_valid(r, c, size):
                break
        else:
            raise UsageError(f"could not find a patch without nodata in {src.name} after 64 "
                             "tries: crop the training images to their valid area")
        if self.fixed:
            deg = self.fixed[index % len(self.fixed)]
        else:
            deg = sample_degradation(rng, self.range)
        k = int(rng.integers(0, 8)) if self.augment else 0
        return src, r, c, deg, k

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        src, r, c, deg, k = self.draw(index)
        margin = psf_margin(self.scale)
        size = self.patch * self.scale + 2 * margin
        hr_big = deg.haze(_dihedral(src.array[:, r:r + size, c:c + size], k))
        lr_big = apply_degradation(np.ascontiguousarray(hr_big), self.scale, deg,
                                   self._rng(index + 7_919_000))
        m = margin // self.scale
        lr = lr_big[:, m:m + self.patch, m:m + self.patch]
        hr = hr_big[:, margin:margin + self.patch * self.scale,
                    margin:margin + self.patch * self.scale]
        return {"lr": torch.from_numpy(np.ascontiguousarray(lr)),
                "hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)),
                "degradation": deg.label, "source": src.name}
