"""``s2sr predict --bands all`` (issue 22): the ten bands at 10 m or 5 m in one GeoTIFF,
tile by tile equal to a whole-scene forward, from every input form; the API and the xarray
path; and the refusals (one line, the right exit code, nothing written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

import s2sr
from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS, TEN_BANDS
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.multires_engine import HR_INDEX, LR_INDEX, model_halo
from s2sr.models.guided import guided_halo
from support.cli import one_error_line, run_cli
from support.multires import (
    UTM_20M,
    make_safe_multires,
    save,
    scene_arrays,
    tiny_guided,
    tiny_hr_model,
    write_band_folder,
    write_pair,
)
from support.rasters import UTM_TRANSFORM, write_geotiff

SIDE = 48  # 20 m pixels


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"g2": save(tiny_guided(2), root / "g2.safetensors"),
            "g4": save(tiny_guided(4, seed=3), root / "g4.safetensors"),
            "hr": save(tiny_hr_model(), root / "hr.safetensors")}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    hr, lr = scene_arrays(SIDE)
    a, b = write_pair(tmp_path_factory.mktemp("pair"), hr, lr)
    return a, b, hr, lr


def _whole(model: torch.nn.Module, *inputs: np.ndarray) -> np.ndarray:
    """The whole-scene forward of reflectance inputs."""
    with torch.no_grad():
        return model(*[torch.from_numpy(x.astype(np.float32))[None] for x in inputs])[0].numpy()


def _dn(refl: np.ndarray, offset: float = 0.0) -> np.ndarray:
    n = refl.shape[0]
    enc = DnEncoding("uint16", (1e-4,) * n, (offset,) * n, None)
    return enc.to_dn(refl, np.ones(refl.shape[1:], bool))


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple[str, ...], dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.descriptions, ds.tags()


def _predict(inp: Path, out: Path, weights: Path, *extra: str | Path) -> Path:
    code, text = run_cli("predict", inp, "-o", out, "--bands", "all", "--weights-20m",
                         weights, "-q", *extra)
    assert code == 0, text
    return out


class TestTenBandsAt10m:
    def test_bands_order_descriptions_and_grid(self, tmp_path: Path, pair: tuple,
                                               models: dict[str, Path]) -> None:
        a, b, *_ = pair
        out, profile, desc, tags = _read(_predict(a, tmp_path / "o.tif", models["g2"],
                                                  "--input-20m", b))
        assert desc == TEN_BANDS and out.shape == (10, 2 * SIDE, 2 * SIDE)
        assert profile["transform"] == UTM_TRANSFORM and profile["crs"] == "EPSG:32633"
        assert profile["dtype"] == "uint16"
        assert tags["S2SR_RESOLUTION"] == "10 m" and tags["S2SR_MODEL"] == "guided-edsr-tiny"
        assert tags["S2_DN_OFFSET"].count(":") == 10

    def test_10m_bands_pass_through_unchanged(self, tmp_path: Path, pair: tuple,
                                             models: dict[str, Path]) -> None:
        a, b, hr, _ = pair
        out = _read(_predict(a, tmp_path / "o.tif", models["g2"], "--input-20m", b))[0]
        np.testing.assert_array_equal(out[HR_INDEX], hr)

    @pytest.mark.parametrize("tile", [None, 24, 30, 41])
    def test_tiles_equal_the_whole_scene_forward(self, tmp_path: Path, pair: tuple,
                                                 models: dict[str, Path],
                                                 tile: int | None) -> None:
        """Cores of 8 to 25 20 m pixels with the halo around: within 1 DN of one forward
        over the whole scene (no seam, no blending)."""
        a, b, hr, lr = pair
        extra = ["--tile", str(tile)] if tile else []
        out = _read(_predict(a, tmp_path / "o.tif", models["g2"], "--input-20m", b,
                             *extra))[0]
        ref = _dn(_whole(s2sr.models.load_model(models["g2"]), lr * 1e-4, hr * 1e-4))
        diff = np.abs(out[LR_INDEX].astype(int) - ref.astype(int))
        assert diff.max() <= 1, diff.max()
        assert np.abs(out[LR_INDEX].astype(int) - np.repeat(np.repeat(lr, 2, 1), 2, 2)).max() > 5

    def test_float_reflectance_exact_and_the_halo_needed(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On float32 reflectance (no DN rounding) the tiles equal the whole-scene forward
        to float rounding; with half the context they do not (the check can fail)."""
        import s2sr.inference.multires_engine as engine

        hr, lr = scene_arrays(SIDE, dtype="float32")
        model = tiny_guided(2)
        ref = np.maximum(_whole(model, lr, hr), 0)
        halo = guided_halo(model)
        out = s2sr.super_resolve(hr, model, array_20m=lr, tile=2 * halo + 12)
        assert np.abs(out[LR_INDEX] - ref).max() < 1e-6
        monkeypatch.setattr(engine, "guided_halo", lambda m: halo // 2)
        monkeypatch.setattr(engine, "guard_reach", lambda s: 0)  # no snow here: no context
        short = s2sr.super_resolve(hr, model, array_20m=lr, tile=halo + 12)
        assert np.abs(short[LR_INDEX] - ref).max() > 1e-6

    def test_tile_smaller_than_the_context_refused(self, tmp_path: Path, pair: tuple,
                                                   models: dict[str, Path]) -> None:
        a, b, *_ = pair
        halo = guided_halo(s2sr.models.load_model(models["g2"]))
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--weights-20m", models["g2"], "--tile",
                             str(2 * halo + 7))
        assert code == 2 and f"at least {2 * halo + 8}" in one_error_line(text)
        assert not list(tmp_path.iterdir())
        # and a tile past the 4-band predict's bound (one tile held the whole scene)
        code, text = run_cli("predict", a, "-o", tmp_path / "o.tif", "--bands", "all",
                             "--input-20m", b, "--weights-20m", models["g2"], "--tile",
                             "100000000")
        assert code == 2 and "larger than 4096 20 m pixels" in one_error_line(text)
        assert not list(tmp_path.iterdir())


    @pytest.mark.parametrize(("tile", "core"), [(200, 128), (100, 64), (60, 44), (None, 384)])
    def test_cores_cut_to_whole_output_blocks(self, tile: int | None, core: int) -> None:
        """A core of 64 20 m pixels or more is a multiple of 64, so that the output blocks
        (256 or 128 pixels at 10 m) are each written once, whole."""
        from s2sr.inference.multires_engine import BandsSuperResolver

        enc = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, None)
        lr_enc = DnEncoding("uint16", (1e-4,) * 6, (0.0,) * 6, None)
        model = tiny_guided(2)
        engine = BandsSuperResolver(model, None, 1000, 1000, enc, lr_enc, tile)
        assert engine.core == core and engine.tile == core + 2 * guided_halo(model)


