"""``s2sr pairs build``: simulated pairs with known perturbations, safety, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from s2sr.cli.main import cli
from s2sr.core.errors import BandError, DataError, UsageError
from s2sr.data import BuildOptions, PairDataset, PairStore, build_pair
from s2sr.data.simulate import Perturbation, make_pair
from s2sr.inference.baselines import upsample
from support.rasters import texture
from support.shared import SENTINEL2, requires_shared

PERT = dict(shift=(0.3, -0.45), gain=(1.1, 0.9, 1.05, 0.95), offset=(0.01, -0.005, 0.0, 0.02),
            mix=0.1, blur_sigma=0.6)
CHANGE = (400, 520, 40, 200)  # fine-grid rows/cols
DATES = {"lr_date": "2020-06-01", "hr_date": "2020-06-10"}


def _truth(real: bool) -> np.ndarray:
    if real:
        with rasterio.open(SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif") as ds:
            return ds.read().astype(np.float32) / 10000
    return texture((600, 600), seed=11)


def _clouds(real: bool, shape: tuple[int, int]) -> np.ndarray:
    cloud = np.zeros(shape, bool)
    if real:
        with rasterio.open(SENTINEL2 / "ukis_clouds_labels.tif") as ds:
            cloud[:200, 400:] = ds.read(1)[:200, :200] == 4
    else:
        yy, xx = np.mgrid[:200, :200]
        cloud[:200, 400:] = ((yy - 90) ** 2 + (xx - 110) ** 2) < 70**2
    return cloud


# the real-dsen2 cases run with the slow tests (make test-all, CI); synthetic ones always
@pytest.fixture(params=[pytest.param(True, marks=[requires_shared, pytest.mark.slow],
                                     id="real-dsen2"),
                        pytest.param(False, id="synthetic")])
def simulated(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path, dict]:
    real = request.param
    truth = _truth(real)
    pert = Perturbation(**PERT, cloud=_clouds(real, truth.shape[1:]), change=CHANGE)
    make_pair(truth, 2, pert, tmp_path / "s2_20200601.tif", tmp_path / "ref.tif", hr_border=6)
    return tmp_path / "s2_20200601.tif", tmp_path / "ref.tif", {"pert": pert}


def _build(lr: Path, hr: Path, ds: Path, **kw: object) -> dict:
    opts = BuildOptions(**{"patch": 32, "max_cloud": 0.3, **DATES, **kw})  # type: ignore[arg-type]
    return build_pair(lr, hr, ds, opts)


def _fraction(row: dict, r0: int, r1: int, c0: int, c1: int) -> float:
    """Fraction of a patch (LR pixels) inside the fine-grid box [r0, r1) x [c0, c1)."""
    pr, pc, p = row["lr_row"], row["lr_col"], row["lr_size"]
    dy = max(0.0, min(pr + p, r1 / 2) - max(pr, r0 / 2))
    dx = max(0.0, min(pc + p, c1 / 2) - max(pc, c0 / 2))
    return dy * dx / p**2


def _expected_patches(lr: Path, hr: Path, patch: int) -> int:
    """Patches one build cuts, from the geometry alone: whole ``patch`` x ``patch`` tiles of
    the two rasters' overlap on the Sentinel-2 grid, less the builder's one-pixel margin on
    each side."""
    with rasterio.open(lr) as a, rasterio.open(hr) as b:
        left, right = max(a.bounds.left, b.bounds.left), min(a.bounds.right, b.bounds.right)
        bottom, top = max(a.bounds.bottom, b.bounds.bottom), min(a.bounds.top, b.bounds.top)
        (xres, yres), (x0, y0) = a.res, (a.bounds.left, a.bounds.top)
    cols = np.floor((right - x0) / xres + 1e-6) - np.ceil((left - x0) / xres - 1e-6) - 2
    rows = np.floor((y0 - bottom) / yres + 1e-6) - np.ceil((y0 - top) / yres - 1e-6) - 2
    return int(cols // patch) * int(rows // patch)


def _overlaps(row: dict, r0: int, r1: int, c0: int, c1: int, margin: int = 0) -> bool:
    """Whether a patch (LR pixels) touches the fine-grid box [r0, r1) x [c0, c1)."""
    pr, pc, p = row["lr_row"], row["lr_col"], row["lr_size"]
    return (pr < r1 / 2 + margin and pr + p > r0 / 2 - margin
            and pc < c1 / 2 + margin and pc + p > c0 / 2 - margin)


def test_builder_recovers_perturbations(simulated: tuple[Path, Path, dict], tmp_path: Path
                                        ) -> None:
    lr, hr, truth = simulated
    info = _build(lr, hr, tmp_path / "ds")
    pert = truth["pert"]
    assert info["shift_px"] == pytest.approx(list(pert.shift), abs=0.1)
    for b in (0, 2, 3):  # B03 is mixed with B02, so its gain is not a pure inverse
        assert info["gain"][b] == pytest.approx(1 / pert.gain[b], rel=0.02)
    assert info["time_gap_days"] == 9
    rows = PairStore(tmp_path / "ds").rows()
    cloudy = [r for r in rows if r["cloud"] > 0.05]
    changed = [r for r in rows if _fraction(r, *CHANGE) >= 0.5]
    touched = [r for r in rows if _fraction(r, *CHANGE) >= 0.2]
    clean = [r for r in rows if not _overlaps(r, 0, 200, 400, 600, margin=4)
             and not _overlaps(r, *CHANGE, margin=4)]
    assert len(cloudy) >= 4 and len(changed) >= 4 and len(clean) >= 30
    assert all(r["status"] == "auto-rejected" and r["reason"] == "cloud" for r in cloudy)
    assert all(r["status"] == "auto-rejected" and r["reason"] == "changed" for r in changed)
    # patches only partly changed are rejected too, as changed or as outliers of the scene
    assert all(r["reason"] in ("changed", "outlier-corr", "outlier-ssim") for r in touched)
    assert all(r["status"] == "auto-accepted" for r in clean), [
        (r["lr_row"], r["lr_col"], r["reason"]) for r in clean if r["reason"]]
    # stored arrays: Sentinel-2 patch as read, reference normalised onto it
    ds = PairDataset(tmp_path / "ds")
    item = ds[0]
    assert item["lr"].shape == (4, 32, 32) and item["hr"].shape == (4, 64, 64)
    assert float((item["hr"][:, ::2, ::2].mean() - item["lr"].mean()).abs()) < 0.01


def test_rebuild_is_idempotent_and_keeps_decisions(simulated: tuple[Path, Path, dict],
                                                   tmp_path: Path) -> None:
    lr, hr, _ = simulated
    ds = tmp_path / "ds"
    _build(lr, hr, ds)
    store = PairStore(ds)
    n = len(store.rows())
    rejected = next(r for r in store.rows() if r["status"] == "auto-rejected")
    accepted = next(r for r in store.rows() if r["status"] == "auto-accepted")
    store.decide(rejected["patch_id"], "accepted", "looked fine to me")
    store.decide(accepted["patch_id"], "rejected")
    _build(lr, hr, ds)
    rows = {r["patch_id"]: r for r in PairStore(ds).rows()}
    assert len(rows) == n
    assert rows[rejected["patch_id"]]["status"] == "accepted"
    assert rows[accepted["patch_id"]]["status"] == "rejected"
    assert len(list((ds / "arrays").glob("*.npy"))) == 2  # old arrays cleaned up
    ids = {r["patch_id"] for r in PairDataset(ds).rows}
    assert rejected["patch_id"] in ids and accepted["patch_id"] not in ids


def test_interrupted_build_leaves_dataset_valid(simulated: tuple[Path, Path, dict],
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lr, hr, _ = simulated
    ds = tmp_path / "ds"
    _build(lr, hr, ds)
    before = (ds / "manifest.json").read_text()
    calls = {"n": 0}
    import s2sr.data.pair_builder as pairs_module

    real_stats = pairs_module.patch_stats

    def flaky(*args: object) -> dict:
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real_stats(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pairs_module, "patch_stats", flaky)
    with pytest.raises(KeyboardInterrupt):
        _build(lr, hr, ds, site="other")
    assert (ds / "manifest.json").read_text() == before
    assert len(list((ds / "arrays").glob("*.npy"))) == 2
    assert len(PairDataset(ds, status=None)) == len(json.loads(before)["patches"])


def test_pair_dataset_filters_crops_and_augments(simulated: tuple[Path, Path, dict],
                                                 tmp_path: Path) -> None:
    import torch

    lr, hr, _ = simulated
    ds = tmp_path / "ds"
    _build(lr, hr, ds, site="a", split="train")
    _build(lr, hr, ds, site="b", split="val", kind="SE10>RE5b")
    per_build = _expected_patches(lr, hr, 32)
    assert per_build >= 16  # the synthetic pair: 294 px of overlap, 9 x 9 patches
    assert len(PairStore(ds).rows()) == 2 * per_build
    assert len(PairDataset(ds, status=None)) == 2 * per_build
    assert len(PairDataset(ds, site="a", status=None)) == per_build
    # the default filter keeps the accepted patches only, those of the val split are site b's
    accepted = [r for r in PairStore(ds).rows() if r["status"] in ("auto-accepted", "accepted")]
    assert 0 < len(PairDataset(ds)) == len(accepted) < 2 * per_build
    assert len(PairDataset(ds, split="val")) == len(PairDataset(ds, site="b")) > 0
    gen = torch.Generator().manual_seed(0)
    crops = PairDataset(ds, split="train", crop=12, augment=True, generator=gen)
    item = crops[3]
    assert item["lr"].shape == (4, 12, 12) and item["hr"].shape == (4, 24, 24)
    # crop and augmentation keep input and target aligned: the target degraded by block
    # mean tracks the input closely
    down = item["hr"].reshape(4, 12, 2, 12, 2).mean((2, 4))
    assert float(np.corrcoef(down.flatten(), item["lr"].flatten())[0, 1]) > 0.9
    with pytest.raises(UsageError, match="larger than"):
        PairDataset(ds, crop=64)


def _write(path: Path, data: np.ndarray, transform: Affine, crs: str | None,
           names: tuple[str, ...] = ("blue", "green", "red", "nir")) -> Path:
    kwargs = {"crs": crs} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype="uint16", transform=transform, **kwargs) as d:
        d.write(data)
        d.descriptions = names
    return path


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    truth = texture((200, 200), seed=5)
    dn = (truth * 10000).astype(np.uint16)
    lr_t = Affine(10, 0, 500000, 0, -10, 5000000)
    lr = _write(tmp_path / "s2.tif", dn[:, ::2, ::2], lr_t, "EPSG:32633",
                ("B02", "B03", "B04", "B08"))
    ds = tmp_path / "ds"
    far = _write(tmp_path / "far.tif", dn, Affine(5, 0, 700000, 0, -5, 5000000), "EPSG:32633")
    with pytest.raises(DataError, match="do not overlap"):
        _build(lr, far, ds)
    nocrs = _write(tmp_path / "nocrs.tif", dn, Affine(5, 0, 500000, 0, -5, 5000000), None)
    with pytest.raises(DataError, match="no CRS"):
        _build(lr, nocrs, ds)
    three = _write(tmp_path / "three.tif", dn[:3], Affine(5, 0, 500000, 0, -5, 5000000),
                   "EPSG:32633", ("blue", "green", "red"))
    with pytest.raises(BandError, match="no band for B08"):
        _build(lr, three, ds)
    coarse = _write(tmp_path / "coarse.tif", dn[:, ::2, ::2], lr_t, "EPSG:32633")
    with pytest.raises(DataError, match="does not match --scale 2"):
        _build(lr, coarse, ds)
    # featureless (all-cloud) scenes: no texture to find the shift from
    flat = _write(tmp_path / "flat.tif", np.full((4, 200, 200), 5500, np.uint16),
                  Affine(5, 0, 500000, 0, -5, 5000000), "EPSG:32633")
    flat_lr = _write(tmp_path / "fl.tif", np.full((4, 100, 100), 5500, np.uint16), lr_t,
                     "EPSG:32633", ("B02", "B03", "B04", "B08"))
    with pytest.raises(DataError, match="cannot estimate the shift .* reliably "
                                        r"\(no window had texture to correlate\)"):
        _build(flat_lr, flat, ds)
    unrelated = _write(tmp_path / "other.tif", (texture((200, 200), seed=99) * 10000).astype(
        np.uint16), Affine(5, 0, 500000, 0, -5, 5000000), "EPSG:32633")
    with pytest.raises(DataError, match="reliably"):
        _build(lr, unrelated, ds)
    same = _write(tmp_path / "ref_20200901.tif", (upsample(truth[:, ::2, ::2], 2) * 10000
                                                  ).astype(np.uint16),
                  Affine(5, 0, 500000, 0, -5, 5000000), "EPSG:32633")
    with pytest.raises(DataError, match="days apart"):
        build_pair(lr, same, ds, BuildOptions(patch=32, lr_date="2020-06-01"))
    assert not ds.exists()


def test_cli_build_info_decide(simulated: tuple[Path, Path, dict], tmp_path: Path) -> None:
    lr, hr, _ = simulated
    ds = tmp_path / "ds"
    runner = CliRunner()
    res = runner.invoke(cli, ["pairs", "build", "--lr", str(lr), "--hr", str(hr), "-o", str(ds),
                              "--patch", "32", "--site", "sim", "--split", "test",
                              "--lr-date", "2020-06-01", "--hr-date", "2020-06-10",
                              "--max-cloud", "0.3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["pairs", "info", str(ds), "--json"])
    summary = json.loads(res.output)
    pair = next(iter(summary["pairs"].values()))
    assert summary["by_site"] == {"sim": summary["patches"]}
    assert set(pair) >= {"shift_px", "gain", "offset", "time_gap_days", "by_status",
                         "by_reason"}
    assert pair["by_reason"]["cloud"] >= 4 and pair["by_reason"]["changed"] >= 4
    res = runner.invoke(cli, ["pairs", "info", str(ds)])
    assert "changed" in res.output and "cloud" in res.output
    pid = PairStore(ds).rows()[0]["patch_id"]
    res = runner.invoke(cli, ["pairs", "decide", str(ds), pid, "rejected", "--note", "blurry"])
    assert res.exit_code == 0 and PairStore(ds).rows()[0]["status"] == "rejected"
    res = runner.invoke(cli, ["pairs", "build", "--lr", str(lr), "--hr", str(hr), "-o",
                              str(tmp_path / "x"), "--max-days", "3", "--lr-date",
                              "2020-06-01", "--hr-date", "2020-06-10"])
    assert res.exit_code == 1 and "9 days apart" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(cli, ["pairs", "info", str(tmp_path / "none")])
    assert res.exit_code == 2 and "not an s2sr pairs dataset" in res.output


def _plain_pair(tmp_path: Path) -> tuple[np.ndarray, Path, Path]:
    truth = texture((400, 400), seed=21)
    pert = Perturbation(shift=(0.2, 0.1))
    make_pair(truth, 2, pert, tmp_path / "s2.tif", tmp_path / "ref.tif")
    return truth, tmp_path / "s2.tif", tmp_path / "ref.tif"


def test_reference_mask_marks_clouds(tmp_path: Path) -> None:
    _, lr, hr = _plain_pair(tmp_path)
    with rasterio.open(hr) as ref:
        profile = ref.profile | {"count": 1, "dtype": "uint8", "nodata": None}
    mask = np.zeros((400, 400), np.uint8)
    mask[:128, :128] = 1  # the reference's own cloud mask: top-left 64 x 64 S2 pixels
    with rasterio.open(tmp_path / "mask.tif", "w", **profile) as dst:
        dst.write(mask[None])
    build_pair(lr, hr, tmp_path / "ds", BuildOptions(patch=32, max_cloud=0.5,
                                                     hr_mask=str(tmp_path / "mask.tif"),
                                                     **DATES))
    rows = {(r["lr_row"], r["lr_col"]): r for r in PairStore(tmp_path / "ds").rows()}
    assert rows[(1, 1)]["reason"] == "cloud" and rows[(1, 1)]["cloud"] > 0.9
    assert rows[(129, 129)]["status"] == "auto-accepted"


def test_l2a_scene_classification_is_used(tmp_path: Path) -> None:
    """A per-band folder with an SCL file: its cloud classes mark the patches."""
    _, lr, hr = _plain_pair(tmp_path)
    folder = tmp_path / "S2_L2A"
    folder.mkdir()
    with rasterio.open(lr) as src:
        profile, data = src.profile, src.read()
    for k, band in enumerate(("B02", "B03", "B04", "B08")):
        with rasterio.open(folder / f"T33_{band}_10m.tif", "w",
                           **(profile | {"count": 1})) as dst:
            dst.write(data[k:k + 1])
    scl = np.full((100, 100), 4, np.uint8)  # vegetation, 20 m
    scl[50:, 50:] = 9  # cloud, high probability
    with rasterio.open(folder / "T33_SCL_20m.tif", "w", driver="GTiff", width=100, height=100,
                       count=1, dtype="uint8", crs=profile["crs"],
                       transform=profile["transform"] @ Affine.scale(2)) as dst:
        dst.write(scl[None])
    info = build_pair(folder, hr, tmp_path / "ds", BuildOptions(patch=32, max_cloud=0.5,
                                                                **DATES))
    rows = {(r["lr_row"], r["lr_col"]): r for r in PairStore(tmp_path / "ds").rows()}
    assert rows[(161, 161)]["reason"] == "cloud"
    assert rows[(1, 1)]["status"] == "auto-accepted"
    assert 0.15 < info["cloud_fraction"] < 0.4


def _cloudy_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A textured pair with bright cloud over the top 40 % of both: the clear part still
    registers, so the build gets as far as the cloud fraction."""
    clouded = (texture((200, 200), seed=5) * 10000).astype(np.uint16)
    clouded[:, :80] = 5500
    hr = _write(tmp_path / "cloud.tif", clouded, Affine(5, 0, 500000, 0, -5, 5000000),
                "EPSG:32633")
    lr = _write(tmp_path / "cl.tif", clouded[:, ::2, ::2], Affine(10, 0, 500000, 0, -10, 5000000),
                "EPSG:32633", ("B02", "B03", "B04", "B08"))
    return lr, hr


