"""Scene adaptation (``s2sr predict --adapt``, :mod:`s2sr.inference.adapt`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr.data.degrade import degrade
from s2sr.data.places import TEST_PLACES
from s2sr.inference import predict, super_resolve
from s2sr.inference.adapt import (
    AdaptSettings,
    adapt_model,
    auto_adapts,
    weights_sha256,
)
from s2sr.inference.adapt_sources import read_sources
from s2sr.io.scene import open_scene
from s2sr.models import file_sha256, load_model, pretrained_path
from support.cli import no_ort, one_error_line, run_cli
from support.rasters import texture, write_geotiff
from support.shared import SHARED, needs_shared


def _scene(path: Path, shape: tuple[int, int], seed: int = 0, **kwargs: object) -> Path:
    dn = np.rint(texture(shape, seed=seed) * 10000).astype(np.uint16)
    return write_geotiff(path, dn, **kwargs)  # type: ignore[arg-type]


def _tags(path: Path) -> dict[str, str]:
    with rasterio.open(path) as dataset:
        return dataset.tags()


FEW = AdaptSettings(steps=4, batch=4)


def test_the_training_conventions_are_the_shipped_models_own() -> None:
    """Adam's betas and the degradation range are the training's (configs/robust)."""
    import yaml

    from s2sr.inference import adapt
    from s2sr.training.schema import DegradationConfig, OptimizerConfig

    assert tuple(OptimizerConfig().betas) == adapt.BETAS
    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs/robust/s2sr_x2_world.yaml")
                         .read_text())
    assert DegradationConfig(**cfg["data"]["synthetic"]["degradation"]).as_range() == \
        adapt.ADAPT_RANGE
    assert cfg["optimizer"]["clip_grad_norm"] == adapt.CLIP_GRAD_NORM


def test_same_seed_gives_the_same_weights_and_another_seed_others(
        tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (160, 150))
    model = load_model(tiny_weights)
    with open_scene(path) as scene:
        a = adapt_model(model, scene, FEW)
        b = adapt_model(model, scene, FEW)
        c = adapt_model(model, scene, AdaptSettings(steps=4, batch=4, seed=1))
    assert a.steps == b.steps == 4
    assert a.sha256 == b.sha256 == weights_sha256(a.model)
    assert c.sha256 != a.sha256
    assert a.sha256 != weights_sha256(model)  # it did change the weights


def test_windows_are_few_bounded_and_spread_over_a_large_scene() -> None:
    from s2sr.inference.adapt_sources import MAX_READ_PIXELS, MAX_WINDOWS, spread_windows

    wins = spread_windows(10_980, 10_980, 256)
    assert len(wins) <= MAX_WINDOWS
    assert sum(h * w for _, _, h, w in wins) <= MAX_READ_PIXELS
    assert all(r >= 0 and r + h <= 10_980 and c >= 0 and c + w <= 10_980
               for r, c, h, w in wins)
    rows, cols = {r for r, *_ in wins}, {c for _, c, *_ in wins}
    assert min(rows) == 0 and max(rows) == 10_980 - 256  # from edge to edge
    assert min(cols) == 0 and max(cols) == 10_980 - 256
    small = spread_windows(300, 200, 256)  # a small scene is read whole
    assert {(r, c) for r, c, _, _ in small} == {(0, 0), (44, 0)}


def test_the_time_budget_stops_it(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (128, 128))
    model = load_model(tiny_weights)
    with open_scene(path) as scene:
        done = adapt_model(model, scene, AdaptSettings(steps=50, budget_s=1e-9))
    assert done.steps == 0 and not done.kept and done.model is model
    assert done.tags()["S2SR_ADAPT"] == "dropped (no step within the time budget)"


def test_weights_hash_follows_the_weights(tiny_weights: Path) -> None:
    model = load_model(tiny_weights)
    first = weights_sha256(model)
    assert weights_sha256(load_model(tiny_weights)) == first
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert weights_sha256(model) != first


def test_the_weights_file_and_the_model_given_are_left_unchanged(
        tmp_path: Path, tiny_weights: Path) -> None:
    weights = shutil.copy(tiny_weights, tmp_path / "w.safetensors")
    before = file_sha256(weights)
    model = load_model(weights)
    params = [p.detach().clone() for p in model.parameters()]
    path = _scene(tmp_path / "in.tif", (128, 128))
    with open_scene(path) as scene:
        done = adapt_model(model, scene, FEW)
    assert done.model is not model
    assert all(torch.equal(p, q) for p, q in zip(params, model.parameters(), strict=True))
    out = predict(path, tmp_path / "out.tif", weights, adapt="on", adapt_steps=3)
    assert file_sha256(weights) == before
    tags = _tags(out)
    assert tags["S2SR_MODEL_SHA256"] == before
    assert tags["S2SR_ADAPT_SHA256"] != before


def test_cli_writes_the_adaptation_tags(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (128, 120))
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights",
                           tiny_weights, "--adapt", "on", "--adapt-steps", "3",
                           "--adapt-seed", "7", "--backend", "torch")
    assert code == 0, output
    tags = _tags(tmp_path / "out.tif")
    assert tags["S2SR_ADAPT"] in ("on", "dropped (held-out L1 rose)")
    assert tags["S2SR_ADAPT_STEPS"] == "3"
    assert tags["S2SR_ADAPT_SEED"] == "7"
    assert len(tags["S2SR_ADAPT_SHA256"]) == 64
    assert "->" in tags["S2SR_ADAPT_L1"]


def test_without_adapt_the_tag_says_off(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (64, 64))
    out = predict(path, tmp_path / "out.tif", tiny_weights, backend="torch")
    assert _tags(out)["S2SR_ADAPT"] == "off"
    assert "S2SR_ADAPT_SHA256" not in _tags(out)


@pytest.mark.parametrize(("kind", "message"), [("small", "too small to adapt on"),
                                               ("all nodata", "too empty to adapt on")])
def test_a_scene_too_small_or_all_nodata_is_refused_in_one_line(
        tmp_path: Path, tiny_weights: Path, kind: str, message: str) -> None:
    path = (_scene(tmp_path / "small.tif", (40, 40)) if kind == "small" else
            write_geotiff(tmp_path / "empty.tif", np.zeros((4, 128, 128), np.uint16), nodata=0))
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights",
                           tiny_weights, "--adapt", "on")
    assert code == 1
    line = one_error_line(output)
    assert message in line and "--adapt" in line
    assert not (tmp_path / "out.tif").exists()


def test_a_cloudy_or_saturated_scene_is_too_empty(tmp_path: Path) -> None:
    dn = np.rint(texture((128, 128)) * 10000).astype(np.uint16)
    dn[:3] = 6000  # bright and white in every visible band: a cloud
    path = write_geotiff(tmp_path / "cloud.tif", dn)
    with open_scene(path) as scene, pytest.raises(Exception, match="too empty"):
        read_sources(scene, 2, 32)
    dn = np.rint(texture((128, 128)) * 10000).astype(np.uint16)
    dn[1, ::20, ::20] = 65535  # saturated samples on a grid: no clean 80 px square
    path = write_geotiff(tmp_path / "sat.tif", dn)
    with open_scene(path) as scene, pytest.raises(Exception, match="too empty"):
        read_sources(scene, 2, 32)


def test_nodata_is_kept_out_of_the_patches(tmp_path: Path) -> None:
    dn = np.rint(texture((300, 300)) * 10000).astype(np.uint16)
    dn[:, :, :150] = 0  # the left half is nodata
    path = write_geotiff(tmp_path / "half.tif", dn, nodata=0)
    with open_scene(path) as scene:
        sources = read_sources(scene, 2, 32)
    assert sources
    for src in sources:
        assert not src.valid[(src.array == 0).all(axis=0)].any()


def test_auto_skips_a_small_scene_and_says_so(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (64, 64))
    out = predict(path, tmp_path / "out.tif", tiny_weights, adapt="auto", backend="torch")
    assert _tags(out)["S2SR_ADAPT"].startswith("auto: off")
    assert not auto_adapts(2, 64, 64)[0]
    assert not auto_adapts(2, 20_000, 20_000)[0]  # x2: it did not pay (docs/benchmarks.md)
    assert not auto_adapts(4, 1000, 1000)[0]  # x4 on a small scene: its cost is too high
    # with the world-trained x4 it did not pay either, even on a whole Sentinel-2 tile
    assert not auto_adapts(4, 10_980, 10_980)[0]
    assert "--adapt on" in auto_adapts(4, 10_980, 10_980)[1]


def test_bad_options_are_usage_errors(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (64, 64))
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights",
                           tiny_weights, "--adapt", "sometimes")
    assert code == 2 and "--adapt" in output
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights",
                           tiny_weights, "--adapt", "on", "--adapt-steps", "0")
    assert code == 2 and "--adapt-steps" in output
    with pytest.raises(ValueError, match="--adapt-steps"):
        predict(path, tmp_path / "out.tif", tiny_weights, adapt="on", adapt_steps=10**6)


@no_ort
def test_onnx_runtime_predicts_with_the_adapted_weights(tmp_path: Path, tiny_weights: Path
                                                         ) -> None:
    path = _scene(tmp_path / "in.tif", (128, 128))
    torch_out = predict(path, tmp_path / "torch.tif", tiny_weights, adapt="on",
                        adapt_steps=3, backend="torch", engine="tiled")  # as ONNX Runtime
    ort_out = predict(path, tmp_path / "ort.tif", tiny_weights, adapt="on", adapt_steps=3,
                      backend="onnxruntime")
    plain = predict(path, tmp_path / "plain.tif", tiny_weights, backend="onnxruntime")
    tags = _tags(ort_out)
    assert tags["S2SR_BACKEND"] == "onnxruntime"
    assert tags["S2SR_ADAPT_SHA256"] == _tags(torch_out)["S2SR_ADAPT_SHA256"]
    with rasterio.open(torch_out) as a, rasterio.open(ort_out) as b, \
            rasterio.open(plain) as c:
        x, y, z = (d.read().astype(np.int32) for d in (a, b, c))
    assert np.abs(x - y).max() <= 2  # the adapted model, exported: the same output
    assert np.abs(x - z).max() > 2  # and not the plain model's


@no_ort
def test_an_onnx_model_or_int8_cannot_adapt(tmp_path: Path, tiny_weights: Path) -> None:
    path = _scene(tmp_path / "in.tif", (128, 128))
    onnx = tmp_path / "m.onnx"
    code, output = run_cli("export", "--weights", tiny_weights, "--format", "onnx", "-o", onnx)
    assert code == 0, output
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights", onnx,
                           "--adapt", "on")
    assert code == 2 and "cannot be fine-tuned" in one_error_line(output)
    code, output = run_cli("predict", path, "-o", tmp_path / "out.tif", "--weights",
                           tiny_weights, "--precision", "int8", "--adapt", "on")
    assert code == 2 and "int8" in one_error_line(output)
    assert not (tmp_path / "out.tif").exists()
    out = predict(path, tmp_path / "auto.tif", onnx, adapt="auto")
    assert _tags(out)["S2SR_ADAPT"] == "skipped: ONNX model or int8"


def test_x4_adapts_and_predicts(tmp_path: Path, tiny_weights_x4: Path) -> None:
    path = _scene(tmp_path / "in.tif", (180, 170))
    out = predict(path, tmp_path / "out.tif", tiny_weights_x4, adapt="on", adapt_steps=3,
                  backend="torch")
    with rasterio.open(out) as dataset:
        assert (dataset.height, dataset.width) == (720, 680)
        assert dataset.tags()["S2SR_ADAPT_STEPS"] == "3"


def test_adaptation_lowers_the_l1_on_a_textured_scene(tmp_path: Path, tiny_weights: Path
                                                      ) -> None:
    """An untrained tiny model, adapted on a Wald pair of a textured scene, predicts that
    scene's truth better (the truth itself is never trained on)."""
    hr = texture((256, 256), seed=5)
    lr = degrade(hr, 2, 0.3)
    path = write_geotiff(tmp_path / "lr.tif", lr.astype(np.float32))
    model = load_model(tiny_weights)
    with open_scene(path) as scene:
        done = adapt_model(model, scene, AdaptSettings(steps=40, lr=1e-3))
    assert done.kept and done.l1_after < done.l1_before
    before = np.abs(super_resolve(lr, model) - hr).mean()
    after = np.abs(super_resolve(lr, done.model) - hr).mean()
    assert after < 0.8 * before


