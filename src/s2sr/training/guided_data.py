"""Training pairs of the guided 20 m models, cut from the native scenes and degraded on the
fly by the Wald protocol (as DSen2), with the 10 m models' randomised degradations.

Each item draws a scene (weighted by area), a truth patch of ``patch`` 20 m pixels and one
degradation from :class:`s2sr.data.synthetic.DegradationRange` (block mean or Gaussian PSF of a
random MTF, sub-pixel shift, noise, quantisation, haze), exactly as
:class:`s2sr.data.synthetic.SyntheticPairs` draws them for the 10 m models, then:

* the input: the real 20 m bands degraded by ``factor``
  (:func:`s2sr.data.synthetic.apply_degradation`);
* the guide: the 10 m bands blurred with the same PSF (in 10 m pixels), then averaged over
  the footprints of the truth grid divided by 2 (:func:`s2sr.data.multires.footprint_mean`,
  which honours the scene's half-pixel offset exactly), with the same noise and quantisation;
* the truth: the real 20 m bands, never resampled.

Flips and rotations are applied after degrading, to the three nested grids together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from s2sr.core.errors import UsageError
from s2sr.data.degrade import blur, degradation_sigma
from s2sr.data.multires import WALD_FACTORS, NativeScene, footprint_mean
from s2sr.data.synthetic import (
    Degradation,
    DegradationRange,
    apply_degradation,
    psf_margin,
    sample_degradation,
)


def degrade_guide(hr10: np.ndarray, factor: int, deg: Degradation,
                  offset: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """The 10 m guide degraded by ``factor`` onto the footprints of the coarse grid
    (``offset`` as :func:`s2sr.data.multires.footprint_mean`), with ``deg``'s PSF, noise and
    quantisation (its sub-pixel shift is the input sensor's own, not applied here)."""
    sigma = 0.0 if deg.mtf is None else degradation_sigma(factor, deg.mtf)
    out = footprint_mean(blur(hr10, sigma), factor, offset)
    if deg.noise > 0:
        out = out + rng.normal(0.0, deg.noise, out.shape).astype(np.float32)
    if deg.quantize > 0:
        out = np.round(out / deg.quantize) * deg.quantize
    return out.astype(np.float32)


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    if k & 4:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(x, k & 3, axes=(1, 2)))


def patch_fits(patch: int, factor: int) -> bool:
    """Whether a truth patch of ``patch`` 20 m pixels cuts into whole input pixels and into
    whole guide pixels at the Wald ``factor`` (a multiple of 2 x factor, at least 4 x factor)."""
    return patch >= 4 * factor and patch % (2 * factor) == 0


class GuidedPairs(Dataset[dict[str, Any]]):
    """``(lr, guide, hr)`` Wald triples from native scenes (see the module docstring).

    Item ``i`` of epoch ``e`` is the same for a given ``seed`` (set ``.epoch`` to move on).

    Args:
        scenes: native scenes of the training places.
        factor: the Wald factor, the model's scale (2 or 4).
        patch: truth patch side in 20 m pixels (a multiple of ``2 * factor``).
        length: items per epoch.
        degradations: the range drawn from; ``fixed``: cycle through these instead.
        augment: random flips and rotations. seed: base seed.
    """

    def __init__(self, scenes: Sequence[NativeScene], factor: int, patch: int, length: int,
                 *, degradations: DegradationRange | None = None,
                 fixed: Sequence[Degradation] | None = None, augment: bool = True,
                 seed: int = 0) -> None:
        if factor not in WALD_FACTORS:
            raise UsageError(f"factor must be 2 or 4, got {factor}")
        if not patch_fits(patch, factor) or length < 1:
            raise UsageError(f"patch must be a multiple of {2 * factor} and >= {4 * factor}, "
                             f"length >= 1; got {patch}, {length}")
        self.margin = psf_margin(factor)  # 20 m pixels of context (the guide's: twice that)
        need = patch + 2 * self.margin + 1
        self.scenes = [s for s in scenes if min(s.lr20.shape[1:]) >= need]
        if not self.scenes:
            raise UsageError(f"no scene is large enough for {patch} px truth patches at "
                             f"x{factor}: use a smaller patch")
        self.factor, self.patch, self.length = factor, patch, length
        self.range = degradations or DegradationRange()
        self.fixed = list(fixed) if fixed else None
        self.augment, self.seed, self.epoch = augment, seed, 0
        areas = np.array([s.lr20[0].size for s in self.scenes], np.float64)
        self.probs = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, index, salt])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = self._rng(index)
        scene = self.scenes[int(rng.choice(len(self.scenes), p=self.probs))]
        m, p, f = self.margin, self.patch, self.factor
        h, w = scene.lr20.shape[1:]
        r = int(rng.integers(0, h - p - 2 * m))  # the patch with its context, 20 m pixels
        c = int(rng.integers(0, w - p - 2 * m))
        deg = (self.fixed[index % len(self.fixed)] if self.fixed
               else sample_degradation(rng, self.range))
        k = int(rng.integers(0, 8)) if self.augment else 0
        lr20 = deg.haze(scene.lr20[:, r:r + p + 2 * m, c:c + p + 2 * m])
        hr10 = deg.haze(scene.hr10[:, 2 * r:2 * (r + p + 2 * m) + 1,
                                   2 * c:2 * (c + p + 2 * m) + 1])
        lr_big = apply_degradation(np.ascontiguousarray(lr20), f, deg, self._rng(index, 1))
        guide_big = degrade_guide(hr10, f, deg, scene.offset, self._rng(index, 2))
        q, g = m // f, 2 * m // f  # the context in input and in guide pixels
        lr = lr_big[:, q:q + p // f, q:q + p // f]
        guide = guide_big[:, g:g + 2 * p // f, g:g + 2 * p // f]
        truth = lr20[:, m:m + p, m:m + p]
        return {"lr": torch.from_numpy(_dihedral(lr, k)),
                "guide": torch.from_numpy(_dihedral(guide, k)),
                "hr": torch.from_numpy(_dihedral(np.asarray(truth, np.float32), k)),
                "degradation": deg.label, "source": scene.name}
