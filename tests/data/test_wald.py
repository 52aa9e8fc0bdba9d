"""``s2sr pairs degrade``: Wald-protocol pairs from one scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from s2sr.cli.main import cli
from s2sr.core.errors import DataError, UsageError
from s2sr.data import DegradeOptions, PairDataset, PairStore, degrade_scene
from s2sr.data.degrade import degrade
from support.rasters import texture, write_geotiff


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    refl = texture((200, 180), seed=4)
    dn = np.rint(refl * 10000).astype(np.uint16)
    return write_geotiff(tmp_path / "s2.tif", dn), dn


def test_target_is_the_scene_and_input_its_degradation(scene: tuple[Path, np.ndarray],
                                                      tmp_path: Path) -> None:
    path, dn = scene
    info = degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=16, site="s"))
    assert info["kind"] == "SE20>SE10" and info["scale"] == 2
    store = PairStore(tmp_path / "ds")
    lr, hr = store.arrays(next(iter(store.pairs)))
    rows = store.rows()
    assert len(rows) == (200 // 32) * (180 // 32) == lr.shape[0]
    full_lr = degrade(dn.astype(np.float32) / 10000, 2)
    for row in rows:
        r, c = row["lr_row"], row["lr_col"]
        np.testing.assert_array_equal(hr[row["index"]], dn[:, r * 2:r * 2 + 32, c * 2:c * 2 + 32])
        np.testing.assert_allclose(lr[row["index"]] / 10000, full_lr[:, r:r + 16, c:c + 16],
                                   atol=1.5e-4)
    assert {r["status"] for r in rows} == {"auto-accepted"}


def test_levels_x4_and_reference_degraded_once(scene: tuple[Path, np.ndarray],
                                                tmp_path: Path) -> None:
    path, _ = scene
    info = degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=8, levels=(40, 10)))
    assert info["kind"] == "SE40>SE10" and info["scale"] == 4
    ref = write_geotiff(tmp_path / "ref.tif", np.rint(texture((240, 240), seed=2) * 10000
                                                      ).astype(np.uint16),
                        transform=Affine(5, 0, 500000, 0, -5, 5000000),
                        descriptions=("blue", "green", "red", "nir"))
    info = degrade_scene(ref, tmp_path / "ds", DegradeOptions(patch=12, levels=(20, 10),
                                                              sensor="RE"))
    assert info["kind"] == "RE20>RE10"
    item = PairDataset(tmp_path / "ds", kind="RE20>RE10")[0]
    assert item["lr"].shape == (4, 12, 12) and item["hr"].shape == (4, 24, 24)
    assert sorted(PairStore(tmp_path / "ds").summary()["by_kind"]) == ["RE20>RE10",
                                                                       "SE40>SE10"]


def test_clouds_and_nodata_are_rejected(tmp_path: Path) -> None:
    dn = np.rint(texture((128, 128), seed=1) * 10000).astype(np.uint16)
    dn[:, :32, :32] = 0
    dn[:, 64:, 64:] = np.array([5000, 5100, 5200, 5600], np.uint16)[:, None, None]
    path = write_geotiff(tmp_path / "s.tif", dn, nodata=0)
    degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=16))
    reasons = {(r["lr_row"], r["lr_col"]): r["reason"] for r in PairStore(tmp_path / "ds").rows()}
    assert reasons[(0, 0)] == "nodata"
    assert reasons[(48, 48)] == "cloud"
    assert reasons[(0, 48)] == ""


def test_scene_without_data_writes_nothing(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "s.tif", np.zeros((4, 64, 64), np.uint16), nodata=0)
    with pytest.raises(DataError, match="holds no valid pixels"):
        degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=16))
    assert not (tmp_path / "ds").exists()


def test_bad_options(scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, dn = scene
    with pytest.raises(UsageError, match="whole multiples"):
        degrade_scene(path, tmp_path / "ds", DegradeOptions(levels=(25, 10)))
    with pytest.raises(UsageError, match="contradicts"):
        degrade_scene(path, tmp_path / "ds", DegradeOptions(levels=(20, 10), scale=4))
    with pytest.raises(DataError, match="smaller than one"):
        degrade_scene(path, tmp_path / "ds", DegradeOptions(patch=128))
    geo = write_geotiff(tmp_path / "geo.tif", dn, crs="EPSG:4326",
                        transform=Affine(1e-4, 0, 10, 0, -1e-4, 45))
    with pytest.raises(UsageError, match="--levels are in metres: pass --resolution"):
        degrade_scene(geo, tmp_path / "ds", DegradeOptions(levels=(20, 10)))
    assert not (tmp_path / "ds").exists()


def test_cli_degrade(scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = scene
    res = CliRunner().invoke(cli, ["pairs", "degrade", str(path), "-o", str(tmp_path / "ds"),
                                   "--patch", "16", "--levels", "20,10", "--split", "val"])
    assert res.exit_code == 0, res.output
    assert PairStore(tmp_path / "ds").summary()["by_split"] == {"val": 30}
    res = CliRunner().invoke(cli, ["pairs", "degrade", str(path), "-o", str(tmp_path / "e"),
                                   "--levels", "twenty"])
    assert res.exit_code == 2 and "INPUT,TARGET" in res.output
