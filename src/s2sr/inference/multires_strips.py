"""The 5 m product streamed (issue 22): the scene in column strips, each run from its top to
its bottom through the whole cascade (:class:`~s2sr.inference.stream_cascade.CascadeStream`).

The tiled engine (:class:`~s2sr.inference.multires_engine.BandsSuperResolver` with a
``--tile``) computes each tile's context on all four sides: with cores of 512 20 m pixels the
first pass ran on 1.25x, the 10 m model on 1.16x and the second pass on 1.08x the pixels it
kept. Here only the strips' sides carry context (the same columns as a tile's, so the same
result within float rounding), and the strips are wide: six on a whole 10980^2 tile.

Rows of the strip are read a band at a time in a thread ahead of the networks, decoded with
the tiled engine's fills and masks; the output rows are held until they make whole 20 m
rows, guarded on snow (:func:`~s2sr.inference.domain_guard.guard_tile`, over a slab of the
input rows :func:`~s2sr.inference.domain_guard.guard_reach` around them: the same slab a
tile's context gives it), converted to DN and written in another thread. Memory: the three
streams' carried rows and one band, whatever the scene's height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from rasterio.windows import Window

from s2sr.inference.domain_guard import guard_reach, guard_tile, snow_mask
from s2sr.inference.encoding import DnEncoding, located_at, refilled
from s2sr.inference.engine import Reader, Writer, check_finite, read_ahead
from s2sr.inference.stream import StreamingForward
from s2sr.inference.stream_budget import preferred_rows
from s2sr.inference.stream_cascade import CascadeStream, Columns
from s2sr.inference.stream_guided import GuidedStream
from s2sr.inference.stream_stages import queued_rows, take_rows

#: How a refusal of decoded input names each of the two (its rows and columns count on the
#: grid where both inputs lie, which may start inside the file).
INPUT_20M = "the 20 m input (on the 20 m grid both inputs cover)"
INPUT_10M = "the 10 m input (on the 10 m grid both inputs cover)"


class CascadeEngine(Protocol):
    """What the strips use of the ten-band engine
    (:class:`~s2sr.inference.multires_engine.BandsSuperResolver`)."""

    cascade: bool
    device: torch.device
    guided_stream: GuidedStream | None
    hr_stream: StreamingForward | None
    height: int
    width: int
    scale: int
    halo: int
    second: int
    hr_reach: int
    block: int
    lr_enc: DnEncoding
    hr_enc: DnEncoding
    lr_fill: np.ndarray
    guide_fill: np.ndarray
    hr_fill: np.ndarray | None
    guard_fallback: int

    def _tensor(self, array: np.ndarray) -> torch.Tensor: ...

    def count(self, lr_valid: np.ndarray, hr_valid: np.ndarray, lr_sat: np.ndarray | None,
              hr_sat: np.ndarray | None) -> None: ...

    def dn_bands(self, lr_refl: np.ndarray, hr_refl: np.ndarray | None, lr_valid: np.ndarray,
                 hr_valid: np.ndarray, lr_sat: np.ndarray | None, hr_sat: np.ndarray | None,
                 hr_dn: np.ndarray | None = None) -> np.ndarray: ...

#: Widest strip core in 20 m columns (4096 output columns): a whole 10980^2 tile (5490 20 m
#: columns) runs in 6 strips of 1024 (the last 370), their context each side 2-6 % of the
#: networks' work. Peak RSS on a 10980 x 1024 scene (10 m pixels; the tile's width, where
#: a strip's memory is decided): 1069 MB with cores of up to 1024 (1.67x the 4-band x2
#: predict's time), once the strips' last band stopped flushing the networks' lags at once;
#: before that 1398 MB (10980 x 512) and 2077 MB with cores of 2048 (the three streams'
#: blocks and the reused heap grow with the width). On a 2048^2 scene (one strip of 1024),
#: before that change: 123 s and 1473 MB; two strips of 512: 132 s, 1131 MB; without the
#: heap reused: 156 s, 971 MB (docs/predict.md).
STRIP_CORE = 1024
#: The weights a ten-band run's damaged output names instead (:func:`~s2sr.inference.engine.
#: check_finite`).
SHIPPED_MODELS = "the shipped models, without --weights-20m/--weights"
#: Strip cores are cut to a multiple of this many 20 m columns (512 output columns: the
#: output's blocks are written whole by one strip).
STRIP_STEP = 128


def strip_cores(width: int, widest: int, step: int) -> list[tuple[int, int]]:
    """Column ranges of the strips' cores for a scene ``width`` 20 m columns wide: as few
    as fit ``widest``, of equal width rounded up to a multiple of ``step`` (the last one
    narrower)."""
    n = max(1, math.ceil(width / widest))
    core = min(width, math.ceil(width / n / step) * step)
    return [(c, min(c + core, width)) for c in range(0, width, core)]


@dataclass
class _Band:
    """A band of a strip's rows, read and decoded (in the reading thread)."""

    r0: int
    lr: np.ndarray        # (6, k, b - a) filled reflectance, the read columns
    guide: np.ndarray     # (4, 2k, 2 (b - a)) with the guided model's fill
    hr_in: np.ndarray     # the same with the 10 m model's fill
    lr_valid: np.ndarray  # (k, core) the core's masks
    hr_valid: np.ndarray  # (2k, 2 core)
    lr_sat: np.ndarray | None
    hr_sat: np.ndarray | None
    snow: bool            # a snow pixel anywhere in the band's read columns

    @property
    def stop(self) -> int:
        """The scene row after the band's last."""
        return self.r0 + self.lr.shape[1]


