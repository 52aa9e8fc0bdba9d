"""EDSR (Lim et al. 2017) as used by Galar et al. (2019) for Sentinel-2.

The network maps reflectance to reflectance: inputs are normalised with per-band mean and
standard deviation held as buffers (saved with the weights), the body runs in normalised
space and the output is mapped back. Upsampling is PixelShuffle whose convolution is
ICNR-initialised (Aitken et al. 2017), so an untrained model starts without checkerboard
artefacts; an optional normalisation layer (the study's figure shows BatchNorm) can sit in
the upsampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.models.bounds import (
    MAX_ABS_MEAN,
    MAX_BANDS,
    MAX_FEATS,
    MAX_RES_SCALE,
    MAX_RESBLOCKS,
    STD_RANGE,
    UPSAMPLER_NORMS,
    check_bool,
    check_choice,
    check_float,
    check_floats,
    check_int,
    check_scale,
)


def icnr_(weight: torch.Tensor, scale: int, init: str = "kaiming") -> torch.Tensor:
    """Fill a sub-pixel convolution weight in place with ICNR.

    Each group of ``scale**2`` output channels that PixelShuffle interleaves into one
    output channel gets the same kernel, so the initial upsampling equals
    nearest-neighbour upsampling of a normally initialised convolution.

    Args:
        weight: convolution weight of shape ``(C * scale**2, C_in, k, k)``.
        scale: the PixelShuffle factor.
        init: ``"kaiming"`` (normal, fan-in) is the only supported initialiser.

    Returns:
        ``weight``, modified in place.
    """
    out_channels, in_channels, kh, kw = weight.shape
    if out_channels % (scale**2) != 0:
        raise ValueError(f"ICNR needs out_channels divisible by {scale**2}, got {out_channels}")
    if init != "kaiming":
        raise ValueError(f"unknown ICNR initialiser {init!r}")
    if weight.is_meta:  # a shape-only build (checking a weights file): nothing to fill, and
        return weight   # random fills on "meta" tensors cost ~1 s of torch imports
    sub = torch.empty(out_channels // scale**2, in_channels, kh, kw)
    nn.init.kaiming_normal_(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))
    return weight


class ResBlock(nn.Module):
    """conv-ReLU-conv with a scaled identity skip; no batch norm (as in EDSR)."""

    def __init__(self, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if (torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export()):
            return x + y * self.res_scale
        # inference: the branch's output is this call's own tensor, scaled and summed in
        # place (the same float operations; no two more feature maps allocated and written,
        # which cost a tenth of a tiled forward's time on the CPU)
        if self.res_scale != 1.0:
            y.mul_(self.res_scale)
        return y.add_(x)


class Upsampler(nn.Sequential):
    """log2(scale) stages of conv (ICNR) -> [norm] -> PixelShuffle(2)."""

    def __init__(self, scale: int, n_feats: int, norm: str | None) -> None:
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            conv = nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1)
            icnr_(conv.weight, 2)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers.append(conv)
            if norm == "batch":
                layers.append(nn.BatchNorm2d(4 * n_feats))
            elif norm is not None:
                raise UsageError(f"unknown upsampler norm {norm!r}: use 'batch' or none")
            layers.append(nn.PixelShuffle(2))
        super().__init__(*layers)


#: Input rows per strip of the upsampling and tail in inference (see
#: :meth:`EDSR._upsample_tail`), and rows of context each side of a strip.
STRIP_ROWS = 64
STRIP_MARGIN = 2
#: Output pixels of a tile above which inference upsamples in strips. Measured on 2 CPU
#: cores, input megapixels/s whole vs strips: x2 544 px 0.131 vs 0.130, 800 px 0.125 vs
#: 0.134, 1056 px 0.096 vs 0.119; x4 288 px 0.081 vs 0.072, 544 px 0.054 vs 0.071.
STRIP_MIN_PIXELS = 1600 * 1024


class EDSR(nn.Module):
    """Enhanced Deep Super-Resolution network for multispectral reflectance.

    Args:
        in_bands: number of input bands (default 4: B02, B03, B04, B08).
        out_bands: must be ``None`` or ``in_bands``: the output is mapped back to
            reflectance with the input bands' mean and std, so other values are refused.
        n_resblocks: residual blocks in the body (the study: 8).
        n_feats: filters per convolution (the study: 64).
        res_scale: scaling of each residual branch (Lim et al. use 0.1 for wide models).
        scale: upscaling factor, 2 or 4.
        upsampler_norm: ``None`` or ``"batch"`` (BatchNorm after each upsampling conv).

    All sizes are bounded (:mod:`s2sr.models.bounds`): 1-64 blocks, 1-512 filters; values
    outside raise :class:`~s2sr.models.bounds.SpecError` (a ``UsageError``).
        global_residual: add the bicubic upsampling of the input to the output, so the
            network learns only the missing detail (not in Lim et al. or the study; it
            makes training start at bicubic quality and converge much faster).
        mean: per-band reflectance mean used to normalise the input.
        std: per-band reflectance standard deviation used to normalise the input.

    Shapes:
        input ``(B, in_bands, H, W)`` reflectance; output ``(B, in_bands, H*scale, W*scale)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        in_bands: int = 4,
        out_bands: int | None = None,
        n_resblocks: int = 8,
        n_feats: int = 64,
        res_scale: float = 1.0,
        scale: int = 2,
        upsampler_norm: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        global_residual: bool = False,
    ) -> None:
        super().__init__()
        # Every size is bounded before anything is allocated (see s2sr.models.bounds).
        scale = check_scale(scale)
        in_bands = check_int("in_bands", in_bands, 1, MAX_BANDS)
        if out_bands is not None and out_bands != in_bands:
            # The output is mapped back with the input's per-band mean and std, which is only
            # meaningful when the output bands are the input bands.
            raise UsageError(
                f"EDSR maps each input band to the same band at a finer resolution: out_bands "
                f"must equal in_bands ({in_bands}), got {out_bands}; drop out_bands")
        n_resblocks = check_int("n_resblocks", n_resblocks, 1, MAX_RESBLOCKS)
        n_feats = check_int("n_feats", n_feats, 1, MAX_FEATS)
        res_scale = check_float("res_scale", res_scale, 0.0, MAX_RES_SCALE, low_open=True)
        check_choice("upsampler_norm", upsampler_norm, UPSAMPLER_NORMS)
        check_bool("global_residual", global_residual)
        mean_v = [0.1] * in_bands if mean is None else check_floats(
            "mean", mean, in_bands, -MAX_ABS_MEAN, MAX_ABS_MEAN)
        std_v = [0.1] * in_bands if std is None else check_floats(
            "std", std, in_bands, *STD_RANGE)
        mean_t = torch.tensor(mean_v)
        std_t = torch.tensor(std_v)
        self.scale = scale
        self.global_residual = global_residual
        self.register_buffer("mean", mean_t.float().view(1, -1, 1, 1))
        self.register_buffer("std", std_t.float().view(1, -1, 1, 1))
        self.head = nn.Conv2d(in_bands, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.upsample = Upsampler(scale, n_feats, upsampler_norm)
        self.tail = nn.Conv2d(n_feats, in_bands, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        std = self.std.to(x.dtype)
        x = (x - mean) / std
        feats = self.head(x)
        feats = feats + self.body(feats)
        out = self._upsample_tail(feats)
        if self.global_residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                      align_corners=False)
        return out * std + mean

    def _upsample_tail(self, feats: torch.Tensor) -> torch.Tensor:
        """Upsampling and tail; in inference on large inputs, over row strips of
        :data:`STRIP_ROWS` input rows plus :data:`STRIP_MARGIN` rows of context each
        side (cut off again), so that the full-resolution activations (``scale``^2 times
        the input's pixels, 4 times its channels before each pixel shuffle) never exist for
        the whole tile at once: large tiles then run as fast per pixel as small ones, in
        less memory (only above :data:`STRIP_MIN_PIXELS` output pixels: below, the whole
        tile is as fast or faster). The result equals the whole-tile one up to float rounding:
        the margin covers the receptive field of the upsampling convolutions and the tail
        (1 + 1/2 input rows at x2, 1 + 1/2 + 1/4 at x4). Training, export and small inputs
        take the whole tile."""
        h = feats.shape[-2]
        large = h * feats.shape[-1] * self.scale ** 2 > STRIP_MIN_PIXELS
        if (self.training or not large or h <= STRIP_ROWS + 2 * STRIP_MARGIN
                or torch.jit.is_tracing()
                or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()):
            return self.tail(self.upsample(feats))
        s = self.scale
        strips = []
        for r0 in range(0, h, STRIP_ROWS):
            r1 = min(r0 + STRIP_ROWS, h)
            a, b = max(r0 - STRIP_MARGIN, 0), min(r1 + STRIP_MARGIN, h)
            y = self.tail(self.upsample(feats[..., a:b, :]))
            strips.append(y[..., (r0 - a) * s:(r1 - a) * s, :])
        return torch.cat(strips, dim=-2)
