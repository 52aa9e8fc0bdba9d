"""The experiment file of a guided 20 m model (``configs/bands20/*.yaml``), read and checked.

Read with the bounded YAML reader (:func:`s2sr.training.yamlfile.read_yaml`); every value is
checked (type and range) before anything is built; the model options are checked by the
model's own bounds (:func:`s2sr.models.registry.check_spec`). Example::

    name: s2sr_20m_x2
    seed: 0
    model: {name: guided-edsr, scale: 2, options: {n_resblocks: 8, n_feats: 64}}
    data:
      root: ../../../shared/data     # or --data-root DIR
      val: [oscd/beihai/imgs_1, oscd/beihai/imgs_2]
      patch: 64                      # truth patch, 20 m pixels
      samples_per_epoch: 1024
      degradation: {mtf: [0.15, 0.6], block_only: 0.35, shift: 0.25, noise: [0.0, 0.002]}
    batch_size: 16
    epochs: 8
    lr: 2.0e-4
    precision: bf16
    max_minutes: 35
    max_line_ratio: 0.3              # optional: the artefact gate of model selection
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2sr.core.checks import shown
from s2sr.core.errors import UsageError
from s2sr.data.synthetic import DegradationRange
from s2sr.models.guided import BANDS_20M, DEFAULT_GUIDE, GUIDED_MODELS
from s2sr.models.registry import check_spec, expected_state
from s2sr.training.guided_data import patch_fits
from s2sr.training.yamlfile import read_yaml

_TOP = {"name", "seed", "model", "data", "batch_size", "epochs", "lr", "precision",
        "max_minutes", "clip_grad_norm", "init_from", "max_line_ratio"}
_MODEL = {"name", "scale", "bands", "guide_bands", "options"}
_DATA = {"root", "val", "patch", "samples_per_epoch", "degradation"}
_DEGRADATION = {"mtf", "block_only", "shift", "noise", "haze", "haze_gain"}
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class GuidedConfig:
    """A checked guided-model experiment (see the module docstring for the fields)."""

    name: str
    model: str
    scale: int
    bands: tuple[str, ...] = BANDS_20M
    guide_bands: tuple[str, ...] = DEFAULT_GUIDE
    options: dict[str, Any] = field(default_factory=dict)
    root: Path = Path("../shared/data")
    val: tuple[str, ...] = ()
    patch: int = 64
    samples_per_epoch: int = 1024
    degradation: DegradationRange = field(default_factory=DegradationRange)
    seed: int = 0
    batch_size: int = 16
    epochs: int = 8
    lr: float = 2e-4
    precision: str = "bf16"
    max_minutes: float = 35.0
    clip_grad_norm: float = 1.0
    init_from: str | None = None
    #: an epoch is selectable only if its Nyquist-line ratio on every native scene of the
    #: training places stays at or below this (None: no gate)
    max_line_ratio: float | None = None


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a mapping, got {shown(value)}")
    extra = sorted(str(k) for k in value if k not in allowed)
    if extra:
        raise UsageError(f"{where} has unknown key(s) {', '.join(extra)}: use "
                         f"{', '.join(sorted(allowed))}")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{where} must be an integer from {low} to {high}, got {shown(value)}")
    return value


def _float(value: Any, where: str, low: float, high: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high):
        raise UsageError(f"{where} must be a number from {low:g} to {high:g}, got "
                         f"{shown(value)}")
    return float(value)


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise UsageError(f"{where} must be [low, high], got {shown(value)}")
    return _float(value[0], where, 0.0, 1.0), _float(value[1], where, 0.0, 1.0)


def _degradation(raw: Any) -> DegradationRange:
    d = _mapping(raw, "data.degradation", _DEGRADATION)
    kwargs: dict[str, Any] = {}
    for key in ("mtf", "noise", "haze_gain"):
        if key in d:
            kwargs[key] = _pair(d[key], f"data.degradation.{key}")
    for key in ("block_only", "shift", "haze"):
        if key in d:
            kwargs[key] = _float(d[key], f"data.degradation.{key}", 0.0, 1.0)
    return DegradationRange(**kwargs)  # checks the ranges themselves


def _model(raw: Any) -> dict[str, Any]:
    m = _mapping(raw, "model", _MODEL)
    if m.get("name") not in GUIDED_MODELS:
        raise UsageError(f"model.name must be one of {', '.join(GUIDED_MODELS)}, got "
                         f"{shown(m.get('name'))}")
    raw_options = m.get("options", {})
    options = dict(_mapping(raw_options, "model.options",
                            set(raw_options) if isinstance(raw_options, dict) else set()))
    guide = m.get("guide_bands", list(DEFAULT_GUIDE))
    bands = m.get("bands", list(BANDS_20M))
    spec = check_spec(m["name"], bands, m.get("scale"), {**options, "guide_bands": guide})
    expected_state(spec)  # the builder's own bounds, on the "meta" device: nothing allocated
    return {"model": spec.name, "scale": spec.scale, "bands": spec.bands,
            "guide_bands": tuple(guide), "options": options}


def _data(raw: Any, base: Path, data_root: str | os.PathLike[str] | None) -> dict[str, Any]:
    d = _mapping(raw, "data", _DATA)
    root = Path(data_root) if data_root is not None else base / str(d.get("root", ""))
    val = d.get("val", [])
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val) or len(val) > 64:
        raise UsageError(f"data.val must be a list of scene names (e.g. oscd/beihai/imgs_1), "
                         f"got {shown(val)}")
    return {"root": root, "val": tuple(val),
            "patch": _int(d.get("patch", 64), "data.patch", 16, 512),
            "samples_per_epoch": _int(d.get("samples_per_epoch", 1024),
                                      "data.samples_per_epoch", 1, 1_000_000),
            "degradation": _degradation(d.get("degradation", {}))}


def load_guided_config(path: str | os.PathLike[str], *,
                       data_root: str | os.PathLike[str] | None = None) -> GuidedConfig:
    """Read and check a guided-model experiment file.

    Args:
        path: the YAML file. data_root: the shared data folder (overrides ``data.root``,
            which is relative to the file).

    Raises:
        UsageError: a missing, unknown or out-of-range value, naming it and what is allowed.
    """
    path = Path(path)
    raw = _mapping(read_yaml(path, "experiment file", "configs/bands20/s2sr_20m_x2.yaml"),
                   f"experiment file {path}", _TOP)
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > 80:
        raise UsageError(f"name must be a short text, got {shown(name)}")
    precision = raw.get("precision", "bf16")
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be fp32 or bf16, got {shown(precision)}")
    init_from = raw.get("init_from")
    if init_from is not None and not isinstance(init_from, str):
        raise UsageError(f"init_from must be a weights file path, got {shown(init_from)}")
    gate = raw.get("max_line_ratio")
    model, data = _model(raw.get("model")), _data(raw.get("data", {}), path.parent, data_root)
    scale = model["scale"]
    if not patch_fits(data["patch"], scale):
        raise UsageError(f"data.patch must be a multiple of {2 * scale} from {4 * scale} to "
                         f"512 for a x{scale} model, got {data['patch']}")
    return GuidedConfig(
        name=name, **model, **data,
        seed=_int(raw.get("seed", 0), "seed", 0, 2**31 - 1),
        batch_size=_int(raw.get("batch_size", 16), "batch_size", 1, 1024),
        epochs=_int(raw.get("epochs", 8), "epochs", 1, 1000),
        lr=_float(raw.get("lr", 2e-4), "lr", 1e-7, 1.0), precision=precision,
        max_minutes=_float(raw.get("max_minutes", 35.0), "max_minutes", 0.1, 10_000.0),
        clip_grad_norm=_float(raw.get("clip_grad_norm", 1.0), "clip_grad_norm", 0.0, 1e6),
        init_from=init_from,
        max_line_ratio=None if gate is None else _float(gate, "max_line_ratio", 0.01, 10.0))
