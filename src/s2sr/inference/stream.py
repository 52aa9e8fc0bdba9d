"""An exact streaming forward for the EDSR family: row bands, no overlap, no seams.

A 3x3 convolution's output row ``r`` needs its input rows ``r - 1 .. r + 1``: over bands of
rows, each convolution keeps the last two rows of its own input (:class:`_Conv`) and every
output pixel sums the same products as in the whole-scene forward. Residual adds align
their inputs with delay lines (:class:`_Join`), pixel shuffle and pointwise ops stream row
by row, the global residual's bicubic upsampling keeps its own 4-tap halo
(:class:`_Bicubic`). Memory: a few rows per layer plus one band; nothing is recomputed.
Column strips (when the width does not fit) add an exact column halo each side, the
receptive field (:attr:`StreamingForward.halo`): those columns are recomputed, rows never.
Models made of other parts are refused (:func:`stream_refusal`): they keep the tiled engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.models.edsr import EDSR, ResBlock, Upsampler

Rows = np.ndarray | torch.Tensor
#: A scene, or its bands of rows top to bottom.
Source = Rows | Iterable[Rows]


class _Node(Protocol):
    """A stage: the next rows of its input in, its next rows (maybe none) out."""

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor: ...


class _Conv:
    """A 3x3, stride-1, zero-padded convolution over row bands: keeps the last two rows of
    its input. Inside the scene each band is convolved with its two carried rows above and
    no row padding; the first and last bands use the convolution's own zero padding (in
    channels-last format, explicit zero rows would change the summation order of the
    border rows: the result would differ from the whole scene's in the last bit)."""

    def __init__(self, conv: nn.Module) -> None:
        assert isinstance(conv, nn.Conv2d)
        self.weight = conv.weight
        self.bias = conv.bias
        self.held: torch.Tensor | None = None  # input rows not yet consumed
        self.top = True  # no output row emitted yet
        self.base = 0  # scene row of the first held row
        self.buf = torch.empty(0)  # the rows the last call read, from scene row ``buf_row``
        self.buf_row = 0

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        buf = x if self.held is None else torch.cat([self.held, x], dim=2)
        self.buf, self.buf_row = buf, self.base
        n = buf.shape[2]
        start, stop = (0 if self.top else 1), (n if last else n - 1)
        if stop <= start:  # too few rows yet: wait for more
            self.held = buf
            return buf.new_zeros((buf.shape[0], self.weight.shape[0], 0, buf.shape[3]))
        if self.top or last:
            out = F.conv2d(buf, self.weight, self.bias, padding=1)[:, :, start:stop]
        else:
            out = F.conv2d(buf, self.weight, self.bias, padding=(0, 1))
        self.held = None if last else buf[:, :, stop - 1:]
        self.base += stop - 1 if stop else 0
        self.top = False
        return out


class _Residual:
    """An EDSR block ``x + conv2(relu(conv1(x))) * r``: the skip rows are read from conv1's
    joined input (the block lags 2 rows, what conv1 carries): no copy of the band."""

    def __init__(self, conv1: _Conv, rest: _Node, r: float) -> None:
        self.conv1, self.rest, self.r = conv1, rest, r
        self.done = 0  # output rows emitted

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        y = self.rest.feed(self.conv1.feed(x, last), last)
        a = self.done - self.conv1.buf_row
        assert a >= 0 and a + y.shape[2] <= self.conv1.buf.shape[2], "skip rows misaligned"
        self.done += y.shape[2]
        return self.conv1.buf[:, :, a:a + y.shape[2]] + y * self.r


