"""End to end: Wald pairs from real Sentinel-2 -> train -> beats bicubic -> s2sr predict."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from s2sr import predict
from s2sr.data import DegradeOptions, degrade_scene
from s2sr.training import load_config, train
from support.shared import SENTINEL2, requires_shared

#: whole trainings: make test-all and CI run them
pytestmark = pytest.mark.slow


def _config(path: Path, dataset: Path, epochs: int) -> Path:
    cfg = {
        "name": "e2e", "seed": 0, "batch_size": 16,
        "model": {"name": "edsr", "scale": 2,
                  "options": {"n_resblocks": 4, "n_feats": 32, "global_residual": True}},
        "data": {"datasets": [str(dataset)], "kind": ["SE20>SE10"], "max_val_patches": 64},
        "loss": {"pixel": 1.0},
        "stages": [{"epochs": epochs, "lr": 3e-3, "patch": 12},
                   {"epochs": epochs, "lr": 1e-3}],
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _metrics(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv") as handle:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(handle)]


@requires_shared
def test_real_crops_train_beat_bicubic_and_predict(tmp_path: Path) -> None:
    for name, split in (("dsen2_T33UUB_20170527_L1C.tif", "train"),
                        ("eolearn_slovenia_3_L1C.tif", "val"),
                        ("boadella_20200128_L2A.tif", "val")):
        degrade_scene(SENTINEL2 / name, tmp_path / "ds", DegradeOptions(
            patch=16, split=split, site=name[:12], resolution=10.0))
    run = tmp_path / "run"
    train(load_config(_config(tmp_path / "c.yaml", tmp_path / "ds", 15)), run,
          progress=False)
    rows = _metrics(run)
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["val_psnr"] > rows[-1]["val_psnr_bicubic"] + 0.3
    assert rows[-1]["val_ssim"] > rows[-1]["val_ssim_bicubic"]
    out = predict(SENTINEL2 / "eurosat_forest_L1C.tif", tmp_path / "sr.tif",
                  run / "model.safetensors")
    with rasterio.open(out) as ds:
        sr = ds.read()
        assert ds.res == pytest.approx((5.0, 5.0), rel=0.01) and sr.shape == (4, 128, 128)
    with rasterio.open(SENTINEL2 / "eurosat_forest_L1C.tif") as ds:
        lr = ds.read([2, 3, 4, 8]).astype(float)
    down = sr.astype(float).reshape(4, 64, 2, 64, 2).mean(axis=(2, 4))
    assert np.abs(down - lr).mean() < 0.05 * lr.mean()  # consistent with its input


def test_bigearthnet_sample_from_pypi_trains(tmp_path: Path) -> None:
    """The same path on the real sample that reaches every machine through PyPI."""
    pytest.importorskip("bigearthnet_common")
    import tarfile

    from s2sr.io.sample import extract_sample, sample_archive

    with tarfile.open(sample_archive()) as tar:
        names = sorted({m.name.split("/")[1] for m in tar.getmembers() if m.name.count("/") >= 2})
    for k, patch in enumerate(names):
        folder = extract_sample(tmp_path / "sample", patch)
        degrade_scene(folder, tmp_path / "ds", DegradeOptions(
            patch=12, split="val" if k == 0 else "train", site=patch))
    run = tmp_path / "run"
    train(load_config(_config(tmp_path / "c.yaml", tmp_path / "ds", 3)), run, progress=False)
    rows = _metrics(run)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert np.isfinite(rows[-1]["val_psnr"])
    out = predict(folder, tmp_path / "sr.tif", run / "model.safetensors")
    with rasterio.open(out) as ds:
        assert ds.res == (5.0, 5.0)