class TestTenBandsAt5m:
    @pytest.mark.parametrize("tile", [None, 28, 35])
    def test_all_ten_bands_at_5m_equal_whole_forwards(self, tmp_path: Path, pair: tuple,
                                                      models: dict[str, Path],
                                                      tile: int | None) -> None:
        a, b, hr, lr = pair
        extra = ["--tile", str(tile)] if tile else []
        path = _predict(a, tmp_path / "o.tif", models["g4"], "--input-20m", b,
                        "--resolution", "5", "--weights", models["hr"], *extra)
        out, profile, desc, tags = _read(path)
        assert out.shape == (10, 4 * SIDE, 4 * SIDE) and desc == TEN_BANDS
        assert profile["transform"] == UTM_TRANSFORM * Affine.scale(0.5)
        assert tags["S2SR_RESOLUTION"] == "5 m"
        hr_model = s2sr.models.load_model(models["hr"])
        assert model_halo(hr_model) > 2 * guided_halo(s2sr.models.load_model(models["g4"]))
        ref20 = _dn(_whole(s2sr.models.load_model(models["g4"]), lr * 1e-4, hr * 1e-4))
        ref10 = _dn(_whole(hr_model, hr * 1e-4))
        assert np.abs(out[LR_INDEX].astype(int) - ref20.astype(int)).max() <= 1
        assert np.abs(out[HR_INDEX].astype(int) - ref10.astype(int)).max() <= 1


