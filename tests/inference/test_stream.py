"""The streaming forward equals the whole-scene forward (issue 23): row bands of any height,
column strips, x2 and x4, with and without the global residual, random and shipped weights,
random and real input; models that cannot stream are refused with the reason."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.inference.stream import StreamingForward, stream_refusal
from s2sr.inference.stream_budget import (
    HEAP_KEPT,
    STREAM_BUDGET,
    band_bytes,
    carried_bytes,
    high_bytes,
    pick_band_rows,
    pick_layout,
    reuses_heap,
    state_bytes,
)
from s2sr.inference.stream_stages import BicubicResidual, Conv, Scratch, Seq
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

    @pytest.mark.parametrize("channels_last", [True, False])
    def test_a_batch_of_two_scenes(self, channels_last: bool) -> None:
        # a batch's rows are not one dense block: the copies take PyTorch's general path
        model = _tiny(4, True)
        x = torch.cat([_scene(14, 19, seed=13), _scene(14, 19, seed=14)])
        out = StreamingForward(model, channels_last=channels_last).forward(x, band_rows=3)
        ref = _whole(model, x, channels_last=channels_last)
        assert out.shape == ref.shape == (2, 4, 56, 76)
        assert (out - ref).abs().max().item() <= ATOL

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
        # the last band's flush (the network's lag) comes out in band-sized blocks too
        assert max(rows) <= 2 * 4 and sum(r == 8 for r in rows[-3:]) >= 2


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
    @pytest.mark.parametrize("strip_cols", [8, 11, 17, 100])
    @pytest.mark.parametrize("band_rows", [1, 4, 9])
    def test_strips_equal_whole(self, scale: int, strip_cols: int, band_rows: int) -> None:
        # 37 columns (odd): strips of 8 cut at 8, 16, 24, 32 (the last 5 < halo 8 merge)
        model = _tiny(scale, True)
        x = _scene(21, 37, seed=7)
        out = StreamingForward(model).forward(x, band_rows=band_rows, strip_cols=strip_cols)
        assert out.shape == (1, 4, 21 * scale, 37 * scale)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    def test_shipped_x4_strips(self) -> None:
        model = load_model(pretrained_path(4))
        stream = StreamingForward(model)
        assert stream.halo == 20  # 19 low-resolution convolutions, then 1/2 and 1/4
        x = _scene(10, 65, seed=8)
        out = stream.forward(x, band_rows=3, strip_cols=24)
        assert (out - _whole(model, x)).abs().max().item() <= ATOL

    @pytest.mark.parametrize("scale", [2, 4])
    def test_a_halo_one_column_short_shows(self, scale: int) -> None:
        # the halo is exactly the receptive field: one column less and the strips' edges
        # differ from the whole scene (2 blocks: 7 convolutions, then 1/2 (and 1/4) -> 8)
        model = _tiny(scale, True)
        stream = StreamingForward(model)
        assert stream.halo == 8
        x = _scene(12, 40, seed=9)
        ref = _whole(model, x)
        assert (stream.forward(x, band_rows=4, strip_cols=10) - ref).abs().max() <= ATOL
        stream.halo = 7  # measured: 2.5e-5 (x2), 5.8e-5 (x4) off, at the cuts only
        bad = (stream.forward(x, band_rows=4, strip_cols=10) - ref).abs().amax(dim=(0, 1, 2))
        assert bad.max().item() > 5 * ATOL
        cuts = {c * scale for c in (10, 20, 30)}
        assert all(min(abs(int(c) - k) for k in cuts) <= scale
                   for c in (bad > ATOL).nonzero().flatten())

    def test_a_strip_narrower_than_the_halo_is_refused(self) -> None:
        stream = StreamingForward(_tiny(2, True))
        with pytest.raises(UsageError, match=r"at least the column halo \(8 columns"):
            stream.forward(_scene(4, 30), strip_cols=7)

    def test_a_last_strip_narrower_than_the_halo_joins_the_one_before(self) -> None:
        model = _tiny(2, True)
        stream = StreamingForward(model)
        x = _scene(6, 35, seed=11)
        calls: list[int] = []
        pipeline = stream.pipeline

        def counted(width: int, scratch: Scratch | None = None) -> object:
            calls.append(width)
            return pipeline(width, scratch)

        stream.pipeline = counted  # type: ignore[method-assign,assignment]
        out = stream.forward(x, band_rows=3, strip_cols=16)
        # cuts 0-16, 16-35 (not 16-32 and a 3-column strip): computed over 0-24, 8-35
        assert calls == [24, 27]
        assert (out - _whole(model, x)).abs().max().item() <= ATOL


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
        # by default, bands of about 65536 input pixels within 2 to 32 rows (the fastest
        # per pixel measured): 32 rows of 512 to 2048, 16 of 4096, 5 of 10980, 2 of 40000
        assert pick_band_rows(stream, 512, 8 * 10**9) == 32
        assert pick_band_rows(stream, 1024, 8 * 10**9) == 32
        assert pick_band_rows(stream, 2048, 8 * 10**9) == 32
        assert pick_band_rows(stream, 4096, 8 * 10**9) == 16
        assert pick_band_rows(stream, 10980, 8 * 10**9) == 5
        assert pick_band_rows(stream, 40000, 8 * 10**9) == 2

    @pytest.mark.parametrize("scale", [2, 4])
    def test_heap_reused_only_where_the_budget_has_room_for_it(self, scale: int) -> None:
        """The streamed run reuses glibc's heap (faster, HEAP_KEPT more memory) up to
        4096 columns in the default budget; a whole 10980-column tile and column strips
        keep blocks mapped and unmapped (the 1.0 GB bound)."""
        stream = StreamingForward(load_model(pretrained_path(scale)))
        for width, want in ((2048, True), (4096, True), (10980, False)):
            rows, strips = pick_layout(stream, width, STREAM_BUDGET)
            assert reuses_heap(stream, width, rows, strips, STREAM_BUDGET) is want, width
        rows, _ = pick_layout(stream, 2048, STREAM_BUDGET)
        assert not reuses_heap(stream, 2048, rows, 1024, STREAM_BUDGET)  # strips
        need = state_bytes(stream, 2048) + band_bytes(stream, 2048, rows)
        assert reuses_heap(stream, 2048, rows, None, need + HEAP_KEPT)
        assert not reuses_heap(stream, 2048, rows, None, need + HEAP_KEPT - 1)

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


class TestLayout:
    @pytest.mark.parametrize("scale", [2, 4])
    def test_a_sentinel2_tile_streams_in_full_width_rows(self, scale: int) -> None:
        # measured (benchmarks/stream_memory.py): full-width bands of a 10980-column scene
        # stay under 1.0 GB at x2 and x4
        stream = StreamingForward(load_model(pretrained_path(scale)))
        rows, strips = pick_layout(stream, 10980, STREAM_BUDGET)
        assert strips is None and rows >= 1
        assert state_bytes(stream, 10980) + band_bytes(stream, 10980, rows) <= STREAM_BUDGET

    def test_a_tight_budget_cuts_column_strips_that_fit_it(self) -> None:
        stream = StreamingForward(load_model(pretrained_path(4)))
        width = 10980
        budget = state_bytes(stream, width + 8 * stream.halo)
        assert budget < state_bytes(stream, width) + band_bytes(stream, width, 1)
        rows, cols = pick_layout(stream, width, budget)
        assert cols is not None and stream.halo <= cols < width and rows >= 1
        # all strips' carried rows, one strip's upsampler batch and band
        strips = -(-width // cols)
        strip = cols + 2 * stream.halo
        assert carried_bytes(stream, width + 2 * stream.halo * strips) \
            + high_bytes(stream, strip) + band_bytes(stream, strip, rows) <= budget

    def test_a_budget_below_the_carried_rows_runs_in_one_row_bands_and_warns(
            self, caplog: pytest.LogCaptureFixture) -> None:
        # strips would not help (all strips' carried rows add up to the width): the stream
        # runs in its smallest layout rather than refusing a scene the user cannot shrink
        stream = StreamingForward(load_model(pretrained_path(2)))
        with caplog.at_level(logging.WARNING, logger="s2sr.inference.stream_budget"):
            assert pick_layout(stream, 10980, 10**6) == (1, None)
        assert "over the memory budget of 1 MB" in caplog.text


class TestMemory:
    """What keeps the streamed memory flat (benchmarks/README.md, stream_memory.py)."""

    def test_convolutions_share_two_buffers_and_carry_two_rows(self) -> None:
        scratch = Scratch()
        convs = [Conv(nn.Conv2d(4, 4, 3, padding=1).eval(), scratch, k % 2) for k in range(3)]
        x = _scene(40, 16).contiguous(memory_format=torch.channels_last)
        ptrs = set()
        with torch.inference_mode():
            for r in range(0, 35, 5):
                y = x[:, :, r:r + 5]
                for conv in convs:
                    y = conv.feed(y, False)
                    assert conv.carry is not None and conv.carry.shape[2] == 2
                if r:  # the first band has no carried rows: the buffers grow once
                    ptrs |= {f.data_ptr() for f in scratch.flat if f is not None}
            for conv in convs:
                y = conv.feed(y if conv is not convs[0] else x[:, :, 35:], True)
        # the same two buffers band after band: no band-sized tensor kept per convolution
        assert len(ptrs) == 2
        assert all(conv.carry is None for conv in convs)

    def test_the_bicubic_residual_waits_as_input_rows(self) -> None:
        # the global residual holds low-resolution input rows for the network's lag, never
        # upsampled rows (16x larger at x4)
        model = _tiny(4, True)
        stream = StreamingForward(model)
        node = stream.pipeline(20)
        assert isinstance(node, Seq)
        res = node.nodes[1]
        assert isinstance(res, BicubicResidual)
        with torch.inference_mode():
            for r in range(0, 24, 3):
                node.feed(_scene(3, 20, seed=r), False)
                assert res.buf is not None and res.buf.shape[2] <= 3 + 12
