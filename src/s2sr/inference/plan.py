"""The run plan: what a run decides from its options and its scene, decided once.

:class:`RunOptions` holds the options as given and checks each of them, alone, before any
file is read (:meth:`RunOptions.check`). :func:`choose_execution` then decides what runs
the network (precision, backend, device, batch) from the options and the model, and
:func:`plan_run` freezes everything into a :class:`RunPlan` once the scene's grid and DN
encoding are known (tile layout, batch sized to memory, the fill of nodata pixels).
:func:`make_engine` builds the engine the plan names (:attr:`RunPlan.execution_kind`:
the streamed engine wherever the model, backend and precision allow it, see
:func:`choose_engine`; the tiled engine otherwise). ``predict`` and
``super_resolve`` (:mod:`s2sr.inference.predict`) only open their input and call these.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from s2sr.core.bands import DEFAULT_BANDS, RGB_BANDS
from s2sr.core.constants import BACKENDS, ENGINES, PRECISIONS
from s2sr.core.errors import BandError, GridMismatchError, InputNotFoundError, UsageError
from s2sr.inference.adapt import check_options as check_adapt
from s2sr.inference.backends import (
    Backend,
    OnnxRuntimeBackend,
    TorchBackend,
    check_threads,
    choose_backend,
    default_threads,
    execution_providers,
    ort_providers,
)
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.engine import TiledSuperResolver
from s2sr.inference.quantize import int8_onnx
from s2sr.inference.stream_engine import (
    StreamingSuperResolver,
    choose_engine,
    streaming_engine,
)
from s2sr.inference.tiling import TileLayout, check_tiling, default_tile, fit_layout
from s2sr.inference.verified_export import onnx_backend
from s2sr.io.base import Scene
from s2sr.io.scene import open_scene
from s2sr.models import ModelSpec, get_spec, pretrained_path
from s2sr.models.device import (
    BYTES_PER_ELEMENT,
    InferencePlan,
    auto_batch,
    choose_precision,
    cpu_bf16_supported,
    cuda_bf16_supported,
    inference_plan,
    select_device,
)
from s2sr.models.exported import OnnxModel

log = logging.getLogger(__name__)

#: What :func:`make_engine` builds.
Engine = TiledSuperResolver | StreamingSuperResolver

#: Share of the memory that one batch of tiles may take in the network.
MEMORY_SHARE: Final[float] = 0.5
#: How the engine runs the tiles (:attr:`RunPlan.execution_kind`).
EXECUTIONS: Final[tuple[str, ...]] = ("tiled", "stream")


@dataclass(frozen=True)
class RunOptions:
    """The options of a run, as given (:func:`s2sr.inference.predict`'s).

    Attributes:
        scale: with ``weights=None``, which shipped model (2 or 4); with weights, a check.
        bands: names of a multi-band file's bands by position, when it has no descriptions.
        tile: network input size in pixels (default 544 at x2 with PyTorch, else 288).
        overlap: overlap of neighbouring tiles in pixels (default 32).
        batch_size: tiles per forward pass (default 1 on CPU, 8 on CUDA).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: show a progress bar.
        consistency: correct the output's low frequencies so that, degraded back, it
            reproduces the input (iterative back-projection, see
            :mod:`s2sr.evaluation.consistency`).
        dn_offset: the additive DN offset of the input (-1000 for Sentinel-2 processing
            baseline >= 04.00, 0 before), overriding what the product says; ``None``:
            detected from the product's metadata, name or tags.
        backend: ``auto`` (ONNX Runtime when installed and on the CPU, or on CUDA with its
            CUDA provider; else PyTorch), ``torch`` or ``onnxruntime``; see
            :func:`s2sr.inference.backends.choose_backend`. A weights file runs on ONNX
            Runtime through an in-memory export, checked against PyTorch on a tile.
        threads: intra-op threads of the network; ``None``: ``OMP_NUM_THREADS`` when set,
            else one per physical core (ONNX Runtime), PyTorch's own default (torch).
        precision: ``auto`` (fp32 on the CPU, fp16 on CUDA; a batch that overflows
            fp16 is run again at fp32), ``fp32``, ``bf16`` (PyTorch autocast; on the CPU with
            channels-last), ``fp16`` (CUDA) or ``int8`` (ONNX Runtime static
            quantisation on the CPU, see :mod:`s2sr.inference.quantize`); see
            :func:`s2sr.models.device.choose_precision`. Recorded in the tag ``S2SR_PRECISION``.
        adapt: ``off``, ``on`` (fine-tune a copy of the model on Wald pairs of this scene
            first; refused for a scene too small or too empty, an exported model or
            int8) or ``auto`` (only where it pays, else as ``off``); see
            :mod:`s2sr.inference.adapt`. Recorded in the tags ``S2SR_ADAPT*``.
        adapt_steps: fine-tuning steps (default 150). adapt_seed: its seed (default 0).
        engine: ``auto`` (``stream`` wherever it runs, else ``tiled``: see
            :func:`~s2sr.inference.stream_engine.choose_engine`), ``tiled`` or ``stream``
            (row bands through :class:`~s2sr.inference.stream.StreamingForward`: PyTorch
            backend, fp32, EDSR models; see :func:`make_engine`).
    """

    scale: int | None = None
    bands: Sequence[str] | None = None
    tile: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    backend: str = "auto"
    threads: int | None = None
    precision: str = "auto"
    consistency: bool = False
    dn_offset: float | None = None
    adapt: str = "off"
    adapt_steps: int | None = None
    adapt_seed: int = 0
    progress: bool = False
    engine: str = "auto"

    @property
    def run_device(self) -> str:
        """``--device``, where int8 (ONNX Runtime's CPU provider) makes ``auto`` the CPU."""
        return "cpu" if self.precision == "int8" and self.device == "auto" else self.device

    def check(self, cuda_count: int, batch_name: str = "--batch-size") -> torch.device:
        """Check every option on its own, before any file is read (``batch_name``: what
        messages call ``batch_size``: the CLI's option, or the API's argument).

        Returns:
            The device asked for (:func:`s2sr.models.device.select_device`).

        Raises:
            UsageError: the first bad option, in one line naming the fix.
        """
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}: use "
                             f"{', '.join(PRECISIONS)}")
        asked = select_device(self.run_device, cuda_count)
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"{batch_name} must be at least 1, got {self.batch_size}")
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown --backend {self.backend!r}: use {', '.join(BACKENDS)}")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown --engine {self.engine!r}: use {', '.join(ENGINES)}")
        check_threads(self.threads)
        check_adapt(self.adapt, self.adapt_steps, self.adapt_seed)
        check_tiling(self.tile, self.overlap, self.scale or 2)
        return asked


