"""VGG16 perceptual (feature) and style losses for Sentinel-2 reflectance.

Band rule: by default the input holds ``B02, B03, B04, B08`` (blue, green, red, NIR) and
``rgb_index=(2, 1, 0)`` picks red, green, blue for the VGG16 (see
:func:`s2sr.losses.vgg.reflectance_to_vgg`). NIR, and any other band, is only constrained
by the pixel loss (:class:`s2sr.losses.PixelLoss`), never by the perceptual or style terms.

The VGG16 trunk and its safe weight loading live in :mod:`s2sr.losses.vgg`. Gram matrices
are always computed in float32, also under autocast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2sr.core.errors import DataError, UsageError
from s2sr.losses.vgg import (
    VGG16_URL,
    VGG16Features,
    layer_index,
    load_vgg16_state,
    reflectance_to_vgg,
)

DEFAULT_FEATURE_LAYERS: dict[str, float] = {"relu2_2": 1.0, "relu3_3": 1.0}


def gram(features: Tensor) -> Tensor:
    """Gram matrix of feature maps, normalised by ``C * H * W``, always in float32.

    The sums of products over ``H * W`` overflow float16 (max 65504) for ordinary VGG16
    activations, so the matrix is computed in float32 with autocast off, whatever the
    input's dtype or the surrounding autocast.

    Args:
        features: ``(B, C, H, W)``.

    Returns:
        ``(B, C, C)`` float32.
    """
    b, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        flat = features.reshape(b, c, h * w).float()
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _check_layers(layers: Mapping[str, float], what: str) -> dict[str, float]:
    """Validate ``{layer: weight}`` and return a plain copy."""
    out: dict[str, float] = {}
    for name, weight in layers.items():
        layer_index(name)
        if not float(weight) >= 0:
            raise UsageError(f"{what} weight of {name} must be >= 0, got {weight}")
        out[name] = float(weight)
    return out


class PerceptualLoss(nn.Module):
    """VGG16 feature (perceptual) and style (Gram) losses on the RGB bands of reflectance.

    ``feature_term = feature_weight * sum_l w_l * L1(phi_l(pred), phi_l(target))`` and
    ``style_term = style_weight * sum_l s_l * L1(gram(phi_l(pred)), gram(phi_l(target)))``,
    where ``phi_l`` are VGG16 activations of :func:`reflectance_to_vgg` images. The target's
    features are computed without gradients.

    The VGG16 is a frozen submodule (``requires_grad`` False, eval mode): it follows
    ``.to(device)`` but is left out of ``state_dict()``, and loading a state dict without it
    keeps the loaded VGG16 weights.

    Args:
        weights_source: URL or path of torchvision VGG16 weights (see :func:`load_vgg16_state`).
        feature_layers: ``{layer: weight}`` of the feature term; ``None`` means
            :data:`DEFAULT_FEATURE_LAYERS`, ``{}`` turns the term off.
        style_layers: ``{layer: weight}`` of the style term; ``None`` or ``{}`` turns it off.
            With neither term on, no weights are loaded and both terms are zero.
        style_weight: factor on the style sum.
        rgb_index: indexes of the red, green and blue bands in the input.
        rgb_scale: reflectance mapped to 1.0 before ImageNet normalisation.
        feature_weight: factor on the feature sum.

    Raises:
        UsageError: unknown layer name, negative weight, bad ``rgb_index`` or ``rgb_scale``.
        InputNotFoundError, WeightsError: see :func:`load_vgg16_state`.
    """

    def __init__(
        self,
        weights_source: str | os.PathLike[str] = VGG16_URL,
        feature_layers: Mapping[str, float] | None = None,
        style_layers: Mapping[str, float] | None = None,
        style_weight: float = 1.0,
        rgb_index: Sequence[int] = (2, 1, 0),
        rgb_scale: float = 0.3,
        feature_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.feature_layers = _check_layers(
            DEFAULT_FEATURE_LAYERS if feature_layers is None else feature_layers, "feature"
        )
        self.style_layers = _check_layers(style_layers or {}, "style")
        self.feature_weight = float(feature_weight)
        self.style_weight = float(style_weight)
        self.rgb_index = tuple(int(i) for i in rgb_index)
        self.rgb_scale = float(rgb_scale)
        if len(self.rgb_index) != 3:
            raise UsageError(f"rgb_index needs 3 band indexes, got {self.rgb_index}")
        if not self.rgb_scale > 0:
            raise UsageError(f"rgb_scale must be positive, got {rgb_scale}")
        self._layers = list(dict.fromkeys([*self.feature_layers, *self.style_layers]))
        self.vgg = VGG16Features()
        if self._layers:
            self.vgg.load_state_dict(load_vgg16_state(weights_source))
        self.register_state_dict_post_hook(_drop_vgg_state)
        self.register_load_state_dict_pre_hook(_keep_vgg_state)

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Compute the feature and style terms.

        Args:
            pred: ``(B, C, H, W)`` predicted reflectance.
            target: ``(B, C, H, W)`` reference reflectance.

        Returns:
            ``(feature_term, style_term)``, scalar tensors (zero when no layers are set).

        Raises:
            DataError: shapes differ. BandError: ``rgb_index`` out of range.
        """
        if pred.shape != target.shape:
            raise DataError(
                f"prediction shape {tuple(pred.shape)} differs from target shape "
                f"{tuple(target.shape)}: crop or resample them to the same size"
            )
        feature_term = pred.new_zeros(())
        style_term = pred.new_zeros(())
        if not self._layers:
            return feature_term, style_term
        pred_rgb = reflectance_to_vgg(pred, self.rgb_index, self.rgb_scale)
        pred_feats = self.vgg(pred_rgb, self._layers)
        with torch.no_grad():
            tgt_feats = self.vgg(
                reflectance_to_vgg(target.detach(), self.rgb_index, self.rgb_scale), self._layers
            )
        for name, weight in self.feature_layers.items():
            feature_term = feature_term + weight * F.l1_loss(pred_feats[name], tgt_feats[name])
        for name, weight in self.style_layers.items():
            style_term = style_term + weight * F.l1_loss(
                gram(pred_feats[name]), gram(tgt_feats[name])
            )
        return feature_term * self.feature_weight, style_term * self.style_weight

    def extra_repr(self) -> str:
        """One-line summary for ``repr``."""
        return (
            f"feature_layers={self.feature_layers}, style_layers={self.style_layers}, "
            f"style_weight={self.style_weight}, rgb_index={self.rgb_index}, "
            f"rgb_scale={self.rgb_scale}"
        )


def _drop_vgg_state(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    """``state_dict`` post-hook: leave the frozen VGG16 out of saved weights."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}vgg.")]:
        del state_dict[key]


def _keep_vgg_state(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """``load_state_dict`` pre-hook: a dict without the VGG16 keeps the current VGG16."""
    vgg = module.vgg
    assert isinstance(vgg, nn.Module)
    for key, value in vgg.state_dict().items():
        state_dict.setdefault(f"{prefix}vgg.{key}", value)
