"""The stages of :class:`~s2sr.inference.stream.StreamingForward`: each takes the next rows of
its input and returns its next rows (maybe none), keeping between calls only the rows its
operation needs from earlier calls.

Memory: each convolution copies its input rows into one buffer of its own, reused from
band to band (its 2 carried rows moved to the top at the next call), so a band's tensors
are freed when the band is done and no carried row holds a whole band alive; the residual
adds run in place on the convolution's fresh output; the bicubic global residual computes
its rows when the network's rows arrive, so it waits as input rows (the network's lag)
rather than as full-resolution output rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


class Node(Protocol):
    """A stage: the next rows of its input in, its next rows (maybe none) out."""

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor: ...


def _no_rows(x: torch.Tensor, channels: int, width: int) -> torch.Tensor:
    return x.new_zeros((x.shape[0], channels, 0, width))


def copy_rows(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[...] = src``: one flat copy where both are dense in channels-last order
    (PyTorch's copy between channels-last views of one batch ran at about half that speed
    here), else PyTorch's."""
    d, s = dst.permute(0, 2, 3, 1), src.permute(0, 2, 3, 1)
    if d.is_contiguous() and s.is_contiguous():
        d.view(-1).copy_(s.view(-1))
    else:
        dst.copy_(src)


class Scratch:
    """Two input buffers shared by all the convolutions of a pipeline (and its strips):
    convolution ``i`` joins its carried rows and its new rows in slot ``i % 2``, so a
    residual block's skip rows (its first convolution's input) survive its second
    convolution. Reused band after band: no band-sized allocation per convolution."""

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        self.flat: list[torch.Tensor | None] = [None, None]

    def rows(self, slot: int, like: torch.Tensor, n: int) -> torch.Tensor:
        """A ``(N, C, n, W)`` buffer of ``like``'s batch, channels and width in ``slot``."""
        b, c, _, w = like.shape
        size = b * c * n * w
        flat = self.flat[slot]
        if flat is None or flat.numel() < size or flat.dtype != like.dtype \
                or flat.device != like.device:
            flat = torch.empty(max(size, 1), dtype=like.dtype, device=like.device)
            self.flat[slot] = flat
        if self.channels_last:
            return flat[:size].view(b, n, w, c).permute(0, 3, 1, 2)
        return flat[:size].view(b, c, n, w)

    def free(self) -> None:
        """Drop the buffers (after the last band)."""
        self.flat = [None, None]


class Conv:
    """A 3x3, stride-1, zero-padded convolution over row bands: keeps the last two rows of
    its input. Inside the scene each band is convolved with its two carried rows above and
    no row padding; the first and last bands use the convolution's own zero padding (in
    channels-last format, explicit zero rows would change the summation order of the
    border rows: the result would differ from the whole scene's in the last bit).

    The carried rows (at most 2) wait in a small tensor of their own; the joined rows are
    built in the pipeline's :class:`Scratch` (slot ``slot``). The rows the last call read
    (:attr:`rows`, from scene row :attr:`rows_at`) stay valid until a convolution of the
    same slot runs: a residual block reads its skip rows there.
    """

    def __init__(self, conv: nn.Module, scratch: Scratch, slot: int) -> None:
        assert isinstance(conv, nn.Conv2d)
        self.weight = conv.weight
        self.bias = conv.bias
        self.scratch, self.slot = scratch, slot
        self.carry: torch.Tensor | None = None  # persistent room for the carried rows
        self.held = 0  # rows of carry in use
        self.top = True  # no output row emitted yet
        self.base = 0  # scene row of the first carried row
        self.rows = torch.empty(0)
        self.rows_at = 0
        self.expose = False  # keep :attr:`rows` (for a residual block, which then drops them)

    def _join(self, x: torch.Tensor) -> torch.Tensor:
        """The carried rows and ``x`` below them, in the scratch buffer."""
        held = self.held
        rows = self.scratch.rows(self.slot, x, held + x.shape[2])
        if held:
            assert self.carry is not None
            copy_rows(rows[:, :, :held], self.carry[:, :, :held])
        copy_rows(rows[:, :, held:], x)
        return rows

    def _keep(self, rows: torch.Tensor, keep: int) -> None:
        """Carry ``rows[keep:]`` (at most 2 rows) to the next call."""
        h = rows.shape[2] - keep
        assert h <= 2, "a convolution carries at most 2 rows"
        c = self.carry
        if c is None or c.shape[0] != rows.shape[0] or c.shape[1] != rows.shape[1] \
                or c.shape[3] != rows.shape[3]:
            fmt = torch.channels_last if self.scratch.channels_last \
                else torch.contiguous_format
            c = self.carry = torch.empty((rows.shape[0], rows.shape[1], 2, rows.shape[3]),
                                         dtype=rows.dtype, device=rows.device,
                                         memory_format=fmt)
        if h:
            copy_rows(c[:, :, :h], rows[:, :, keep:])
        self.held = h
        self.base += keep

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        rows = self._join(x)
        n = rows.shape[2]
        start, stop = (0 if self.top else 1), (n if last else n - 1)
        if stop <= start:  # too few rows yet: wait for more
            self._keep(rows, 0)
            return _no_rows(x, self.weight.shape[0], x.shape[3])
        if self.expose:
            self.rows, self.rows_at = rows, self.base
        if self.top or last:
            out = F.conv2d(rows, self.weight, self.bias, padding=1)[:, :, start:stop]
        else:
            out = F.conv2d(rows, self.weight, self.bias, padding=(0, 1))
        self.top = False
        if last:
            self.carry, self.held = None, 0
        else:
            self._keep(rows, stop - 1)
        return out


