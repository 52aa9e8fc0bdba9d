"""Training of the guided 20 m models (issue 22): the Wald triples, the config, a whole run."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from s2sr.core.errors import UsageError
from s2sr.data.degrade import block_mean
from s2sr.data.multires import BANDS_20M, GUIDE_BANDS, NativeScene, native_scenes
from s2sr.data.synthetic import Degradation, DegradationRange
from s2sr.models import build_model, load_model, save_model
from s2sr.models.guided import guide_of
from s2sr.training.guided import main, split_scenes, train_guided
from s2sr.training.guided_config import load_guided_config
from s2sr.training.guided_data import GuidedPairs
from s2sr.training.release import main as release_main
from support.rasters import texture, write_geotiff

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "bands20"


def _uniform_scene(offset: tuple[float, float], h: int = 100, seed: int = 0) -> NativeScene:
    """Every band one landscape of uniform 10 m pixels; the 20 m bands its footprint
    means at ``offset`` (so the guide, degraded onto the truth's footprints, *is* the
    truth's landscape)."""
    ten = texture((2 * h + 2, 2 * h + 2), 1, seed)[0]
    fine = np.repeat(np.repeat(ten, 2, axis=0), 2, axis=1)
    dy, dx = (int(2 * o) for o in offset)
    lr = block_mean(fine[None, dy:dy + 4 * h, dx:dx + 4 * h], 4)[0]
    hr10 = np.repeat(ten[None, :2 * h, :2 * h], 4, axis=0)
    lr20 = np.repeat(lr[None], 6, axis=0)
    return NativeScene("u", "u", hr10, lr20, offset, np.ones((2 * h, 2 * h), bool),
                       np.ones((h, h), bool), None)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.5, 0.5)])