MILANO = SHARED / TEST_PLACES[3].path


@pytest.mark.slow
@needs_shared(MILANO, "the milano test place")
def test_the_shipped_model_adapted_on_a_real_wald_input_fits_its_scene(tmp_path: Path
                                                                        ) -> None:
    """The shipped x2 model adapted on a real scene's Wald input (MTF 0.30; the truth is
    never trained on) lowers the L1 on held-out pairs of that scene, and stays within 3 %
    of the plain model's L1 against the truth (short runs gain little there with the
    world-trained models: docs/benchmarks.md, scene adaptation)."""
    from s2sr.evaluation.scenes import read_checked

    truth, _ = read_checked(MILANO, ("B02", "B03", "B04", "B08"), "truth")
    hr = truth[:, :256, :256]
    lr = degrade(hr, 2, 0.3)
    path = write_geotiff(tmp_path / "lr.tif", lr.astype(np.float32))
    model = load_model(pretrained_path(2))
    with open_scene(path) as scene:
        done = adapt_model(model, scene, AdaptSettings(steps=20, batch=4))
    assert done.steps == 20 and done.kept
    assert done.l1_after < done.l1_before
    before = np.abs(super_resolve(lr, model) - hr).mean()
    after = np.abs(super_resolve(lr, done.model) - hr).mean()
    assert after < 1.03 * before


