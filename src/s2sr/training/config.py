"""Experiment configuration: one YAML file -> validated dataclasses
(:mod:`s2sr.training.schema`).

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
import functools
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from s2sr.core.checks import check_choice, check_number, shown
from s2sr.core.constants import SCALES
from s2sr.core.errors import InputNotFoundError, SpecError, UsageError
from s2sr.models import check_spec
from s2sr.models.bounds import MAX_FEATS, MAX_RESBLOCKS
from s2sr.models.registry import expected_state
from s2sr.training.schedule import MOMENTUM_DIP
from s2sr.training.schema import (
    PARTS,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainConfig,
)
from s2sr.training.yamlfile import read_yaml, shown_key

__all__ = ["OPTIMIZERS", "PRECISIONS", "load_config", "validate"]

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
            raise UsageError(f"{where} must be a mapping, got {shown(value)}")
        return _from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin is list:
        if isinstance(value, str) and args and args[0] is str:
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list):
            raise UsageError(f"{where} must be a list, got {shown(value)}")
        return [_convert(args[0], v, f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where} must be a mapping, got {shown(value)}")
        return {str(k): _convert(args[1], v, f"{where}.{shown_key(k)}") for k, v in value.items()}
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
    raise UsageError(f"{where} must be {getattr(tp, '__name__', tp)}, got {shown(value)}")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UsageError(
            f"unknown key {shown(unknown[0])} in {where or 'the top level'}: allowed keys are "
            f"{', '.join(names)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


#: Bounds of the config's numbers: generous for real experiments, small enough that no
#: value can ask for absurd memory or time. (lower, upper, lower open, upper open)
_MAX_BATCH = 4096
_MAX_PATCH = 1024
_MAX_EPOCHS = 100_000
_MAX_STAGES = 100
_MAX_WORKERS = 64
_MAX_DEVICES = 4096
#: Lightning's precision for each ``precision`` value of the YAML (both spellings).
PRECISIONS = {"fp32": "32-true", "32-true": "32-true", "bf16": "bf16-mixed",
              "bf16-mixed": "bf16-mixed", "fp16": "16-mixed", "16-mixed": "16-mixed"}
_MAX_WEIGHT = 1e6
#: Architecture sizes: the one set of bounds is the models' (:mod:`s2sr.models.bounds`).
_INT_OPTIONS = ("n_resblocks", "n_feats")
_MAX_OPTION = max(MAX_FEATS, MAX_RESBLOCKS)
#: Input patches of a batch, in pixels (batch x patch^2): above this one step would need
#: tens of GiB.
_MAX_BATCH_PIXELS = 64 * 1024 * 1024
OPTIMIZERS = ("adam", "adamw")


#: A config value out of range: :func:`s2sr.core.checks.check_number` with the fix.
_number = functools.partial(check_number, fix=": fix it in the config")


def _check_options(options: dict[str, Any], n_bands: int) -> None:
    for key, value in options.items():
        where = f"model.options.{shown_key(key)}"
        if key in _INT_OPTIONS:
            _number(where, value, 1, _MAX_OPTION, integer=True)
        elif key == "res_scale":
            _number(where, value, 0, 100, low_open=True)
        elif key in ("mean", "std"):
            if not isinstance(value, list) or len(value) != n_bands:
                raise UsageError(f"{where} must list one number per band of model.bands "
                                 f"({n_bands}), got {shown(value)}")
            for i, v in enumerate(value):
                if key == "std":
                    _number(f"{where}[{i}]", v, 0, 1e6, low_open=True)
                else:
                    _number(f"{where}[{i}]", v, -1e6, 1e6)
        elif isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where} must be a finite number, got {shown(value)}")


def _check_model(model: ModelConfig) -> None:
    """The architecture against the models' own bounds, without building it (meta device):
    the config is refused at load, not after the datasets are read."""
    try:
        expected_state(check_spec(model.name, model.bands, model.scale, model.options))
    except SpecError as err:
        where = f"model.{err.key}" if err.key in ("name", "bands", "scale") else \
            f"model.options.{shown_key(err.key)}"
        raise UsageError(f"{where} {err.detail}: fix it in the config") from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check values that types alone do not catch: every number against its range."""
    check_choice("precision", cfg.precision, PRECISIONS)
    _number("devices", cfg.devices, 1, _MAX_DEVICES, integer=True)
    _number("num_nodes", cfg.num_nodes, 1, _MAX_DEVICES, integer=True)
    _number("seed", cfg.seed, 0, 2**32 - 1, integer=True)
    _number("batch_size", cfg.batch_size, 1, _MAX_BATCH, integer=True)
    if cfg.model.scale not in SCALES:
        raise UsageError(f"model.scale must be 2 or 4, got {shown(cfg.model.scale)}")
    if not cfg.model.bands:
        raise UsageError("model.bands must list at least one band")
    _check_options(cfg.model.options, len(cfg.model.bands))
    _check_model(cfg.model)
    _number("data.workers", cfg.data.workers, 0, _MAX_WORKERS, integer=True)
    if cfg.data.max_val_patches is not None:
        _number("data.max_val_patches", cfg.data.max_val_patches, 1, 1_000_000, integer=True)
    _check_loss(cfg.loss)
    _check_optimizer(cfg.optimizer)
    _check_stages(cfg)
    _check_data_source(cfg)
    return cfg


def _check_loss(loss: LossConfig) -> None:
    """The loss weights, the RGB scale and bands of the perceptual terms."""
    _number("loss.pixel", loss.pixel, 0, _MAX_WEIGHT)
    _number("loss.style_weight", loss.style_weight, 0, _MAX_WEIGHT)
    for part in ("feature", "style"):
        for layer, weight in getattr(loss, part).items():
            _number(f"loss.{part}.{shown_key(layer)}", weight, 0, _MAX_WEIGHT)
    _number("loss.rgb_scale", loss.rgb_scale, 0, 100, low_open=True)
    if len(loss.rgb_bands) != 3:
        raise UsageError(f"loss.rgb_bands must name 3 bands (red, green, blue), got "
                         f"{shown(loss.rgb_bands)}")


