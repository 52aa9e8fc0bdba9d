"""Model registry: name -> builder, in the style of timm's ``create_model``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from s2sr.core.bands import DEFAULT_BANDS, TYPICAL_MEAN, TYPICAL_STD
from s2sr.core.checks import shown
from s2sr.core.errors import SpecError, UsageError
from s2sr.models.bounds import (
    MAX_ABS_MEAN,
    STD_RANGE,
    check_bands,
    check_floats,
    check_scale,
)
from s2sr.models.edsr import EDSR, ResBlock
from s2sr.models.guided import GUIDED_MODELS, GUIDED_OPTIONS, GuidedEDSR

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}
_OPTIONS: dict[str, frozenset[str] | None] = {}


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


def register_model(
    name: str, *, options: Collection[str] | None = None
) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name`` (decorator).

    Args:
        name: the architecture name used in configs and weights files.
        options: the option names the builder accepts; any other option is refused
            before the builder runs (``None``: the builder checks its own options).
            The builder must bound every size it allocates from: :func:`build_model` and
            ``load_model`` build it on torch's ``"meta"`` device first to learn the
            tensor shapes, so an out-of-bounds option must raise before allocating.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        _OPTIONS[name] = None if options is None else frozenset(options)
        return builder

    return decorator


def list_models(guided: bool | None = None) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        guided: None: all; False: the models of one input (``model(x)``); True: the guided
            models of the 20 m bands (``model(lr, guide)``, :mod:`s2sr.models.guided`).
    """
    return sorted(n for n in _REGISTRY if guided is None or (n in GUIDED_MODELS) == guided)


