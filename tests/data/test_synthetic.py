"""Synthetic pairs: the per-patch degradation sampler and the on-the-fly dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from s2sr.core.errors import UsageError
from s2sr.data.degrade import block_mean, box_mtf, degradation_sigma, degrade
from s2sr.data.synthetic import (
    HAZE_GAIN,
    Degradation,
    DegradationRange,
    SyntheticPairs,
    apply_degradation,
    panel_degradations,
    sample_degradation,
)
from s2sr.data.synthetic import Source as SyntheticSource
from support.rasters import texture, write_geotiff


def test_sampler_covers_the_documented_range() -> None:
    rng = np.random.default_rng(0)
    rr = DegradationRange()
    draws = [sample_degradation(rng, rr) for _ in range(4000)]
    block = [d for d in draws if d.mtf is None]
    mtfs = np.array([d.mtf for d in draws if d.mtf is not None])
    assert 0.17 < len(block) / len(draws) < 0.23  # block mean alone, 20 %
    assert mtfs.min() >= 0.15 and mtfs.max() <= 0.6
    assert mtfs.min() < 0.16 and mtfs.max() > 0.59  # both ends reached
    hist, _ = np.histogram(mtfs, bins=9, range=(0.15, 0.6))
    assert hist.min() > 0.7 * hist.mean()  # uniform, no hole
    shifts = np.array([d.shift for d in draws])
    assert np.abs(shifts).max() <= 0.25 and np.abs(shifts).max() > 0.24
    noise = np.array([d.noise for d in draws])
    assert noise.min() >= 0 and noise.max() <= 0.002 and noise.max() > 0.0019


def test_panel_cases() -> None:
    labels = [d.label for d in panel_degradations()]
    assert labels == ["block", "mtf0.20", "mtf0.30", "mtf0.45", "mtf0.60"]


@pytest.mark.parametrize("scale", [2, 4])
def test_degradation_matches_the_wald_degradation(scale: int) -> None:
    hr = texture((64, 64), bands=2)
    np.testing.assert_allclose(apply_degradation(hr, scale, Degradation(None)),
                               block_mean(hr, scale), atol=1e-6)
    np.testing.assert_allclose(apply_degradation(hr, scale, Degradation(0.3)),
                               degrade(hr, scale, 0.3), atol=1e-5)
    # the drawn MTF is what the PSF gives at the coarse Nyquist: Gaussian x box
    sigma = degradation_sigma(scale, 0.3)
    f = 1 / (2 * scale)
    got = np.exp(-2 * np.pi**2 * sigma**2 * f**2) * box_mtf(scale, f)
    assert abs(got - 0.3) < 1e-6


def test_noise_quantisation_and_shift() -> None:
    hr = texture((64, 64), bands=1)
    clean = apply_degradation(hr, 2, Degradation(0.3))
    noisy = apply_degradation(hr, 2, Degradation(0.3, noise=0.002, quantize=1e-4),
                              np.random.default_rng(1))
    assert 0.0015 < float((noisy - clean).std()) < 0.0025
    np.testing.assert_allclose(noisy * 1e4, np.round(noisy * 1e4), atol=1e-3)
    shifted = apply_degradation(hr, 2, Degradation(0.3, shift=(0.25, -0.25)))
    assert 1e-4 < float(np.abs(shifted - clean).mean()) < 0.01


def _source(shape: tuple[int, int] = (200, 200), hole: bool = False) -> SyntheticSource:
    arr = texture(shape)
    valid = np.ones(shape, bool)
    if hole:
        valid[:, :150] = False
        arr[:, ~valid] = 0
    return SyntheticSource("t", arr, valid)


def test_dataset_items_are_repeatable_and_change_with_the_epoch() -> None:
    ds = SyntheticPairs([_source()], 2, 16, 10, seed=3)
    a, b = ds[4], ds[4]
    assert a["lr"].shape == (4, 16, 16) and a["hr"].shape == (4, 32, 32)
    assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    ds.epoch = 1
    assert not torch.equal(ds[4]["hr"], a["hr"])
    with pytest.raises(IndexError):
        ds[10]


def test_dataset_pairs_are_consistent_and_avoid_nodata() -> None:
    src = _source(hole=True)
    ds = SyntheticPairs([src], 2, 12, 40, fixed=[Degradation(None)], augment=False)
    for i in range(len(ds)):
        item = ds[i]
        assert float(item["hr"].min()) > 0  # never cut from the hole (filled with 0)
        # block mean alone, no noise: the input is exactly the target's block mean
        np.testing.assert_allclose(item["lr"].numpy(), block_mean(item["hr"].numpy(), 2),
                                   atol=1e-6)


def test_validation_cycles_through_the_panel() -> None:
    ds = SyntheticPairs([_source()], 4, 8, 10, fixed=panel_degradations(), augment=False)
    assert [ds[i]["degradation"] for i in range(5)] == [d.label for d in panel_degradations()]
    ds.epoch = 3
    assert torch.equal(ds[2]["hr"], SyntheticPairs([_source()], 4, 8, 10,
                                                   fixed=panel_degradations(),
                                                   augment=False)[2]["hr"])


@pytest.mark.parametrize("kwargs", [{"mtf": (0.0, 0.5)}, {"mtf": (0.5, 0.4)},
                                    {"mtf": (0.2, 1.0)}, {"block_only": 1.5},
                                    {"shift": -1.0}, {"noise": (0.0, 0.5)},
                                    {"mtf": (float("nan"), 0.5)}, {"haze_gain": (0.0, 1.0)},
                                    {"haze_gain": (0.9, 0.8)}, {"haze_gain": (0.5, 1.2)}])
def test_bad_ranges_are_refused(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        DegradationRange(**kwargs)


def test_haze_is_drawn_at_its_rate_and_applied_to_input_and_target_alike() -> None:
    from s2sr.data.synthetic import HAZE_GAIN, HAZE_OFFSET
    rng = np.random.default_rng(0)
    draws = [sample_degradation(rng, DegradationRange(haze=0.3)) for _ in range(2000)]
    hazy = [d for d in draws if (d.gain, d.offset) != (1.0, 0.0)]
    assert 0.26 < len(hazy) / len(draws) < 0.34
    assert min(d.gain for d in hazy) >= HAZE_GAIN[0] and max(d.offset for d in hazy) <= \
        HAZE_OFFSET[1] and max(d.offset for d in hazy) > 0.3
    # a narrower contrast range: same offsets, every gain inside it
    rng = np.random.default_rng(0)
    narrow = [sample_degradation(rng, DegradationRange(haze=0.3, haze_gain=(0.8, 1.0)))
              for _ in range(2000)]
    assert [d.offset for d in narrow] == [d.offset for d in draws]
    hazy_n = [d.gain for d in narrow if (d.gain, d.offset) != (1.0, 0.0)]
    assert min(hazy_n) >= 0.8 and max(hazy_n) <= 1.0 and min(hazy_n) < 0.81
    # without haze the draws are those of the runs before it (reproducible)
    a = [sample_degradation(np.random.default_rng(5), DegradationRange()) for _ in range(3)]
    assert a[0] == sample_degradation(np.random.default_rng(5), DegradationRange(haze=0.0))
    # a hazy item: the target is the scene under haze, the input its block mean
    ds = SyntheticPairs([_source()], 2, 12, 4, fixed=[Degradation(None, gain=0.5,
                                                                  offset=0.3)],
                        augment=False)
    clear = SyntheticPairs([_source()], 2, 12, 4, fixed=[Degradation(None)], augment=False)
    np.testing.assert_allclose(ds[1]["hr"].numpy(), clear[1]["hr"].numpy() * 0.5 + 0.3,
                               atol=1e-6)
    np.testing.assert_allclose(ds[1]["lr"].numpy(), block_mean(ds[1]["hr"].numpy(), 2),
                               atol=1e-6)
    with pytest.raises(UsageError, match="haze"):
        DegradationRange(haze=1.5)


def test_too_small_images_are_refused() -> None:
    with pytest.raises(UsageError, match="smaller patch"):
        SyntheticPairs([_source((40, 40))], 2, 32, 4)


def _write_sources(root: Path) -> None:
    for k in range(3):
        dn = np.rint(texture((160, 160), seed=40 + k) * 10000).astype(np.uint16)
        write_geotiff(root / f"s{k}.tif", dn)
    rgbn = (texture((160, 160), seed=50) * 800).astype(np.uint8)  # stretched, r g b n
    write_geotiff(root / "rgbn.tif", rgbn[[2, 1, 0, 3]], descriptions=None)


def _config(path: Path, root: Path, **synthetic: object) -> Path:
    cfg = {
        "name": "syn", "seed": 0, "batch_size": 4,
        "model": {"name": "edsr-tiny", "scale": 2},
        "data": {"synthetic": {
            "root": str(root),
            "train": [{"path": "s0.tif"}, {"path": "s1.tif"},
                      {"path": "rgbn.tif", "bands": [3, 2, 1, 4], "match": True}],
            "val": [{"path": "s2.tif"}],
            "samples_per_epoch": 16, "val_samples": 10, **synthetic}},
        "loss": {"pixel": 1.0},
        "stages": [{"epochs": 2, "lr": 1e-3, "patch": 16}],
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_training_on_synthetic_pairs_end_to_end(tmp_path: Path) -> None:
    from s2sr.training import load_config, train
    from s2sr.training.sources import load_source

    _write_sources(tmp_path)
    path = _config(tmp_path / "c.yaml", tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["options"] = {"global_residual": True}  # starts at bicubic quality
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    src = load_source(cfg.data.synthetic.train[2], tmp_path, ["B02", "B03", "B04", "B08"])
    # a stretched uint8 image is matched to Sentinel-2-like reflectance per band
    assert abs(float(src.array[3].mean()) - 0.26) < 1e-3
    final = train(cfg, tmp_path / "run")
    assert final.exists()
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert len(rows) == 2
    for row in rows:
        # the held-out scene's fixed panel cases (bicubic about 49 dB): a model that starts
        # at bicubic plus its random branch (about 5 dB below) and trains for eight steps
        # is below bicubic, by less than 8 dB, and never far above it
        assert 40 < row["val_psnr_bicubic"] < 60
        assert row["val_psnr_bicubic"] - 8 < row["val_psnr"] < row["val_psnr_bicubic"] + 1
        # the worst case's gain is at most the mean gain over the cases
        assert row["val_gain_min"] <= row["val_psnr"] - row["val_psnr_bicubic"] + 1e-3
    assert rows[0]["val_psnr_bicubic"] == rows[1]["val_psnr_bicubic"]  # the same pairs
    assert rows[1]["val_psnr"] > rows[0]["val_psnr"]  # training moves it toward bicubic


def test_haze_gain_is_read_from_the_config(tmp_path: Path) -> None:
    from s2sr.training import load_config

    _write_sources(tmp_path)
    cfg = load_config(_config(tmp_path / "c.yaml", tmp_path,
                              degradation={"haze": 0.3, "haze_gain": [0.8, 1.0]}))
    assert cfg.data.synthetic.degradation.as_range().haze_gain == (0.8, 1.0)
    default = load_config(_config(tmp_path / "d.yaml", tmp_path, degradation={"haze": 0.3}))
    assert default.data.synthetic.degradation.as_range().haze_gain == HAZE_GAIN


@pytest.mark.parametrize(("synthetic", "message"), [
    ({"degradation": {"mtf": [0.7, 0.2]}}, "mtf"),
    ({"degradation": {"haze_gain": [0.05, 1.0]}}, "haze_gain"),
    ({"degradation": {"haze_gain": [0.9]}}, "haze_gain"),
    ({"samples_per_epoch": 0}, "samples_per_epoch"),
    ({"train": []}, "at least one image"),
    ({"train": [{"path": "s0.tif", "bands": [1, 2]}]}, "one index per model band"),
])
def test_bad_synthetic_configs(tmp_path: Path, synthetic: dict, message: str) -> None:
    from s2sr.training import load_config

    with pytest.raises(UsageError, match=message):
        load_config(_config(tmp_path / "c.yaml", tmp_path, **synthetic))