def test_triples_are_nested_and_the_guide_sits_on_the_truth(factor: int,
                                                           offset: tuple[float, float]) -> None:
    scene = _uniform_scene(offset)
    data = GuidedPairs([scene], factor, 16 * factor // 2 * 2, 6,
                       fixed=[Degradation(None)], augment=False)
    for i in range(len(data)):
        item = data[i]
        lr, guide, hr = item["lr"].numpy(), item["guide"].numpy(), item["hr"].numpy()
        p = hr.shape[-1]
        assert lr.shape == (6, p // factor, p // factor) and guide.shape == (4, 2 * p // factor,
                                                                             2 * p // factor)
        # the guide (block mean onto the truth grid / 2) equals the truth's block mean
        want = block_mean(hr[:1], factor // 2) if factor == 4 else hr[:1]
        assert np.abs(guide[:1] - want).max() < 1e-5
        assert np.abs(lr[:1] - block_mean(hr[:1], factor)).max() < 1e-5


def test_triples_are_repeatable_and_move_on_with_the_epoch() -> None:
    scene = _uniform_scene((0.0, 0.0))
    data = GuidedPairs([scene], 2, 32, 4, degradations=DegradationRange(haze=0.5), seed=3)
    a = data[1]
    assert torch.equal(a["lr"], data[1]["lr"]) and torch.equal(a["guide"], data[1]["guide"])
    data.epoch = 1
    assert not torch.equal(a["hr"], data[1]["hr"])
    with pytest.raises(IndexError):
        data[4]


def test_triples_refuse_bad_sizes() -> None:
    scene = _uniform_scene((0.0, 0.0), h=40)
    with pytest.raises(UsageError, match="patch must be a multiple of 4"):
        GuidedPairs([scene], 2, 30, 4)
    with pytest.raises(UsageError, match="no scene is large enough"):
        GuidedPairs([scene], 2, 64, 4)


def test_split_scenes_by_name_or_place() -> None:
    a, b = _uniform_scene((0.0, 0.0)), _uniform_scene((0.0, 0.0), seed=1)
    a = NativeScene("oscd/x/imgs_1", "x", a.hr10, a.lr20, a.offset, a.valid10, a.valid20, None)
    b = NativeScene("oscd/y/imgs_1", "y", b.hr10, b.lr20, b.offset, b.valid10, b.valid20, None)
    assert split_scenes([a, b], ("y",)) == ([a], [b])
    assert split_scenes([a, b], ("oscd/x/imgs_1",)) == ([b], [a])
    with pytest.raises(UsageError, match=r"data\.val names rio, which no training scene is"):
        split_scenes([a, b], ("rio",))


def test_shipped_configs_load() -> None:
    for name in ("s2sr_20m_x2.yaml", "s2sr_20m_x2_finetune.yaml"):
        cfg = load_guided_config(CONFIG / name, data_root="/nowhere")
        assert cfg.model == "guided-edsr" and cfg.bands == BANDS_20M
        assert cfg.guide_bands == GUIDE_BANDS and cfg.scale in (2, 4)
        assert cfg.val and cfg.root == Path("/nowhere")


def _write_city(root: Path, city: str, seed: int, size: int = 80) -> None:
    """A per-band OSCD-like folder of one landscape (even sides: grids on each other)."""
    folder = root / "sentinel2" / "oscd" / city / "imgs_1"
    folder.mkdir(parents=True)
    ten = texture((2 * size, 2 * size), 4, seed)
    lr = block_mean(np.concatenate([ten, ten[:2]]), 2)
    for i, band in enumerate(GUIDE_BANDS):
        write_geotiff(folder / f"T00XXX_{band}.tif", (ten[i:i + 1] * 1e4).astype(np.uint16),
                      crs="EPSG:4326", descriptions=None)
    for i, band in enumerate(BANDS_20M):
        write_geotiff(folder / f"T00XXX_{band}.tif", (lr[i:i + 1] * 1e4).astype(np.uint16),
                      crs="EPSG:4326", descriptions=None)


def test_a_whole_run_trains_selects_and_never_reads_a_test_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, city in enumerate(("paris", "nantes", "rio")):  # rio: a test place
        _write_city(tmp_path / "shared", city, seed)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\nmodel: {name: guided-edsr-tiny, scale: 2}\n"
        "data: {val: [nantes], patch: 32, samples_per_epoch: 8}\n"
        "batch_size: 4\nepochs: 2\nlr: 1.0e-3\nprecision: fp32\n")
    cfg = load_guided_config(config, data_root=tmp_path / "shared")
    assert [s.place for s in native_scenes(cfg.root, held_out=False)] == ["nantes", "paris"]
    best = train_guided(cfg, tmp_path / "run")
    assert best.name == "best.safetensors"
    model = load_model(best)
    assert guide_of(model) == (GUIDE_BANDS, 2)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(np.isfinite(float(r["mtf0.30_gain_guided"])) for r in rows)
    # the command line: a data error (no data folder) is exit 1, no traceback
    assert main([str(config), "-o", str(tmp_path / "r2"), "--data-root",
                 str(tmp_path / "none")]) == 1
    # a second stage from the first one's weights; another architecture is refused
    shared = str(tmp_path / "shared")
    assert main([str(config), "-o", str(tmp_path / "r3"), "--data-root", shared,
                 "--init-from", str(best)]) == 0
    assert (tmp_path / "r3" / "best.safetensors").exists()
    other = tmp_path / "x4.yaml"
    other.write_text(config.read_text().replace("scale: 2", "scale: 4"))
    assert main([str(other), "-o", str(tmp_path / "r4"), "--data-root", shared,
                 "--init-from", str(best)]) == 2
    # refusals after the data is read leave no run folder; -o on a file is one line
    assert main([str(config), "-o", str(tmp_path / "r5"), "--data-root", shared,
                 "--init-from", str(tmp_path / "none.safetensors")]) == 2  # a missing path
    assert not any((tmp_path / r).exists() for r in ("r2", "r4", "r5"))
    capsys.readouterr()
    assert main([str(config), "-o", str(config / "run"), "--data-root", shared]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot make the run folder {config / 'run'}") \
        and err.count("\n") == 1, err


def _striped(path: Path) -> Path:
    """A tiny guided x2 model whose pixel shuffle puts one phase apart: a 2-pixel stripe
    pattern on every output (the artefact the Nyquist-line ratio measures)."""
    model = build_model("guided-edsr-tiny", bands=BANDS_20M, scale=2, guide_bands=GUIDE_BANDS)
    with torch.no_grad():
        bias = model.upsample[0].bias.view(-1, 4)  # (n_feats, the four phases)
        bias[:, 0] += 5.0
    save_model(model, path)
    return path


def test_the_artefact_gate_keeps_no_striped_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    for seed, city in enumerate(("paris", "nantes", "rio")):  # rio: a test place
        _write_city(tmp_path / "shared", city, seed)
    shared = str(tmp_path / "shared")
    text = ("name: tiny\nmodel: {name: guided-edsr-tiny, scale: 2}\n"
            "data: {val: [nantes], patch: 32, samples_per_epoch: 8}\n"
            "batch_size: 4\nepochs: 1\nprecision: fp32\nmax_line_ratio: 10\n")
    config = tmp_path / "gate.yaml"
    # from stripes, with too small a step to lose them: no epoch passes, nothing selected
    config.write_text(text + "lr: 1.0e-7\n")
    capsys.readouterr()
    assert main([str(config), "-o", str(tmp_path / "r"), "--data-root", shared,
                 "--init-from", str(_striped(tmp_path / "striped.safetensors"))]) == 1
    err = capsys.readouterr().err
    assert "no epoch kept the Nyquist-line ratio at or below 10 " in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "best.safetensors").exists()
    with open(tmp_path / "r" / "metrics.csv") as handle:
        row = next(csv.DictReader(handle))
    assert float(row["line_max"]) > 100.0
    assert row["line_scene"].split("/")[1] in ("paris", "nantes")  # never the test place
    # the same run from a fresh model passes the gate and is selected (a fresh model's
    # tail copies the guide's own texture, white on these synthetic scenes: a ratio near 2)
    config.write_text(text + "lr: 1.0e-3\n")
    assert main([str(config), "-o", str(tmp_path / "ok"), "--data-root", shared]) == 0
    with open(tmp_path / "ok" / "metrics.csv") as handle:
        row = next(csv.DictReader(handle))
    assert float(row["line_max"]) <= 10 and row["best"] == "1"
    assert (tmp_path / "ok" / "best.safetensors").exists()


def test_release_refuses_a_run_with_nothing_selected(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    model = build_model("guided-edsr-tiny", bands=BANDS_20M, scale=2, guide_bands=GUIDE_BANDS)
    save_model(model, run / "model.safetensors")  # the last epoch only: nothing selected
    assert release_main([str(run), str(tmp_path / "out.safetensors")]) == 2
    assert "has no best.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
    save_model(model, run / "best.safetensors")
    assert release_main([str(run), str(tmp_path / "out.safetensors")]) == 0
    stored = load_file(tmp_path / "out.safetensors")
    assert {t.dtype for k, t in stored.items() if k.endswith("weight")} == {torch.float16}
    assert guide_of(load_model(tmp_path / "out.safetensors")) == (GUIDE_BANDS, 2)
    (run / "best.safetensors").write_bytes(b"not weights")
    assert release_main([str(run), str(tmp_path / "bad.safetensors")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_release_writes_only_where_it_may(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """DEST: made with its missing folders; an existing file only with --overwrite; a
    folder, a pipe or a path under a file refused in one line (a traceback, or the pipe
    replaced in silence, before)."""
    run = tmp_path / "run"
    run.mkdir()
    model = build_model("guided-edsr-tiny", bands=BANDS_20M, scale=2, guide_bands=GUIDE_BANDS)
    save_model(model, run / "best.safetensors")
    dest = tmp_path / "new" / "deeper" / "w.safetensors"
    assert release_main([str(run), str(dest)]) == 0
    assert guide_of(load_model(dest)) == (GUIDE_BANDS, 2)
    capsys.readouterr()
    first = {k: v.clone() for k, v in load_file(dest).items()}  # not the mapped file
    dest.write_bytes(b"precious")
    assert release_main([str(run), str(dest)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert dest.read_bytes() == b"precious"
    assert release_main(["--overwrite", str(run), str(dest)]) == 0
    again = load_file(dest)
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for bad, words in [(tmp_path, "is a folder"), (pipe, "not a regular file"),
                       (dest / "x.safetensors", "is a file, not a folder"),
                       (run / "best.safetensors", "is the input")]:
        capsys.readouterr()
        assert release_main(["--overwrite", str(run), str(bad)]) == 2, bad
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert pipe.is_fifo() and load_model(run / "best.safetensors") is not None