class _Map:
    """A row-local operation: ReLU, eval BatchNorm, (de)normalisation, pixel shuffle."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        return self.fn(x)


class _Seq:
    """Stages one after the other."""

    def __init__(self, nodes: list[_Node]) -> None:
        self.nodes = nodes

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        for node in self.nodes:
            x = node.feed(x, last)
        return x


class _Rebatch:
    """Feeds ``node`` at most ``rows`` rows at a time (the full-resolution stages: their
    activations and im2col buffers are ``scale``^2 times the input's per row)."""

    def __init__(self, node: _Node, rows: int) -> None:
        self.node, self.rows = node, rows

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        n = x.shape[2]
        if n <= self.rows:
            return self.node.feed(x, last)
        outs = [self.node.feed(x[:, :, r:r + self.rows], last and r + self.rows >= n)
                for r in range(0, n, self.rows)]
        return torch.cat(outs, dim=2)


class _Join:
    """Two branches of the same input combined row by row (``combine(left, right)``): the
    rows one branch has produced before the other wait in a delay line."""

    def __init__(self, left: _Node, right: _Node,
                 combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.left, self.right, self.combine = left, right, combine
        self.wait_l: torch.Tensor | None = None  # rows of one branch waiting for the other
        self.wait_r: torch.Tensor | None = None

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        a = self.left.feed(x, last)
        b = self.right.feed(x, last)
        if self.wait_l is not None:
            a = torch.cat([self.wait_l, a], dim=2)
        if self.wait_r is not None:
            b = torch.cat([self.wait_r, b], dim=2)
        n = min(a.shape[2], b.shape[2])
        self.wait_l = a[:, :, n:] if a.shape[2] > n else None
        self.wait_r = b[:, :, n:] if b.shape[2] > n else None
        return self.combine(a[:, :, 0:n], b[:, :, 0:n])


def _bicubic_first_tap(o: int, s: int) -> int:
    """Input row of the first of the 4 taps of output row ``o`` (align_corners=False)."""
    return math.floor((o + 0.5) / s - 0.5) - 1


class _Bicubic:
    """``F.interpolate(x, scale_factor=s, mode="bicubic")`` over row bands: each band's
    output rows are computed from a slab of input rows holding all 4 taps of every row
    (PyTorch clamps taps at the slab's edges, so a slab starts at the scene's top or
    above the first tap needed), with exactly the whole-scene weights (``s`` is a power of
    two: the source coordinates are exact)."""

    def __init__(self, s: int) -> None:
        self.s = s
        self.buf: torch.Tensor | None = None
        self.base = 0  # scene row of buf's first row
        self.done = 0  # output rows emitted

    def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        s = self.s
        self.buf = x if self.buf is None else torch.cat([self.buf, x], dim=2)
        seen = self.base + self.buf.shape[2]
        # output rows whose last tap (first + 3) has arrived; all of them at the end
        end = s * seen if last else max(0, math.ceil(s * (seen - 3 + 1.5) - 0.5))
        end = min(end, s * seen)
        if end <= self.done or seen == 0:
            return x.new_zeros((x.shape[0], x.shape[1], 0, x.shape[3] * s))
        a = max(0, _bicubic_first_tap(self.done, s))
        b = min(seen, _bicubic_first_tap(end - 1, s) + 4)  # past the last tap needed
        slab = self.buf[:, :, a - self.base:b - self.base]
        up = F.interpolate(slab, scale_factor=s, mode="bicubic", align_corners=False)
        out = up[:, :, self.done - a * s:end - a * s]
        self.done = end
        keep = max(0, _bicubic_first_tap(end, s))
        self.buf = self.buf[:, :, keep - self.base:]
        self.base = keep
        return out


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x + y  # the body's skip and the global residual (EDSR's order)


def _conv_refusal(conv: nn.Module, where: str) -> str | None:
    if type(conv) is not nn.Conv2d:
        return f"{where} is a {type(conv).__name__}, not a plain Conv2d"
    if (conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1)
            or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
        return f"{where} is not a 3x3, stride-1, zero-padded convolution"
    return None


def stream_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot stream (``None``: it can).

    Streams: an :class:`~s2sr.models.edsr.EDSR` in eval mode whose forward is EDSR's own,
    made of plain 3x3 convolutions, ReLU, eval-mode BatchNorm and 2x pixel shuffles.
    """
    if not isinstance(model, EDSR) or type(model).forward is not EDSR.forward:
        return f"{type(model).__name__} is not an EDSR-family network"
    if model.training:
        return "the model is in training mode (call model.eval())"
    convs: list[tuple[str, nn.Module]] = [("head", model.head), ("tail", model.tail)]
    body = list(model.body)
    if not body or _conv_refusal(body[-1], "") is not None:
        return "the body does not end with a 3x3 convolution"
    convs.append(("body's last convolution", body[-1]))
    for k, block in enumerate(body[:-1]):
        if type(block) is not ResBlock or len(block.body) != 3 \
                or type(block.body[1]) is not nn.ReLU:
            return f"body block {k} is not an EDSR residual block"
        convs += [(f"block {k}", block.body[0]), (f"block {k}", block.body[2])]
    if type(model.upsample) is not Upsampler:
        return "the upsampler is not EDSR's"
    for layer in model.upsample:
        if isinstance(layer, nn.Conv2d):
            convs.append(("upsampler", layer))
        elif type(layer) is nn.BatchNorm2d:
            if layer.training:
                return "the upsampler's BatchNorm is in training mode"
        elif type(layer) is not nn.PixelShuffle or layer.upscale_factor != 2:
            return f"the upsampler holds a {type(layer).__name__}"
    for where, conv in convs:
        why = _conv_refusal(conv, where)
        if why is not None:
            return why
    return None


#: Output pixels the upsampler and the tail (full-resolution convolutions) work on at once.
HIGH_PIXELS = 2 ** 16


class StreamingForward:
    """The whole-scene forward of an EDSR-family ``model``, computed in row bands.

    Args:
        model: an EDSR in eval mode (see :func:`stream_refusal`), on the device the
            bands are to be computed on.
        channels_last: run the convolutions in channels-last memory format (as the tiled
            engine's :class:`~s2sr.inference.backends.TorchBackend`).
        high_pixels: output pixels the upsampler and tail compute at once (their
            activations are ``scale``^2 times larger per input row than the body's).

    Raises:
        UsageError: the model cannot stream (the tiled engine runs it instead).
    """

    def __init__(self, model: nn.Module, channels_last: bool = True,
                 high_pixels: int = HIGH_PIXELS) -> None:
        why = stream_refusal(model)
        if why is not None:
            raise UsageError(f"this model cannot run as a stream ({why}): use the tiled "
                             "engine for it")
        assert isinstance(model, EDSR)
        self.model = model
        self.scale = model.scale
        self.channels_last = channels_last
        self.high_pixels = high_pixels
        self.bands = model.head.in_channels
        self.feats = model.head.out_channels
        self.n_blocks = len(model.body) - 1
        #: input columns each side of a column strip whose result differs from the whole
        #: scene's (zero padding at the strip's sides spreads 1 pixel per convolution, at
        #: that convolution's resolution): the column halo of :meth:`run`
        self.halo = math.ceil(sum(2.0 ** -k for k in self.conv_levels()))

    def high_rows(self, width: int) -> int:
        """Input rows fed at once to the upsampler and tail (:data:`HIGH_PIXELS`)."""
        return max(1, self.high_pixels // (width * self.scale ** 2))

    def conv_levels(self) -> list[int]:
        """log2 of each convolution's resolution relative to the input, in order."""
        stages = int(math.log2(self.scale))
        return [0] * (2 * self.n_blocks + 3) + list(range(1, stages)) + [stages]

    def _pipeline(self, width: int) -> _Node:
        """Fresh streaming stages for ``width`` columns (each pass over a scene or strip
        needs its own)."""
        m = self.model
        mean, std = m.mean, m.std

        def block(b: nn.Module) -> _Node:
            assert isinstance(b, ResBlock)
            return _Residual(_Conv(b.body[0]), _Seq([_Map(b.body[1]), _Conv(b.body[2])]),
                             b.res_scale)

        blocks: list[_Node] = [block(b) for b in list(m.body)[:-1]]
        body = _Seq([*blocks, _Conv(m.body[-1])])
        up: list[_Node] = [_Conv(layer) if isinstance(layer, nn.Conv2d) else _Map(layer)
                           for layer in m.upsample]
        high = _Rebatch(_Seq([*up, _Conv(m.tail)]), self.high_rows(width))
        net: _Node = _Seq([_Conv(m.head), _Join(_Seq([]), body, _add), high])
        if m.global_residual:
            net = _Join(net, _Bicubic(self.scale), _add)

        def norm(x: torch.Tensor) -> torch.Tensor:
            return (x - mean.to(x.dtype)) / std.to(x.dtype)

        def denorm(y: torch.Tensor) -> torch.Tensor:
            return y * std.to(y.dtype) + mean.to(y.dtype)

        return _Seq([_Map(norm), net, _Map(denorm)])

    def _tensor(self, block: Rows) -> torch.Tensor:
        x = torch.as_tensor(block)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != self.bands:
            raise UsageError(f"a band of rows must be (C, h, w) or (N, C, h, w) with C = "
                             f"{self.bands} bands, got shape {tuple(x.shape)}")
        x = x.to(device=self.model.head.weight.device, dtype=torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def run(self, source: Source, band_rows: int = 64, strip_cols: int | None = None
            ) -> Iterator[torch.Tensor]:
        """Yield the output, top to bottom, in blocks of full-width rows.

        Args:
            source: the scene, ``(C, H, W)`` or ``(N, C, H, W)`` reflectance, or an
                iterable of its bands of rows top to bottom (each ``(C, h, W)`` or
                ``(N, C, h, W)``, any heights).
            band_rows: most input rows fed at once (bands of ``source`` longer than this
                are cut).
            strip_cols: widest column strip (``None``: the full width); each strip
                is computed with :attr:`halo` more columns each side.

        Yields:
            ``(N, C, rows, W * scale)`` float32 on the model's device; the row counts vary
            (the first bands wait for the rows below them) and add up to ``H * scale``.
        """
        if not isinstance(band_rows, int) or band_rows < 1:
            raise UsageError(f"band_rows must be a positive integer, got {band_rows!r}")
        if strip_cols is not None and (not isinstance(strip_cols, int) or strip_cols < 1):
            raise UsageError(f"strip_cols must be a positive integer, got {strip_cols!r}")
        strips: list[tuple[int, int, int, int, _Node]] | None = None
        for x, last in self._bands(source, band_rows):
            if strips is None:
                strips = self._strips(x.shape[3], strip_cols)
            s = self.scale
            outs = [node.feed(x[..., a:b], last)[..., (c0 - a) * s:(c1 - a) * s]
                    for c0, c1, a, b, node in strips]
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=3)
            if out.shape[2]:
                yield out

    def _strips(self, width: int, strip_cols: int | None
                ) -> list[tuple[int, int, int, int, _Node]]:
        """``(c0, c1, a, b, pipeline)`` per strip: core columns ``c0:c1``, computed over
        ``a:b``."""
        step = width if strip_cols is None else strip_cols
        out = []
        for c0 in range(0, width, step):
            c1 = min(c0 + step, width)
            a, b = max(0, c0 - self.halo), min(width, c1 + self.halo)
            out.append((c0, c1, a, b, self._pipeline(b - a)))
        return out

    def _bands(self, source: Source, band_rows: int) -> Iterator[tuple[torch.Tensor, bool]]:
        """``(band, last)`` pairs of at most ``band_rows`` rows each."""
        blocks: Iterable[Rows]
        if isinstance(source, (np.ndarray, torch.Tensor)):  # converted band by band
            h = source.shape[-2] if source.ndim >= 2 else 0
            blocks = [source[..., r:r + band_rows, :] for r in range(0, h, band_rows)] \
                if h else [source]
        else:
            blocks = source
        width: int | None = None
        pending: torch.Tensor | None = None
        for block in blocks:
            x = self._tensor(block)
            if width is not None and x.shape[3] != width:
                raise UsageError(f"every band of rows must be {width} columns wide, got "
                                 f"{x.shape[3]}")
            width = x.shape[3]
            for r in range(0, x.shape[2], band_rows):
                if pending is not None:
                    yield pending, False
                pending = x[:, :, r:r + band_rows]
        if pending is None:
            raise UsageError("the scene has no rows: nothing to super-resolve")
        yield pending, True

    def forward(self, x: Source, band_rows: int = 64,
                strip_cols: int | None = None) -> torch.Tensor:
        """The whole output of :meth:`run` as one ``(N, C, H*s, W*s)`` tensor."""
        return torch.cat(list(self.run(x, band_rows, strip_cols)), dim=2)
