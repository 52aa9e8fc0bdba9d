"""Model registry: name -> builder, in the style of timm's ``create_model``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from s2sr.bands import BANDS, DEFAULT_BANDS, TYPICAL_MEAN, TYPICAL_STD
from s2sr.errors import UsageError
from s2sr.models.edsr import EDSR

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: enough to rebuild it and to use it on a scene.

    Attributes:
        name: registered architecture name.
        bands: Sentinel-2 band names, in the order the model takes them.
        scale: upscaling factor (output pixel size = input pixel size / scale).
        options: the remaining builder keyword arguments (JSON-serialisable).
    """

    name: str
    bands: tuple[str, ...]
    scale: int
    options: dict[str, Any] = field(default_factory=dict)


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name`` (decorator)."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_spec(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` attached by :func:`build_model` or ``load_model``."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise UsageError("this model was not made by s2sr.models.build_model or load_model")
    return spec


def build_model(
    name: str, *, bands: Sequence[str] = DEFAULT_BANDS, scale: int = 2, **options: Any
) -> nn.Module:
    """Build a registered model with its :class:`ModelSpec` attached as ``model.spec``.

    Args:
        name: a name from :func:`list_models`, e.g. ``"edsr"``.
        bands: Sentinel-2 band names the model takes and returns, in order.
        scale: 2 (10 m -> 5 m) or 4 (10 m -> 2.5 m).
        **options: builder options (for EDSR: ``n_resblocks``, ``n_feats``, ``res_scale``,
            ``upsampler_norm``, ``mean``, ``std``).

    Returns:
        The model in eval mode.
    """
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}: choose one of {', '.join(list_models())}")
    bands = tuple(bands)
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise UsageError(f"unknown Sentinel-2 band(s) {unknown}: use names such as B02, B8A")
    options = dict(options)
    options.setdefault("mean", [TYPICAL_MEAN[b] for b in bands])
    options.setdefault("std", [TYPICAL_STD[b] for b in bands])
    options["mean"] = [float(v) for v in options["mean"]]
    options["std"] = [float(v) for v in options["std"]]
    try:
        model = _REGISTRY[name](bands=bands, scale=scale, **options)
    except TypeError as err:
        raise UsageError(f"bad option for model {name!r}: {err}") from None
    # nn.Module.__setattr__ is typed for tensors and modules; the spec is plain data.
    object.__setattr__(model, "spec", ModelSpec(name=name, bands=bands, scale=scale,
                                                options=options))
    return model.eval()


@register_model("edsr")
def edsr(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """EDSR with the study's defaults: 8 residual blocks, 64 filters."""
    options.setdefault("n_resblocks", 8)
    options.setdefault("n_feats", 64)
    return EDSR(in_bands=len(bands), scale=scale, **options)


@register_model("edsr-tiny")
def edsr_tiny(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """A tiny EDSR (1 block, 8 filters) so that tests run in seconds."""
    options.setdefault("n_resblocks", 1)
    options.setdefault("n_feats", 8)
    return EDSR(in_bands=len(bands), scale=scale, **options)