def get_spec(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` attached by :func:`build_model` or ``load_model``."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise UsageError("this model was not made by s2sr.models.build_model or load_model")
    return spec


def check_spec(name: Any, bands: Any, scale: Any, options: Any) -> ModelSpec:
    """Check a model's name, bands, scale and option names; fill the default mean/std.

    Option values are checked by the builder itself (EDSR: :mod:`s2sr.models.bounds`) when
    :func:`build_model` or :func:`expected_state` runs it.

    Raises:
        SpecError: (a ``UsageError``) naming the field that is wrong and what is allowed.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise SpecError("name", f"{shown(name)} is unknown: choose one of "
                                f"{', '.join(list_models())}")
    bands = check_bands(bands)
    scale = check_scale(scale)
    if not isinstance(options, Mapping):
        raise SpecError("options", f"must be a mapping of option names to values, "
                                   f"got {shown(options)}")
    allowed = _OPTIONS[name]
    for key in options:
        if not isinstance(key, str) or (allowed is not None and key not in allowed):
            choices = ", ".join(sorted(allowed or ()))
            raise SpecError(str(key)[:40], f"is not an option of model {name!r}: use "
                                           f"{choices}")
    options = dict(options)
    if options.get("mean") is None:
        options["mean"] = [TYPICAL_MEAN[b] for b in bands]
    if options.get("std") is None:
        options["std"] = [TYPICAL_STD[b] for b in bands]
    options["mean"] = check_floats("mean", options["mean"], len(bands), -MAX_ABS_MEAN,
                                   MAX_ABS_MEAN)
    options["std"] = check_floats("std", options["std"], len(bands), *STD_RANGE)
    return ModelSpec(name=name, bands=bands, scale=scale, options=options)


def _construct(spec: ModelSpec) -> nn.Module:
    try:
        return _REGISTRY[spec.name](bands=spec.bands, scale=spec.scale, **spec.options)
    except TypeError as err:
        raise UsageError(f"bad option for model {spec.name!r}: {err}") from None


def expected_state(spec: ModelSpec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shape and dtype of every tensor in the state dict of the model ``spec`` describes.

    The model is built on torch's ``"meta"`` device: nothing is allocated, whatever the
    sizes, so this is safe on untrusted specs once :func:`check_spec` has passed.
    """
    with torch.device("meta"):
        model = _construct(spec)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def build_spec(spec: ModelSpec) -> nn.Module:
    """Build the model a checked :class:`ModelSpec` describes, with ``model.spec`` set."""
    model = _construct(spec)
    # nn.Module.__setattr__ is typed for tensors and modules; the spec is plain data.
    object.__setattr__(model, "spec", spec)
    return model.eval()


def build_model(
    name: str, *, bands: Sequence[str] = DEFAULT_BANDS, scale: int = 2, **options: Any
) -> nn.Module:
    """Build a registered model with its :class:`ModelSpec` attached as ``model.spec``.

    Args:
        name: a name from :func:`list_models`, e.g. ``"edsr"``.
        bands: Sentinel-2 band names the model takes and returns, in order (1 to 13,
            distinct).
        scale: 2 (10 m -> 5 m) or 4 (10 m -> 2.5 m).
        **options: builder options (for EDSR: ``n_resblocks`` 1-64, ``n_feats`` 1-512,
            ``res_scale``, ``upsampler_norm``, ``global_residual``, ``mean``, ``std``; see
            :mod:`s2sr.models.bounds`).

    Returns:
        The model in eval mode.

    Raises:
        UsageError: an unknown name, band or option, or a value out of bounds (checked
            before anything is allocated).
    """
    return build_spec(check_spec(name, bands, scale, options))


_EDSR_OPTIONS = ("n_resblocks", "n_feats", "res_scale", "upsampler_norm", "global_residual",
                 "mean", "std")


@register_model("edsr", options=_EDSR_OPTIONS)
def edsr(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """EDSR with the study's defaults: 8 residual blocks, 64 filters."""
    options.setdefault("n_resblocks", 8)
    options.setdefault("n_feats", 64)
    return EDSR(in_bands=len(bands), scale=scale, **options)


@register_model("edsr-tiny", options=_EDSR_OPTIONS)
def edsr_tiny(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """A tiny EDSR (1 block, 8 filters) so that tests run in seconds."""
    options.setdefault("n_resblocks", 1)
    options.setdefault("n_feats", 8)
    return EDSR(in_bands=len(bands), scale=scale, **options)


@register_model("guided-edsr", options=GUIDED_OPTIONS)
def guided_edsr(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """The guided network of the 20 m bands: 8 blocks of 64 filters on the 20 m grid."""
    return GuidedEDSR(bands=bands, scale=scale, **options)


@register_model("guided-edsr-tiny", options=GUIDED_OPTIONS)
def guided_edsr_tiny(*, bands: Sequence[str], scale: int, **options: Any) -> nn.Module:
    """A tiny guided network (1 block, 8 filters) so that tests run in seconds."""
    options.setdefault("n_resblocks", 1)
    options.setdefault("n_feats", 8)
    return GuidedEDSR(bands=bands, scale=scale, **options)


def deepen(model: nn.Module, n_resblocks: int) -> nn.Module:
    """An EDSR with ``n_resblocks`` residual blocks that computes what ``model`` computes.

    The parent's blocks come first; each added block's second convolution starts at zero, so
    the block starts as the identity and the deeper network's output equals the parent's
    (up to float rounding) until training moves it (function-preserving growth, as Net2Net's
    "deeper" operator, Chen et al. 2016). Used to measure what depth pays without training
    from scratch (``init_from`` with a larger ``model.options.n_resblocks``).

    Raises:
        UsageError: ``model`` is not an EDSR made by s2sr, or ``n_resblocks`` is not more
            than it has (or out of bounds).
    """
    spec = get_spec(model)
    if spec.name not in ("edsr", "edsr-tiny") or not isinstance(model, EDSR):
        raise UsageError(f"only an EDSR can be deepened, this is a {spec.name}")
    blocks = [m for m in model.body if isinstance(m, ResBlock)]
    if not isinstance(n_resblocks, int) or n_resblocks <= len(blocks):
        raise UsageError(f"n_resblocks must be more than the parent's {len(blocks)} to "
                         f"deepen it, got {n_resblocks}")
    grown = build_spec(ModelSpec(spec.name, spec.bands, spec.scale,
                                 {**spec.options, "n_resblocks": n_resblocks}))
    state = dict(grown.state_dict())  # the added blocks' first convolutions: a fresh init
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "body" and int(parts[1]) == len(blocks):  # the body's closing conv
            parts[1] = str(n_resblocks)
        state[".".join(parts)] = value
    for k in range(len(blocks), n_resblocks):
        for key in (f"body.{k}.body.2.weight", f"body.{k}.body.2.bias"):
            state[key] = torch.zeros_like(state[key])
    grown.load_state_dict(state, strict=True)
    return grown.train(model.training)
