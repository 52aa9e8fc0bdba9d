"""The streaming forward equals the whole-scene forward (issue 23): row bands of any height,
column strips, x2 and x4, with and without the global residual, random and shipped weights,
random and real input; models that cannot stream are refused with the reason."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.inference.stream import StreamingForward, stream_refusal
from s2sr.inference.stream_budget import band_bytes, pick_band_rows, state_bytes
from s2sr.models import build_model, load_model, pretrained_path
from s2sr.models.edsr import EDSR
from support.shared import SENTINEL2, requires_shared

#: Largest difference to the whole-scene forward allowed, in reflectance (1 DN of
#: Sentinel-2 is 1e-4). Convolutions over the same rows give the same bits; oneDNN picks
#: other kernels (another summation order) for very small problems, such as 1-row bands of
#: narrow test scenes, which moves the last bit of float32 (measured: at most 5e-7).
ATOL = 2e-6


def _whole(model: nn.Module, x: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model(x)


def _scene(h: int, w: int, bands: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((1, bands, h, w), generator=gen) * 0.4


def _tiny(scale: int, global_residual: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("edsr-tiny", scale=scale, global_residual=global_residual,
                        n_resblocks=2, res_scale=0.5, upsampler_norm="batch")
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.uniform_(-0.1, 0.1)  # a BatchNorm that changes something
        bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


class TestEqualsWholeScene:
    @pytest.mark.parametrize("scale", [2, 4])
    @pytest.mark.parametrize("global_residual", [False, True])
    @pytest.mark.parametrize("band_rows", [1, 2, 5, 64])
    def test_random_init_band_heights(self, scale: int, global_residual: bool,
                                      band_rows: int) -> None:
        model = _tiny(scale, global_residual)
        x = _scene(23, 31)
        ref = _whole(model, x)
        out = StreamingForward(model).forward(x, band_rows=band_rows)
        assert out.shape == ref.shape == (1, 4, 23 * scale, 31 * scale)
        assert (out - ref).abs().max().item() <= ATOL

    @pytest.mark.parametrize("scale", [2, 4])
    @pytest.mark.parametrize("high_pixels", [1, 700])
    def test_upsampler_and_tail_in_smaller_batches_of_rows(self, scale: int,
                                                          high_pixels: int) -> None:
        # high_pixels=1: the upsampler and the tail take 1 input row at a time
        model = _tiny(scale, True)
        x = _scene(27, 11, seed=2)
        stream = StreamingForward(model, high_pixels=high_pixels)
        assert stream.high_rows(11) == max(1, high_pixels // (11 * scale**2)) < 16
        out = stream.forward(x, band_rows=16)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    @pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (40, 7)])
    def test_thin_scenes(self, shape: tuple[int, int]) -> None:
        model = _tiny(2, True)
        x = _scene(*shape, seed=3)
        out = StreamingForward(model).forward(x, band_rows=3)
        ref = _whole(model, x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= ATOL

    def test_whole_scene_in_one_band_is_bit_identical(self) -> None:
        # one band: the same convolutions on the same rows as the whole forward
        model = _tiny(4, True)
        x = _scene(20, 24, seed=4)
        assert torch.equal(StreamingForward(model).forward(x, band_rows=20), _whole(model, x))

    def test_contiguous_format(self) -> None:
        model = _tiny(2, True)
        x = _scene(30, 26, seed=5)
        out = StreamingForward(model, channels_last=False).forward(x, band_rows=4)
        ref = _whole(model, x, channels_last=False)
        assert (out - ref).abs().max().item() <= ATOL

    @pytest.mark.parametrize("scale", [2, 4])
    @pytest.mark.parametrize("rgb", [False, True])
    def test_shipped_models(self, scale: int, rgb: bool) -> None:
        model = load_model(pretrained_path(scale, rgb))
        assert model.global_residual  # the shipped models all add the bicubic upsampling
        x = _scene(19, 40, bands=3 if rgb else 4, seed=scale)
        ref = _whole(model, x)
        out = StreamingForward(model).forward(x, band_rows=6)
        assert (out - ref).abs().max().item() <= ATOL

    @requires_shared
    def test_real_crop_shipped_x2_and_x4(self) -> None:
        with rasterio.open(SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif") as ds:
            dn = ds.read(window=Window(200, 300, 48, 36)).astype(np.float32)
        x = torch.from_numpy(dn / 10000.0)[None]
        for scale in (2, 4):
            model = load_model(pretrained_path(scale))
            ref = _whole(model, x)
            out = StreamingForward(model).forward(dn / 10000.0, band_rows=5)
            assert (out - ref).abs().max().item() <= ATOL
            # in DN, as written: within 1 DN everywhere (a value at .5 DN may round apart)
            dn_out, dn_ref = np.rint(out.numpy() * 10000), np.rint(ref.numpy() * 10000)
            assert np.abs(dn_out - dn_ref).max() <= 1

    def test_iterable_of_uneven_row_blocks(self) -> None:
        model = _tiny(2, True)
        x = _scene(25, 18, seed=6)
        cuts = [0, 3, 4, 4, 15, 25]  # one block is empty

        def blocks() -> Iterator[np.ndarray]:
            for a, b in itertools.pairwise(cuts):
                yield x[0, :, a:b].numpy()

        out = StreamingForward(model).forward(blocks(), band_rows=6)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    def test_row_blocks_add_up_and_start_after_the_lag(self) -> None:
        model = _tiny(2, False)
        blocks = list(StreamingForward(model).run(_scene(30, 10), band_rows=4))
        rows = [b.shape[2] for b in blocks]
        assert sum(rows) == 60
        assert rows[0] < 8  # the first band waits for rows below it (no look-ahead faked)
        assert all(b.shape[3] == 20 for b in blocks)


    def test_output_flows_before_the_input_ends(self) -> None:
        # a stream, not a collection: the first rows come out after a few bands are read
        model = _tiny(2, True)
        x = _scene(100, 12, seed=10)
        read = []

        def blocks() -> Iterator[np.ndarray]:
            for r in range(0, 100, 4):
                read.append(r)
                yield x[0, :, r:r + 4].numpy()

        first = next(iter(StreamingForward(model).run(blocks(), band_rows=4)))
        assert first.shape[2] > 0
        assert len(read) <= 4  # the network's lag is under 12 input rows

class TestColumnStrips:
    @pytest.mark.parametrize("scale", [2, 4])
    @pytest.mark.parametrize("strip_cols", [1, 5, 17, 100])
    def test_strips_equal_whole(self, scale: int, strip_cols: int) -> None:
        model = _tiny(scale, True)
        x = _scene(21, 37, seed=7)
        out = StreamingForward(model).forward(x, band_rows=4, strip_cols=strip_cols)
        assert out.shape == (1, 4, 21 * scale, 37 * scale)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    def test_shipped_x4_strips(self) -> None:
        model = load_model(pretrained_path(4))
        stream = StreamingForward(model)
        assert stream.halo == 20  # 19 low-resolution convolutions, then 1/2 and 1/4
        x = _scene(10, 64, seed=8)
        out = stream.forward(x, band_rows=3, strip_cols=24)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    def test_a_halo_too_small_would_show(self) -> None:
        # the halo is needed: strips cut without it differ from the whole scene
        model = _tiny(2, True)
        stream = StreamingForward(model)
        x = _scene(12, 30, seed=9)
        ref = _whole(model, x)
        stream.halo = 1
        bad = stream.forward(x, band_rows=4, strip_cols=10)
        assert (bad - ref).abs().max().item() > 1e-3


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


class _Tweaked(EDSR):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class TestRefusals:
    def test_not_edsr(self) -> None:
        assert "not an EDSR-family network" in (stream_refusal(_Plain()) or "")
        with pytest.raises(UsageError, match=r"cannot run as a stream .*tiled engine"):
            StreamingForward(_Plain())

    def test_forward_overridden(self) -> None:
        assert stream_refusal(_Tweaked(n_resblocks=1, n_feats=4).eval()) is not None

    def test_training_mode(self) -> None:
        assert "training mode" in (stream_refusal(_tiny(2, False).train()) or "")

    def test_a_5x5_tail(self) -> None:
        model = _tiny(2, False)
        model.tail = nn.Conv2d(8, 4, 5, padding=2)
        assert "3x3" in (stream_refusal(model) or "")

    def test_shipped_models_stream(self) -> None:
        assert stream_refusal(load_model(pretrained_path(2))) is None

    @pytest.mark.parametrize("bad", [0, -3, 2.5])
    def test_bad_band_rows(self, bad: object) -> None:
        stream = StreamingForward(_tiny(2, False))
        with pytest.raises(UsageError, match="band_rows must be a positive integer"):
            stream.forward(_scene(4, 4), band_rows=bad)  # type: ignore[arg-type]

    def test_wrong_band_count_and_widths(self) -> None:
        stream = StreamingForward(_tiny(2, False))
        with pytest.raises(UsageError, match="C = 4 bands"):
            stream.forward(_scene(4, 4, bands=3))
        with pytest.raises(UsageError, match="8 columns wide"):
            stream.forward(iter([np.zeros((4, 2, 8), np.float32),
                                 np.zeros((4, 2, 9), np.float32)]))
        with pytest.raises(UsageError, match="no rows"):
            stream.forward(iter([]))
        with pytest.raises(UsageError, match="no rows"):
            stream.forward(np.zeros((4, 0, 5), np.float32))


class TestBandHeight:
    def test_preferred_when_it_fits(self) -> None:
        stream = StreamingForward(load_model(pretrained_path(2)))
        assert pick_band_rows(stream, 10980, 8 * 10**9, preferred=64) == 64
        # by default, bands of about 65536 input pixels: 64 rows of 1024, 5 of 10980
        assert pick_band_rows(stream, 1024, 8 * 10**9) == 64
        assert pick_band_rows(stream, 10980, 8 * 10**9) == 5
        assert pick_band_rows(stream, 20000, 8 * 10**9) == 3

    def test_budget_limits_the_band(self) -> None:
        stream = StreamingForward(load_model(pretrained_path(4)))
        width = 10980
        budget = state_bytes(stream, width) + band_bytes(stream, width, 10)
        rows = pick_band_rows(stream, width, budget, preferred=512)
        assert 1 <= rows <= 10
        assert state_bytes(stream, width) + band_bytes(stream, width, rows) <= budget

    def test_estimate_grows_with_rows_and_width(self) -> None:
        stream = StreamingForward(load_model(pretrained_path(2)))
        assert band_bytes(stream, 1000, 32) < band_bytes(stream, 1000, 64)
        assert state_bytes(stream, 1000) < state_bytes(stream, 2000)

    def test_too_small_budget_says_use_strips(self) -> None:
        stream = StreamingForward(load_model(pretrained_path(2)))
        with pytest.raises(UsageError, match="column strips"):
            pick_band_rows(stream, 10980, 10**6)
