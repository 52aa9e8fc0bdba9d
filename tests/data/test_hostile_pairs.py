"""Hostile and bad input for ``s2sr pairs`` (issue 9): NaN nodata, georeferencing,
concurrent builds, damaged dataset files, out-of-range numbers, output policy, signals,
``pairs decide`` errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from rasterio.windows import Window
from torch.utils.data import default_collate

from s2sr.cli.main import cli
from s2sr.core.errors import DataError, UsageError
from s2sr.data import (
    BuildOptions,
    DegradeOptions,
    PairDataset,
    PairStore,
    build_pair,
    degrade_scene,
)
from s2sr.data.simulate import Perturbation, make_pair
from support.cli import one_error_line
from support.rasters import make_safe, texture, write_geotiff

S2SR = [sys.executable, "-m", "s2sr.cli.main"]
DATES = {"lr_date": "2020-06-01", "hr_date": "2020-06-10"}


def _scene(path: Path, shape: tuple[int, int] = (128, 128), seed: int = 1) -> Path:
    dn = np.rint(texture(shape, seed=seed) * 10000).astype(np.uint16)
    return write_geotiff(path, dn, tiled=True, blockxsize=256, blockysize=256)


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["pairs", *map(str, args)])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def wald_ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A scene and a Wald dataset made from it (patch 16, x2)."""
    folder = tmp_path_factory.mktemp("wald")
    scene = _scene(folder / "s2.tif", (160, 144))
    degrade_scene(scene, folder / "ds", DegradeOptions(patch=16))
    return scene, folder / "ds"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A simulated Sentinel-2 / 5 m reference pair (shift 0.5, -1 px) and its dataset."""
    folder = tmp_path_factory.mktemp("built")
    lr, hr = folder / "s2.tif", folder / "ref.tif"
    make_pair(texture((400, 400), seed=5), 2, Perturbation(shift=(0.5, -1.0)), lr, hr,
              hr_border=6)
    build_pair(lr, hr, folder / "ds", BuildOptions(patch=32, **DATES))  # type: ignore[arg-type]
    return lr, hr, folder / "ds"


def _copy_dataset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- 1. NaN nodata ---------------------------------------------------------------------------

class TestNanNodata:
    def test_degrade_marks_nan_pixels_missing(self, tmp_path: Path) -> None:
        refl = texture((128, 128), seed=3).astype(np.float32)
        refl[:, :40, :40] = np.nan
        path = write_geotiff(tmp_path / "f.tif", refl, nodata=float("nan"))
        degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=16))
        store = PairStore(tmp_path / "ds")
        rows = {(r["lr_row"], r["lr_col"]): r for r in store.rows()}
        assert rows[(0, 0)]["reason"] == "nodata" and rows[(0, 0)]["nodata"] == 1.0
        assert rows[(16, 16)]["reason"] == "nodata"  # partly missing (rows/cols 32-39)
        assert rows[(32, 32)]["status"] == "auto-accepted"
        _, hr = store.arrays(next(iter(store.pairs)))
        assert (hr[rows[(0, 0)]["index"]] == 0).all()  # missing stays 0, never garbage
        assert len(PairDataset(tmp_path / "ds")) == sum(
            r["status"] == "auto-accepted" for r in rows.values())

    def test_build_marks_nan_pixels_of_both_sides_missing(self, tmp_path: Path) -> None:
        lr, hr = tmp_path / "s2u.tif", tmp_path / "refu.tif"
        make_pair(texture((320, 320), seed=6), 2, Perturbation(), lr, hr)
        for src, name, box in ((lr, "s2.tif", (0, 40, 0, 40)), (hr, "ref.tif",
                                                                  (240, 320, 240, 320))):
            with rasterio.open(src) as ds:
                data = ds.read().astype(np.float32) / 10000
                profile = {"transform": ds.transform, "descriptions": ds.descriptions}
            r0, r1, c0, c1 = box
            data[:, r0:r1, c0:c1] = np.nan
            write_geotiff(tmp_path / name, data, nodata=float("nan"), **profile)
        build_pair(tmp_path / "s2.tif", tmp_path / "ref.tif", tmp_path / "ds",
                   BuildOptions(patch=32, max_cloud=0.5, **DATES))  # type: ignore[arg-type]
        store = PairStore(tmp_path / "ds")
        rows = store.rows()
        s2_hole = [r for r in rows if r["lr_row"] < 40 and r["lr_col"] < 40]
        ref_hole = [r for r in rows if r["lr_row"] + 32 > 120 and r["lr_col"] + 32 > 120]
        assert s2_hole and ref_hole
        assert all(r["reason"] == "nodata" for r in s2_hole + ref_hole)
        lr_a, hr_a = store.arrays(next(iter(store.pairs)))
        assert np.abs(lr_a).max() < 20000 and np.abs(hr_a).max() < 20000


# --- 2. georeferencing -----------------------------------------------------------------------

def _window(transform: Affine, grid: Affine, size: int) -> Window:
    col, row = ~grid * (transform.c, transform.f)
    assert col == pytest.approx(round(col), abs=1e-6)
    assert row == pytest.approx(round(row), abs=1e-6)
    return Window(round(col), round(row), size, size)


class TestGeoreferencing:
    def test_build_patch_positions_match_the_source_rasters(
            self, built: tuple[Path, Path, Path]) -> None:
        lr_path, hr_path, root = built
        store = PairStore(root)
        info = next(iter(store.pairs.values()))
        lr_a, hr_a = store.arrays(next(iter(store.pairs)))
        rows = store.rows()
        assert len(rows) >= 9
        checked = 0
        with rasterio.open(lr_path) as src, rasterio.open(hr_path) as ref:
            for row in rows[::4]:
                lt, ht = Affine(*row["lr_transform"]), Affine(*row["hr_transform"])
                assert row["crs"] == "EPSG:32633"
                assert (lt.a, lt.e) == (10.0, -10.0) and (ht.a, ht.e) == (5.0, -5.0)
                assert (ht.c, ht.f) == pytest.approx((lt.c, lt.f))  # same ground
                win = _window(lt, src.transform, 32)
                assert (win.row_off, win.col_off) == (row["lr_row"], row["lr_col"])
                np.testing.assert_array_equal(lr_a[row["index"]], src.read(window=win))
                # the reference file is off by shift_px: read there, it matches the target
                dy, dx = info["shift_px"]
                hw = _window(ht * Affine.translation(round(dx * 2), round(dy * 2)),
                             ref.transform, 64)
                if hw.col_off + 67 > ref.width or hw.row_off + 67 > ref.height \
                        or hw.col_off < 0 or hw.row_off < 0:
                    continue  # the reference does not cover the whole patch (border)
                checked += 1
                got, want = hr_a[row["index"], 0].ravel(), ref.read(1, window=hw).ravel()
                assert np.corrcoef(got, want)[0, 1] > 0.97
                off = ref.read(1, window=Window(hw.col_off + 3, hw.row_off + 3, 64, 64))
                assert np.corrcoef(got, off.ravel())[0, 1] < 0.9
        assert checked >= 2

    def test_degrade_patch_positions_match_the_source_raster(
            self, wald_ds: tuple[Path, Path]) -> None:
        scene, root = wald_ds
        store = PairStore(root)
        lr_a, hr_a = store.arrays(next(iter(store.pairs)))
        rows = store.rows()
        with rasterio.open(scene) as src:
            full = src.read().astype(np.float64)
            for row in rows:
                lt, ht = Affine(*row["lr_transform"]), Affine(*row["hr_transform"])
                assert (lt.a, ht.a) == (20.0, 10.0) and (lt.c, lt.f) == (ht.c, ht.f)
                win = _window(ht, src.transform, 32)
                assert (win.row_off, win.col_off) == (row["hr_row"], row["hr_col"])
                np.testing.assert_array_equal(hr_a[row["index"]], src.read(window=win))
                # the input pixel (i, j) covers target pixels 2i..2i+1: block means agree
                r, c = int(win.row_off), int(win.col_off)
                block = full[:, r:r + 32, c:c + 32].reshape(4, 16, 2, 16, 2).mean((2, 4))
                assert np.abs(lr_a[row["index"]] - block).mean() < 80

    def test_items_carry_crs_and_transforms_through_crops_and_collate(
            self, wald_ds: tuple[Path, Path]) -> None:
        _, root = wald_ds
        ds = PairDataset(root, crop=8, generator=torch.Generator().manual_seed(1))
        row = ds.rows[3]
        item = ds[3]
        lt, ht = Affine(*item["lr_transform"]), Affine(*item["hr_transform"])
        x, y = ~Affine(*row["lr_transform"]) * (lt.c, lt.f)
        assert item["crs"] == "EPSG:32633" and 0 <= x <= 8 and 0 <= y <= 8
        assert (x, y) == (round(x), round(y))
        assert (ht.c, ht.f) == (lt.c, lt.f) and ht.a == lt.a / 2
        # the crop is the part of the whole patch at that offset
        whole = PairDataset(root)[3]
        torch.testing.assert_close(item["lr"], whole["lr"][:, round(y):round(y) + 8,
                                                           round(x):round(x) + 8])
        batch = default_collate([ds[0], ds[1]])
        assert batch["lr"].shape == (2, 4, 8, 8) and batch["crs"] == ["EPSG:32633"] * 2
        assert len(batch["lr_transform"]) == 6 and batch["lr_transform"][0].shape == (2,)


# --- 3. concurrent builds into one dataset ---------------------------------------------------

class TestConcurrency:
    def test_cleanup_spares_a_live_build_in_progress(self, wald_ds: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
        scene, src = wald_ds
        root = _copy_dataset(src, tmp_path / "ds")
        mine = PairStore(root, create=True)
        _, _, lw, hw = mine.new_arrays("inflight", 1, 4, 16, 32)
        lw[0] = np.zeros((4, 16, 16))
        degrade_scene(scene, root, DegradeOptions(patch=16, site="other", levels=(40, 10)))
        assert lw.tmp.exists() and hw.tmp.exists()  # another commit left them alone
        hw[0] = np.zeros((4, 32, 32))
        lw.flush()
        hw.flush()
        info = {**next(iter(mine.pairs.values())), "lr_array": lw.path.name,
                "hr_array": hw.path.name, "patch": 16, "scale": 2}
        row = {**mine.rows()[0], "pair_id": "inflight", "patch_id": "inflight:0:0",
               "index": 0}
        mine.commit_pair("inflight", info, [row], (lw, hw))
        store = PairStore(root)
        assert len(store.pairs) == 3  # nothing lost: the first, the x4 and this one
        for pid in store.pairs:
            store.arrays(pid)

    @pytest.mark.slow
    def test_two_processes_into_one_dataset_lose_nothing(self, tmp_path: Path) -> None:
        a = _scene(tmp_path / "a.tif", (480, 480), seed=2)
        b = _scene(tmp_path / "b.tif", (800, 800), seed=3)
        root = tmp_path / "ds"
        procs = [subprocess.Popen([*S2SR, "pairs", "degrade", str(s), "-o", str(root),
                                   "--patch", "16"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for s in (a, b)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        store = PairStore(root)
        assert len(store.pairs) == 2
        assert {len([r for r in store.rows() if r["pair_id"] == pid]) for pid in store.pairs
                } == {15 * 15, 25 * 25}
        for pid in store.pairs:
            store.arrays(pid)  # exist, shapes match the rows
        names = sorted(p.name for p in (root / "arrays").iterdir())
        assert names == sorted(i[k] for i in store.pairs.values()
                               for k in ("lr_array", "hr_array"))


# --- 4. damaged dataset files ----------------------------------------------------------------

def _damage(root: Path, how: str) -> str:
    """Damage a dataset copy; returns the file name the error must name."""
    man = root / "manifest.json"
    data = json.loads(man.read_text())
    pid = next(iter(data["pairs"]))
    info = data["pairs"][pid]
    if how.startswith("decisions"):
        text = {"decisions-not-json": "{not json", "decisions-list": "[1, 2]",
                "decisions-types": json.dumps({"x": {"status": 5}}),
                "decisions-bad-status": json.dumps({"x": {"status": "maybe"}})}[how]
        (root / "decisions.json").write_text(text)
        return "decisions.json"
    if how.startswith("array"):
        arr = root / "arrays" / info["lr_array"]
        if how == "array-missing":
            arr.unlink()
        elif how == "array-shape":
            np.save(arr, np.zeros((2, 4, 16, 16), np.int16))
        elif how == "array-dtype":
            np.save(arr, np.zeros(np.load(arr).shape, np.float64))
        elif how == "array-pickle":
            np.save(arr, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif how == "array-truncated":
            arr.write_bytes(arr.read_bytes()[:200])
        return info["lr_array"]
    if how == "manifest-not-json":
        man.write_text("{")
    elif how == "manifest-list":
        man.write_text("[]")
    elif how == "manifest-no-patches":
        del data["patches"]
    elif how == "manifest-pairs-list":
        data["pairs"] = []
    elif how == "manifest-version":
        data["format_version"] = 99
    elif how == "row-missing-field":
        del data["patches"][0]["index"]
    elif how == "row-wrong-type":
        data["patches"][0]["lr_size"] = "16"
    elif how == "row-not-object":
        data["patches"][0] = 7
    elif how == "row-bad-status":
        data["patches"][0]["auto_status"] = "maybe"
    elif how == "row-bad-transform":
        data["patches"][0]["lr_transform"] = [1, 2, "x"]
    elif how == "row-unknown-pair":
        data["patches"][0]["pair_id"] = "nope"
    elif how == "row-size-mismatch":
        data["patches"][0]["lr_size"] = 17
    elif how == "row-index-out-of-range":
        data["patches"][0]["index"] = 10**9
    elif how == "pair-escaping-array-name":
        info["lr_array"] = "../../../etc/passwd.npy"
    elif how == "pair-bands-not-list":
        info["bands"] = "B02"
    if how != "manifest-not-json" and how != "manifest-list":
        man.write_text(json.dumps(data))
    return "manifest.json"


DAMAGES = ["decisions-not-json", "decisions-list", "decisions-types", "decisions-bad-status",
           "manifest-not-json", "manifest-list", "manifest-no-patches", "manifest-pairs-list",
           "manifest-version", "row-missing-field", "row-wrong-type", "row-not-object",
           "row-bad-status", "row-bad-transform", "row-unknown-pair", "row-size-mismatch",
           "row-index-out-of-range", "pair-escaping-array-name", "pair-bands-not-list",
           "array-missing", "array-shape", "array-dtype", "array-pickle", "array-truncated"]


class TestDamagedDataset:
    @pytest.mark.parametrize("how", DAMAGES)
    def test_every_command_refuses_in_one_line(self, how: str, wald_ds: tuple[Path, Path],
                                               tmp_path: Path) -> None:
        scene, src = wald_ds
        root = _copy_dataset(src, tmp_path / "ds")
        name = _damage(root, how)
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            PairDataset(root)
        patch_id = json.loads((src / "manifest.json").read_text())["patches"][1]["patch_id"]
        commands = [["decide", root, patch_id, "accepted"], ["info", root],
                    ["degrade", scene, "-o", root, "--patch", "16", "--levels", "40,10"]]
        if how.startswith("array"):  # only readers of the arrays need them
            commands = []
        for args in commands:
            code, out = _run(*args)
            line = one_error_line(out)
            assert code == 1 and name in line and ("rebuild" in line or "delete" in line
                                                   or "restore" in line), (args, out)
        if how.startswith("array"):
            with pytest.raises(DataError, match=r"rebuild that pair"):
                PairStore(root).arrays(next(iter(PairStore(root).pairs)))

    def test_intact_dataset_still_opens(self, wald_ds: tuple[Path, Path]) -> None:
        _, root = wald_ds
        code, out = _run("info", root)
        assert code == 0 and "patches" in out
        assert len(PairDataset(root, status=None)) == len(PairStore(root).rows())


# --- 5. numbers out of range -----------------------------------------------------------------

DEGRADE_BAD = [
    (["--resolution", "0"], "--resolution"), (["--resolution", "nan"], "--resolution"),
    (["--resolution", "-10"], "--resolution"), (["--resolution", "inf"], "--resolution"),
    (["--levels", "nan,10"], "--levels"), (["--levels", "10,20"], "larger"),
    (["--levels", "0"], "INPUT,TARGET"), (["--levels", "0,0"], "--levels"),
    (["--levels", "20,10,5"], "INPUT,TARGET"), (["--levels", "inf,10"], "--levels"),
    (["--mtf", "0"], "--mtf"), (["--mtf", "1"], "--mtf"), (["--mtf", "nan"], "--mtf"),
    (["--patch", "0"], "--patch"), (["--patch", "-1"], "--patch"),
    (["--patch", "1000000"], "--patch"), (["--stride", "0"], "--stride"),
    (["--gain", "nan"], "--gain"), (["--gain", "0"], "--gain"),
    (["--threshold", "max_cloud=2"], "max_cloud"), (["--threshold", "bogus=1"], "bogus"),
    (["--threshold", "mad_z=nan"], "mad_z"), (["--threshold", "max_nodata"], "KEY=NUMBER"),
    (["--threshold", "min_corr=abc"], "KEY=NUMBER"), (["--scale", "3"], "--scale"),
    (["--bands", "B02,XX"], "--bands"),
]
BUILD_BAD = [
    (["--max-days", "-1"], "--max-days"), (["--max-days", "nan"], "--max-days"),
    (["--max-cloud", "2"], "--max-cloud"), (["--max-cloud", "nan"], "--max-cloud"),
    (["--scale", "3"], "--scale"), (["--patch", "0"], "--patch"),
    (["--stride", "0"], "--stride"), (["--degrade", "0"], "--degrade"),
    (["--threshold", "max_shift=-1"], "max_shift"),
]


class TestOptionRanges:
    @pytest.mark.parametrize(("args", "word"), DEGRADE_BAD)
    def test_degrade_refuses_before_any_work(self, args: list[str], word: str,
                                             wald_ds: tuple[Path, Path],
                                             tmp_path: Path) -> None:
        scene, _ = wald_ds
        code, out = _run("degrade", scene, "-o", tmp_path / "ds", *args)
        assert code == 2 and word in out and "Traceback" not in out, out
        assert not (tmp_path / "ds").exists()

    @pytest.mark.parametrize(("args", "word"), BUILD_BAD)
    def test_build_refuses_before_any_work(self, args: list[str], word: str,
                                           built: tuple[Path, Path, Path],
                                           tmp_path: Path) -> None:
        lr, hr, _ = built
        code, out = _run("build", "--lr", lr, "--hr", hr, "-o", tmp_path / "ds", *args)
        assert code == 2 and word in out and "Traceback" not in out, out
        assert not (tmp_path / "ds").exists()

    def test_api_refuses_nan_and_inf(self, wald_ds: tuple[Path, Path], tmp_path: Path) -> None:
        scene, _ = wald_ds
        for opts in (DegradeOptions(resolution=math.nan), DegradeOptions(mtf=math.inf),
                     DegradeOptions(levels=(math.nan, 10.0))):
            with pytest.raises(UsageError):
                degrade_scene(scene, tmp_path / "ds", opts)
        with pytest.raises(UsageError, match="--max-cloud"):
            build_pair(scene, scene, tmp_path / "ds", BuildOptions(max_cloud=math.nan))
        assert not (tmp_path / "ds").exists()


# --- 6. output policy, SIGTERM and kill -9 ---------------------------------------------------

class TestOutputPolicy:
    def test_dataset_path_that_is_a_file(self, wald_ds: tuple[Path, Path],
                                         tmp_path: Path) -> None:
        scene, _ = wald_ds
        target = tmp_path / "taken.txt"
        target.write_text("keep me")
        for args in (["degrade", scene, "-o", target],
                     ["info", target], ["decide", target, "x:0:0", "accepted"]):
            code, out = _run(*args)
            line = one_error_line(out)
            assert code == 2 and "taken.txt" in line, out
        assert target.read_text() == "keep me"

    def test_dataset_inside_an_input_folder(self, tmp_path: Path) -> None:
        safe = make_safe(tmp_path, np.rint(texture((128, 128), seed=2) * 10000
                                           ).astype(np.uint16))
        code, out = _run("degrade", safe, "-o", safe / "ds")
        assert code == 2 and "inside the input" in one_error_line(out)
        assert not (safe / "ds").exists()

    def test_existing_non_dataset_folder_is_refused(self, wald_ds: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
        scene, _ = wald_ds
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("x")
        code, out = _run("degrade", scene, "-o", tmp_path / "mine", "--patch", "16")
        assert code == 2 and "not an s2sr dataset" in one_error_line(out)
        assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
    def test_signal_mid_run_leaves_dataset_intact(self, sig: int, wald_ds: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
        small, src = wald_ds
        root = _copy_dataset(src, tmp_path / "ds")
        before = (root / "manifest.json").read_text()
        big = _scene(tmp_path / "big.tif", (1200, 1200), seed=9)
        proc = subprocess.Popen([*S2SR, "pairs", "degrade", str(big), "-o", str(root),
                                 "--patch", "16"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".") for p in (root / "arrays").iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "never wrote"
            time.sleep(0.01)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGTERM:
            # 128 + SIGTERM (or 130, as Ctrl-C), with a one-line message, no traceback
            assert proc.returncode in (130, 143) and "Traceback" not in err, err
            assert not [p for p in (root / "arrays").iterdir() if p.name.startswith(".")]
        else:
            assert proc.returncode == -signal.SIGKILL
        assert (root / "manifest.json").read_text() == before
        store = PairStore(root)
        for pid in store.pairs:
            store.arrays(pid)
        assert len(PairDataset(root, status=None)) == len(json.loads(before)["patches"])
        # a second run sweeps what a killed one left; nothing temporary remains
        code, out = _run("degrade", small, "-o", root, "--patch", "16", "--levels", "40,10")
        assert code == 0, out
        left = [p.name for p in [*root.iterdir(), *(root / "arrays").iterdir()]
                if ".s2sr-" in p.name and p.name != ".s2sr-pairs.lock"]
        assert left == []
        assert len(PairStore(root).pairs) == 2


# --- 7. pairs decide -------------------------------------------------------------------------

class TestDecide:
    def test_unknown_patch_bad_status_and_not_a_dataset(self, wald_ds: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
        _, src = wald_ds
        root = _copy_dataset(src, tmp_path / "ds")
        code, out = _run("decide", root, "nope:1:2", "accepted")
        assert code == 2 and "no patch 'nope:1:2'" in one_error_line(out)
        pid = PairStore(root).rows()[0]["patch_id"]
        code, out = _run("decide", root, pid, "maybe")
        assert code == 2 and "maybe" in out and "Traceback" not in out
        (tmp_path / "empty").mkdir()
        code, out = _run("decide", tmp_path / "empty", pid, "accepted")
        assert code == 2 and "not an s2sr pairs dataset" in one_error_line(out)
        code, out = _run("decide", tmp_path / "absent", pid, "accepted")
        assert code == 2 and "not an s2sr pairs dataset" in one_error_line(out)
        assert not (tmp_path / "absent").exists() and not (root / "decisions.json").exists()
        code, out = _run("decide", root, pid, "rejected", "--note", "haze")
        assert code == 0 and PairStore(root).rows()[0]["status"] == "rejected"