@dataclass(frozen=True)
class Execution:
    """What runs the network: ``precision``, ``backend`` (``torch`` or ``onnxruntime``),
    ``hardware`` (device, batch size, memory format) and ``engine`` (one of
    :data:`EXECUTIONS`, chosen by :func:`~s2sr.inference.stream_engine.choose_engine`
    for the reason ``why``)."""

    precision: str
    backend: str
    hardware: InferencePlan
    engine: str = "tiled"
    why: str = ""


@dataclass(frozen=True)
class RunPlan:
    """Everything a run decided, frozen before the first tile is read.

    Attributes:
        spec: the model's spec. execution: what runs the network (batch sized to memory).
        layout: the tiling of the scene. encoding: the scene's DN encoding.
        fill: per band, the reflectance put into nodata pixels (the model's mean).
        threads: intra-op threads (``None``: the backend's default).
        consistency: back-projection iterations per tile (0: off).
        progress: show a progress bar.
        execution_kind: how the engine runs the tiles, one of :data:`EXECUTIONS`.
    """

    spec: ModelSpec
    execution: Execution
    layout: TileLayout
    encoding: DnEncoding
    fill: tuple[float, ...]
    threads: int | None = None
    consistency: int = 0
    progress: bool = False
    execution_kind: str = "tiled"

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.execution.hardware.device


def check_scale(scale: int | None, spec: ModelSpec, weights: str | os.PathLike[str]) -> None:
    """Refuse ``--scale`` other than the model's."""
    if scale is not None and scale != spec.scale:
        raise UsageError(f"--scale {scale} but {weights} is a x{spec.scale} model: drop "
                         "--scale or use matching weights")


