"""Tests of s2sr.losses: pixel, VGG16 perceptual/style terms, weight loading, SRLoss."""

from __future__ import annotations

import http.server
import pickle
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from s2sr.core.errors import InputNotFoundError, UsageError, WeightsError
from s2sr.losses import (
    VGG16_URL,
    PerceptualLoss,
    PixelLoss,
    SRLoss,
    VGG16Features,
    load_vgg16_state,
    reflectance_to_vgg,
)
from s2sr.losses.perceptual import gram
from s2sr.losses.vgg import VGG16_LAYERS
from support.shared import SHARED_ROOT, needs_shared

REAL_VGG = SHARED_ROOT / "weights" / "vgg16_hed_features.pth"

requires_real_vgg = needs_shared(REAL_VGG, "the real VGG16 feature weights")

FEATURES = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0}
STYLE = {"relu1_2": 1.0, "relu2_2": 1.0}


def images(seed: int = 0) -> torch.Tensor:
    """A (2, 4, 32, 32) reflectance batch (bands B02, B03, B04, B08)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.05 + 0.3 * torch.rand(2, 4, 32, 32, generator=gen)


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return VGG16Features().state_dict()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory, random_state: dict) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.pth"
    torch.save(random_state, path)
    return path


@pytest.fixture(scope="module", params=["random", pytest.param("real", marks=requires_real_vgg)])
def perceptual(request: pytest.FixtureRequest, random_weights: Path) -> PerceptualLoss:
    source = random_weights if request.param == "random" else REAL_VGG
    return PerceptualLoss(source, feature_layers=FEATURES, style_layers=STYLE, style_weight=10.0)


# --- perceptual / style terms --------------------------------------------------------------


def test_terms_zero_for_identical_positive_for_different(perceptual: PerceptualLoss) -> None:
    x = images(0)
    feature, style = perceptual(x, x.clone())
    assert feature.item() == 0.0
    assert style.item() == 0.0
    feature, style = perceptual(images(1), x)
    assert feature.item() > 0.0
    assert style.item() > 0.0
    assert feature.ndim == 0 and style.ndim == 0


def test_gradients_reach_prediction_never_vgg(perceptual: PerceptualLoss) -> None:
    net = nn.Conv2d(4, 4, 3, padding=1)
    x = images(0).requires_grad_(True)
    target = images(1).requires_grad_(True)
    feature, style = perceptual(net(x), target)
    (feature + style).backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert target.grad is None, "the target's features must be computed without gradients"
    for param in perceptual.vgg.parameters():
        assert not param.requires_grad
        assert param.grad is None


def test_nir_is_not_in_perceptual_terms(random_weights: Path) -> None:
    loss = PerceptualLoss(random_weights, feature_layers=FEATURES, style_layers=STYLE)
    x = images(0)
    y = x.clone()
    y[:, 3] += 0.2  # only NIR differs
    feature, style = loss(y, x)
    assert feature.item() == 0.0 and style.item() == 0.0


def test_no_layers_gives_zero_terms_without_loading_weights(tmp_path: Path) -> None:
    loss = PerceptualLoss(tmp_path / "not_needed.pth", feature_layers={}, style_layers={})
    feature, style = loss(images(0), images(1))
    assert feature.item() == 0.0 and style.item() == 0.0


def test_vgg_frozen_eval_and_not_in_state_dict(random_weights: Path) -> None:
    loss = PerceptualLoss(random_weights, feature_layers=FEATURES)
    loss.train()
    assert not loss.vgg.training
    assert not any(p.requires_grad for p in loss.parameters())
    assert not any(k.startswith("vgg.") for k in loss.state_dict())
    combined = SRLoss(perceptual=loss)
    assert not any("vgg" in k for k in combined.state_dict())
    before = loss.vgg.features[0].weight.clone()
    combined.load_state_dict(combined.state_dict(), strict=True)  # the VGG is kept
    assert torch.equal(loss.vgg.features[0].weight, before)


def test_vgg_layout_and_depth(random_state: dict) -> None:
    vgg = VGG16Features()
    assert len(vgg.features) == 31
    assert set(vgg.state_dict()) == set(random_state)
    assert "features.28.bias" in random_state and "features.30.weight" not in random_state
    called: list[int] = []
    for i, module in enumerate(vgg.features):
        module.register_forward_hook(lambda *_, i=i: called.append(i))
    x = torch.randn(2, 3, 32, 32)
    out = vgg(x, ["relu2_2", "relu1_2"])
    assert list(out) == ["relu2_2", "relu1_2"]
    assert out["relu1_2"].shape == (2, 64, 32, 32)
    assert out["relu2_2"].shape == (2, 128, 16, 16)
    assert max(called) == 8, "the network must stop at the deepest requested layer"
    assert vgg(x, ["relu3_3"])["relu3_3"].shape == (2, 256, 8, 8)
    assert vgg(x, []) == {}
    with pytest.raises(UsageError, match="relu9_9"):
        vgg(x, ["relu9_9"])


def test_unknown_layer_rejected(random_weights: Path) -> None:
    with pytest.raises(UsageError, match="conv5_4"):
        PerceptualLoss(random_weights, feature_layers={"conv5_4": 1.0})


def test_gram_shape_and_normalisation() -> None:
    f = torch.ones(2, 3, 4, 5)
    g = gram(f)
    assert g.shape == (2, 3, 3)
    torch.testing.assert_close(g, torch.full((2, 3, 3), 20 / 60))


# --- reflectance to VGG input ----------------------------------------------------------------


def test_reflectance_to_vgg_maps_0_3_to_one() -> None:
    refl = torch.full((2, 4, 8, 8), 0.3)
    refl[:, 3] = 0.9  # NIR is ignored
    out = reflectance_to_vgg(refl)
    assert out.shape == (2, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    expected = ((1 - mean) / std).view(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_reflectance_to_vgg_band_order() -> None:
    refl = torch.zeros(1, 4, 2, 2)
    refl[:, 2] = 0.3  # B04 = red -> first VGG channel
    out = reflectance_to_vgg(refl)
    assert out[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)
    assert out[0, 1, 0, 0] == pytest.approx(-0.456 / 0.224)


# --- weight loading --------------------------------------------------------------------------


@requires_real_vgg
def test_real_weights_load_from_local_path() -> None:
    state = load_vgg16_state(REAL_VGG)
    raw = torch.load(REAL_VGG, map_location="cpu", weights_only=True)
    assert list(state) == [k for k in raw if k.startswith("features.")]
    vgg = VGG16Features()
    vgg.load_state_dict(state, strict=True)
    torch.testing.assert_close(vgg.features[28].bias, raw["features.28.bias"].float())


@requires_real_vgg
def test_real_weights_load_through_hub_from_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if not Path(torch.hub.get_dir()).is_relative_to(tmp_path):
        pytest.skip("torch.hub.set_dir() was called elsewhere; the hub cache cannot be redirected")
    state = load_vgg16_state(REAL_VGG.as_uri())
    assert (tmp_path / "hub" / "checkpoints" / REAL_VGG.name).is_file()  # cached by torch.hub
    for key, value in load_vgg16_state(REAL_VGG).items():
        assert torch.equal(state[key], value)


def test_file_url_goes_through_hub_cache(
    random_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if not Path(torch.hub.get_dir()).is_relative_to(tmp_path):
        pytest.skip("torch.hub.set_dir() was called elsewhere; the hub cache cannot be redirected")
    state = load_vgg16_state(random_weights.as_uri())
    assert (tmp_path / "hub" / "checkpoints" / random_weights.name).is_file()
    assert len(state) == 26


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's checkpoint cache, redirected into ``tmp_path`` (TORCH_HOME); proxies are
    bypassed for the local server."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if not Path(torch.hub.get_dir()).is_relative_to(tmp_path):
        pytest.skip("torch.hub.set_dir() was called elsewhere; the hub cache cannot be redirected")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return Path(torch.hub.get_dir()) / "checkpoints"


@contextmanager
def weights_server(folder: Path, tls: ssl.SSLContext | None = None
                   ) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP(S) server on 127.0.0.1 serving ``folder``: its base URL and the paths
    it was asked for."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def self_signed(folder: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 made with the openssl command and trusted by this
    process's default HTTPS context (SSL_CERT_FILE): the server's TLS context."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    return tls


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="the openssl command (to make a test certificate) "
                                          "is not installed")


@pytest.mark.parametrize("scheme", ["http", pytest.param("https", marks=needs_openssl)])
def test_url_downloads_once_through_torch_hub(
    scheme: str, random_weights: Path, random_state: dict, hub_cache: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = self_signed(tmp_path, monkeypatch) if scheme == "https" else None
    with weights_server(random_weights.parent, tls) as (base, asked):
        url = f"{base}/{random_weights.name}"
        state = load_vgg16_state(url)
        assert asked == [f"/{random_weights.name}"]
        assert (hub_cache / random_weights.name).is_file()
        loss = PerceptualLoss(url, feature_layers={"relu1_1": 1.0})
        assert asked == [f"/{random_weights.name}"]  # the second load reads the cache
    assert set(state) == set(random_state)
    for key, value in random_state.items():
        assert torch.equal(state[key], value)
    assert torch.equal(loss.vgg.features[0].weight, random_state["features.0.weight"])


class Touch:
    """Unpickled, it creates the file ``path``: the proof that the pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_downloaded_objects_are_not_unpickled(tmp_path: Path, hub_cache: Path) -> None:
    served, ran = tmp_path / "served", tmp_path / "pickle_ran"
    served.mkdir()
    with (served / "evil.pth").open("wb") as fh:
        pickle.dump({"features.0.weight": Touch(ran)}, fh, protocol=2)
    with weights_server(served) as (base, asked), pytest.raises(WeightsError, match="evil"):
        load_vgg16_state(f"{base}/evil.pth")
    assert asked == ["/evil.pth"]
    assert not ran.exists()


