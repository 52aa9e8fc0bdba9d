"""The s2sr header: a model's spec as string key/values, written and read back checked.

One header for every file s2sr writes a model into: the ``__metadata__`` of a
``.safetensors`` weights file, the ``metadata_props`` of an exported ONNX model and an
extra file of an exported TorchScript archive. Reading is narrow: a known set of keys,
each value bounded in size, JSON parsed with recursion caught, every value then checked
against :mod:`s2sr.models.bounds` by :func:`~s2sr.models.registry.check_spec` before
anything is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from s2sr.core.checks import shown
from s2sr.core.constants import SCALES
from s2sr.core.errors import SpecError, UsageError, WeightsError
from s2sr.models.registry import ModelSpec, check_spec

#: Largest header value read (a 13-band model's options are well under 2 kB).
MAX_VALUE_CHARS = 64 << 10
#: Most header keys read.
MAX_KEYS = 64

_SHA256 = re.compile(r"[0-9a-f]{64}")


def spec_header(spec: ModelSpec) -> dict[str, str]:
    """The spec as header key/values: ``name``, ``bands``, ``scale``, ``options``,
    ``normalization`` (JSON where not a plain string)."""
    return {
        "name": spec.name,
        "bands": json.dumps(list(spec.bands)),
        "scale": str(spec.scale),
        "options": json.dumps(spec.options),
        "normalization": json.dumps(
            {"mean": spec.options.get("mean"), "std": spec.options.get("std")}),
    }


def check_mapping(meta: Any, label: str, fix: str) -> dict[str, str]:
    """A bounded string-to-string mapping, or a :class:`WeightsError` naming ``label``."""
    if not isinstance(meta, Mapping):
        raise WeightsError(f"{label}: the s2sr header is not a key/value mapping; {fix}")
    if len(meta) > MAX_KEYS:
        raise WeightsError(f"{label}: the s2sr header has {len(meta)} keys, more than the "
                           f"{MAX_KEYS} s2sr writes; {fix}")
    out: dict[str, str] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise WeightsError(f"{label}: header key {shown(key, 40)} does not hold a string; "
                               f"{fix}")
        if len(value) > MAX_VALUE_CHARS:
            raise WeightsError(f"{label}: header {shown(key, 40)} is {len(value)} characters "
                               f"long, more than the {MAX_VALUE_CHARS} s2sr reads; {fix}")
        out[key] = value
    return out


def _parse_json(label: str, meta: Mapping[str, str], key: str, fix: str) -> Any:
    if key not in meta:
        raise WeightsError(f"{label}: header has no {key!r} key; {fix}")
    try:
        return json.loads(meta[key])
    except (ValueError, RecursionError):
        raise WeightsError(f"{label}: header {key} is not valid JSON "
                           f"({shown(meta[key])}); {fix}") from None


def _parse_scale(text: str) -> Any:
    """``"2"`` -> 2; anything else stays as it is for the bounds check to report."""
    stripped = text.strip()
    return int(stripped) if stripped in {str(s) for s in SCALES} else text


def spec_error(label: str, err: SpecError | UsageError, fix: str) -> WeightsError:
    """A header value out of bounds, reported with the header key it came from."""
    if isinstance(err, SpecError):
        key = err.key if err.key in ("name", "bands", "scale", "options") else f"options.{err.key}"
        return WeightsError(f"{label}: header {key} {err.detail}; {fix}")
    return WeightsError(f"{label}: header options: {err}; {fix}")


def parse_spec(label: str, meta: Mapping[str, str], fix: str) -> ModelSpec:
    """The checked :class:`ModelSpec` of a header (``name``, ``bands``, ``scale``,
    ``options``); format keys are the caller's to check first.

    Args:
        label: how messages name the file, e.g. ``"weights file model.safetensors"``.
        meta: the header's key/values.
        fix: what messages tell the user to do.

    Raises:
        WeightsError: a key missing, a value not JSON or out of bounds (the message names
            the header key).
    """
    if "name" not in meta:
        raise WeightsError(f"{label}: header has no 'name' key; {fix}")
    if "scale" not in meta:
        raise WeightsError(f"{label}: header has no 'scale' key; {fix}")
    bands = _parse_json(label, meta, "bands", fix)
    options = _parse_json(label, meta, "options", fix)
    try:
        return check_spec(meta["name"], bands, _parse_scale(meta["scale"]), options)
    except UsageError as err:
        raise spec_error(label, err, fix) from None


def parse_sha256(label: str, meta: Mapping[str, str], key: str, fix: str) -> str:
    """A lower-case hex SHA-256 held under ``key``."""
    value = meta.get(key)
    if value is None:
        raise WeightsError(f"{label}: header has no {key!r} key; {fix}")
    if not _SHA256.fullmatch(value):
        raise WeightsError(f"{label}: header {key} must be 64 lower-case hex digits, got "
                           f"{shown(value)}; {fix}")
    return value
