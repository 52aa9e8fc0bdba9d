"""An exact streaming forward for the guided network of the 20 m bands
(:class:`~s2sr.models.guided.GuidedEDSR`): row bands of the coarse grid, no overlap.

The stream's source is one array on the coarse grid: the coarse bands and the guide folded
onto that grid by pixel-unshuffle (what the network's head takes). From there, as
:class:`~s2sr.inference.stream.StreamingForward` does for EDSR, each 3x3 convolution keeps
its last two input rows (:class:`~s2sr.inference.stream_stages.Conv`), the body's skip waits
for the body's rows, and the output grid's parts (the upsampled features with the guide
beside them into the tail, the bicubic of the coarse bands, the injected high-pass of the
guide with its bilinearly upsampled coefficients) are computed as their input rows arrive and
joined row by row (:class:`~s2sr.inference.stream_stages.Zip`). Every output pixel sums the
same products as the whole input's forward; blocks are a band's size, so they come from the
heap and are reused (a tile's forward allocated 50-100 MB feature maps per convolution).

Streams a guided model in eval mode whose output and guide grids are the same (``scale ==
guide_scale``: the shipped x2 model); others run as one forward (:func:`guided_refusal`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.inference.stream import StageMaker, body_convs, convs_refusal
from s2sr.inference.stream_stages import (
    Map,
    Node,
    Rebatch,
    Scratch,
    Seq,
    SkipAdd,
    Upsample,
    Zip,
)
from s2sr.models.edsr import Upsampler
from s2sr.models.guided import GuidedEDSR

#: Output pixels the output-grid stages work on at once (as StreamingForward's).
HIGH_PIXELS = 2 ** 16


def guided_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot stream (``None``: it can)."""
    if type(model) is not GuidedEDSR:
        return f"{type(model).__name__} is not the guided network"
    if model.training:
        return "the model is in training mode (call model.eval())"
    if model.scale != model.guide_scale or model.scale != 2:
        return "its output grid is not its guide's (only x2 guided by a 2x finer guide streams)"
    body = body_convs(list(model.body))
    if isinstance(body, str):
        return body
    convs: list[tuple[str, nn.Module]] = [("head", model.head), ("tail", model.tail), *body]
    if model.inject is not None:
        convs.append(("injection", model.inject))
    if type(model.upsample) is not Upsampler or [type(m) for m in model.upsample] != [
            nn.Conv2d, nn.PixelShuffle]:
        return "the upsampler is not one convolution and a pixel shuffle"
    convs.append(("upsampler", model.upsample[0]))
    return convs_refusal(convs)


