"""The 5 m product's cascade (issue 22): the x2 guided model twice, the second pass guided by
the 10 m bands the 10 m model sharpens to 5 m; tile by tile equal to the whole-scene
cascade, its context (:func:`~s2sr.inference.multires_engine.context`) needed, the default
of ``--resolution 5``; a x4 guided model still runs once; the 20 m panel's x4 rows run it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import s2sr
from s2sr.core.bands import TEN_BANDS
from s2sr.core.errors import UsageError
from s2sr.evaluation.panel20 import run_guided, runs_at
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.multires_engine import (
    HR_INDEX,
    LR_INDEX,
    context,
    model_halo,
)
from s2sr.models import load_model, pretrained_path
from s2sr.models.guided import guided_halo
from s2sr.models.pretrained import pretrained_20m_path
from support.cli import one_error_line, run_cli
from support.multires import engine, save, scene_arrays, tiny_guided, tiny_hr_model, write_pair

SIDE = 40  # 20 m pixels


def busy_guided() -> torch.nn.Module:
    """A tiny x2 guided model whose every convolution is at full strength (an untrained one
    starts near bicubic: its tail at 1 %, the injection at 0), so that a tile short of
    context shows."""
    model = tiny_guided(2)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 4:
                p.normal_(0, 1.5 / math.sqrt(p[0].numel()))
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"g2": save(busy_guided(), root / "g2.safetensors"),
            "hr": save(tiny_hr_model(), root / "hr.safetensors")}


def _cascade(guided: torch.nn.Module, hr_model: torch.nn.Module, lr: np.ndarray,
             hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole-scene cascade of reflectance inputs: (the six bands, the four) at 5 m."""
    with torch.no_grad():
        lr_t, hr_t = (torch.from_numpy(x.astype(np.float32))[None] for x in (lr, hr))
        up = hr_model(hr_t)
        mid = guided(lr_t, hr_t).clamp_min(0)
        return guided(mid, up)[0].numpy(), up[0].numpy()


def _dn(refl: np.ndarray) -> np.ndarray:
    n = refl.shape[0]
    return DnEncoding("uint16", (1e-4,) * n, (0.0,) * n, None).to_dn(
        refl, np.ones(refl.shape[1:], bool))


class TestContext:
    def test_both_passes_and_the_10m_model(self) -> None:
        """The second pass's context in 10 m pixels / 2 on top of the larger of the first
        pass's and the 10 m model's (both read the tile directly)."""
        assert context(20, 36, True) == 10 + 20
        assert context(8, 20, True) == 4 + 10
        assert context(7, 20, True) == 4 + 10
        assert context(8, 20, False) == 10 and context(8, None, False) == 8

    def test_engine_runs_the_cascade_at_5m_only(self) -> None:
        g2, hr = tiny_guided(2), tiny_hr_model()
        five = engine(g2, hr, 60)
        assert five.cascade and five.scale == 4
        assert five.halo == context(guided_halo(g2), model_halo(hr), True)
        assert five.tile == 60 and five.core == 60 - 2 * five.halo
        ten = engine(g2, None)
        assert not ten.cascade and ten.scale == 2 and ten.halo == guided_halo(g2)
        one = engine(tiny_guided(4, seed=3), hr)
        assert not one.cascade and one.scale == 4


    def test_the_10m_model_streams_on_the_cpu_equal_to_its_forward(self) -> None:
        """On the CPU the 10 m model runs as a row stream (bands of about 64 Ki pixels),
        equal to its plain forward within float rounding, also on a part of a tile."""
        hr = tiny_hr_model()
        five = engine(tiny_guided(2), hr, 60)
        assert five.hr_stream is not None and five.hr_stream.model is five.hr_model
        x = np.random.default_rng(2).random((4, 37, 2500), dtype=np.float32) * 0.4
        with torch.inference_mode():
            ref = hr(torch.from_numpy(x)[None])
            out = five._hr_forward(x)
        assert out.shape == ref.shape and (out - ref).abs().max().item() < 1e-5
        assert engine(tiny_guided(2), None).hr_stream is None  # 10 m: no 10 m model


