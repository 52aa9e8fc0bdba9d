"""Experiment configuration: one YAML file -> validated dataclasses.

Every key is checked: an unknown or misspelt key is an error that names it, its place in
the file and the keys allowed there. Paths in ``data.datasets`` and ``init_from`` are
resolved relative to the YAML file's folder.

Example::

    name: smoke
    seed: 0
    model: {name: edsr, scale: 2, bands: [B02, B03, B04, B08], options: {n_resblocks: 8}}
    data:
      datasets: [../runs/data/wald]
      kind: SE20>SE10
    loss: {pixel: 1.0, feature: {relu2_2: 0.05}, style: {relu2_2: 1.0}, style_weight: 0}
    optimizer: {name: adam, weight_decay: 0}
    stages:
      - {epochs: 2, lr: 1.0e-3, patch: 32}
      - {epochs: 2, lr: 3.0e-4, patch: 48, freeze: [head]}
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from s2sr.bands import DEFAULT_BANDS
from s2sr.errors import InputNotFoundError, UsageError

PARTS = ("head", "body", "upsample", "tail")


@dataclass
class ModelConfig:
    """The network: a registered name, its bands and scale, builder options."""

    name: str = "edsr"
    scale: int = 2
    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Datasets made by ``s2sr pairs`` and which of their patches to use.

    ``norm_from_data`` replaces the model's input normalisation by the training patches'
    per-band mean and standard deviation (when training from scratch).
    """

    datasets: list[str] = field(default_factory=list)
    kind: list[str] | None = None
    train_split: str = "train"
    val_split: str = "val"
    site: list[str] | None = None
    augment: bool = True
    workers: int = 0
    norm_from_data: bool = True
    max_val_patches: int | None = 256


@dataclass
class LossConfig:
    """Loss = pixel x L1 + sum(feature[layer] x L1(VGG features)) + style_weight x
    sum(style[layer] x L1(Gram matrices)). ``vgg_weights``: a torchvision-format VGG16
    state dict, path or URL (default: ``$S2SR_VGG16_WEIGHTS`` when set, else torchvision's
    ImageNet weights, downloaded once and cached by torch.hub)."""

    pixel: float = 1.0
    pixel_kind: str = "l1"
    feature: dict[str, float] = field(default_factory=dict)
    style: dict[str, float] = field(default_factory=dict)
    style_weight: float = 0.0
    vgg_weights: str | None = None
    rgb_bands: list[str] = field(default_factory=lambda: ["B04", "B03", "B02"])
    rgb_scale: float = 0.3


@dataclass
class OptimizerConfig:
    """Adam(W) settings; the learning rate comes from each stage's one-cycle."""

    name: str = "adam"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    #: clip the gradient norm to this value (``None``: no clipping); keeps the study's
    #: high one-cycle learning rates (5e-3) stable with the feature and style terms
    clip_grad_norm: float | None = None


@dataclass
class StageConfig:
    """One stage: its own one-cycle over ``epochs`` up to ``lr``.

    ``patch``: random crop of the input in pixels (progressive resizing; ``None``: whole
    patches). ``freeze``: parts kept fixed (head, body, upsample, tail).
    ``pct_start``: share of the cycle spent warming up.
    """

    epochs: int = 1
    lr: float = 1e-3
    patch: int | None = None
    freeze: list[str] = field(default_factory=list)
    batch_size: int | None = None
    pct_start: float = 0.3


@dataclass
class TrainConfig:
    """A whole experiment."""

    name: str = "experiment"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 16
    init_from: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    source: str = ""

    def scaled(self, factor: float) -> TrainConfig:
        """A copy with every stage's epochs multiplied by ``factor`` (at least 1)."""
        copy = dataclasses.replace(self, stages=[
            dataclasses.replace(s, epochs=max(1, round(s.epochs * factor))) for s in self.stages])
        return copy

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for the run folder's config.yaml)."""
        return dataclasses.asdict(self)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {value!r}")
        return _from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin is list:
        if isinstance(value, str) and args and args[0] is str:
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str | int | float):
        return str(value)
    if tp is bool and isinstance(value, bool):
        return value
    raise UsageError(f"{where} must be {getattr(tp, '__name__', tp)}, got {value!r}")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UsageError(
            f"unknown key {unknown[0]!r} in {where or 'the top level'}: allowed keys are "
            f"{', '.join(names)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that types alone do not catch."""
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"precision must be fp32, bf16 or fp16, got {cfg.precision!r}")
    if cfg.model.scale not in (2, 4):
        raise UsageError(f"model.scale must be 2 or 4, got {cfg.model.scale}")
    if not cfg.stages:
        raise UsageError("stages must list at least one stage")
    for k, stage in enumerate(cfg.stages):
        bad = [p for p in stage.freeze if p not in PARTS]
        if bad:
            raise UsageError(f"stages[{k}].freeze has {bad}: parts are {', '.join(PARTS)}")
        if stage.epochs < 1 or stage.lr <= 0:
            raise UsageError(f"stages[{k}] needs epochs >= 1 and lr > 0")
        if set(stage.freeze) == set(PARTS):
            raise UsageError(f"stages[{k}] freezes every part: nothing would train")
    if cfg.batch_size < 1:
        raise UsageError("batch_size must be >= 1")
    if not cfg.data.datasets:
        raise UsageError("data.datasets must name at least one dataset folder")
    return cfg


def load_config(path: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None = None,
                runs_root: str | os.PathLike[str] | None = None) -> TrainConfig:
    """Read, validate and resolve a YAML experiment file.

    Args:
        path: the YAML file.
        data_root: folder against which relative dataset paths resolve (default: the
            YAML file's folder).
        runs_root: folder against which a relative ``init_from`` resolves (default: the
            YAML file's folder).
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"config {path} does not exist: check the path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of keys")
    cfg = _from_dict(TrainConfig, data, "")
    base = path.resolve().parent
    droot = Path(data_root).resolve() if data_root else base
    rroot = Path(runs_root).resolve() if runs_root else base
    cfg.data.datasets = [str((droot / d).resolve()) if not Path(d).is_absolute() else d
                         for d in cfg.data.datasets]
    if cfg.init_from and not Path(cfg.init_from).is_absolute():
        cfg.init_from = str((rroot / cfg.init_from).resolve())
    if cfg.loss.vgg_weights and "://" not in cfg.loss.vgg_weights and not Path(
            cfg.loss.vgg_weights).is_absolute():
        cfg.loss.vgg_weights = str((base / cfg.loss.vgg_weights).resolve())
    cfg.source = str(path)
    return validate(cfg)