class GuidedStream:
    """The forward of a guided ``model`` (see :func:`guided_refusal`) over row bands.

    Raises:
        UsageError: the model cannot stream (run it as one forward).
    """

    def __init__(self, model: nn.Module, channels_last: bool = True,
                 high_pixels: int = HIGH_PIXELS) -> None:
        why = guided_refusal(model)
        if why is not None:
            raise UsageError(f"this guided model cannot run as a stream ({why})")
        assert isinstance(model, GuidedEDSR)
        self.model = model
        self.channels_last = channels_last
        self.high_pixels = high_pixels
        self.bands = model.mean.shape[1]
        self.guides = model.guide_mean.shape[1]
        gs2 = model.guide_scale ** 2
        # the source's channels: the coarse bands, then each guide band's gs^2 sub-pixels
        # (pixel_unshuffle's order); normalising them is normalising the guide, unshuffled
        self.mean = torch.cat([model.mean.flatten(),
                               model.guide_mean.flatten().repeat_interleave(gs2)])
        self.std = torch.cat([model.std.flatten(),
                              model.guide_std.flatten().repeat_interleave(gs2)])

    def pipeline(self, width: int) -> Node:
        """Fresh stages for ``width`` coarse columns."""
        m, k, s = self.model, self.bands, self.model.scale
        make = StageMaker(Scratch(self.channels_last))
        conv = make.conv
        feats_n = m.head.out_channels
        body = make.body(m.body)
        mean, std = self.mean.to(m.mean.device), self.std.to(m.mean.device)

        def norm(x: torch.Tensor) -> torch.Tensor:
            return (x - mean.view(1, -1, 1, 1).to(x.dtype)) / std.view(1, -1, 1, 1).to(x.dtype)

        # coarse rows [features | coarse bands | unshuffled guide], the features' lag
        trunk = Zip([Seq([conv(m.head), SkipAdd(body)]), Map(lambda x: x)],
                    lambda ys: torch.cat(ys, dim=1))

        def feats(x: torch.Tensor) -> torch.Tensor:
            return x[:, :feats_n]

        def coarse(x: torch.Tensor) -> torch.Tensor:
            return x[:, feats_n:feats_n + k]

        def guide(x: torch.Tensor) -> torch.Tensor:  # the guide's rows at the output grid
            return F.pixel_shuffle(x[:, feats_n + k:], m.guide_scale)

        tail = Seq([Zip([Seq([Map(feats), conv(m.upsample[0]), Map(m.upsample[1])]),
                         Map(guide)], lambda ys: torch.cat(ys, dim=1)),
                    conv(m.tail)])
        parts: list[Node] = [tail, Seq([Map(coarse), Upsample(s, "bicubic")])]
        if m.inject is not None:
            def block_mean(x: torch.Tensor) -> torch.Tensor:  # the guide's, coarse rows
                if x.shape[2] == 0:
                    return x.new_zeros((x.shape[0], self.guides, 0, x.shape[3]))
                return F.avg_pool2d(guide(x), m.guide_scale)

            highpass = Zip([Map(guide), Seq([Map(block_mean), Upsample(s, "bicubic")])],
                           lambda ys: ys[0] - ys[1])
            coef = Seq([Map(feats), conv(m.inject), Upsample(s, "bilinear")])
            parts.append(Zip([coef, highpass], _inject))

        def join(ys: list[torch.Tensor]) -> torch.Tensor:
            out = ys[0] + ys[1]
            return out + ys[2] if len(ys) > 2 else out

        high = Rebatch(Zip(parts, join), max(1, self.high_pixels // (width * s * s)))
        out_mean, out_std = m.mean, m.std

        def denorm(y: torch.Tensor) -> torch.Tensor:  # y is the network's own: in place
            return y.mul_(out_std.to(y.dtype)).add_(out_mean.to(y.dtype))

        return Seq([Map(norm), trunk, high, Map(denorm)])

    def source(self, lr: torch.Tensor, guide: torch.Tensor, band_rows: int
               ) -> Iterator[tuple[torch.Tensor, bool]]:
        """The coarse bands and the unshuffled guide, ``band_rows`` coarse rows at a time."""
        gs, h = self.model.guide_scale, lr.shape[2]
        for r in range(0, h, band_rows):
            yield self.join(lr[:, :, r:r + band_rows],
                            guide[:, :, r * gs:(r + band_rows) * gs]), r + band_rows >= h

    def join(self, lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Rows of the stream's source: coarse rows of ``lr`` beside the same rows of
        ``guide`` (``guide_scale`` times as many) unshuffled onto the coarse grid."""
        gs = self.model.guide_scale
        if lr.shape[2] == 0:  # no rows (a stream's flush): pixel_unshuffle keeps the width
            x = lr.new_zeros((lr.shape[0], lr.shape[1] + guide.shape[1] * gs * gs, 0,
                              lr.shape[3]))
        else:
            x = torch.cat([lr, F.pixel_unshuffle(guide, gs)], dim=1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def forward(self, lr: torch.Tensor | np.ndarray, guide: torch.Tensor | np.ndarray,
                band_rows: int = 32) -> torch.Tensor:
        """The model's ``forward(lr, guide)`` (reflectance, shapes as the model's), computed
        over bands of ``band_rows`` coarse rows."""
        lr_t = torch.as_tensor(lr, dtype=torch.float32)
        guide_t = torch.as_tensor(guide, dtype=torch.float32)
        lr_t, guide_t = (t[None] if t.ndim == 3 else t for t in (lr_t, guide_t))
        m, gs = self.model, self.model.guide_scale
        if (lr_t.ndim != 4 or guide_t.ndim != 4 or lr_t.shape[1] != self.bands
                or guide_t.shape[1] != self.guides
                or guide_t.shape[-2:] != (lr_t.shape[-2] * gs, lr_t.shape[-1] * gs)
                or lr_t.shape[2] == 0):
            raise UsageError(f"guided stream needs lr (B, {self.bands}, h, w) and guide "
                             f"(B, {self.guides}, h*{gs}, w*{gs}), got {tuple(lr_t.shape)} "
                             f"and {tuple(guide_t.shape)}")
        if not isinstance(band_rows, int) or band_rows < 1:
            raise UsageError(f"band_rows must be a positive integer, got {band_rows!r}")
        device = m.head.weight.device
        net = self.pipeline(lr_t.shape[3])
        s = m.scale
        out: torch.Tensor | None = None
        done = 0
        for x, last in self.source(lr_t.to(device), guide_t.to(device), band_rows):
            y = net.feed(x.to(device), last)
            if out is None:  # rows are copied in as they come: no list of them, no cat
                out = y.new_empty((y.shape[0], y.shape[1], lr_t.shape[2] * s,
                                   lr_t.shape[3] * s))
            out[:, :, done:done + y.shape[2]] = y
            done += y.shape[2]
        assert out is not None and done == out.shape[2], "the stream lost rows"
        return out


def _inject(ys: list[torch.Tensor]) -> torch.Tensor:
    """The guide's high-pass weighted by its coefficients (GuidedEDSR's injection)."""
    coef, highpass = ys
    b, k = highpass.shape[:2]
    coef = coef.view(b, coef.shape[1] // k, k, *coef.shape[-2:])
    return (coef * highpass.unsqueeze(1)).sum(dim=2)