class TestTiles:
    @pytest.mark.parametrize("extra", [None, 9, 14, 23])
    def test_tiles_equal_the_whole_scene_cascade(self, tmp_path: Path, models: dict[str, Path],
                                                 extra: int | None) -> None:
        """Cores of 9 to 23 20 m pixels (and the default) with the context: within 1 DN of
        the whole-scene cascade, the six bands and the four."""
        hr, lr = scene_arrays(SIDE)
        a, b = write_pair(tmp_path, hr, lr)
        g2, hm = load_model(models["g2"]), load_model(models["hr"])
        halo = context(guided_halo(g2), model_halo(hm), True)
        tile = [] if extra is None else ["--tile", str(2 * halo + extra)]
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--resolution", "5", "--weights-20m",
                             models["g2"], "--weights", models["hr"], "-q", *tile)
        assert code == 0, text
        with rasterio.open(tmp_path / "o.tif") as ds:
            out, desc, tags = ds.read(), ds.descriptions, ds.tags()
        assert out.shape == (10, 4 * SIDE, 4 * SIDE) and desc == TEN_BANDS
        six, four = _cascade(g2, hm, lr * 1e-4, hr * 1e-4)
        assert np.abs(out[LR_INDEX].astype(int) - _dn(six).astype(int)).max() <= 1
        assert np.abs(out[HR_INDEX].astype(int) - _dn(four).astype(int)).max() <= 1
        assert tags["S2SR_MODEL_FILE"] == "g2.safetensors,hr.safetensors"

    def test_float_exact_and_the_context_needed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On float32 reflectance the tiles equal the whole-scene cascade to float rounding;
        without the second pass's context (one pass's only) they do not."""
        import s2sr.inference.multires_engine as engine

        hr, lr = scene_arrays(SIDE, dtype="float32")
        g2, hm = busy_guided(), tiny_hr_model()
        six, _ = _cascade(g2, hm, lr, hr)
        ref = np.maximum(six, 0)
        halo = context(guided_halo(g2), model_halo(hm), True)
        out = s2sr.super_resolve(hr, g2, array_20m=lr, model_10m=hm, tile=2 * halo + 10)
        assert out.shape == (10, 4 * SIDE, 4 * SIDE)
        assert ref.std() > 0.1 and np.abs(out[LR_INDEX] - ref).max() < 1e-4
        short = context(guided_halo(g2), model_halo(hm), False)
        monkeypatch.setattr(engine, "context", lambda g, h, c: short)
        bad = s2sr.super_resolve(hr, g2, array_20m=lr, model_10m=hm, tile=2 * short + 10)
        assert np.abs(bad[LR_INDEX] - ref).max() > 1e-3


class TestModels:
    def test_a_x4_guided_model_still_runs_once(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(24, dtype="float32")
        g4, hm = tiny_guided(4, seed=3), tiny_hr_model()
        out = s2sr.super_resolve(hr, g4, array_20m=lr, model_10m=hm)
        with torch.no_grad():
            ref = g4(torch.from_numpy(lr)[None], torch.from_numpy(hr)[None])[0].numpy()
        assert np.abs(out[LR_INDEX] - np.maximum(ref, 0)).max() < 1e-5

    def test_default_at_5m_is_the_shipped_x2_twice(self, tmp_path: Path) -> None:
        """Without --weights-20m the 5 m product runs s2sr_20m_x2 (the cascade) and s2sr_x2."""
        try:
            pretrained_20m_path(2)
        except UsageError:
            pytest.skip("the shipped s2sr_20m_x2 is not installed")
        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path, hr, lr)
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--resolution", "5", "-q")
        assert code == 0, text
        with rasterio.open(tmp_path / "o.tif") as ds:
            assert ds.tags()["S2SR_MODEL_FILE"] == "s2sr_20m_x2.safetensors,s2sr_x2.safetensors"
            assert ds.shape == (64, 64)

    def test_a_x4_model_refused_at_10m_in_one_line(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path / "in", hr, lr)
        g4 = save(tiny_guided(4, seed=3), tmp_path / "g4.safetensors")
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--weights-20m", g4)
        line = one_error_line(text)
        assert code == 2 and "x4" in line and "--resolution 5" in line
        assert not (tmp_path / "o.tif").exists()


class TestPanel:
    def test_x4_rows_of_a_x2_model_are_the_cascade(self) -> None:
        """The 20 m panel's x4 rows run what predict --resolution 5 runs."""
        hr, lr = scene_arrays(24, dtype="float32")
        g2 = tiny_guided(2)
        assert runs_at(g2, 4) and runs_at(g2, 2) and not runs_at(tiny_guided(4), 2)
        got = run_guided(g2, lr, hr, "cpu", 4)
        ten = s2sr.super_resolve(hr, g2, array_20m=lr, model_10m=load_model(pretrained_path(2)))
        assert got.shape == (6, 96, 96)
        assert np.array_equal(got, ten[LR_INDEX])
        with pytest.raises(UsageError, match="score it at its scale"):
            run_guided(tiny_guided(4), lr, hr, "cpu", 2)


class TestXarray:
    def test_5m_grid_of_the_cascade(self, tmp_path: Path, models: dict[str, Path]) -> None:
        """With model_10m and a x2 guided model the DataArray is at 5 m: half the 10 m pixel
        (the grid was once read from the guided model's scale, 10 m for a x2)."""
        rioxarray = pytest.importorskip("rioxarray")
        from affine import Affine

        from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
        from support.rasters import UTM_TRANSFORM

        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path, hr, lr)
        da10 = rioxarray.open_rasterio(a).assign_coords(band=list(DEFAULT_BANDS))
        da20 = rioxarray.open_rasterio(b).assign_coords(band=list(BANDS_20M))
        out = s2sr.super_resolve_xarray(da10, models["g2"], array_20m=da20,
                                        model_10m=models["hr"])
        assert out.shape == (10, 64, 64) and out.attrs["s2sr_resolution"] == 5
        assert out.rio.transform() == UTM_TRANSFORM * Affine.scale(0.5)