class TestInputForms:
    @pytest.mark.parametrize(("level", "as_zip"), [("L2A", True), ("L1C", False)])
    def test_safe_with_baseline_offset(self, tmp_path: Path, models: dict[str, Path],
                                       level: str, as_zip: bool) -> None:
        """Baseline 04.00: reflectance = (DN - 1000) / 10000 on both resolutions; the
        output keeps the DN encoding (and says so in its tags)."""
        hr, lr = scene_arrays(24)
        hr, lr = hr + 1000, lr + 1000
        product = make_safe_multires(tmp_path, hr, lr, level=level, as_zip=as_zip)
        out, _, desc, tags = _read(_predict(product, tmp_path / "o.tif", models["g2"]))
        assert desc == TEN_BANDS
        np.testing.assert_array_equal(out[HR_INDEX], hr)
        ref = _dn(_whole(s2sr.models.load_model(models["g2"]), (lr - 1000.0) * 1e-4,
                         (hr - 1000.0) * 1e-4), offset=-0.1)
        assert np.abs(out[LR_INDEX].astype(int) - ref.astype(int)).max() <= 1
        assert tags["S2_DN_OFFSET"] == ",".join(f"{b}:-1000" for b in TEN_BANDS)

    def test_band_folder_equals_the_pair(self, tmp_path: Path, pair: tuple,
                                         models: dict[str, Path]) -> None:
        a, b, hr, lr = pair
        folder = write_band_folder(tmp_path / "S2A_MSIL2A_20170613T101031_87_48", hr, lr)
        from_folder = _read(_predict(folder, tmp_path / "f.tif", models["g2"]))[0]
        from_pair = _read(_predict(a, tmp_path / "p.tif", models["g2"], "--input-20m", b))[0]
        np.testing.assert_array_equal(from_folder, from_pair)


class TestNodata:
    def test_missing_20m_pixels_stay_missing_10m_bands_untouched(
            self, tmp_path: Path, models: dict[str, Path]) -> None:
        hr, lr = scene_arrays(SIDE)
        lr[:, 10:14, 20:30] = 0
        hr[:, 60:64, 4:8] = 0
        a, b = write_pair(tmp_path / "in", hr, lr, nodata=0)
        out = _read(_predict(a, tmp_path / "o.tif", models["g2"], "--input-20m", b,
                             "--tile", "24"))[0]
        assert (out[LR_INDEX][:, 20:28, 40:60] == 0).all()  # the 20 m gap, at 10 m
        assert (out[LR_INDEX][:, 60:64, 4:8] == 0).all()  # no guide: no sharpened value
        np.testing.assert_array_equal(out[HR_INDEX], hr)
        assert (out[LR_INDEX][:, :20] > 0).all() and (out[LR_INDEX][:, 30:60] > 0).all()


class TestApi:
    def test_predict_bands_all_is_the_cli(self, tmp_path: Path, pair: tuple,
                                          models: dict[str, Path]) -> None:
        a, b, *_ = pair
        api = s2sr.predict(a, tmp_path / "api.tif", bands="all", input_20m=b,
                           weights_20m=models["g2"])
        cli = _predict(a, tmp_path / "cli.tif", models["g2"], "--input-20m", b)
        np.testing.assert_array_equal(_read(api)[0], _read(cli)[0])

    def test_super_resolve_with_array_20m(self, tmp_path: Path, pair: tuple,
                                          models: dict[str, Path]) -> None:
        a, b, hr, lr = pair
        model = s2sr.models.load_model(models["g2"])
        arrays = s2sr.super_resolve(hr, model, array_20m=lr)
        cli = _predict(a, tmp_path / "cli.tif", models["g2"], "--input-20m", b)
        np.testing.assert_array_equal(arrays, _read(cli)[0])

    def test_xarray_with_array_20m(self, pair: tuple, models: dict[str, Path]) -> None:
        rioxarray = pytest.importorskip("rioxarray")
        a, b, hr, _ = pair
        da10, da20 = rioxarray.open_rasterio(a), rioxarray.open_rasterio(b)
        da10 = da10.assign_coords(band=list(DEFAULT_BANDS))
        da20 = da20.assign_coords(band=list(BANDS_20M))
        out = s2sr.super_resolve_xarray(da10, models["g2"], array_20m=da20)
        assert [str(v) for v in out.band.values] == list(TEN_BANDS)
        assert out.rio.transform() == UTM_TRANSFORM
        np.testing.assert_array_equal(out.values[HR_INDEX], hr)


