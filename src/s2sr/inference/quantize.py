"""int8 models: ONNX Runtime static quantisation, calibrated on the packaged real sample.

``predict --precision int8`` and ``s2sr export --format onnx --int8`` run a model's ONNX
graph through ``onnxruntime.quantization.quantize_static`` (:data:`QUANT_OPTIONS`: QDQ
format, int8 weights per output channel within 7 bits, int8 activations, MinMax
calibration, the convolutions only, the first and the last kept in float: they touch
reflectance, where 8 bits are 40 DN). The 7-bit weights (ONNX Runtime's ``reduce_range``)
keep ONNX Runtime's int8 kernels from saturating on x86-64 CPUs without AVX-512 VNNI
(AVX2's ``vpmaddubsw`` sums pairs of u8 x s8 products in int16): the model computes the
same on every CPU, whichever CPU quantised it. The calibration tiles come from the real
Sentinel-2 sample that ships on PyPI (:mod:`s2sr.io.sample`), so a user passes nothing.
The quantised model is checked against PyTorch on that sample (:data:`INT8_P99`,
:data:`INT8_MAX`) and cached under the user's cache folder (:func:`cache_dir`), keyed by
the model's weights and the options; a cached file is read back through the same checks
as any exported model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from s2sr.core.errors import BandError, UsageError, WeightsError
from s2sr.core.files import write_atomic
from s2sr.inference.backends import OnnxRuntimeBackend
from s2sr.io.sample import extract_sample
from s2sr.io.scene import open_scene
from s2sr.models import get_spec
from s2sr.models.exported import read_onnx
from s2sr.models.serialize import export_header, onnx_bytes

log = logging.getLogger(__name__)

#: Bumped whenever the quantisation recipe changes (part of the cache key).
QUANT_VERSION: Final[str] = "2"
#: How the model is quantised (recorded in the exported header, part of the cache key).
QUANT_OPTIONS: Final[dict[str, str]] = {
    "format": "QDQ",
    "weights": "QInt8 per channel, 7-bit range (reduce_range)",
    "activations": "QInt8",
    "calibration": "MinMax",
    "operators": "Conv, first and last excluded",
    "calibration_tiles": "packaged BigEarthNet sample, 3x3 tiles of 64 px",
}
#: Side of the calibration tiles (input pixels).
CALIBRATION_TILE: Final[int] = 64
#: Largest 99th percentile and maximum of the absolute difference to PyTorch (reflectance)
#: on the whole sample that a quantised model may show (sanity bounds: whether int8 is
#: good enough is the robustness panel's verdict, benchmarks/precision_panel.py). The
#: shipped models show about 0.002 and 0.006 (x2), 0.004 and 0.012 (x4).
INT8_P99: Final[float] = 0.006
INT8_MAX: Final[float] = 0.03


@dataclass(frozen=True)
class Int8Model:
    """A quantised model and its check against PyTorch.

    Attributes:
        data: the serialised ONNX model (the s2sr header, ``precision`` ``int8``).
        shape: the input it was checked on ``(1, C, H, W)`` (the packaged sample).
        max_abs_diff: largest absolute difference to PyTorch there (reflectance).
        p99_abs_diff: its 99th percentile.
    """

    data: bytes
    shape: tuple[int, ...]
    max_abs_diff: float
    p99_abs_diff: float


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """s2sr's cache folder: ``$XDG_CACHE_HOME/s2sr`` when that is an absolute path, else
    ``~/.cache/s2sr``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "s2sr"


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's spec and weights (its parameters and buffers, in order)."""
    digest = hashlib.sha256(json.dumps(export_header(model, "", ""), sort_keys=True,
                                       default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(digest: str) -> str:
    """The cache key of a model's int8 version: its :func:`model_digest`, the options and
    the versions of the tools that make it."""
    import onnxruntime as ort  # optional dependency (s2sr[onnx])

    parts = {"model": digest, "options": QUANT_OPTIONS, "version": QUANT_VERSION,
             "onnxruntime": ort.__version__, "torch": torch.__version__.split("+")[0]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def sample_reflectance(bands: Sequence[str]) -> np.ndarray:
    """The packaged real sample in ``bands``: ``(C, 120, 120)`` reflectance.

    Raises:
        UsageError: the sample's package is not installed, or lacks a band.
    """
    with tempfile.TemporaryDirectory(prefix="s2sr-sample-") as tmp:
        folder = extract_sample(Path(tmp))
        try:
            # 2017 product: processing baseline before 04.00, no DN offset
            with open_scene(folder, bands=list(bands), dn_offset=0) as scene:
                return np.asarray(scene.read_all(), np.float32)
        except BandError as err:
            raise UsageError(f"the calibration sample has no {', '.join(bands)} bands for "
                             f"this model ({err}): --precision int8 needs a model of "
                             "Sentinel-2 band names") from None


def calibration_tiles(sample: np.ndarray, tile: int = CALIBRATION_TILE) -> np.ndarray:
    """A 3x3 grid of ``tile``-pixel crops covering ``sample`` ``(C, H, W)``:
    ``(9, C, tile, tile)`` float32."""
    _, h, w = sample.shape
    tile = min(tile, h, w)
    rows = np.linspace(0, h - tile, 3).round().astype(int)
    cols = np.linspace(0, w - tile, 3).round().astype(int)
    return np.stack([sample[:, r:r + tile, c:c + tile] for r in rows for c in cols]
                    ).astype(np.float32)


class _TileReader:
    """ONNX Runtime's calibration data reader over tiles, one per call."""

    def __init__(self, name: str, tiles: np.ndarray) -> None:
        self.name = name
        self.tiles = tiles
        self.next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= len(self.tiles):
            return None
        self.next += 1
        return {self.name: self.tiles[self.next - 1:self.next]}

    def rewind(self) -> None:
        self.next = 0


def _strip_unused_domains(proto: Any) -> None:
    """Drop operator-set imports no node uses (ONNX Runtime's tools add many)."""
    used = {node.domain for node in proto.graph.node} | {""}
    keep = [o for o in proto.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)


def with_header(data: bytes, header: Mapping[str, str]) -> bytes:
    """``data`` (a serialised ONNX model) with ``header`` as its ``metadata_props``."""
    import onnx  # optional dependency (s2sr[onnx])

    proto = onnx.load_model_from_string(data)
    del proto.metadata_props[:]
    for key, value in header.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(proto.SerializeToString())


def quantize_onnx(data: bytes, tiles: np.ndarray) -> bytes:
    """Statically quantise a float32 ONNX model (:data:`QUANT_OPTIONS`), calibrated on
    ``tiles`` ``(N, C, h, w)`` reflectance. Returns the serialised int8 (QDQ) model."""
    try:
        import onnx  # optional dependency (s2sr[onnx])
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UsageError("--precision int8 needs ONNX Runtime and onnx: pip install "
                         "'s2sr[onnx]'") from None
    with tempfile.TemporaryDirectory(prefix="s2sr-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(data)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre))
        convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
        quantize_static(
            str(pre), str(out), _TileReader(graph.graph.input[0].name, tiles),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"], nodes_to_exclude=[convs[0], convs[-1]],
            calibrate_method=CalibrationMethod.MinMax,
            # 7-bit weights: full-range int8 saturates ORT's u8s8 kernels on AVX2 CPUs
            # without VNNI (0.02 reflectance off on the tiny test model, measured under
            # qemu -cpu Haswell); with them the output is the same on every CPU
            reduce_range=True)
        proto = onnx.load(str(out))
    _strip_unused_domains(proto)
    return bytes(proto.SerializeToString())


def int8_error(model: nn.Module, runner: OnnxRuntimeBackend, sample: np.ndarray
               ) -> tuple[float, float]:
    """``(max, p99)`` of the absolute difference (reflectance) between ``runner`` and the
    PyTorch ``model`` (float32, CPU) on ``sample`` ``(C, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(sample[None], dtype=np.float32))
    with torch.inference_mode():
        want = model.float().cpu().eval()(x)
    diff = (runner(x) - want).abs().flatten().numpy()
    if not np.isfinite(diff).all():
        return float("nan"), float("nan")
    return float(diff.max()), float(np.percentile(diff, 99))


def check_int8(max_diff: float, p99: float) -> None:
    """Refuse a quantised model beyond :data:`INT8_MAX` or :data:`INT8_P99`."""
    if not (max_diff <= INT8_MAX and p99 <= INT8_P99):
        raise WeightsError(
            f"the int8 model differs from PyTorch on the calibration sample by {max_diff:.3g} "
            f"reflectance at most, {p99:.3g} at the 99th percentile (allowed {INT8_MAX:g} "
            f"and {INT8_P99:g}): this model does not quantise well; use --precision fp32")


def _read_cached(path: Path, key: str) -> bytes | None:
    if not path.is_file():
        return None
    try:
        cached = read_onnx(path)
    except (WeightsError, UsageError, OSError) as err:
        log.warning("ignoring the cached int8 model %s (%s); making it again", path, err)
        return None
    return cached.data if cached.header.get("int8_key") == key else None


def _write_cache(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError as err:  # an unwritable cache costs time, not the run
        log.warning("could not cache the int8 model in %s (%s)", path.parent, err)


def int8_onnx(model: nn.Module, source_sha256: str, *, threads: int = 1,
              cache: Path | None = None) -> Int8Model:
    """A model's int8 ONNX version, from the cache or made (and cached) now.

    Args:
        model: the PyTorch model.
        source_sha256: SHA-256 of its weights file (for the header).
        threads: ONNX Runtime threads for the check against PyTorch.
        cache: the cache folder (default :func:`cache_dir`).

    Returns:
        The model and its difference to PyTorch on the sample.

    Raises:
        UsageError: ONNX Runtime, onnx or the sample's package is missing.
        WeightsError: the quantised model is beyond :data:`INT8_MAX` / :data:`INT8_P99`.
    """
    spec = get_spec(model)
    key = cache_key(model_digest(model))
    path = (cache or cache_dir()) / f"int8-{key[:32]}.onnx"
    sample = sample_reflectance(spec.bands)
    header = {**export_header(model, source_sha256, "onnx int8 (onnxruntime "
                              "quantize_static)"),
              "precision": "int8", "int8_key": key,
              "int8_options": json.dumps(QUANT_OPTIONS, sort_keys=True)}
    cached = _read_cached(path, key)
    if cached is None:
        log.info("quantising the model to int8 (calibrated on the packaged sample); "
                 "cached for later runs in %s", path.parent)
        data = with_header(quantize_onnx(onnx_bytes(model.float().cpu().eval()),
                                         calibration_tiles(sample)), header)
    else:
        data = with_header(cached, header)  # this weights file's SHA-256
    runner = OnnxRuntimeBackend(data, len(spec.bands), spec.scale, threads)
    worst, p99 = int8_error(model, runner, sample)
    check_int8(worst, p99)
    if cached is None:
        _write_cache(path, data)
    return Int8Model(data, (1, *sample.shape), worst, p99)
