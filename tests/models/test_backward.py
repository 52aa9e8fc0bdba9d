"""Forward and backward through every registered model (as timm's ``test_model_backward``).

Parametrised over :func:`s2sr.models.list_models` (the single-input models; the guided ones
are in test_guided_model.py), so a newly registered architecture is
exercised without editing this file: every trainable parameter must receive a finite,
non-zero gradient, and one small gradient step must lower the loss.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from s2sr.models import build_model, list_models

#: Option sets every registered model is tried with (small inputs keep each case fast).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "global-residual": {"global_residual": True},
    "batch-norm-upsampler": {"upsampler_norm": "batch"},
}


def _loss(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x), target)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("bands", [("B02", "B03", "B04", "B08"), ("B02", "B03", "B04")],
                         ids=["4-band", "rgb"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", list_models(guided=False))
def test_every_registered_model_trains(name: str, scale: int, bands: tuple[str, ...],
                                       variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, bands=bands, scale=scale, **VARIANTS[variant]).train()
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    assert params, f"{name} has no trainable parameters"
    x = (torch.rand(2, len(bands), 12, 10) * 0.3 + 0.02).requires_grad_(True)
    target = torch.rand(2, len(bands), 12 * scale, 10 * scale) * 0.3 + 0.02
    loss = _loss(model, x, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for key, param in params.items():
        assert param.grad is not None, f"{name}: {key} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {key} has a non-finite gradient"
        assert param.grad.abs().max() > 0, f"{name}: {key} has an all-zero gradient"
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    # the gradients point downhill: one small step along them lowers the same loss (still
    # in train mode: a batch-norm upsampler normalises with the same batch's statistics)
    before = float(loss.detach())
    with torch.no_grad():
        for param in params.values():
            assert param.grad is not None
            param -= 1e-3 * param.grad / param.grad.norm()
    with torch.no_grad():
        assert float(_loss(model, x.detach(), target)) < before


@pytest.mark.parametrize("name", list_models(guided=False))
def test_buffers_get_no_gradient_and_frozen_parts_stay_out(name: str) -> None:
    """Normalisation buffers are not parameters; a frozen part receives no gradient while
    the rest still does (what the trainer's ``freeze`` relies on)."""
    torch.manual_seed(0)
    model = build_model(name, scale=2).train()
    names = {k for k, _ in model.named_parameters()}
    assert not {"mean", "std"} & names
    head = getattr(model, "head", None)
    if head is None:
        pytest.skip(f"{name} has no 'head' part to freeze")
    for param in head.parameters():
        param.requires_grad_(False)
    x = torch.rand(1, 4, 10, 10) * 0.3
    _loss(model, x, torch.rand(1, 4, 20, 20) * 0.3).backward()
    assert all(p.grad is None for p in head.parameters())
    others = [p for k, p in model.named_parameters() if not k.startswith("head.")]
    assert others and all(p.grad is not None and p.grad.abs().max() > 0 for p in others)
