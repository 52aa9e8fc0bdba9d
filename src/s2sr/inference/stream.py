"""An exact streaming forward for the EDSR family: row bands, no overlap, no seams.

A 3x3 convolution's output row ``r`` needs its input rows ``r - 1 .. r + 1``: over bands of
rows, each convolution keeps the last two rows of its own input
(:class:`~s2sr.inference.stream_stages.Conv`) and every output pixel sums the same products
as in the whole-scene forward. Residual adds align their inputs (the skip rows wait for the
body's), pixel shuffle and pointwise ops stream row by row, the global residual's bicubic
upsampling keeps its own 4-tap halo (:mod:`s2sr.inference.stream_stages`). Memory: a few
rows per layer plus one band; nothing is recomputed.
Column strips (when the width does not fit) add an exact column halo each side, the
receptive field (:attr:`StreamingForward.halo`): those columns are recomputed, rows never.
Models made of other parts are refused (:func:`stream_refusal`): they keep the tiled engine.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.inference.stream_stages import (
    BicubicResidual,
    Conv,
    Map,
    Node,
    Rebatch,
    Residual,
    Scratch,
    Seq,
    SkipAdd,
)
from s2sr.models.edsr import EDSR, ResBlock, Upsampler

Rows = np.ndarray | torch.Tensor
#: A scene, or its bands of rows top to bottom.
Source = Rows | Iterable[Rows]


def conv_refusal(conv: nn.Module, where: str) -> str | None:
    """Why ``conv`` cannot stream (``None``: it is a plain 3x3, stride-1, zero-padded one)."""
    if type(conv) is not nn.Conv2d:
        return f"{where} is a {type(conv).__name__}, not a plain Conv2d"
    if (conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1)
            or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
        return f"{where} is not a 3x3, stride-1, zero-padded convolution"
    return None


def body_convs(body: list[nn.Module]) -> list[tuple[str, nn.Module]] | str:
    """The convolutions of an EDSR body (residual blocks, then a convolution), named for
    :func:`conv_refusal`; or why it is not such a body."""
    if not body:
        return "the body is empty"
    convs: list[tuple[str, nn.Module]] = [("body's last convolution", body[-1])]
    for k, block in enumerate(body[:-1]):
        if type(block) is not ResBlock or len(block.body) != 3 \
                or type(block.body[1]) is not nn.ReLU:
            return f"body block {k} is not an EDSR residual block"
        convs += [(f"block {k}", block.body[0]), (f"block {k}", block.body[2])]
    return convs


def stream_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot stream (``None``: it can).

    Streams: an :class:`~s2sr.models.edsr.EDSR` in eval mode whose forward is EDSR's own,
    made of plain 3x3 convolutions, ReLU, eval-mode BatchNorm and 2x pixel shuffles.
    """
    if not isinstance(model, EDSR) or type(model).forward is not EDSR.forward:
        return f"{type(model).__name__} is not an EDSR-family network"
    if model.training:
        return "the model is in training mode (call model.eval())"
    body = body_convs(list(model.body))
    if isinstance(body, str):
        return body
    convs: list[tuple[str, nn.Module]] = [("head", model.head), ("tail", model.tail), *body]
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
    return convs_refusal(convs)


def convs_refusal(convs: list[tuple[str, nn.Module]]) -> str | None:
    """The first named convolution's :func:`conv_refusal` (``None``: all can stream)."""
    for where, conv in convs:
        why = conv_refusal(conv, where)
        if why is not None:
            return why
    return None


