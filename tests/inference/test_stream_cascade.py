"""The 5 m cascade streamed in column strips (:mod:`s2sr.inference.stream_cascade`,
:mod:`s2sr.inference.multires_strips`): equal to the whole-scene cascade and to the tiled
engine within float rounding for any strip width and band height, across a snow field the
guard acts on, with nodata and saturated pixels; the strips' context is needed; the default
of a 5 m predict on the CPU, named in the output's tags; damaged weights refused."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import s2sr.inference.multires_strips as strips
from s2sr.core.errors import WeightsError
from s2sr.inference.multires_engine import HR_INDEX, LR_INDEX, context, model_halo
from s2sr.inference.multires_predict import super_resolve_bands
from s2sr.inference.stream_cascade import Columns
from s2sr.models.guided import guided_halo
from support.cli import one_error_line, run_cli
from support.multires import (
    save,
    scene_arrays,
    snow_scene,
    tiny_guided,
    tiny_hr_model,
    write_pair,
)

SIDE = 40  # 20 m pixels


def busy_guided(seed: int = 5) -> torch.nn.Module:
    """A tiny x2 guided model at full strength (an untrained one is near bicubic)."""
    model = tiny_guided(2)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 4:
                p.normal_(0, 1.5 / math.sqrt(p[0].numel()))
    return model


def whole_cascade(guided: torch.nn.Module, hr_model: torch.nn.Module, lr: np.ndarray,
                  hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's plain forward on the whole scene: the six bands (cut at 0) and the
    four, at 5 m."""
    with torch.no_grad():
        lr_t, hr_t = (torch.from_numpy(x.astype(np.float32))[None] for x in (lr, hr))
        up = hr_model(hr_t)
        mid = guided(lr_t, hr_t).clamp_min(0)
        return np.maximum(guided(mid, up)[0].numpy(), 0), up[0].numpy()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Columns]:
    """The strips run, recorded (their columns) as each cascade stream is made."""
    made: list[Columns] = []
    real = strips.CascadeStream

    def spy(guided: object, hr: object, cols: Columns) -> object:
        made.append(cols)
        return real(guided, hr, cols)  # type: ignore[arg-type]

    monkeypatch.setattr(strips, "CascadeStream", spy)
    return made


def layout(monkeypatch: pytest.MonkeyPatch, widest: int, step: int, rows: int) -> None:
    """Strips of at most ``widest`` 20 m columns (multiples of ``step``), ``rows`` 20 m
    rows read at once."""
    monkeypatch.setattr(strips, "STRIP_CORE", widest)
    monkeypatch.setattr(strips, "STRIP_STEP", step)
    monkeypatch.setattr(strips, "preferred_rows", lambda width: 2 * rows)


class TestLayout:
    def test_strip_cores_cover_the_width_in_equal_steps(self) -> None:
        assert strips.strip_cores(5490, 2048, 128) == [(0, 1920), (1920, 3840), (3840, 5490)]
        assert strips.strip_cores(2048, 2048, 128) == [(0, 2048)]
        assert strips.strip_cores(40, 16, 8) == [(0, 16), (16, 32), (32, 40)]
        assert strips.strip_cores(5, 2048, 128) == [(0, 5)]
        for width in (1, 7, 129, 1000, 4097):
            cores = strips.strip_cores(width, 300, 64)
            assert cores[0][0] == 0 and cores[-1][1] == width
            assert all(b == c for (_, b), (c, _) in itertools.pairwise(cores))
            assert all(b - a <= 320 for a, b in cores)

    def test_columns_around_a_core_cut_at_the_scene(self) -> None:
        cols = Columns.around((16, 32), 40, 14, 4, 10)
        assert (cols.read, cols.hr, cols.second, cols.core) == (
            (2, 40), (2, 40), (12, 36), (16, 32))
        edge = Columns.around((0, 16), 40, 14, 4, 3)
        assert (edge.read, edge.hr, edge.second) == ((0, 30), (0, 23), (0, 20))