class TestRefusals:
    """Bad input: one line, exit 2 (usage) or 1 (data), no output, no temporary left."""

    def _refused(self, tmp_path: Path, code_wanted: int, *args: str | Path) -> str:
        out = tmp_path / "out" / "o.tif"
        code, text = run_cli("predict", *args, "-o", out)
        line = one_error_line(text)
        assert code == code_wanted, text
        assert not out.parent.exists() or not list(out.parent.iterdir())
        return line

    def test_off_grid_20m(self, tmp_path: Path, models: dict[str, Path]) -> None:
        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path / "in", hr, lr,
                          lr_transform=Affine.translation(5.0, 0.0) * UTM_20M)
        line = self._refused(tmp_path, 1, a, "--bands", "all", "--input-20m", b,
                             "--weights-20m", models["g2"])
        assert "half-pixel" in line and "gdalwarp" in line

    def test_missing_20m_band(self, tmp_path: Path, models: dict[str, Path]) -> None:
        hr, lr = scene_arrays(16)
        folder = write_band_folder(tmp_path / "in", hr, lr[:5],
                                   lr_bands=("B05", "B06", "B07", "B8A", "B11"))
        line = self._refused(tmp_path, 1, folder, "--bands", "all", "--weights-20m",
                             models["g2"])
        assert "B12" in line

    @pytest.mark.parametrize("value", ["60", "20", "2"])
    def test_resolution_not_offered(self, tmp_path: Path, pair: tuple, value: str) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all", "--resolution", value)
        assert "60 m bands" in line and "use 10" in line

    def test_60m_band_beside_all(self, tmp_path: Path, pair: tuple) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all,B01")
        assert "60 m bands" in line

    def test_ten_band_option_without_bands_all(self, tmp_path: Path, pair: tuple) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--input-20m", pair[1])
        assert "--bands all" in line

    @pytest.mark.parametrize("option", [["--engine", "stream"], ["--scale", "4"],
                                        ["--precision", "int8"], ["--consistency"],
                                        ["--workers", "2"]])
    def test_options_that_do_not_apply(self, tmp_path: Path, pair: tuple,
                                       models: dict[str, Path], option: list[str]) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all", "--input-20m",
                             pair[1], "--weights-20m", models["g2"], *option)
        assert f"drop {option[0]}" in line

    def test_guided_model_of_the_other_resolution(self, tmp_path: Path, pair: tuple,
                                                  models: dict[str, Path]) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all", "--input-20m",
                             pair[1], "--weights-20m", models["g4"])
        assert "x4" in line and "--resolution 10" in line

    def test_plain_model_as_guided_weights(self, tmp_path: Path, pair: tuple,
                                           models: dict[str, Path]) -> None:
        line = self._refused(tmp_path, 1, pair[0], "--bands", "all", "--input-20m",
                             pair[1], "--weights-20m", models["hr"])
        assert "not a guided model" in line

    def test_shipped_20m_model_missing_names_the_option(
            self, tmp_path: Path, pair: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
        """An installation without s2sr_20m_x2 (an empty weights folder) asks for
        --weights-20m rather than failing later."""
        import s2sr.models.pretrained as pretrained

        monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "no-weights")
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all", "--input-20m", pair[1])
        assert "s2sr_20m_x2" in line and "--weights-20m FILE" in line

    def test_weights_at_10m(self, tmp_path: Path, pair: tuple,
                            models: dict[str, Path]) -> None:
        line = self._refused(tmp_path, 2, pair[0], "--bands", "all", "--input-20m",
                             pair[1], "--weights-20m", models["g2"], "--weights",
                             models["hr"])
        assert "--resolution 5" in line

    def test_nan_in_a_late_tile_leaves_nothing(self, tmp_path: Path,
                                               models: dict[str, Path]) -> None:
        """A NaN on a valid 20 m pixel in the last tile: refused naming its place, after
        earlier tiles were written; no output, no temporary."""
        hr, lr = scene_arrays(SIDE, dtype="float32")
        lr[2, 45, 46] = np.nan
        a, b = write_pair(tmp_path / "in", hr, lr)
        line = self._refused(tmp_path, 1, a, "--bands", "all", "--input-20m", b,
                             "--weights-20m", models["g2"], "--tile", "24")
        assert line.startswith("s2sr: error: the 20 m input (on the 20 m grid both inputs "
                               "cover) holds NaN") and "row 45, column 46" in line, line
        hr[1, 7, 9] = np.inf  # the 10 m input is named as such, on its own grid
        lr[2, 45, 46] = 0.1
        a, b = write_pair(tmp_path / "in2", hr, lr)
        line = self._refused(tmp_path, 1, a, "--bands", "all", "--input-20m", b,
                             "--weights-20m", models["g2"], "--tile", "24")
        assert "the 10 m input (on the 10 m grid both inputs cover) holds NaN or infinite" \
            in line and "row 7, column 9" in line, line

    def test_existing_output_kept(self, tmp_path: Path, pair: tuple,
                                  models: dict[str, Path]) -> None:
        out = write_geotiff(tmp_path / "o.tif", np.ones((1, 4, 4), np.uint16))
        before = out.read_bytes()
        code, text = run_cli("predict", pair[0], "-o", out, "--bands", "all",
                             "--input-20m", pair[1], "--weights-20m", models["g2"])
        assert code == 2 and "--overwrite" in one_error_line(text)
        assert out.read_bytes() == before
