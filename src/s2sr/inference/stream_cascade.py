"""The 5 m cascade of ``--bands all`` as one row stream over a column strip (issue 22).

The cascade (:mod:`s2sr.inference.multires_engine`) runs three networks: the x2 guided model
brings the six 20 m bands to 10 m guided by the native 10 m bands (the first pass), the 10 m
model brings the four 10 m bands to 5 m, and the guided model again brings the first pass's
output to 5 m guided by those (the second pass). Here each runs as a row stream
(:class:`~s2sr.inference.stream_guided.GuidedStream`,
:class:`~s2sr.inference.stream.StreamingForward`) and the second pass is fed as its two inputs'
rows arrive: the first pass's 10 m rows wait in a queue for the 10 m model's 5 m rows (twice
as many; the two lag by different amounts), and the 10 m model's rows wait again, cut to the
core, for the second pass's output rows they are written beside.

Rows are streamed from the scene's top to its bottom, so no row is computed twice and no
context is read above or below; only the strip's sides need context, as a tile's do
(:class:`Columns`). Each output pixel sums the same products as the tiled engine's and the
whole scene's forward (equal within float rounding; tests/inference/test_stream_cascade.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s2sr.inference.stream import StreamingForward
from s2sr.inference.stream_guided import GuidedStream
from s2sr.inference.stream_stages import Rebatch, queued_rows, take_rows


@dataclass(frozen=True)
class Columns:
    """Where each network of the cascade runs across a strip, in 20 m columns of the scene.

    Attributes:
        read: ``(a, b)`` the columns read: the first pass runs on all of them.
        hr: the 10 m model's columns (its output is the second pass's guide there).
        second: the second pass's columns (its input: the first pass's output there).
        core: the columns written.
    """

    read: tuple[int, int]
    hr: tuple[int, int]
    second: tuple[int, int]
    core: tuple[int, int]

    @classmethod
    def around(cls, core: tuple[int, int], width: int, halo: int, second: int,
               hr_reach: int) -> Columns:
        """The columns of a strip whose ``core`` is written, in a scene ``width`` 20 m
        columns wide: the second pass on ``second`` columns each side of the core, the 10 m
        model on ``hr_reach`` more, the first pass on ``halo`` (cut at the scene's sides,
        where the convolutions' zero padding is the whole scene's)."""
        c0, c1 = core

        def grow(m: int) -> tuple[int, int]:
            return max(0, c0 - m), min(width, c1 + m)

        return cls(grow(halo), grow(second + hr_reach), grow(second), core)


class CascadeStream:
    """The cascade over one column strip, fed band after band of the strip's rows.

    Args:
        guided: the x2 guided model's stream (both passes).
        hr: the 10 m model's stream (x2).
        cols: the strip's :class:`Columns`.
    """

    def __init__(self, guided: GuidedStream, hr: StreamingForward, cols: Columns) -> None:
        assert guided.model.scale == 2 and hr.scale == 2
        self.guided, self.cols = guided, cols
        (a, b), (ha, hb), (sa, sb), _ = cols.read, cols.hr, cols.second, cols.core
        assert a <= ha <= sa <= cols.core[0] and cols.core[1] <= sb <= hb <= b
        self.first = guided.pipeline(b - a)
        self.hr = hr.pipeline(2 * (hb - ha))
        self.second = guided.pipeline(2 * (sb - sa))
        self.mids: list[torch.Tensor] = []    # first pass rows (10 m) not yet fed on
        self.guides: list[torch.Tensor] = []  # 10 m model rows (5 m) not yet fed on
        self.fours: list[torch.Tensor] = []   # the same rows on the core, not yet emitted
        self.widest = 1  # most rows the second pass took at once before the last band

    @torch.inference_mode()
    def feed(self, lr: torch.Tensor, guide: torch.Tensor, hr_in: torch.Tensor, last: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next rows of the strip in; the next rows of its core at 5 m out.

        Args:
            lr: ``(1, 6, k, b - a)`` the 20 m bands' next ``k`` rows over the read columns
                (reflectance, nodata filled for the guided model).
            guide: ``(1, 4, 2k, 2 (b - a))`` the 10 m bands' rows (the guided model's fill).
            hr_in: ``(1, 4, 2k, 2 (b - a))`` the same rows with the 10 m model's fill.
            last: these are the scene's last rows (every network then flushes its lag).

        Returns:
            The core's six bands and four bands at 5 m, ``(1, 6, m, 4 w)`` and ``(1, 4, m,
            4 w)`` (``w`` the core's columns), the same ``m >= 0`` rows, the next ones of
            the core from the top; the six bands as the second pass gives them.
        """
        if not last or not lr.shape[2]:
            return self._step(lr, guide, hr_in, last)
        # The last band runs as any other, then the networks flush their lags on no new
        # rows, and the second pass takes them in pieces no taller than it took before:
        # flushed with the band, the lags piled up (the 20 m rows of every layer's lag,
        # twice that at 10 m), and the second pass's 5 m tail took three times its usual
        # rows at once (about 420 MB more at the peak of a 1024-column strip).
        six, four = self._step(lr, guide, hr_in, False)
        tail_six, tail_four = self._step(lr[:, :, :0], guide[:, :, :0], hr_in[:, :, :0], True)
        return torch.cat([six, tail_six], 2), torch.cat([four, tail_four], 2)

    def _step(self, lr: torch.Tensor, guide: torch.Tensor, hr_in: torch.Tensor, last: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`feed`'s work on one call of the networks."""
        (a, _), (ha, hb), (sa, sb), (c0, c1) = (self.cols.read, self.cols.hr,
                                                self.cols.second, self.cols.core)
        mids = self.first.feed(self.guided.join(lr, guide), last)
        if mids.shape[2]:  # negative reflectance cut to 0, as it would be written
            self.mids.append(mids[..., 2 * (sa - a):2 * (sb - a)].clamp_min(0))
        up = self.hr.feed(hr_in[..., 2 * (ha - a):2 * (hb - a)], last)
        if up.shape[2]:
            self.guides.append(up[..., 4 * (sa - ha):4 * (sb - ha)])
            self.fours.append(up[..., 4 * (c0 - ha):4 * (c1 - ha)])
        n = min(queued_rows(self.mids), queued_rows(self.guides) // 2)
        if last:
            assert 2 * queued_rows(self.mids) == queued_rows(self.guides), \
                "the first pass and the 10 m model emitted different numbers of rows"
        out: torch.Tensor | None = None
        if n or last:
            x = self.guided.join(take_rows(self.mids, n), take_rows(self.guides, 2 * n)) \
                if n else self._empty()
            if last:
                out = Rebatch(self.second, self.widest).feed(x, last)
            else:
                self.widest = max(self.widest, n)
                out = self.second.feed(x, last)
        if out is None or out.shape[2] == 0:
            w = 4 * (c1 - c0)
            return up.new_empty((1, self.guided.bands, 0, w)), up.new_empty((1, 4, 0, w))
        six = out[..., 4 * (c0 - sa):4 * (c1 - sa)]
        return six, take_rows(self.fours, six.shape[2])

    def _empty(self) -> torch.Tensor:
        """No new source rows for the second pass (its last call, to flush its lag)."""
        sa, sb = self.cols.second
        g = self.guided
        lr = g.model.head.weight.new_zeros((1, g.bands, 0, 2 * (sb - sa)))
        return g.join(lr, lr.new_zeros((1, g.guides, 0, 4 * (sb - sa))))
