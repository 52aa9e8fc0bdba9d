"""Cutting one scene's Wald patches strip by strip (``s2sr pairs degrade``).

:func:`strip_cuts` reads a scene in strips of patch rows (plus a margin for the blur),
degrades each strip ``fi`` times for the input and ``ft`` times for the target with the
documented blur and block mean (:func:`s2sr.data.degrade.degrade`) and yields each patch.
The coarse grids are anchored at the first patch origin's residue (origins are whole input
pixels apart), so the same code cuts a 10 m scene and, on the same ground, its 20 m bands
(:mod:`s2sr.data.wald20`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from affine import Affine
from rasterio.windows import Window

from s2sr.core.dn import to_reflectance
from s2sr.data.degrade import block_mean, degradation_sigma, degrade
from s2sr.data.masks import band_cloud_mask, dilate
from s2sr.io.base import Scene
from s2sr.io.nodata import valid_mask

log = logging.getLogger(__name__)

#: The agreement statistics of a Wald patch: one scene agrees with itself by construction.
AGREEMENT = {"corr": 1.0, "ssim": 1.0, "shift": 0.0, "residual": 0.0}


@dataclass(frozen=True)
class StripPlan:
    """Where one scene's Wald patches are, in its own pixels.

    Attributes:
        fi: input pixel / scene pixel. ft: target pixel / scene pixel (1: the scene).
        patch: input patch side (pixels).
        rows: patch origins' rows (scene pixels), all ``fi``-multiples apart.
        cols: patch origins' columns, likewise.
        mtf: Nyquist MTF of the simulated coarse sensor.
        gain: reflectance per DN overriding the scene's, or ``None``.
        pick: positions of the scene's bands to keep, in order (``None``: all).
    """

    fi: int
    ft: int
    patch: int
    rows: Sequence[int]
    cols: Sequence[int]
    mtf: float
    gain: float | None = None
    pick: tuple[int, ...] | None = None

    @property
    def anchor(self) -> tuple[int, int]:
        """(row, col) of the scene pixel where the coarse grids start."""
        return self.rows[0] % self.fi, self.cols[0] % self.fi

    @property
    def margin(self) -> int:
        """Rows read around a strip for the blur (a multiple of ``fi``)."""
        sigma = degradation_sigma(self.fi, self.mtf)
        return self.fi * math.ceil(3 * sigma / self.fi + 1)

    def input_grid(self, transform: Affine) -> Affine:
        """The input grid's transform, pixel (0, 0) at :attr:`anchor`."""
        r, c = self.anchor
        return transform * Affine.translation(c, r) * Affine.scale(self.fi)

    def target_grid(self, transform: Affine) -> Affine:
        """The target grid's transform, pixel (0, 0) at :attr:`anchor`."""
        r, c = self.anchor
        return transform * Affine.translation(c, r) * Affine.scale(self.ft)


class StripCut(NamedTuple):
    """One patch of a scene: its origin on the input grid (from the anchor), input
    ``(C, p, p)`` and target ``(C, p * fi / ft, ...)`` reflectance, valid input pixels
    ``(p, p)`` and, with a cloud test, cloudy ones (else ``None``)."""

    origin: tuple[int, int]
    lr: np.ndarray
    hr: np.ndarray
    valid: np.ndarray
    cloud: np.ndarray | None


def strip_cuts(scene: Scene, plan: StripPlan, cloud_bands: Sequence[str] | None = None,
               cloud_buffer: int = 2) -> Iterator[StripCut]:
    """The scene's patches, row by row of ``plan``: missing pixels (nodata, non-finite)
    are 0 and invalid; ``cloud_bands`` (the scene's bands) runs the brightness cloud
    test on the input."""
    meta = scene.meta
    p, ft, fi = plan.patch, plan.ft, plan.fi
    span, margin = p * fi, plan.margin
    a_r, a_c = plan.anchor
    pick = list(plan.pick) if plan.pick is not None else list(range(len(meta.bands)))
    gains = [meta.gains[i] for i in pick] if plan.gain is None else [plan.gain] * len(pick)
    offsets = [meta.offsets[i] for i in pick] if plan.gain is None else [0.0] * len(pick)
    width = meta.width - a_c  # full width: the blur sees real neighbours
    scale = fi // ft
    for r in plan.rows:
        top = r - margin if r >= margin else a_r
        bottom = min(r + span + margin, meta.height)
        dn = scene.read(Window(a_c, top, width, bottom - top))
        dn = dn if plan.pick is None else dn[pick]
        refl = to_reflectance(dn, gains, offsets)
        valid = valid_mask(dn, meta.nodata) & np.isfinite(refl).all(axis=0)
        refl = np.where(valid[None], refl, np.float32(0))
        target = degrade(refl, ft, plan.mtf) if ft > 1 else refl
        source = degrade(refl, fi, plan.mtf)
        vin = block_mean(valid[None].astype(np.float32), fi)[0] > 0.999
        cloud = None if cloud_bands is None else \
            dilate(band_cloud_mask(source, cloud_bands), cloud_buffer)
        ti, si = (r - top) // ft, (r - top) // fi
        for c in plan.cols:
            ci, cs = (c - a_c) // fi, (c - a_c) // ft
            yield StripCut(((r - a_r) // fi, ci), source[:, si:si + p, ci:ci + p],
                           target[:, ti:ti + p * scale, cs:cs + p * scale],
                           vin[si:si + p, ci:ci + p],
                           None if cloud is None else cloud[si:si + p, ci:ci + p])