def test_cloudy_pair_is_refused_for_its_cloud(tmp_path: Path) -> None:
    lr, hr = _cloudy_pair(tmp_path)
    ds = tmp_path / "ds"
    with pytest.raises(DataError, match=r"4\d% of the overlap is cloud or shadow, more than "
                                        r"--max-cloud 30%: choose a clearer pair"):
        _build(lr, hr, ds)  # --max-cloud 30 %
    assert not list(ds.glob("arrays/*.npy"))
    _build(lr, hr, ds, max_cloud=0.6)  # the same pair is accepted under a looser limit
    assert len(PairStore(ds).rows()) == _expected_patches(lr, hr, 32)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content), folders as empty strings."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b""
            for p in sorted(root.rglob("*"))}


def test_cloudy_pair_refused_writes_nothing(tmp_path: Path) -> None:
    lr, hr = _cloudy_pair(tmp_path)
    with pytest.raises(DataError, match="cloud or shadow"):
        _build(lr, hr, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    # the folders it made on the way go too, and the CLI does the same
    with pytest.raises(DataError, match="cloud or shadow"):
        _build(lr, hr, tmp_path / "new" / "deeper" / "ds")
    assert not (tmp_path / "new").exists()
    res = CliRunner().invoke(cli, ["pairs", "build", "--lr", str(lr), "--hr", str(hr), "-o",
                                   str(tmp_path / "cli"), "--patch", "32", "--max-cloud", "0.3",
                                   "--lr-date", DATES["lr_date"], "--hr-date", DATES["hr_date"]])
    assert res.exit_code == 1 and "cloud or shadow" in res.output, res.output
    assert not (tmp_path / "cli").exists()


def test_cloudy_pair_refused_leaves_what_existed(tmp_path: Path) -> None:
    lr, hr = _cloudy_pair(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="cloud or shadow"):
        _build(lr, hr, empty)
    assert empty.is_dir() and not list(empty.iterdir())  # the folder was the user's: kept
    ds = tmp_path / "ds"
    _build(lr, hr, ds, max_cloud=0.6)
    before = _tree(ds)
    assert "manifest.json" in before and any(k.endswith(".npy") for k in before)
    for kw in ({}, {"kind": "other"}):  # the same pair again, and as a new pair id
        with pytest.raises(DataError, match="cloud or shadow"):
            _build(lr, hr, ds, **kw)
        assert _tree(ds) == before  # a dataset that existed is never touched