def test_download_failure_is_weights_error(tmp_path: Path, hub_cache: Path) -> None:
    with weights_server(tmp_path) as (base, _asked), pytest.raises(
            WeightsError, match=r"HTTPError: HTTP Error 404.*delete a broken copy"):
        load_vgg16_state(f"{base}/missing.pth")
    # the server has stopped: nothing listens on its port
    with pytest.raises(WeightsError, match=r"could not load VGG16 weights .*URLError"):
        load_vgg16_state(f"{base}/missing.pth")
    assert not (hub_cache / "missing.pth").exists()


def test_full_torchvision_dict_loads_features_only(random_state: dict, tmp_path: Path) -> None:
    full = dict(random_state)
    full["classifier.0.weight"] = torch.zeros(4096, 8)
    full["classifier.0.bias"] = torch.zeros(4096)
    path = tmp_path / "vgg16_full.pth"
    torch.save(full, path)
    state = load_vgg16_state(path)
    assert set(state) == set(random_state)
    VGG16Features().load_state_dict(state, strict=True)


def test_dict_without_prefix_loads(random_state: dict, tmp_path: Path) -> None:
    bare = {k.removeprefix("features."): v for k, v in random_state.items()}
    assert "0.weight" in bare
    path = tmp_path / "vgg16_bare.pth"
    torch.save(bare, path)
    state = load_vgg16_state(path)
    assert set(state) == set(random_state)
    assert torch.equal(state["features.0.weight"], random_state["features.0.weight"])


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(InputNotFoundError, match=r"nope\.pth"):
        load_vgg16_state(missing)
    with pytest.raises(InputNotFoundError, match=r"nope\.pth"):
        load_vgg16_state(missing.as_uri())
    with pytest.raises(InputNotFoundError):
        PerceptualLoss(missing)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match=r"garbage\.pth"):
        load_vgg16_state(path)
    with pytest.raises(WeightsError, match="not a file"):
        load_vgg16_state(tmp_path)


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def test_arbitrary_objects_are_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"features.0.weight": Evil()}, fh, protocol=2)
    with pytest.raises(WeightsError):
        load_vgg16_state(path)


