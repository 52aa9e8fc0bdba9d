"""The guided network of the 20 m bands (issue 22): shapes, bounds, weights files, halo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from s2sr.core.errors import SpecError, UsageError, WeightsError
from s2sr.models import build_model, get_spec, list_models, load_model, read_metadata, save_model
from s2sr.models.guided import BANDS_20M, GuidedEDSR, guide_of, guided_halo

GUIDE = ("B02", "B03", "B04", "B08")


def _guided(name: str = "guided-edsr-tiny", scale: int = 2, **options: object) -> torch.nn.Module:
    return build_model(name, bands=BANDS_20M, scale=scale, guide_bands=GUIDE, **options)


def _inputs(h: int, w: int, seed: int = 0, dtype: torch.dtype = torch.float32
            ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lr = torch.rand(1, 6, h, w, generator=gen, dtype=dtype) * 0.4 + 0.02
    guide = torch.rand(1, 4, 2 * h, 2 * w, generator=gen, dtype=dtype) * 0.4 + 0.02
    return lr, guide


def test_registered_as_guided_and_kept_out_of_single_input_lists() -> None:
    assert list_models(guided=True) == ["guided-edsr", "guided-edsr-tiny"]
    assert not set(list_models(guided=False)) & {"guided-edsr", "guided-edsr-tiny"}
    assert set(list_models()) == set(list_models(guided=True)) | set(list_models(guided=False))


@pytest.mark.parametrize("name", ["guided-edsr", "guided-edsr-tiny"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("inject", [False, True])
def test_shapes_spec_and_guide(name: str, scale: int, inject: bool) -> None:
    model = _guided(name, scale, inject=inject)
    lr, guide = _inputs(10, 12)
    with torch.no_grad():
        out = model(lr, guide)
    assert out.shape == (1, 6, 10 * scale, 12 * scale)
    assert torch.isfinite(out).all()
    spec = get_spec(model)
    assert spec.bands == BANDS_20M and spec.scale == scale
    assert guide_of(model) == (GUIDE, 2) and guide_of(spec) == (GUIDE, 2)
    # the guide matters: another guide gives another output
    with torch.no_grad():
        other = model(lr, guide.flip(-1))
    assert float((other - out).abs().max()) > 1e-4


def test_guide_of_is_none_for_single_input_models() -> None:
    assert guide_of(build_model("edsr-tiny")) is None
    assert guide_of(get_spec(build_model("edsr-tiny"))) is None


def test_untrained_model_has_no_checkerboard_on_a_flat_scene() -> None:
    """ICNR upsampler: away from the zero-padded edges a constant scene stays constant."""
    model = _guided()
    lr = torch.full((1, 6, 24, 24), 0.2)
    guide = torch.full((1, 4, 48, 48), 0.1)
    with torch.no_grad():
        out = model(lr, guide)
    m = 2 * guided_halo(model)
    centre = out[..., m:-m, m:-m]
    assert float(centre.std(dim=(-2, -1)).max()) < 1e-5


@pytest.mark.parametrize(("options", "key"), [
    ({"n_feats": 513}, "n_feats"),
    ({"n_resblocks": 10**8}, "n_resblocks"),
    ({"res_scale": float("nan")}, "res_scale"),
    ({"guide_scale": 8}, "guide_scale"),
    ({"guide_scale": True}, "guide_scale"),
    ({"guide_bands": ["B02"] * 10**6}, "guide_bands"),
    ({"guide_bands": ["B05", "B02"]}, "guide_bands"),
    ({"guide_bands": "B02"}, "guide_bands"),
    ({"guide_mean": [0.1] * 3}, "guide_mean"),
    ({"guide_std": [0.0] * 4}, "guide_std[0]"),
    ({"mean": [1e9] * 6}, "mean[0]"),
    ({"inject": 1}, "inject"),
])
def test_options_out_of_bounds_are_refused_before_allocating(options: dict[str, object],
                                                             key: str) -> None:
    with pytest.raises(SpecError) as info:
        build_model("guided-edsr", bands=BANDS_20M, scale=2, **({"guide_bands": GUIDE} | options))
    assert info.value.key == key


def test_guide_scale_finer_than_the_output_and_unknown_options_are_refused() -> None:
    with pytest.raises(SpecError, match="guide_scale must not exceed the model's scale 2"):
        _guided(guide_scale=4)
    with pytest.raises(UsageError, match="upsampler_norm is not an option of model"):
        _guided(upsampler_norm="batch")


def test_mismatched_inputs_are_a_usage_error() -> None:
    model = _guided()
    lr, guide = _inputs(8, 8)
    with pytest.raises(UsageError, match=r"guide \(B, 4, h\*2, w\*2\)"):
        model(lr, guide[..., :-2, :])
    with pytest.raises(UsageError, match="crop both to one aligned extent"):
        model(lr[:, :5], guide)


@pytest.mark.parametrize("scale", [2, 4])
def test_save_load_round_trip(tmp_path: Path, scale: int) -> None:
    torch.manual_seed(1)
    model = _guided(scale=scale, guide_mean=[0.05, 0.06, 0.07, 0.2],
                    guide_std=[0.03, 0.03, 0.04, 0.08])
    path = save_model(model, tmp_path / "g.safetensors")
    meta = read_metadata(path)
    assert meta["name"] == "guided-edsr-tiny" and meta["bands"] == BANDS_20M
    assert meta["options"]["guide_bands"] == list(GUIDE)
    loaded = load_model(path)
    assert isinstance(loaded, GuidedEDSR) and guide_of(loaded) == (GUIDE, 2)
    lr, guide = _inputs(9, 7)
    with torch.no_grad():
        assert torch.equal(model(lr, guide), loaded(lr, guide))
    assert torch.equal(loaded.guide_mean.flatten(), torch.tensor([0.05, 0.06, 0.07, 0.2]))


def test_hostile_header_of_a_guided_file_is_refused(tmp_path: Path) -> None:
    model = _guided()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "bomb.safetensors"
    options = {"guide_bands": list(GUIDE), "n_feats": 512, "n_resblocks": 10**9}
    save_file(tensors, str(path), metadata={
        "format": "s2sr-weights", "format_version": "1", "name": "guided-edsr",
        "bands": json.dumps(list(BANDS_20M)), "scale": "2", "options": json.dumps(options)})
    with pytest.raises(WeightsError, match=r"header options\.n_resblocks must be an integer"):
        load_model(path)
    options = {"guide_bands": list(GUIDE), "guide_scale": 3}
    save_file(tensors, str(path), metadata={
        "format": "s2sr-weights", "format_version": "1", "name": "guided-edsr-tiny",
        "bands": json.dumps(list(BANDS_20M)), "scale": "2", "options": json.dumps(options)})
    with pytest.raises(WeightsError, match=r"header options\.guide_scale must be 2 or 4"):
        load_model(path)


def _randomised(scale: int, n_resblocks: int, inject: bool = False) -> torch.nn.Module:
    """A tiny model with every weight random (so any missed context row shows), float64."""
    torch.manual_seed(3)
    model = _guided(scale=scale, n_resblocks=n_resblocks, inject=inject).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize(("scale", "n_resblocks", "inject"),
                         [(2, 1, False), (2, 2, False), (4, 1, False), (2, 1, True),
                          (4, 2, True)])
def test_guided_halo_is_exactly_enough(scale: int, n_resblocks: int, inject: bool) -> None:
    """A tile with ``guided_halo`` coarse rows and columns of context equals the whole
    forward inside the context; with one fewer it does not."""
    model = _randomised(scale, n_resblocks, inject)
    halo = guided_halo(model)
    assert halo == 2 * n_resblocks + 4
    h = w = 2 * halo + 12
    lr, guide = _inputs(h, w, dtype=torch.float64)
    with torch.no_grad():
        whole = model(lr, guide)
    r0, r1, c0, c1 = halo + 1, halo + 7, halo + 2, halo + 9  # the tile's core, coarse px

    def tile(margin: int) -> torch.Tensor:
        a, b, c, d = r0 - margin, r1 + margin, c0 - margin, c1 + margin
        with torch.no_grad():
            out = model(lr[..., a:b, c:d], guide[..., 2 * a:2 * b, 2 * c:2 * d])
        s = scale
        return out[..., margin * s:(margin + r1 - r0) * s, margin * s:(margin + c1 - c0) * s]

    core = whole[..., r0 * scale:r1 * scale, c0 * scale:c1 * scale]
    assert float((tile(halo) - core).abs().max()) < 1e-10
    assert float((tile(halo - 1) - core).abs().max()) > 1e-6


@pytest.mark.parametrize(("scale", "inject"), [(2, True), (2, False), (4, True)])
def test_inference_runs_the_output_grid_in_strips_equal_to_the_whole(
        scale: int, inject: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above STRIP_MIN_PIXELS output pixels, inference runs the upsampling, tail and
    injection over row strips with a margin: the output equals the whole input's forward
    (odd sizes, a last strip of 3 rows, channels-last); training takes the whole input."""
    from s2sr.models import edsr, guided

    torch.manual_seed(1)
    model = build_model("guided-edsr", bands=BANDS_20M, scale=scale, n_resblocks=2,
                        n_feats=16, inject=inject).eval()
    with torch.no_grad():  # a tail and injection that matter (not the near-zero init)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    h, w = 2 * edsr.STRIP_ROWS + 3, 29
    lr = torch.rand(1, 6, h, w) * 0.3
    guide = torch.rand(1, 4, 2 * h, 2 * w) * 0.3
    calls: list[int] = []
    model.upsample.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[-2]))
    with torch.no_grad():
        whole = model(lr, guide)
        assert calls == [h]
        monkeypatch.setattr(guided, "STRIP_MIN_PIXELS", 0)
        calls.clear()
        strips = model(lr, guide)
        assert len(calls) == 3 and max(calls) <= edsr.STRIP_ROWS + 2 * edsr.STRIP_MARGIN
        torch.testing.assert_close(strips, whole, rtol=0, atol=1e-5)
        last = model.to(memory_format=torch.channels_last)(
            lr.contiguous(memory_format=torch.channels_last),
            guide.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(last, whole, rtol=0, atol=1e-5)
        # one row less of margin is not enough: the strips' edges show
        monkeypatch.setattr(guided, "STRIP_MARGIN", 0)
        assert (model(lr, guide) - whole).abs().max() > 1e-3
    calls.clear()
    model.train()
    model(lr, guide)
    assert calls == [h]


def test_guided_halo_refuses_other_models() -> None:
    with pytest.raises(UsageError, match="guided_halo needs a guided model"):
        guided_halo(build_model("edsr-tiny"))


@pytest.mark.parametrize("scale", [2, 4])
def test_trains(scale: int) -> None:
    """Every parameter gets a finite non-zero gradient and one step lowers the loss."""
    torch.manual_seed(0)
    model = _guided(scale=scale, inject=True).train()
    lr, guide = _inputs(8, 10)
    target = torch.rand(1, 6, 8 * scale, 10 * scale) * 0.3
    loss = F.mse_loss(model(lr, guide), target)
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
        assert p.grad.abs().max() > 0, key
    with torch.no_grad():
        for p in model.parameters():
            assert p.grad is not None
            p -= 1e-3 * p.grad / p.grad.norm()
        assert float(F.mse_loss(model(lr, guide), target)) < float(loss)