def open_shipped(input: str | os.PathLike[str], scale: int | None,
                 band_names: Sequence[str] | None, dn_offset: float | None
                 ) -> tuple[Scene, Path]:
    """Open a scene for the shipped model that fits it: x2 unless ``scale`` says 4; the
    RGB variant when the scene has no B08 (bands found by description, in any order).

    Returns:
        The open scene (with that model's bands) and the model's file.
    """
    if not Path(input).exists():
        raise InputNotFoundError(f"input {input} does not exist: check the path")
    try:
        scene = open_scene(input, bands=DEFAULT_BANDS, band_names=band_names,
                           dn_offset=dn_offset)
        return scene, pretrained_path(scale or 2)
    except BandError as first:
        if isinstance(first, GridMismatchError):
            raise  # e.g. B08 on another grid: not a reason to drop it silently
        try:
            scene = open_scene(input, bands=RGB_BANDS, band_names=band_names,
                               dn_offset=dn_offset)
        except BandError:
            raise first from None
    log.warning("%s has no B08: using the RGB model (B02, B03, B04); pass --weights to "
                "choose another", input)
    try:
        return scene, pretrained_path(scale or 2, rgb=True)
    except BaseException:
        scene.close()
        raise


def _memory_bytes(device: torch.device) -> int:
    """Memory a batch may use: free GPU memory on CUDA, physical memory on the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def network_bytes(model: nn.Module | ModelSpec, tile: int, batch: int,
                  bytes_per_element: int = 4) -> int:
    """Rough peak memory of one forward pass over ``batch`` tiles of ``tile`` px (bytes).

    The largest activations are the last upsampling stage's: ``n_feats`` channels at the
    output resolution, ``bytes_per_element`` each (4 at fp32, 2 under bf16/fp16
    autocast), with input and output of a layer alive at once (x3).
    """
    spec = model if isinstance(model, ModelSpec) else get_spec(model)
    feats = int(spec.options.get("n_feats", 64))
    return 3 * bytes_per_element * batch * max(feats, len(spec.bands)) * (
        tile * spec.scale) ** 2


def _check_memory(spec: ModelSpec, lay: TileLayout, plan: InferencePlan,
                  backend: str = "torch") -> None:
    batch, dev = plan.batch_size, plan.device
    need = network_bytes(spec, lay.tile, batch, BYTES_PER_ELEMENT[plan.precision])
    have = _memory_bytes(dev)
    if need > MEMORY_SHARE * have:
        where = "free GPU memory" if dev.type == "cuda" else "memory"
        raise UsageError(
            f"--tile {lay.tile} with --batch-size {batch} needs about {need / 2**30:.1f} GiB "
            f"but this machine has {have / 2**30:.1f} GiB of {where}: use a smaller --tile "
            f"(default {default_tile(lay.scale, backend)}) or --batch-size"
        )


def sized(plan: InferencePlan, spec: ModelSpec, lay: TileLayout, asked: int | None
          ) -> InferencePlan:
    """On CUDA without ``--batch-size``: the batch that fits :data:`MEMORY_SHARE` of the
    free GPU memory (:func:`s2sr.models.device.auto_batch`) at the plan's precision."""
    if plan.device.type != "cuda" or asked is not None:
        return plan
    per_tile = network_bytes(spec, lay.tile, 1, BYTES_PER_ELEMENT[plan.precision])
    return replace(plan, batch_size=auto_batch(per_tile, _memory_bytes(plan.device),
                                                MEMORY_SHARE))


def choose_execution(options: RunOptions, asked: torch.device, cuda_count: int,
                     file_precision: str | None = None,
                     refusal: str | None = "no model was checked") -> Execution:
    """Precision, backend, device, batch size and engine of a run (``asked``: from
    :meth:`RunOptions.check`; ``file_precision``: an ONNX export's, ``None`` for a
    PyTorch model; ``refusal``: why the model cannot stream, ``None`` when it can)."""
    prec = choose_precision(options.precision, asked, options.backend,
                            cuda_bf16=cuda_bf16_supported(), file_precision=file_precision)
    tiled_options = [name for name, value in (
        ("--tile", options.tile), ("--overlap", options.overlap),
        ("--batch-size", options.batch_size)) if value is not None]
    asked_backend = options.backend
    if asked_backend == "auto" and file_precision is None and choose_engine(
            options.engine, "torch", prec, refusal, tiled_options)[0] == "stream":
        asked_backend = "torch"  # the stream runs PyTorch modules only
    choice = choose_backend(asked_backend, options.run_device, cuda_count, ort_providers(),
                            onnx_file=file_precision is not None, precision=prec)
    hardware = inference_plan(str(choice.device), options.batch_size, cuda_count, prec)
    if prec == "bf16" and hardware.device.type == "cpu" and not cpu_bf16_supported():
        log.warning("this CPU has no native bfloat16 (AVX512_BF16 or AMX): --precision bf16 "
                    "runs emulated, slower than fp32")
    engine, why = choose_engine(options.engine, choice.backend, prec, refusal, tiled_options)
    log.info("engine: %s (%s)", engine, why)
    return Execution(prec, choice.backend, hardware, engine, why)