class StageMaker:
    """Stages of one pipeline over a shared :class:`~s2sr.inference.stream_stages.Scratch`:
    convolution ``i`` (in the order made) joins its rows in slot ``i % 2``, so that a
    residual block's skip rows (its first convolution's input) survive its second."""

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self.made = 0

    def conv(self, layer: nn.Module) -> Conv:
        conv = Conv(layer, self.scratch, self.made % 2)
        self.made += 1
        return conv

    def block(self, b: nn.Module) -> Node:
        assert isinstance(b, ResBlock)
        first = self.conv(b.body[0])
        return Residual(first, Seq([Map(b.body[1]), self.conv(b.body[2])]), b.res_scale)

    def body(self, body: nn.Sequential) -> Node:
        """An EDSR body: its residual blocks, then its last convolution."""
        layers = list(body)
        return Seq([*[self.block(b) for b in layers[:-1]], self.conv(layers[-1])])


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

    def pipeline(self, width: int, scratch: Scratch | None = None) -> Node:
        """Fresh streaming stages for ``width`` columns (each pass over a scene or strip
        needs its own; the strips of one pass share their ``scratch`` buffers)."""
        m = self.model
        make = StageMaker(scratch or Scratch(self.channels_last))
        conv = make.conv
        head = conv(m.head)
        body = make.body(m.body)
        up: list[Node] = [conv(layer) if isinstance(layer, nn.Conv2d) else Map(layer)
                          for layer in m.upsample]
        high = Rebatch(Seq([*up, conv(m.tail)]), self.high_rows(width))
        net: Node = Seq([head, SkipAdd(body), high])
        if m.global_residual:
            net = BicubicResidual(net, self.scale)
        mean, std = m.mean, m.std

        def norm(x: torch.Tensor) -> torch.Tensor:
            return (x - mean.to(x.dtype)) / std.to(x.dtype)

        def denorm(y: torch.Tensor) -> torch.Tensor:  # y is the network's own: in place
            return y.mul_(std.to(y.dtype)).add_(mean.to(y.dtype))

        return Seq([Map(norm), net, Map(denorm)])

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
            strip_cols: widest column strip (``None``: the full width), at least
                :attr:`halo` columns; each strip is computed with :attr:`halo` more columns
                each side (a last strip narrower than the halo joins the one before).

        Yields:
            ``(N, C, rows, W * scale)`` float32 on the model's device, at most
            ``scale * band_rows`` rows each; the row counts vary (the first bands wait for
            the rows below them) and add up to ``H * scale``.
        """
        if not isinstance(band_rows, int) or band_rows < 1:
            raise UsageError(f"band_rows must be a positive integer, got {band_rows!r}")
        if strip_cols is not None and (not isinstance(strip_cols, int)
                                       or strip_cols < self.halo):
            raise UsageError(f"strip_cols must be an integer of at least the column halo "
                             f"({self.halo} columns for this model), got {strip_cols!r}: "
                             "narrower strips would recompute more than they keep")
        strips: list[tuple[int, int, int, int, Node]] | None = None
        scratch = Scratch(self.channels_last)
        for x, last in self._bands(source, band_rows):
            if strips is None:
                strips = self._strips(x.shape[3], strip_cols, scratch)
            s = self.scale
            outs = [node.feed(x[..., a:b], last)[..., (c0 - a) * s:(c1 - a) * s]
                    for c0, c1, a, b, node in strips]
            out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=3)
            if last:
                scratch.free()
            step = self.scale * band_rows  # the last band's flush (the lag) in band-sized
            for r in range(0, out.shape[2], step):  # blocks: the consumer's copies stay small
                yield out[:, :, r:r + step]

    def _strips(self, width: int, strip_cols: int | None, scratch: Scratch
                ) -> list[tuple[int, int, int, int, Node]]:
        """``(c0, c1, a, b, pipeline)`` per strip: core columns ``c0:c1``, computed over
        ``a:b``; a last strip narrower than the halo joins the one before."""
        step = width if strip_cols is None else strip_cols
        cuts = [*range(0, width, step), width]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] < self.halo:
            del cuts[-2]
        out = []
        for c0, c1 in itertools.pairwise(cuts):
            a, b = max(0, c0 - self.halo), min(width, c1 + self.halo)
            out.append((c0, c1, a, b, self.pipeline(b - a, scratch)))
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
        """The whole output of :meth:`run` as one ``(N, C, H*s, W*s)`` tensor (for a
        scene given whole, its rows copied in as they come: no list of them, no cat)."""
        if not isinstance(x, (np.ndarray, torch.Tensor)) or x.ndim < 2:
            return torch.cat(list(self.run(x, band_rows, strip_cols)), dim=2)
        out: torch.Tensor | None = None
        done = 0
        for y in self.run(x, band_rows, strip_cols):
            if out is None:
                out = y.new_empty((y.shape[0], y.shape[1], x.shape[-2] * self.scale,
                                   y.shape[3]))
            out[:, :, done:done + y.shape[2]] = y
            done += y.shape[2]
        assert out is not None and done == out.shape[2], "the stream lost rows"
        return out