class StripRunner:
    """Runs an engine's cascade over a scene in column strips.

    Args:
        engine: a ten-band engine at 5 m by the cascade, whose guided model and 10 m
            model both stream (its ``guided_stream`` and ``hr_stream``).
        widest: the widest strip core (20 m columns; default :data:`STRIP_CORE`).
        step: strip cores are a multiple of it (default :data:`STRIP_STEP`).
        rows: 20 m rows read and fed at once (default: :meth:`band_rows`).
    """

    def __init__(self, engine: CascadeEngine, widest: int | None = None,
                 step: int | None = None, rows: int | None = None) -> None:
        assert engine.cascade and engine.guided_stream is not None \
            and engine.hr_stream is not None and engine.device.type == "cpu"
        self.engine = engine
        #: the strips' cores (20 m columns), left to right
        self.cores = strip_cores(engine.width, widest or STRIP_CORE, step or STRIP_STEP)
        self.rows = rows
        self.reach = guard_reach(engine.scale)

    def columns(self) -> list[Columns]:
        """Each strip's :class:`Columns`, left to right."""
        e = self.engine
        return [Columns.around(core, e.width, e.halo, e.second, e.hr_reach)
                for core in self.cores]

    def band_rows(self, cols: Columns) -> int:
        """20 m rows read and fed at once: half the 10 m model's preferred band height."""
        if self.rows is not None:
            return self.rows
        ha, hb = cols.hr
        return max(1, preferred_rows(2 * (hb - ha)) // 2)

    def read(self, read_hr: Reader, read_lr: Reader, cols: Columns, r0: int, r1: int
             ) -> _Band:
        """Rows ``r0:r1`` of a strip, decoded as the tiled engine decodes a tile."""
        e = self.engine
        (a, b), (c0, c1) = cols.read, cols.core
        lr_dn = read_lr(Window(a, r0, b - a, r1 - r0))
        hr_dn = read_hr(Window(2 * a, 2 * r0, 2 * (b - a), 2 * (r1 - r0)))
        lr, lr_valid, lr_sat = e.lr_enc.decode(lr_dn, e.lr_fill, located_at(r0, a), INPUT_20M)
        guide, hr_valid, hr_sat = e.hr_enc.decode(hr_dn, e.guide_fill, located_at(2 * r0, 2 * a),
                                                  INPUT_10M)
        assert e.hr_fill is not None
        hr_in = refilled(guide, hr_valid, hr_sat, e.hr_fill)
        x0, x1 = c0 - a, c1 - a
        return _Band(r0, lr, guide, hr_in, lr_valid[:, x0:x1], hr_valid[:, 2 * x0:2 * x1],
                     None if lr_sat is None else lr_sat[:, :, x0:x1],
                     None if hr_sat is None else hr_sat[:, :, 2 * x0:2 * x1],
                     bool(snow_mask(lr, guide).any()))

    def _bands(self, read_hr: Reader, read_lr: Reader, cols: Columns) -> Iterator[_Band]:
        """The strip's bands top to bottom, each read while the one before runs."""
        h, k = self.engine.height, self.band_rows(cols)
        return read_ahead(lambda r: self.read(read_hr, read_lr, cols, r, min(r + k, h)),
                          range(0, h, k))

    def run(self, read_hr: Reader, read_lr: Reader, writer: Writer,
            progress: Callable[[int], object] | None = None) -> None:
        """Every strip's rows into ``writer`` (the engine counts valid and saturated
        pixels and the guard's fallback as its tiles do); ``progress`` gets the 20 m rows
        written."""
        with ThreadPoolExecutor(1) as write_pool:
            for cols in self.columns():
                _Strip(self, cols, write_pool, writer, progress).run(
                    self._bands(read_hr, read_lr, cols))


class _Strip:
    """One strip's pass: the cascade stream, the rows waiting to be written, the input rows
    the guard may still need."""

    def __init__(self, runner: StripRunner, cols: Columns, pool: ThreadPoolExecutor,
                 writer: Writer, progress: Callable[[int], object] | None) -> None:
        e = runner.engine
        assert e.guided_stream is not None and e.hr_stream is not None
        self.runner, self.engine, self.cols = runner, e, cols
        self.pool, self.writer, self.progress = pool, writer, progress
        self.stream = CascadeStream(e.guided_stream, e.hr_stream, cols)
        self.six: list[torch.Tensor] = []   # output rows (5 m) not yet whole 20 m rows
        self.four: list[torch.Tensor] = []
        self.bands: list[_Band] = []        # input bands whose rows may still be needed
        self.done = 0                       # 20 m rows written
        self.read_rows = 0                  # 20 m rows read
        self.write: Future[None] | None = None
        #: output rows per row of the output's blocks, and the rows of the one being filled
        self.block = e.block
        self.held: np.ndarray | None = None

    def run(self, bands: Iterator[_Band]) -> None:
        e = self.engine
        for band in bands:
            self.bands.append(band)
            self.read_rows = band.stop
            last = self.read_rows >= e.height
            six, four = self.stream.feed(e._tensor(band.lr), e._tensor(band.guide),
                                         e._tensor(band.hr_in), last)
            if six.shape[2]:
                self.six.append(six)
                self.four.append(four)
            self._emit(last)
        if self.write is not None:
            self.write.result()
        assert self.done == e.height, "the strip's stream lost rows"

    def _emit(self, last: bool) -> None:
        """Write the whole 20 m rows the guard can be applied to."""
        e, s = self.engine, self.engine.scale
        have = self.done + queued_rows(self.six) // s
        ready = have if last else min(have, self.read_rows - self.runner.reach)
        n = ready - self.done
        if n <= 0:
            return
        six, four = take_rows(self.six, n * s), take_rows(self.four, n * s)
        check_finite(six, four, fix=SHIPPED_MODELS)
        o0, o1 = self.done, ready
        lr_np = six[0].float().cpu().numpy()
        lr_np = self._guard(lr_np, o0, o1)
        masks = self._masks(o0, o1)
        e.count(*masks)
        (c0, c1) = self.cols.core
        window = Window(c0 * s, o0 * s, (c1 - c0) * s, (o1 - o0) * s)
        if self.write is not None:  # one write in flight
            self.write.result()
        self.write = self.pool.submit(self._write, window, lr_np,
                                      four[0].float().cpu().numpy(), masks)
        self.done = o1
        self._drop(o1 - self.runner.reach)
        if self.progress is not None:
            self.progress(n)

    def _write(self, window: Window, lr_refl: np.ndarray, hr_refl: np.ndarray,
               masks: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]
               ) -> None:
        """Convert rows to DN and hold them until they complete a row of the output's
        blocks across the strip, then write that (in the writing thread, in order): GDAL
        writes whole blocks straight to the file and raises when that fails, whereas
        partly written blocks wait, dirty, in its cache (memory, and a failed write at
        close is not raised)."""
        dn = self.engine.dn_bands(lr_refl, hr_refl, *masks)
        r0 = int(window.row_off)
        bh, height = self.block, self.engine.height * self.engine.scale
        while dn.shape[1]:
            top = r0 // bh * bh
            full = min(bh, height - top)
            n = min(dn.shape[1], top + full - r0)
            if self.held is None:
                self.held = np.empty((dn.shape[0], full, dn.shape[2]), dn.dtype)
            self.held[:, r0 - top:r0 - top + n] = dn[:, :n]
            if r0 + n == top + full:
                self.writer(Window(window.col_off, top, window.width, full), self.held)
                self.held = None
            dn, r0 = dn[:, n:], r0 + n

    def _slab(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Input rows ``r0:r1`` (20 m) of the strip's read columns: the 20 m bands and the
        guide."""
        parts = self._overlapping(r0, r1)
        lr = np.concatenate([b.lr for b in parts], axis=1)
        guide = np.concatenate([b.guide for b in parts], axis=1)
        top = parts[0].r0
        return lr[:, r0 - top:r1 - top], guide[:, 2 * (r0 - top):2 * (r1 - top)]

    def _guard(self, out: np.ndarray, o0: int, o1: int) -> np.ndarray:
        """The guard on output 20 m rows ``o0:o1``, over the input rows within its reach
        (none: no snow there, the output unchanged, as the guard leaves it)."""
        e = self.engine
        r0, r1 = max(0, o0 - self.runner.reach), min(e.height, o1 + self.runner.reach)
        if not any(b.snow for b in self._overlapping(r0, r1)):
            return out
        lr, guide = self._slab(r0, r1)
        (a, _), (c0, c1) = self.cols.read, self.cols.core
        guarded, fell = guard_tile(out, lr, guide, e.scale, (o0 - r0, c0 - a, o1 - o0, c1 - c0))
        e.guard_fallback += fell
        return guarded

    def _masks(self, o0: int, o1: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The core's valid and saturated masks of 20 m rows ``o0:o1`` (20 m and 10 m)."""
        parts = self._overlapping(o0, o1)
        top = parts[0].r0

        def cat(arrays: list[np.ndarray], axis: int, f: int) -> np.ndarray:
            whole = np.concatenate(arrays, axis=axis) if len(arrays) > 1 else arrays[0]
            index = [slice(None)] * whole.ndim
            index[axis] = slice(f * (o0 - top), f * (o1 - top))
            return whole[tuple(index)]

        lr_valid = cat([b.lr_valid for b in parts], 0, 1)
        hr_valid = cat([b.hr_valid for b in parts], 0, 2)
        lr_sat = hr_sat = None
        if any(b.lr_sat is not None for b in parts):
            lr_sat = cat([np.zeros((6, *b.lr_valid.shape), bool) if b.lr_sat is None
                          else b.lr_sat for b in parts], 1, 1)
        if any(b.hr_sat is not None for b in parts):
            hr_sat = cat([np.zeros((4, *b.hr_valid.shape), bool) if b.hr_sat is None
                          else b.hr_sat for b in parts], 1, 2)
        return lr_valid, hr_valid, lr_sat, hr_sat

    def _overlapping(self, r0: int, r1: int) -> list[_Band]:
        """The bands held that hold some of the 20 m rows ``r0:r1``, top to bottom."""
        return [b for b in self.bands if b.r0 < r1 and b.stop > r0]

    def _drop(self, keep_from: int) -> None:
        """Forget the bands wholly above row ``keep_from``."""
        while self.bands and self.bands[0].stop <= keep_from:
            self.bands.pop(0)