def model_fill(model: nn.Module | ModelSpec, n: int) -> tuple[float, ...]:
    """Per band, the reflectance put into nodata pixels: the model's mean."""
    if isinstance(model, ModelSpec):
        mean = model.options.get("mean")
        if isinstance(mean, list) and len(mean) == n:
            return tuple(float(v) for v in np.asarray(mean, np.float32))
        return (0.0,) * n
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.numel() == n:
        return tuple(float(v) for v in mean.detach().cpu().numpy().reshape(-1))
    return (0.0,) * n


def plan_run(spec: ModelSpec, options: RunOptions, execution: Execution, height: int,
             width: int, encoding: DnEncoding, fill: tuple[float, ...] | None = None
             ) -> RunPlan:
    """The frozen plan of a run over a ``height`` x ``width`` grid of DN ``encoding``.

    Raises:
        UsageError: a tile and batch that do not fit the memory.
    """
    lay = fit_layout(height, width, spec.scale, options.tile, options.overlap,
                     execution.backend)
    hardware = sized(execution.hardware, spec, lay, options.batch_size)
    _check_memory(spec, lay, hardware, execution.backend)
    return RunPlan(spec, replace(execution, hardware=hardware), lay, encoding,
                   model_fill(spec, len(spec.bands)) if fill is None else fill,
                   options.threads, 3 if options.consistency else 0, options.progress,
                   execution.engine)


def _prepare(model: nn.Module, plan: InferencePlan) -> nn.Module:
    model = model.to(device=plan.device, dtype=plan.dtype).eval()
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def make_backend(plan: RunPlan, model: nn.Module | OnnxModel,
                 source_sha256: str = "0" * 64) -> Backend:
    """The backend the plan chose, ready to run ``model`` at the plan's precision (an
    ONNX export, or a module wrapping one, runs on ONNX Runtime as it is)."""
    hw, threads = plan.execution.hardware, plan.threads or default_threads()
    onnx = model if isinstance(model, OnnxModel) else getattr(model, "onnx", None)
    if isinstance(onnx, OnnxModel) and plan.execution.backend == "onnxruntime":
        spec = onnx.spec
        return OnnxRuntimeBackend(onnx.data, len(spec.bands), spec.scale, threads,
                                  execution_providers(hw.device))
    assert isinstance(model, nn.Module)  # choose_backend gives ONNX Runtime to ONNX files
    if plan.execution.backend == "torch":
        return TorchBackend(_prepare(model, hw), hw.device, hw.channels_last, hw.autocast)
    if plan.execution.precision == "int8":
        spec = get_spec(model)
        data = int8_onnx(model, source_sha256, threads=threads).data
        return OnnxRuntimeBackend(data, len(spec.bands), spec.scale, threads,
                                  execution_providers(hw.device))
    return onnx_backend(model, threads, execution_providers(hw.device))


def make_engine(plan: RunPlan, backend: Backend) -> Engine:
    """The engine :attr:`RunPlan.execution_kind` names, running ``backend`` over the
    plan's tiles (``tiled``) or row bands (``stream``, :func:`streaming_engine`)."""
    if plan.execution_kind not in EXECUTIONS:
        raise UsageError(f"unknown execution {plan.execution_kind!r}: use "
                         f"{', '.join(EXECUTIONS)}")
    hw, fill = plan.execution.hardware, np.asarray(plan.fill, np.float32)
    if plan.execution_kind == "stream":
        return streaming_engine(backend, plan.layout.height, plan.layout.width, plan.encoding,
                                fill, plan.execution.precision, plan.consistency,
                                plan.progress)
    return TiledSuperResolver(backend, plan.layout, plan.encoding, fill, hw.device,
                              hw.batch_size, plan.progress, consistency=plan.consistency)