def test_wrong_shape_and_wrong_content(random_state: dict, tmp_path: Path) -> None:
    bad = dict(random_state)
    bad["features.0.weight"] = torch.zeros(64, 4, 3, 3)
    path = tmp_path / "wrong_shape.pth"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match=r"features\.0\.weight.*\(64, 3, 3, 3\)"):
        load_vgg16_state(path)
    partial = {k: v for k, v in random_state.items() if not k.startswith("features.28")}
    torch.save(partial, path)
    with pytest.raises(WeightsError, match=r"missing features\.28"):
        load_vgg16_state(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsError, match="not a dict"):
        load_vgg16_state(path)


# --- pixel loss and SRLoss -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["l1", "mse", "charbonnier"])
def test_pixel_loss_kinds(kind: str) -> None:
    pred, target = images(0), images(1)
    loss = PixelLoss(loss_weight=2.0, kind=kind)(pred, target)
    diff = pred - target
    raw = {"l1": diff.abs(), "mse": diff**2, "charbonnier": (diff**2 + 1e-12).sqrt()}[kind]
    torch.testing.assert_close(loss, 2.0 * raw.mean())
    assert PixelLoss(kind=kind)(pred, pred).item() == pytest.approx(0.0, abs=1e-5)
    summed = PixelLoss(reduction="sum", kind=kind)(pred, target)
    torch.testing.assert_close(summed, raw.sum())


def test_pixel_loss_rejects_unknown_options() -> None:
    with pytest.raises(UsageError, match="huber"):
        PixelLoss(kind="huber")
    with pytest.raises(UsageError, match="median"):
        PixelLoss(reduction="median")


