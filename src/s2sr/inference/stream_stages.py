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


class Conv:
    """A 3x3, stride-1, zero-padded convolution over row bands: keeps the last two rows of
    its input. Inside the scene each band is convolved with its two carried rows above and
    no row padding; the first and last bands use the convolution's own zero padding (in
    channels-last format, explicit zero rows would change the summation order of the
    border rows: the result would differ from the whole scene's in the last bit).

    The rows the last call read (:attr:`rows`, from scene row :attr:`rows_at`) stay valid
    until the next call: a residual block reads its skip rows there.
    """

    def __init__(self, conv: nn.Module, channels_last: bool = True) -> None:
        assert isinstance(conv, nn.Conv2d)
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = conv.weight
        self.bias = conv.bias
        self.buf: torch.Tensor | None = None  # input rows, reused from call to call
        self.n = 0  # rows of buf in use, from its top
        self.keep = 0  # first row of buf still needed (moved to the top at the next call)
        self.top = True  # no output row emitted yet
        self.base = 0  # scene row of buf's first row
        self.rows = torch.empty(0)
        self.rows_at = 0
        self.expose = False  # keep :attr:`rows` after the last call (a residual reads them)

    def _append(self, x: torch.Tensor) -> torch.Tensor:
        """buf with its needed rows on top and ``x`` below them; returns the rows in use."""
        held = self.n - self.keep
        n = held + x.shape[2]
        buf = self.buf
        if buf is None or buf.shape[2] < n or buf.shape[3] != x.shape[3] \
                or buf.shape[0] != x.shape[0]:
            size = (x.shape[0], x.shape[1], max(n, x.shape[2] + 2), x.shape[3])
            new = torch.empty(size, dtype=x.dtype, device=x.device,
                              memory_format=self.format)
            if held and buf is not None:
                new[:, :, :held] = buf[:, :, self.keep:self.n]
            self.buf = buf = new
        elif held and self.keep:  # overlapping only when few rows: copy through a clone
            buf[:, :, :held] = buf[:, :, self.keep:self.n].clone()
        self.base += self.keep
        buf[:, :, held:n] = x
        self.n, self.keep = n, 0
        return buf[:, :, :n]

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        rows = self._append(x)
        n = self.n
        start, stop = (0 if self.top else 1), (n if last else n - 1)
        if stop <= start:  # too few rows yet: wait for more
            return _no_rows(x, self.weight.shape[0], x.shape[3])
        self.rows, self.rows_at = rows, self.base
        if self.top or last:
            out = F.conv2d(rows, self.weight, self.bias, padding=1)[:, :, start:stop]
        else:
            out = F.conv2d(rows, self.weight, self.bias, padding=(0, 1))
        self.keep = n if last else stop - 1
        self.top = False
        if last:  # the buffer goes now, not with the pipeline (the last call is the longest)
            self.buf = None
            if not self.expose:
                self.rows = torch.empty(0)
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
        if last:
            self.conv1.rows = torch.empty(0)
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
        outs = [self.node.feed(x[:, :, r:r + self.rows], last and r + self.rows >= n)
                for r in range(0, n, self.rows)]
        return torch.cat(outs, dim=2)


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
        b = _bicubic_first_tap(end - 1, s) + 4  # past the last tap needed
        assert last or b <= seen, "the network emitted rows before their bicubic taps"
        a, b = max(0, _bicubic_first_tap(self.done, s)), min(seen, b)
        slab = self.buf[:, :, a - self.base:b - self.base]
        up = F.interpolate(slab, scale_factor=s, mode="bicubic", align_corners=False)
        y.add_(up[:, :, self.done - a * s:end - a * s])
        self.done = end
        keep = max(0, _bicubic_first_tap(end, s))
        self.buf = self.buf[:, :, keep - self.base:]
        self.base = keep
        return y
