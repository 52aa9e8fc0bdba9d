"""``--consistency`` over a streamed output: the whole-scene back-projection, band by band.

The tiled engine back-projects each tile onto its own input (mirrored at the tile's
edges) and blends the tiles, an approximation of back-projecting the whole output onto
the whole input. A stream has the whole width of every row: each band of output rows is
back-projected on a slab of rows reaching :attr:`BandBackProjection.halo` input rows
beyond it (what three iterations of the Gaussian degradation and the bicubic upsampling
of :func:`~s2sr.data.degrade_torch.back_project` see), mirrored only at the scene's (or the
slab's) top and bottom as the whole-scene back-projection is. Every kept row is therefore
that of :func:`back_project` applied to the whole scene (to float rounding); the halo
rows are recomputed, a few per band of :attr:`BandBackProjection.chunk_rows` rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from s2sr.data.degrade import degradation_sigma, kernel_radius
from s2sr.data.degrade_torch import back_project

#: The sensor MTF :func:`back_project` degrades with by default (the tiled engine's).
BACK_PROJECTION_MTF = 0.3
#: Output bytes back-projected at once (the slab and its intermediates take ~8x that).
CHUNK_BYTES = 16 << 20


def back_projection_halo(scale: int, iterations: int, mtf: float = BACK_PROJECTION_MTF
                         ) -> int:
    """Input rows beyond which a row's back-projection does not reach: per iteration the
    Gaussian's radius in input rows, the block mean's row and the bicubic's 2 taps."""
    radius = kernel_radius(degradation_sigma(scale, mtf))
    return iterations * (math.ceil(radius / scale) + 3)


class BandBackProjection:
    """Back-projects output rows onto the input rows, band by band, as the whole scene.

    Args:
        scale: the model's scale. iterations: back-projection iterations (the tiled
            engine's ``consistency``). width: input columns.
        chunk_bytes: output bytes back-projected at once (at least :attr:`halo` rows).
    """

    def __init__(self, scale: int, iterations: int, width: int,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.scale, self.iterations = scale, iterations
        self.halo = back_projection_halo(scale, iterations)
        per_row = 4 * 4 * width * scale * scale  # 4 bands of float32 output per input row
        self.chunk_rows = max(self.halo, chunk_bytes // per_row)
        self.lr: list[np.ndarray] = []  # input rows (C, h, W) from row ``lr_base``
        self.lr_base = 0
        self.sr: list[torch.Tensor] = []  # output rows (C, h * s, W * s) from ``sr_base``
        self.sr_base = 0
        self.seen = 0  # input rows whose output rows have arrived
        self.done = 0  # input rows whose back-projected rows were returned

    def add_input(self, refl: np.ndarray) -> None:
        """The next input rows ``(C, h, W)`` (reflectance, nodata filled, as the network
        saw them)."""
        self.lr.append(refl)

    def feed(self, sr: torch.Tensor, last: bool) -> torch.Tensor:
        """The output rows of the next ``sr.shape[1] / scale`` input rows ``(C, h * s,
        W * s)`` in; the back-projected rows that are final out (maybe none; all the
        rest when ``last``)."""
        s = self.scale
        self.sr.append(sr)
        self.seen += sr.shape[1] // s
        stop = self.seen if last else self.seen - self.halo
        if stop - self.done < (1 if last else self.chunk_rows):
            return sr[:, :0]
        a = max(0, self.done - self.halo)
        out_rows = torch.cat(self.sr, dim=1) if len(self.sr) > 1 else self.sr[0]
        lr_rows = np.concatenate(self.lr, axis=1) if len(self.lr) > 1 else self.lr[0]
        self.sr, self.lr = [out_rows], [lr_rows]
        slab = out_rows[:, (a - self.sr_base) * s:(self.seen - self.sr_base) * s]
        lr = torch.from_numpy(np.ascontiguousarray(
            lr_rows[:, a - self.lr_base:self.seen - self.lr_base])).to(slab.device)
        fixed = back_project(slab[None].float(), lr[None], s, self.iterations,
                             BACK_PROJECTION_MTF)[0]
        out = fixed[:, (self.done - a) * s:(stop - a) * s]
        self.done = stop
        keep = max(0, stop - self.halo)  # rows the next slab starts from
        self.sr = [out_rows[:, (keep - self.sr_base) * s:]]
        self.lr = [lr_rows[:, keep - self.lr_base:]]
        self.sr_base = self.lr_base = keep
        return out
