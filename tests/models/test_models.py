"""EDSR, the registry and the weights file format."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2sr.core.errors import UsageError, WeightsError
from s2sr.models import (
    EDSR,
    build_model,
    get_spec,
    list_models,
    load_model,
    read_metadata,
    save_model,
)
from s2sr.models.edsr import Upsampler
from s2sr.models.registry import deepen


@pytest.mark.parametrize("name", list_models(guided=False))
@pytest.mark.parametrize("scale", [2, 4])
def test_every_registered_model_upscales(name: str, scale: int) -> None:
    model = build_model(name, scale=scale)
    x = torch.rand(2, 4, 12, 10) * 0.3
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 4, 12 * scale, 10 * scale)
    assert torch.isfinite(y).all()
    spec = get_spec(model)
    assert spec.scale == scale and spec.bands == ("B02", "B03", "B04", "B08")


def test_edsr_defaults_match_the_study() -> None:
    model = build_model("edsr")
    assert isinstance(model, EDSR)
    blocks = [m for m in model.body if m.__class__.__name__ == "ResBlock"]
    assert len(blocks) == 8
    assert model.head.out_channels == 64
    assert model.head.in_channels == 4 and model.tail.out_channels == 4


@pytest.mark.parametrize("scale", [2, 4])
def test_icnr_upsampler_starts_without_checkerboard(scale: int) -> None:
    """ICNR: each PixelShuffle(2) stage starts as nearest-neighbour upsampling, so every
    2 x 2 output block of the fresh upsampler is constant (no checkerboard)."""
    torch.manual_seed(0)
    up = Upsampler(scale, 8, norm=None)
    with torch.no_grad():
        y = up(torch.randn(1, 8, 6, 5))
    half = scale // 2
    blocks = y.reshape(1, 8, 6 * half, 2, 5 * half, 2)
    spread = blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))
    assert float(spread.max()) < 1e-5
    # and it is not trivially constant everywhere
    assert float(y.std()) > 1e-3


def test_upsampler_batchnorm_option() -> None:
    model = build_model("edsr-tiny", scale=4, upsampler_norm="batch")
    norms = [m for m in model.upsample if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2


def test_unknown_model_and_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="model name 'nope' is unknown: choose one of edsr"):
        build_model("nope")
    with pytest.raises(UsageError, match="scale must be 2 or 4"):
        build_model("edsr", scale=3)
    with pytest.raises(UsageError, match="unknown Sentinel-2 band"):
        build_model("edsr", bands=("B02", "X9"))
    with pytest.raises(UsageError, match="not_an_option is not an option of model 'edsr'"):
        build_model("edsr", not_an_option=1)


def test_save_load_roundtrip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model("edsr-tiny", bands=("B02", "B03", "B04"), scale=4, res_scale=0.1,
                        mean=[0.1, 0.2, 0.3], std=[0.05, 0.06, 0.07])
    path = save_model(model, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    assert meta["bands"] == ("B02", "B03", "B04") and meta["scale"] == 4
    assert meta["options"]["mean"] == pytest.approx([0.1, 0.2, 0.3])
    loaded = load_model(path)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert get_spec(loaded) == get_spec(model)


@pytest.mark.parametrize("res_scale", [1.0, 0.1])
def test_inference_adds_residuals_in_place_with_the_same_bits(res_scale: float) -> None:
    """Without autograd the residual blocks scale and add in place on their branch's fresh
    output: the same float operations as training's out-of-place ones, so the same bits;
    the block's input is left as it was."""
    torch.manual_seed(6)
    model = build_model("edsr", scale=2, n_resblocks=3, n_feats=16, res_scale=res_scale,
                        global_residual=True).eval()
    x = torch.rand(1, 4, 21, 17) * 0.3
    with torch.enable_grad():
        ref = model(x).detach()
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    with torch.inference_mode():
        block = model.body[0]
        feats = torch.rand(1, 16, 9, 9)
        kept = feats.clone()
        out = block(feats)
        assert torch.equal(feats, kept) and not torch.equal(out, kept)


def test_deepen_keeps_the_function_then_trains_the_new_blocks() -> None:
    torch.manual_seed(4)
    parent = build_model("edsr-tiny", scale=2, n_resblocks=2, n_feats=8, res_scale=0.5,
                         global_residual=True)
    with torch.no_grad():  # a parent whose blocks do something (not a fresh init's zeros)
        for p in parent.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = deepen(parent, 4)
    spec = get_spec(grown)
    assert spec.options["n_resblocks"] == 4 and spec.options["res_scale"] == 0.5
    assert sum(isinstance(m, type(parent.body[0])) for m in grown.body) == 4
    x = torch.rand(2, 4, 12, 10) * 0.4
    with torch.no_grad():
        assert torch.allclose(grown(x), parent(x), atol=1e-6)
    # the added blocks are trainable: one step moves the zero-started convolution
    grown.train()
    grown(x).abs().mean().backward()
    assert grown.body[3].body[2].weight.grad is not None
    assert grown.body[3].body[2].weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="more than the parent's 2"):
        deepen(parent, 2)
    guided = build_model("guided-edsr-tiny", bands=("B05", "B06"), scale=2)
    with pytest.raises(UsageError, match="only an EDSR"):
        deepen(guided, 3)


def test_issue_one_liner_gives_usable_model(tmp_path: Path) -> None:
    code = ("from s2sr.models import build_model, save_model; "
            "save_model(build_model('edsr', scale=2), 'm.safetensors')")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    model = load_model(tmp_path / "m.safetensors")
    assert get_spec(model).scale == 2 and get_spec(model).name == "edsr"


def test_corrupt_weights_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt, truncated or not a safetensors file"):
        load_model(bad)


def test_truncated_weights_file_is_refused(tmp_path: Path) -> None:
    path = save_model(build_model("edsr-tiny"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_model(path)


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("UNPICKLED",))


def test_pickle_is_never_unpickled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(WeightsError):
        load_model(path)
    assert "UNPICKLED" not in capsys.readouterr().out


def test_plain_safetensors_without_header_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not an s2sr weights file"):
        load_model(path)


@pytest.mark.parametrize("scale", [2, 4])
def test_inference_upsamples_large_tiles_in_strips_equal_to_the_whole(
        scale: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above STRIP_MIN_PIXELS output pixels, inference runs the upsampling and tail over row
    strips with a margin: the output equals the whole-tile forward (odd sizes, a strip
    boundary right at the bottom rows, channels-last); training takes the whole tile."""
    from s2sr.models import edsr

    torch.manual_seed(0)
    model = build_model("edsr", scale=scale, n_resblocks=2, n_feats=16,
                        global_residual=True).eval()
    x = torch.rand(2, 4, 2 * edsr.STRIP_ROWS + 3, 37) * 0.3
    calls: list[int] = []
    model.upsample.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[-2]))
    with torch.no_grad():
        whole = model(x)
        assert calls == [x.shape[-2]]
        monkeypatch.setattr(edsr, "STRIP_MIN_PIXELS", 0)
        calls.clear()
        strips = model(x)
        assert len(calls) == 3 and max(calls) <= edsr.STRIP_ROWS + 2 * edsr.STRIP_MARGIN
        torch.testing.assert_close(strips, whole, rtol=0, atol=1e-6)
        last = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(last, whole, rtol=0, atol=1e-5)
        calls.clear()
        model.train()
        model(x)
        assert calls == [x.shape[-2]]  # training: the whole tile, as before