class Residual:
    """An EDSR block ``x + conv2(relu(conv1(x))) * r``: the skip rows are read from conv1's
    input rows (the block lags 2 rows, what conv1 carries), the add runs in place on
    conv2's output (the same operations in the same order as EDSR's: the same bits)."""

    def __init__(self, conv1: Conv, rest: Node, r: float) -> None:
        self.conv1, self.rest, self.r = conv1, rest, r
        conv1.expose = True
        self.done = 0  # output rows emitted

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        y = self.rest.feed(self.conv1.feed(x, last), last)
        a = self.done - self.conv1.rows_at
        m = y.shape[2]
        if m == 0:
            return y
        assert a >= 0 and a + m <= self.conv1.rows.shape[2], "skip rows misaligned"
        self.done += m
        y.mul_(self.r).add_(self.conv1.rows[:, :, a:a + m])
        self.conv1.rows = torch.empty(0)  # no old scratch buffer pinned (they grow at the end)
        return y


class Map:
    """A row-local operation: ReLU, eval BatchNorm, (de)normalisation, pixel shuffle."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        return self.fn(x)


class Seq:
    """Stages one after the other."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        for node in self.nodes:
            x = node.feed(x, last)
        return x


class Rebatch:
    """Feeds ``node`` at most ``rows`` rows at a time (the full-resolution stages: their
    activations are ``scale``^2 times the input's per row)."""

    def __init__(self, node: Node, rows: int) -> None:
        self.node, self.rows = node, rows

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        n = x.shape[2]
        if n <= self.rows:
            return self.node.feed(x, last)
        out: torch.Tensor | None = None  # the pieces copied in as they come (no cat)
        done = 0
        for r in range(0, n, self.rows):
            y = self.node.feed(x[:, :, r:r + self.rows], last and r + self.rows >= n)
            if out is None:  # at most scale x (rows fed + the 2 held) rows come out
                bound = y.shape[2] * -(-(n + 2) // min(n, self.rows))
                out = y.new_empty((y.shape[0], y.shape[1], bound, y.shape[3]))
            if done + y.shape[2] > out.shape[2]:
                out = torch.cat([out[:, :, :done], y], dim=2)
            else:
                out[:, :, done:done + y.shape[2]] = y
            done += y.shape[2]
        assert out is not None
        return out[:, :, :done]


class SkipAdd:
    """``x + body(x)`` row by row: ``x``'s rows wait in a queue for the body's (which lag
    them), then are added in place to the body's fresh output."""

    def __init__(self, body: Node) -> None:
        self.body = body
        self.queue: list[torch.Tensor] = []  # x's rows not yet added, in pieces

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        if x.shape[2]:
            self.queue.append(x)
        y = self.body.feed(x, last)
        need, parts = y.shape[2], list[torch.Tensor]()
        while need > 0:
            head = self.queue[0]
            parts.append(head[:, :, :need])
            if head.shape[2] <= need:
                self.queue.pop(0)
            else:
                self.queue[0] = head[:, :, need:]
            need -= parts[-1].shape[2]
        if not parts:
            return y
        skip = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return y.add_(skip)  # addition commutes: the same bits as skip + y


def _bicubic_first_tap(o: int, s: int) -> int:
    """Input row of the first of the 4 taps of output row ``o`` (align_corners=False)."""
    return math.floor((o + 0.5) / s - 0.5) - 1


class BicubicResidual:
    """``net(x) + F.interpolate(x, scale_factor=s, mode="bicubic")`` over row bands: for
    each band of the network's output rows, the same rows of the bicubic upsampling are
    computed from a slab of input rows holding all 4 taps of every row (PyTorch clamps
    taps at the slab's edges, so a slab starts at the scene's top or at the first tap
    needed), with exactly the whole-scene weights (``s`` is a power of two: the source
    coordinates are exact). The input rows wait, not the upsampled ones."""

    def __init__(self, net: Node, s: int) -> None:
        self.net, self.s = net, s
        self.buf: torch.Tensor | None = None
        self.base = 0  # scene row of buf's first row
        self.done = 0  # output rows emitted
        self.final = False

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        y = self.net.feed(x, last)
        self.buf = x if self.buf is None else torch.cat([self.buf, x], dim=2)
        m, s = y.shape[2], self.s
        if m == 0:
            return y
        seen, end = self.base + self.buf.shape[2], self.done + m
        assert last or _bicubic_first_tap(end - 1, s) + 4 <= seen, \
            "the network emitted rows before their bicubic taps"
        for o0 in range(self.done, end, 8 * s):  # a few rows at a time: small temporaries
            o1 = min(o0 + 8 * s, end)
            a = max(0, _bicubic_first_tap(o0, s))
            b = min(seen, _bicubic_first_tap(o1 - 1, s) + 4)
            slab = self.buf[:, :, a - self.base:b - self.base]
            up = F.interpolate(slab, scale_factor=s, mode="bicubic", align_corners=False)
            y[:, :, o0 - self.done:o1 - self.done].add_(up[:, :, o0 - a * s:o1 - a * s])
        self.done = end
        keep = max(0, _bicubic_first_tap(end, s))
        self.buf = self.buf[:, :, keep - self.base:]
        self.base = keep
        return y


def take_rows(queue: list[torch.Tensor], n: int) -> torch.Tensor:
    """The first ``n`` rows of a queue of row pieces (``(N, C, rows, W)``, top to bottom),
    removed from it (``0 < n <=`` the rows queued)."""
    parts: list[torch.Tensor] = []
    while n > 0:
        head = queue[0]
        parts.append(head[:, :, :n])
        if head.shape[2] <= n:
            queue.pop(0)
        else:
            queue[0] = head[:, :, n:]
        n -= parts[-1].shape[2]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def queued_rows(queue: list[torch.Tensor]) -> int:
    """Rows waiting in a queue of row pieces."""
    return sum(q.shape[2] for q in queue)


class Zip:
    """Several branches on the same rows, their outputs combined row by row: each branch's
    rows wait in a queue until every branch has emitted them (the branches lag by
    different amounts), then ``combine`` gets the same rows of each, in branch order."""

    def __init__(self, branches: list[Node],
                 combine: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
        self.branches, self.combine = branches, combine
        self.queues: list[list[torch.Tensor]] = [[] for _ in branches]

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        outs = [branch.feed(x, last) for branch in self.branches]
        for queue, y in zip(self.queues, outs, strict=True):
            if y.shape[2]:
                queue.append(y)
        n = min(queued_rows(queue) for queue in self.queues)
        assert not last or all(queued_rows(queue) == n for queue in self.queues), \
            "the branches emitted different numbers of rows"
        if n == 0:
            return self.combine([y[:, :, :0] for y in outs])
        return self.combine([take_rows(queue, n) for queue in self.queues])


class Upsample:
    """``F.interpolate(x, scale_factor=s, mode=mode, align_corners=False)`` over row bands
    (``mode`` "bicubic", 4 taps, or "bilinear", 2): each output row is computed once its
    taps have arrived, from a slab of input rows that starts at the scene's top or at the
    first tap needed (as :class:`BicubicResidual`: with ``s`` a power of two the slab's
    coordinates are exact, so the same weights and the same bits as the whole scene's)."""

    def __init__(self, s: int, mode: str) -> None:
        assert mode in ("bicubic", "bilinear")
        self.s, self.mode = s, mode
        self.taps, self.offset = (4, -1) if mode == "bicubic" else (2, 0)
        self.buf: torch.Tensor | None = None
        self.base = 0  # scene row of buf's first row
        self.done = 0  # output rows emitted

    def _first(self, o: int) -> int:
        """Input row of output row ``o``'s first tap."""
        return math.floor((o + 0.5) / self.s - 0.5) + self.offset

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        self.buf = x if self.buf is None else torch.cat([self.buf, x], dim=2)
        s, seen = self.s, self.base + self.buf.shape[2]
        end = self.done
        if last:
            end = seen * s
        else:
            while self._first(end) + self.taps <= seen:
                end += 1
        parts = []
        for o0 in range(self.done, end, 8 * s):  # a few rows at a time: small temporaries
            o1 = min(o0 + 8 * s, end)
            a = max(0, self._first(o0))
            b = min(seen, self._first(o1 - 1) + self.taps)
            slab = self.buf[:, :, a - self.base:b - self.base]
            up = F.interpolate(slab, scale_factor=s, mode=self.mode, align_corners=False)
            parts.append(up[:, :, o0 - a * s:o1 - a * s])
        self.done = end
        keep = min(seen, max(0, self._first(end)))
        self.buf = self.buf[:, :, keep - self.base:]
        self.base = keep
        if not parts:
            return _no_rows(x, x.shape[1], x.shape[3] * s)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