def test_many_scenes_adapt_one_by_one_and_not_split(tmp_path: Path, tiny_weights: Path
                                                    ) -> None:
    a = _scene(tmp_path / "a.tif", (112, 112), seed=1)
    b = _scene(tmp_path / "b.tif", (112, 112), seed=2)
    out = tmp_path / "out"
    code, output = run_cli("predict", a, b, "-o", out, "--weights", tiny_weights,
                           "--adapt", "on", "--adapt-steps", "2")
    assert code == 0, output
    hashes = {_tags(out / f"{n}_x2.tif")["S2SR_ADAPT_SHA256"] for n in ("a", "b")}
    assert len(hashes) == 2  # each scene adapted on itself
    code, output = run_cli("predict", a, b, "-o", tmp_path / "out2", "--weights",
                           tiny_weights, "--adapt", "on", "--split-mpx", "1")
    assert code == 2 and "--split-mpx" in one_error_line(output)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_on_cuda_adaptation_is_repeatable_and_predicts(tmp_path: Path, tiny_weights: Path
                                                       ) -> None:
    path = _scene(tmp_path / "in.tif", (160, 150))
    model = load_model(tiny_weights)
    with open_scene(path) as scene:
        a = adapt_model(model, scene, FEW, "cuda")
        b = adapt_model(model, scene, FEW, "cuda")
    assert a.sha256 == b.sha256
    out = predict(path, tmp_path / "out.tif", tiny_weights, adapt="on", adapt_steps=3,
                  device="cuda", backend="torch")
    assert _tags(out)["S2SR_ADAPT_STEPS"] == "3"
