"""The guided network as a row stream (issue 22's 5 m speed): equal to its forward within
float rounding for any band height, with and without the injection, in either memory format;
the stages it adds (Zip, Upsample) equal their whole-scene operations; the models it cannot
stream are refused and run as one forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2sr.core.errors import UsageError
from s2sr.inference.multires_engine import BandsSuperResolver
from s2sr.inference.stream_guided import GuidedStream, guided_refusal
from s2sr.inference.stream_stages import Map, Upsample, Zip
from s2sr.models import build_model
from s2sr.models.guided import BANDS_20M
from support.multires import engine, tiny_guided, tiny_hr_model


def busy(inject: bool = True, scale: int = 2, seed: int = 3) -> torch.nn.Module:
    """A small guided model with every convolution at full strength (the untrained tail is
    at 1 % and the injection at 0: they would hide a misaligned row)."""
    torch.manual_seed(seed)
    model = build_model("guided-edsr", bands=BANDS_20M, scale=scale, n_resblocks=2,
                        n_feats=16, inject=inject).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 4:
                p.normal_(0, 1.5 / math.sqrt(p[0].numel()))
    return model


def close(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal within float rounding: the full-strength weights give outputs of up to ~10."""
    return out.shape == ref.shape and \
        (out - ref).abs().max().item() <= 2e-6 * max(1.0, ref.abs().max().item())


def _inputs(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 6, h, w, generator=g) * 0.4,
            torch.rand(1, 4, 2 * h, 2 * w, generator=g) * 0.4)


@pytest.mark.parametrize("inject", [True, False])
@pytest.mark.parametrize("band_rows", [1, 4, 7, 32])
@pytest.mark.parametrize("channels_last", [True, False])
def test_stream_equals_the_forward(inject: bool, band_rows: int, channels_last: bool) -> None:
    model = busy(inject)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    lr, guide = _inputs(23, 37)
    with torch.inference_mode():
        ref = model(lr, guide)
    out = GuidedStream(model, channels_last=channels_last).forward(lr, guide, band_rows)
    assert ref.shape == (1, 6, 46, 74) and close(out, ref)
    assert ref.abs().mean().item() > 0.05  # a result to compare, not zeros


def test_small_output_bands_and_one_row_scenes() -> None:
    """Output-grid stages fed one row at a time (high_pixels 1), a single coarse row, and
    bands taller than the scene."""
    model = busy()
    lr, guide = _inputs(9, 11, seed=1)
    with torch.inference_mode():
        ref = model(lr, guide)
        one = model(lr[:, :, :1], guide[:, :, :2])
    stream = GuidedStream(model, high_pixels=1)
    assert close(stream.forward(lr, guide, 3), ref)
    assert close(stream.forward(lr[:, :, :1], guide[:, :, :2], 64), one)
    # numpy (C, h, w) input, as the engine's tiles hold it
    assert close(stream.forward(lr[0].numpy(), guide[0].numpy(), 5), ref)


def test_a_misaligned_guide_row_is_seen() -> None:
    """The comparison is sharp enough: the guide shifted by one fine row changes the
    output far beyond the tolerance the stream is held to."""
    model = busy()
    lr, guide = _inputs(12, 10, seed=2)
    shifted = torch.roll(guide, 1, dims=2)
    with torch.inference_mode():
        ref, moved = model(lr, guide), model(lr, shifted)
    assert not close(moved, ref)
    assert (moved - ref).abs().max().item() > 1e3 * 2e-6 * ref.abs().max().item()


def test_refused_models_and_bad_inputs() -> None:
    assert guided_refusal(busy()) is None
    assert "output grid is not its guide's" in str(guided_refusal(busy(scale=4)))
    assert "training" in str(guided_refusal(busy().train()))
    assert "not the guided network" in str(guided_refusal(tiny_hr_model()))
    with pytest.raises(UsageError, match="cannot run as a stream"):
        GuidedStream(busy(scale=4))
    stream = GuidedStream(busy())
    lr, guide = _inputs(8, 8)
    with pytest.raises(UsageError, match="guided stream needs"):
        stream.forward(lr, guide[:, :, :15])
    with pytest.raises(UsageError, match="band_rows"):
        stream.forward(lr, guide, 0)


@pytest.mark.parametrize(("mode", "s"), [("bicubic", 2), ("bicubic", 4), ("bilinear", 2)])
def test_upsample_stage_equals_interpolate(mode: str, s: int) -> None:
    x = torch.rand(1, 3, 29, 13, generator=torch.Generator().manual_seed(4))
    ref = F.interpolate(x, scale_factor=s, mode=mode, align_corners=False)
    for cuts in ([29], [1] * 29, [5, 1, 10, 13], [2, 27]):
        node, outs, r = Upsample(s, mode), [], 0
        for k, n in enumerate(cuts):
            outs.append(node.feed(x[:, :, r:r + n], k == len(cuts) - 1))
            r += n
        out = torch.cat(outs, dim=2)
        assert out.shape == ref.shape
        assert torch.equal(out, ref), (mode, s, cuts)  # the same weights: the same bits


def test_zip_aligns_branches_of_different_lags() -> None:
    """Branches that emit their rows late are joined row for row with those that emit at
    once; the last feed drains every branch."""

    class Late:  # emits each row two feeds after it came (all at the last)
        def __init__(self) -> None:
            self.held: list[torch.Tensor] = []

        def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
            self.held.append(x)
            rows = torch.cat(self.held, dim=2)
            out = rows if last else rows[:, :, :max(0, rows.shape[2] - 2)]
            self.held = [rows[:, :, out.shape[2]:]]
            return out * 10

    zip_ = Zip([Late(), Map(lambda x: x)], lambda ys: ys[0] + ys[1])
    x = torch.arange(7.0).view(1, 1, 7, 1)
    outs = [zip_.feed(x[:, :, r:r + 1], r == 6) for r in range(7)]
    assert [o.shape[2] for o in outs][:2] == [0, 0]
    assert torch.equal(torch.cat(outs, dim=2), x * 11)


def test_the_engine_streams_the_guided_passes_on_the_cpu() -> None:
    hr = tiny_hr_model()
    five = engine(tiny_guided(2), hr, 60)
    assert five.guided_stream is not None and five.guided_stream.model is five.guided
    assert engine(tiny_guided(4), hr).guided_stream is None  # x4 one pass: one forward
    lr, guide = _inputs(30, 41, seed=5)
    with torch.inference_mode():
        ref = five.guided(lr, guide)
        out = five._guided_forward(lr, guide)
    assert close(out, ref)
    assert isinstance(five, BandsSuperResolver) and np.isfinite(out.numpy()).all()