def _check_optimizer(opt: OptimizerConfig) -> None:
    """The optimizer, its weight decay, betas and gradient clip."""
    if opt.name not in OPTIMIZERS:
        raise UsageError(f"optimizer.name must be adam or adamw, got {shown(opt.name)}")
    _number("optimizer.weight_decay", opt.weight_decay, 0, 1)
    if len(opt.betas) != 2:
        raise UsageError(f"optimizer.betas must hold 2 numbers, got {shown(opt.betas)}")
    # betas[0] drives the one-cycle's momentum range (betas[0] - 0.1 at its lowest)
    _number("optimizer.betas[0]", opt.betas[0], MOMENTUM_DIP, 1, high_open=True)
    _number("optimizer.betas[1]", opt.betas[1], 0, 1, high_open=True)
    if opt.clip_grad_norm is not None:
        _number("optimizer.clip_grad_norm", opt.clip_grad_norm, 0, 1e6, low_open=True)


def _check_stages(cfg: TrainConfig) -> None:
    """Each stage: frozen parts, epochs, learning rate, patch and batch (and their product)."""
    if not cfg.stages:
        raise UsageError("stages must list at least one stage")
    if len(cfg.stages) > _MAX_STAGES:
        raise UsageError(f"stages lists {len(cfg.stages)} stages: at most {_MAX_STAGES}")
    for k, stage in enumerate(cfg.stages):
        where = f"stages[{k}]"
        bad = [p for p in stage.freeze if p not in PARTS]
        if bad:
            raise UsageError(f"{where}.freeze has {shown(bad)}: parts are {', '.join(PARTS)}")
        _number(f"{where}.epochs", stage.epochs, 1, _MAX_EPOCHS, integer=True)
        _number(f"{where}.lr", stage.lr, 0, 10, low_open=True)
        _number(f"{where}.pct_start", stage.pct_start, 0, 1, low_open=True, high_open=True)
        if stage.patch is not None:
            _number(f"{where}.patch", stage.patch, 2, _MAX_PATCH, integer=True)
        if stage.batch_size is not None:
            _number(f"{where}.batch_size", stage.batch_size, 1, _MAX_BATCH, integer=True)
        batch = stage.batch_size or cfg.batch_size
        if stage.patch is not None and batch * stage.patch ** 2 > _MAX_BATCH_PIXELS:
            raise UsageError(
                f"{where}: batch {batch} x patch {stage.patch}^2 = "
                f"{batch * stage.patch ** 2} input pixels per step, more than "
                f"{_MAX_BATCH_PIXELS}: lower {where}.patch or the batch size")
        if set(stage.freeze) == set(PARTS):
            raise UsageError(f"{where} freezes every part: nothing would train")


def _check_data_source(cfg: TrainConfig) -> None:
    """data.datasets or data.synthetic, and the synthetic sources' numbers."""
    syn = cfg.data.synthetic
    if syn is None and not cfg.data.datasets:
        raise UsageError("data.datasets must name at least one dataset folder (or use "
                         "data.synthetic)")
    if syn is not None:
        if cfg.data.datasets:
            raise UsageError("give data.datasets or data.synthetic, not both")
        if not syn.train:
            raise UsageError("data.synthetic.train must list at least one image")
        _number("data.synthetic.samples_per_epoch", syn.samples_per_epoch, 1, 10_000_000,
                integer=True)
        _number("data.synthetic.val_samples", syn.val_samples, 0, 100_000, integer=True)
        for part in ("train", "val"):
            for k, src in enumerate(getattr(syn, part)):
                where = f"data.synthetic.{part}[{k}]"
                if not src.path and not src.files:
                    raise UsageError(f"{where} needs a path or files")
                if src.files is not None and len(src.files) != len(cfg.model.bands):
                    raise UsageError(f"{where}.files must list one file per model band "
                                     f"({len(cfg.model.bands)})")
                if src.bands is not None and len(src.bands) != len(cfg.model.bands):
                    raise UsageError(f"{where}.bands must give one index per model band "
                                     f"({len(cfg.model.bands)})")
                if src.gain is not None:
                    _number(f"{where}.gain", src.gain, 0, 10, low_open=True)
                _number(f"{where}.offset", src.offset, -10, 10)
                _number(f"{where}.weight", src.weight, 0, 1000, low_open=True)
        syn.degradation.as_range()


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
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must hold a mapping of keys (name: ..., data: ..., "
                         f"stages: ...), got a {type(data).__name__}")
    cfg = _from_dict(TrainConfig, data, "")
    base = path.resolve().parent
    droot = Path(data_root).resolve() if data_root else base
    rroot = Path(runs_root).resolve() if runs_root else base
    cfg.data.datasets = [str((droot / d).resolve()) if not Path(d).is_absolute() else d
                         for d in cfg.data.datasets]
    if cfg.data.synthetic is not None:
        syn = cfg.data.synthetic
        sroot = droot if data_root else (base / syn.root).resolve()
        syn.root = str(sroot)
    if cfg.init_from and not Path(cfg.init_from).is_absolute():
        cfg.init_from = str((rroot / cfg.init_from).resolve())
    if cfg.loss.vgg_weights and "://" not in cfg.loss.vgg_weights and not Path(
            cfg.loss.vgg_weights).is_absolute():
        cfg.loss.vgg_weights = str((base / cfg.loss.vgg_weights).resolve())
    cfg.source = str(path)
    return validate(cfg)
