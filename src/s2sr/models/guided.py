"""The guided network of the 20 m bands (issue 22): B05 B06 B07 B8A B11 B12 to 10 m or 5 m,
guided by the 10 m bands B02 B03 B04 B08.

Design (cheap: the body runs on the coarse 20 m grid, a quarter of the 10 m pixels):

1. both inputs are normalised with per-band mean and std held as buffers (as EDSR);
2. the guide (``guide_scale`` times finer, 10 m for ``guide_scale`` 2) is folded onto the
   coarse grid by pixel-unshuffle (``K * guide_scale**2`` channels: 16 for the four 10 m
   bands) and concatenated with the coarse bands;
3. an EDSR body (head conv, residual blocks, conv, long skip) on the coarse grid;
4. the ICNR pixel-shuffle upsampler of :class:`s2sr.models.edsr.Upsampler` by ``scale``;
5. a tail convolution at the output grid that sees the upsampled features *and* the
   normalised guide at the output grid (itself at ``guide_scale == scale``, bicubic
   otherwise), so the guide's fine detail reaches the output without passing through the
   unshuffle and shuffle;
6. a global residual: the bicubic upsampling of the (normalised) coarse bands.

Convolutions pad with zeros (as EDSR), so a tile cut with :func:`guided_halo` coarse rows of
context on each side gives, inside the context, the whole-scene result (within float
rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import nn

from s2sr.core.bands import DEFAULT_BANDS, TYPICAL_MEAN, TYPICAL_STD
from s2sr.core.errors import SpecError, UsageError
from s2sr.models.bounds import (
    MAX_ABS_MEAN,
    MAX_FEATS,
    MAX_RES_SCALE,
    MAX_RESBLOCKS,
    STD_RANGE,
    check_bands,
    check_bool,
    check_float,
    check_floats,
    check_int,
    check_scale,
)
from s2sr.models.edsr import STRIP_MARGIN, STRIP_MIN_PIXELS, STRIP_ROWS, ResBlock, Upsampler

#: The registered names of guided models (:mod:`s2sr.models.registry`).
GUIDED_MODELS: Final[tuple[str, ...]] = ("guided-edsr", "guided-edsr-tiny")
#: The builder options of a guided model (any other is refused before building).
GUIDED_OPTIONS: Final[tuple[str, ...]] = (
    "guide_bands", "guide_scale", "n_resblocks", "n_feats", "res_scale", "mean", "std",
    "guide_mean", "guide_std", "inject")
#: The 20 m bands (the output of the shipped guided models), in Sentinel-2 order.
BANDS_20M: Final[tuple[str, ...]] = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: The guide bands by default: the four 10 m bands.
DEFAULT_GUIDE: Final[tuple[str, ...]] = DEFAULT_BANDS
#: Allowed ``guide_scale`` values (guide pixel = coarse pixel / guide_scale).
GUIDE_SCALES: Final[tuple[int, ...]] = (2, 4)
DEFAULT_GUIDE_SCALE: Final[int] = 2
#: The tail's default initialisation is scaled by this, so an untrained model starts near
#: bicubic (an unscaled tail adds the normalised guide's texture: -9 dB against bicubic).
TAIL_INIT_GAIN: Final[float] = 0.01


def _check_guide(bands: tuple[str, ...], guide_bands: Any, guide_scale: Any, scale: int
                 ) -> tuple[tuple[str, ...], int]:
    """The checked guide bands and scale (distinct from ``bands``; ``guide_scale <= scale``)."""
    try:
        guide = check_bands(guide_bands)
    except SpecError as err:
        raise SpecError("guide_bands", err.detail) from None
    both = sorted(set(guide) & set(bands))
    if both:
        raise SpecError("guide_bands", f"must not repeat the bands the model outputs, got "
                                       f"{', '.join(both)} in both: guide with the finer bands")
    if isinstance(guide_scale, bool) or guide_scale not in GUIDE_SCALES:
        raise SpecError("guide_scale", f"must be 2 or 4 (guide pixel = input pixel / "
                                       f"guide_scale), got {guide_scale!r}")
    if guide_scale > scale:
        raise SpecError("guide_scale", f"must not exceed the model's scale {scale}, got "
                                       f"{guide_scale}: the guide is at most as fine as the "
                                       "output")
    return guide, int(guide_scale)


def _stats(key: str, values: Any, bands: tuple[str, ...], table: dict[str, float],
           low: float, high: float) -> torch.Tensor:
    """Per-band mean or std as a ``(1, C, 1, 1)`` buffer (typical values when None)."""
    checked = ([table[b] for b in bands] if values is None
               else check_floats(key, values, len(bands), low, high))
    return torch.tensor(checked, dtype=torch.float32).view(1, -1, 1, 1)


class GuidedEDSR(nn.Module):
    """Coarse bands sharpened with the detail of finer guide bands (see the module).

    Args:
        bands: the coarse bands, input and output (e.g. the six 20 m bands).
        guide_bands: the guide bands (e.g. B02 B03 B04 B08), none of ``bands``.
        scale: output pixel = coarse pixel / ``scale`` (2 or 4).
        guide_scale: guide pixel = coarse pixel / ``guide_scale`` (2 or 4, <= ``scale``).
        n_resblocks: residual blocks (1 to 64). n_feats: filters (1 to 512).
        res_scale: scaling of each residual branch, in (0, 10].
        mean, std: per coarse band reflectance statistics (typical values when None).
        guide_mean, guide_std: the same for the guide bands.
        inject: also add the guide's high-pass (the guide minus the bicubic upsampling of
            its block mean, as the guided high-pass baseline injects it) weighted per
            output pixel and band by coefficients the body predicts (a learned, local
            version of the baseline's regression; zero at initialisation).

    Shapes:
        ``forward(lr, guide)``: ``lr`` ``(B, len(bands), h, w)`` and ``guide``
        ``(B, len(guide_bands), h * guide_scale, w * guide_scale)`` reflectance ->
        ``(B, len(bands), h * scale, w * scale)`` reflectance.

    Raises:
        SpecError: (a ``UsageError``) any option out of bounds, before anything is allocated.
    """

    mean: torch.Tensor
    std: torch.Tensor
    guide_mean: torch.Tensor
    guide_std: torch.Tensor

    def __init__(self, bands: Sequence[str] = BANDS_20M, guide_bands: Sequence[str] = DEFAULT_GUIDE,
                 scale: int = 2, guide_scale: int = DEFAULT_GUIDE_SCALE, n_resblocks: int = 8,
                 n_feats: int = 64, res_scale: float = 1.0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None,
                 guide_mean: Sequence[float] | None = None,
                 guide_std: Sequence[float] | None = None, inject: bool = False) -> None:
        super().__init__()
        bands_t = check_bands(bands)
        self.scale = check_scale(scale)
        guide, self.guide_scale = _check_guide(bands_t, guide_bands, guide_scale, self.scale)
        self.n_resblocks = check_int("n_resblocks", n_resblocks, 1, MAX_RESBLOCKS)
        n_feats = check_int("n_feats", n_feats, 1, MAX_FEATS)
        res_scale = check_float("res_scale", res_scale, 0.0, MAX_RES_SCALE, low_open=True)
        self.register_buffer("mean", _stats("mean", mean, bands_t, TYPICAL_MEAN,
                                            -MAX_ABS_MEAN, MAX_ABS_MEAN))
        self.register_buffer("std", _stats("std", std, bands_t, TYPICAL_STD, *STD_RANGE))
        self.register_buffer("guide_mean", _stats("guide_mean", guide_mean, guide,
                                                  TYPICAL_MEAN, -MAX_ABS_MEAN, MAX_ABS_MEAN))
        self.register_buffer("guide_std", _stats("guide_std", guide_std, guide, TYPICAL_STD,
                                                 *STD_RANGE))
        n_in = len(bands_t) + len(guide) * self.guide_scale ** 2
        self.head = nn.Conv2d(n_in, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(self.n_resblocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.upsample = Upsampler(self.scale, n_feats, None)
        self.inject: nn.Conv2d | None = None
        if check_bool("inject", inject):
            conv = nn.Conv2d(n_feats, len(bands_t) * len(guide), 3, padding=1)
            if not conv.weight.is_meta:  # zero: the model starts without injected detail
                nn.init.zeros_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
            self.inject = conv
        self.tail = nn.Conv2d(n_feats + len(guide), len(bands_t), 3, padding=1)
        if not self.tail.weight.is_meta:  # start near the global residual (bicubic): the
            with torch.no_grad():         # guide's raw texture would otherwise swamp it
                self.tail.weight.mul_(TAIL_INIT_GAIN)

    def forward(self, lr: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Sharpen ``lr`` with ``guide`` (shapes in the class docstring)."""
        gs = self.guide_scale
        if (lr.ndim != 4 or guide.ndim != 4 or lr.shape[1] != self.mean.shape[1]
                or guide.shape[1] != self.guide_mean.shape[1]
                or guide.shape[-2:] != (lr.shape[-2] * gs, lr.shape[-1] * gs)):
            raise UsageError(
                f"guided model needs lr (B, {self.mean.shape[1]}, h, w) and guide "
                f"(B, {self.guide_mean.shape[1]}, h*{gs}, w*{gs}), got {tuple(lr.shape)} and "
                f"{tuple(guide.shape)}: crop both to one aligned extent")
        x = (lr - self.mean.to(lr.dtype)) / self.std.to(lr.dtype)
        g = (guide - self.guide_mean.to(guide.dtype)) / self.guide_std.to(guide.dtype)
        feats = self.head(torch.cat([x, F.pixel_unshuffle(g, gs)], dim=1))
        feats = feats + self.body(feats)
        out = self._output_grid(x, feats, g)
        return out * self.std.to(out.dtype) + self.mean.to(out.dtype)

    def _output_grid(self, x: torch.Tensor, feats: torch.Tensor, g: torch.Tensor
                     ) -> torch.Tensor:
        """The normalised output: the tail on the upsampled features and the guide, plus
        the bicubic of ``x`` (and the injected high-pass). In inference on large inputs,
        over row strips of :data:`~s2sr.models.edsr.STRIP_ROWS` coarse rows plus
        :data:`~s2sr.models.edsr.STRIP_MARGIN` rows of context each side (cut off again),
        as :meth:`EDSR._upsample_tail <s2sr.models.edsr.EDSR._upsample_tail>`: the
        full-resolution activations (``n_feats`` channels, 4 times that before each pixel
        shuffle) never exist for the whole input at once. The result equals the whole
        input's up to float rounding: the margin covers the upsampling convolutions' and
        the tail's reach (1 + 1/2 coarse rows at x2, 1 + 1/2 + 1/4 at x4) and the injection's
        (its convolution, 1 row, then bilinear upsampling, under 1)."""
        s = self.scale
        fine = self._to_output(g)
        bic = F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)
        highpass = None if self.inject is None else self._highpass(g)
        h = feats.shape[-2]
        large = h * feats.shape[-1] * s ** 2 > STRIP_MIN_PIXELS
        if (self.training or not large or h <= STRIP_ROWS + 2 * STRIP_MARGIN
                or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export()):
            return self._output_rows(feats, fine, bic, highpass)
        strips = []
        for r0 in range(0, h, STRIP_ROWS):
            r1 = min(r0 + STRIP_ROWS, h)
            a, b = max(r0 - STRIP_MARGIN, 0), min(r1 + STRIP_MARGIN, h)
            y = self._output_rows(feats[..., a:b, :], fine[..., a * s:b * s, :],
                                  bic[..., a * s:b * s, :],
                                  None if highpass is None else highpass[..., a * s:b * s, :])
            strips.append(y[..., (r0 - a) * s:(r1 - a) * s, :])
        return torch.cat(strips, dim=-2)

    def _output_rows(self, feats: torch.Tensor, fine: torch.Tensor, bic: torch.Tensor,
                     highpass: torch.Tensor | None) -> torch.Tensor:
        """:meth:`_output_grid` on the rows given (each at its own grid)."""
        out = self.tail(torch.cat([self.upsample(feats), fine], dim=1))
        out = out + bic
        if self.inject is not None and highpass is not None:
            coef = F.interpolate(self.inject(feats), scale_factor=self.scale, mode="bilinear",
                                 align_corners=False)
            b, k = highpass.shape[:2]
            coef = coef.view(b, -1, k, *coef.shape[-2:])
            out = out + (coef * highpass.unsqueeze(1)).sum(dim=2)
        return out

    def _to_output(self, g: torch.Tensor) -> torch.Tensor:
        """A guide-grid tensor on the output grid (bicubic when the output is finer)."""
        if self.scale == self.guide_scale:
            return g
        return F.interpolate(g, scale_factor=self.scale // self.guide_scale, mode="bicubic",
                             align_corners=False)

    def _highpass(self, g: torch.Tensor) -> torch.Tensor:
        """The guide's high-pass on the output grid: the guide minus the bicubic upsampling
        of its block mean (what the guided high-pass baseline injects)."""
        gs = self.guide_scale
        coarse = F.avg_pool2d(g, gs)
        return self._to_output(g - F.interpolate(coarse, scale_factor=gs, mode="bicubic",
                                                 align_corners=False))

    @property
    def halo(self) -> int:
        """Receptive-field radius in coarse rows (see :func:`guided_halo`)."""
        # Reach of the output's edge row, walked from the tail back to the head: the tail
        # (3 x 3 at the output grid) and each upsampling conv (3 x 3, on grids 1, 2, .. times
        # finer than the coarse one) reach one row of their grid; ceil to coarse rows.
        fine = 1  # the tail's reach, in output rows
        for _ in range(int(math.log2(self.scale))):
            # pixel shuffle: row r of a stage's output comes from row floor(r / 2) of its
            # input, whose conv then reaches one more row
            fine = math.ceil(fine / 2) + 1
        body = 2 * self.n_resblocks + 2  # head, 2 convs per block, the body's last conv
        bicubic = 2  # the global residual's bicubic taps reach 2 coarse rows
        return max(fine + body, bicubic)


def guided_halo(model: nn.Module) -> int:
    """Coarse (20 m) rows of context a tiled predict must add around each tile.

    With this many rows (and columns) of real neighbours on each side, the tile's result
    inside the context equals the whole-scene forward within float rounding; one fewer
    does not.

    Raises:
        UsageError: ``model`` is not a guided model.
    """
    if not isinstance(model, GuidedEDSR):
        raise UsageError(f"guided_halo needs a guided model ({', '.join(GUIDED_MODELS)}), "
                         f"got {type(model).__name__}")
    return model.halo


def guide_of(model_or_spec: object) -> tuple[tuple[str, ...], int] | None:
    """``(guide_bands, guide_scale)`` of a guided model or its
    :class:`~s2sr.models.registry.ModelSpec`; None for other models (and other objects)."""
    spec = getattr(model_or_spec, "spec", model_or_spec)
    if getattr(spec, "name", None) not in GUIDED_MODELS:
        return None
    options = getattr(spec, "options", {})
    return (tuple(options.get("guide_bands", DEFAULT_GUIDE)),
            int(options.get("guide_scale", DEFAULT_GUIDE_SCALE)))