class TestExact:
    @pytest.mark.parametrize(("widest", "rows"), [(16, 1), (16, 3), (24, 7), (2048, 16)])
    def test_strips_equal_the_whole_scene_and_the_tiles(
            self, monkeypatch: pytest.MonkeyPatch, counted: list[Columns], widest: int,
            rows: int) -> None:
        """float32 reflectance: within float rounding of the whole-scene cascade and of the
        tiled engine (cores of 10 20 m pixels), whatever the strips' width and band
        height."""
        hr, lr = scene_arrays(SIDE, dtype="float32")
        g2, hm = busy_guided(), tiny_hr_model()
        six, four = whole_cascade(g2, hm, lr, hr)
        halo = context(guided_halo(g2), model_halo(hm), True)
        tiled = super_resolve_bands(hr, lr, g2, model_10m=hm, tile=2 * halo + 10)
        assert not counted  # the tiled engine when a tile is asked for
        layout(monkeypatch, widest, 8, rows)
        out = super_resolve_bands(hr, lr, g2, model_10m=hm)
        assert len(counted) == len(strips.strip_cores(SIDE, widest, 8))
        assert out.shape == (10, 4 * SIDE, 4 * SIDE) and six.std() > 0.1
        assert np.abs(out[LR_INDEX] - six).max() < 1e-4
        assert np.abs(out[HR_INDEX] - four).max() < 1e-5
        assert np.abs(out - tiled).max() < 1e-4

    def test_the_last_band_is_no_taller_for_the_second_pass(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """At the scene's bottom the networks flush their lags: the second pass takes those
        rows in pieces no taller than it took before (its 5 m tail's memory is the
        strip's peak), and the output is unchanged."""
        fed: list[tuple[int, bool]] = []  # rows of each call of the second pass, flushing?
        flushing = [False]

        class Recorded:
            def __init__(self, node: object) -> None:
                self.node = node

            def feed(self, x: torch.Tensor, last: bool) -> torch.Tensor:
                fed.append((x.shape[2], flushing[0]))
                return self.node.feed(x, last)  # type: ignore[attr-defined]

        real = strips.CascadeStream

        def recording(guided: object, hr: object, cols: Columns) -> object:
            stream = real(guided, hr, cols)  # type: ignore[arg-type]
            stream.second = Recorded(stream.second)  # type: ignore[assignment]
            step = stream._step

            def flagged(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
                flushing[0] = bool(args[-1])
                return step(*args)  # type: ignore[arg-type]

            stream._step = flagged  # type: ignore[method-assign]
            return stream

        monkeypatch.setattr(strips, "CascadeStream", recording)
        hr, lr = scene_arrays(SIDE, dtype="float32")
        g2, hm = busy_guided(), tiny_hr_model()
        layout(monkeypatch, 2048, 8, 1)
        out = super_resolve_bands(hr, lr, g2, model_10m=hm)
        six, four = whole_cascade(g2, hm, lr, hr)
        assert np.abs(out[LR_INDEX] - six).max() < 1e-4
        assert np.abs(out[HR_INDEX] - four).max() < 1e-5
        before = [n for n, flush in fed if not flush]
        after = [n for n, flush in fed if flush]
        assert after and max(after) <= max(before)
        assert sum(after) > max(before)  # the lags are taller than a band: taken in pieces

    def test_the_strips_context_is_needed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Strips with the first pass's context only (not the second pass's on top) differ
        from the whole scene at their sides."""
        hr, lr = scene_arrays(SIDE, dtype="float32")
        g2, hm = busy_guided(), tiny_hr_model()
        six, _ = whole_cascade(g2, hm, lr, hr)
        layout(monkeypatch, 16, 8, 4)
        real = Columns.around

        def short(core: tuple[int, int], width: int, halo: int, second: int, hr_reach: int
                  ) -> Columns:
            return real(core, width, halo, 0, hr_reach)

        monkeypatch.setattr(Columns, "around", staticmethod(short))
        out = super_resolve_bands(hr, lr, g2, model_10m=hm)
        assert np.abs(out[LR_INDEX] - six).max() > 1e-3

    def test_a_snow_field_across_strips_and_bands_as_one_tile(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The guard's fallback over a snow field cut by strips and row bands: the same as
        the scene in one tile (float32), and the guard did act in the strips."""
        guide, lr = snow_scene(SIDE, (slice(6, 27), slice(10, 33)))
        g2, hm = tiny_guided(2), tiny_hr_model()
        halo = context(guided_halo(g2), model_halo(hm), True)
        one = super_resolve_bands(guide, lr, g2, model_10m=hm, tile=SIDE + 2 * halo)
        layout(monkeypatch, 16, 8, 3)
        out = super_resolve_bands(guide, lr, g2, model_10m=hm)
        assert np.abs(out - one).max() < 1e-5
        monkeypatch.setattr(strips, "guard_tile", lambda out, *args: (out, 0))
        bare = super_resolve_bands(guide, lr, g2, model_10m=hm)
        assert np.abs(bare[LR_INDEX] - out[LR_INDEX]).max() > 1e-2

    def test_nodata_and_saturated_pixels_as_the_tiles(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """uint16 DN with nodata holes and saturated samples in both grids, across strips
        and bands: within 1 DN of the tiles, nodata and saturation at the same pixels."""
        hr, lr = scene_arrays(SIDE)
        hr[:, 30:37, 20:50] = 0
        lr[:, 3:5, 14:19] = 0
        hr[2, 60:62, 5:7] = 65535
        lr[4, 21, 30] = 65535
        g2, hm = busy_guided(), tiny_hr_model()
        halo = context(guided_halo(g2), model_halo(hm), True)
        tiled = super_resolve_bands(hr, lr, g2, model_10m=hm, nodata=0, tile=2 * halo + 9)
        layout(monkeypatch, 16, 8, 5)
        out = super_resolve_bands(hr, lr, g2, model_10m=hm, nodata=0)
        assert out.dtype == np.uint16
        assert np.array_equal(out == 0, tiled == 0) and (out == 0).sum() > 0
        assert np.array_equal(out == 65535, tiled == 65535) and (out == 65535).sum() > 0
        assert np.abs(out.astype(int) - tiled.astype(int)).max() <= 1


class TestPredict:
    @pytest.mark.parametrize("widest", [2048, 8])
    def test_the_default_at_5m_streams_and_says_so(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, widest: int) -> None:
        """One strip or three (each written by rows of whole blocks): the GeoTIFF within
        1 DN of the tiled engine's, the engine named in its tags."""
        hr, lr = scene_arrays(28)
        a, b = write_pair(tmp_path / "in", hr, lr)
        g2 = save(busy_guided(), tmp_path / "g2.safetensors")
        hm = save(tiny_hr_model(), tmp_path / "hr.safetensors")
        layout(monkeypatch, widest, 8, 3)
        tags, outs = [], []
        for name, extra in (("s.tif", []), ("t.tif", ["--tile", "64"])):
            code, text = run_cli("predict", a, "-o", tmp_path / name, "--bands", "all",
                                 "--input-20m", b, "--resolution", "5", "--weights-20m", g2,
                                 "--weights", hm, "-q", *extra)
            assert code == 0, text
            with rasterio.open(tmp_path / name) as ds:
                tags.append(ds.tags())
                outs.append(ds.read().astype(int))
        assert outs[0].shape == (10, 112, 112) and np.abs(outs[0] - outs[1]).max() <= 1
        assert tags[0]["S2SR_ENGINE"] == "stream" and "S2SR_TILE" not in tags[0]
        assert tags[0]["S2SR_STRIPS"] == ("1 of 28" if widest > 28 else "4 of 8") \
            + " (20 m pixels)"
        assert tags[1]["S2SR_ENGINE"] == "tiled" and tags[1]["S2SR_TILE"] == "64 (20 m pixels)"
        # at 10 m the guided model alone runs in tiles
        code, text = run_cli("predict", a, "-o", tmp_path / "ten.tif", "--bands", "all",
                             "--input-20m", b, "--weights-20m", g2, "-q")
        assert code == 0, text
        with rasterio.open(tmp_path / "ten.tif") as ds:
            assert ds.tags()["S2SR_ENGINE"] == "tiled"

    def test_damaged_weights_refused_in_one_line_nothing_written(
            self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(24)
        g2 = busy_guided()
        with torch.no_grad():  # finite weights whose output overflows float32
            g2.tail.weight.fill_(3e38)
        with pytest.raises(WeightsError, match="NaN or infinite"):
            super_resolve_bands(hr, lr, g2, model_10m=tiny_hr_model())
        a, b = write_pair(tmp_path / "in", hr, lr)
        weights = save(g2, tmp_path / "g2.safetensors")
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--resolution", "5", "--weights-20m",
                             weights)
        line = one_error_line(text)
        assert code != 0 and "NaN or infinite" in line
        assert not (tmp_path / "o.tif").exists()