def test_srloss_total_is_weighted_sum(random_weights: Path) -> None:
    perceptual = PerceptualLoss(
        random_weights, feature_layers=FEATURES, style_layers=STYLE, style_weight=5.0
    )
    loss = SRLoss(pixel_weight=3.0, pixel_kind="l1", perceptual=perceptual)
    pred = images(0).requires_grad_(True)
    total, terms = loss(pred, images(1))
    assert set(terms) == {"pixel", "feature", "style"}
    expected = 3.0 * float(terms["pixel"]) + float(terms["feature"]) + float(terms["style"])
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    assert float(terms["feature"]) > 0 and float(terms["style"]) > 0
    total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_srloss_pixel_only() -> None:
    loss = SRLoss(pixel_weight=0.5, pixel_kind="mse")
    pred, target = images(0), images(1)
    total, terms = loss(pred, target)
    assert set(terms) == {"pixel", "feature", "style"}
    assert float(terms["feature"]) == 0.0 and float(terms["style"]) == 0.0
    torch.testing.assert_close(total, 0.5 * ((pred - target) ** 2).mean())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gram_of_large_half_precision_activations_is_float32_and_finite(
        dtype: torch.dtype) -> None:
    """VGG activations of a few hundred overflow a float16 sum of products over H x W: the
    Gram matrix is computed in float32 (also under autocast) and equals the float32 one."""
    feats = torch.rand(2, 8, 64, 64, generator=torch.Generator().manual_seed(0)) * 300
    low = feats.to(dtype)
    flat = low.float().reshape(2, 8, -1)
    expected = torch.bmm(flat, flat.transpose(1, 2)) / (8 * 64 * 64)
    half = low.reshape(2, 8, -1)
    assert not torch.isfinite(torch.bmm(half, half.transpose(1, 2))).all() or \
        dtype == torch.bfloat16  # float16 itself overflows
    got = gram(low)
    assert got.dtype == torch.float32 and bool(torch.isfinite(got).all())
    assert torch.equal(got, expected)
    with torch.autocast("cpu", dtype=dtype):
        under = gram(feats)
    assert under.dtype == torch.float32
    flat32 = feats.reshape(2, 8, -1)
    torch.testing.assert_close(under, torch.bmm(flat32, flat32.transpose(1, 2)) / (8 * 64 * 64))


def test_style_loss_under_fp16_autocast_is_finite(random_weights: Path) -> None:
    loss = PerceptualLoss(random_weights, feature_layers={}, style_layers={"relu2_2": 1.0})
    pred = torch.rand(1, 4, 32, 32) * 3
    target = torch.rand(1, 4, 32, 32) * 3
    reference = loss(pred, target)[1]
    with torch.autocast("cpu", dtype=torch.float16):
        _, style = loss(pred, target)
    assert bool(torch.isfinite(style))
    torch.testing.assert_close(style.float(), reference, rtol=0.05, atol=1e-6)


def test_style_term_under_bf16_autocast_keeps_float32_grams(random_weights: Path) -> None:
    """Under bf16 autocast the VGG16 runs in bfloat16 but the Gram matrices, and so the
    style term, stay float32 (and match the float32 loss)."""
    loss = PerceptualLoss(random_weights, feature_layers={}, style_layers={"relu2_2": 1.0})
    seen: list[torch.dtype] = []
    handle = loss.vgg.features[VGG16_LAYERS["relu2_2"]].register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype))
    pred, target = images(0) * 3, images(1) * 3
    reference = loss(pred, target)[1]
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, style = loss(pred, target)
        feats = loss.vgg(reflectance_to_vgg(pred), ["relu2_2"])["relu2_2"]
        g = gram(feats)
    handle.remove()
    assert seen and set(seen) == {torch.bfloat16}  # autocast did reach the VGG16
    assert feats.dtype == torch.bfloat16 and g.dtype == torch.float32
    assert style.dtype == torch.float32
    torch.testing.assert_close(style, reference, rtol=0.05, atol=1e-6)


def test_vgg_trunk_and_loss_modules_share_one_definition() -> None:
    """The trunk lives in s2sr.losses.vgg only: the loss uses it, re-exports nothing of it."""
    from s2sr.losses import perceptual, vgg

    assert VGG16Features is vgg.VGG16Features and load_vgg16_state is vgg.load_vgg16_state
    assert VGG16_URL == vgg.VGG16_URL
    assert "VGG16_LAYERS" not in vars(perceptual) and not hasattr(perceptual, "__all__")
