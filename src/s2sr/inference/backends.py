"""What runs the network over a batch of tiles: PyTorch or ONNX Runtime.

A backend is a callable from a float32 reflectance batch ``(B, C, h, w)`` (a CPU tensor,
as the tiled engine reads it) to the output ``(B, C, h*scale, w*scale)`` float32 tensor
(on any device: the engine's back-projection runs there). Both take reflectance: the
normalisation is inside the network, exported graphs included. The tiling and blending
around them are the same.

Which one runs is a pure function of what was asked and what the machine has
(:func:`choose_backend`), so that the choice is tested on any machine, CUDA branches
included; :func:`ort_providers` asks ONNX Runtime what it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import torch
from torch import nn

from s2sr.core.constants import BACKENDS
from s2sr.core.errors import UsageError, WeightsError
from s2sr.models.device import select_device

log = logging.getLogger(__name__)

#: Largest ``--threads``.
MAX_THREADS: Final[int] = 1024
_INSTALL = "install the onnx extra (pip install 's2sr[onnx]')"


class Backend(Protocol):
    """Runs the network: reflectance ``(B, C, h, w)`` -> ``(B, C, h*s, w*s)`` float32."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Staged:
    """A batch on its way to the backend's device.

    Attributes:
        host: the CPU batch (in pinned memory on CUDA).
        device: its copy on the GPU, issued on the backend's copy stream (``None`` on the
            CPU).
        ready: the CUDA event recorded after that copy (``None`` on the CPU).
    """

    host: torch.Tensor
    device: torch.Tensor | None = None
    ready: Any = None


class TorchBackend:
    """A PyTorch model on ``device``, optionally under autocast.

    On CUDA the engine stages the next batch (:meth:`stage`, from its reading thread)
    while the current one runs: the batch is copied to pinned host memory and sent to the
    GPU with a non-blocking copy on a separate CUDA stream, which the compute stream waits
    for only when it needs the batch.

    Args:
        model: the network, already on ``device`` in float32.
        device: where the batch is sent.
        channels_last: convert the batch to channels-last memory format.
        autocast: the dtype of autocast around the forward (``torch.bfloat16`` or
            ``torch.float16``), ``None`` for none; the output is float32 either way.
    """

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = True,
                 autocast: torch.dtype | None = None) -> None:
        self.model = model
        self.device = device
        self.channels_last = channels_last
        self.autocast = autocast
        self._copy_stream: Any = None
        self._warned = False

    def stage(self, x: torch.Tensor) -> Staged:
        """Start sending ``x`` (a CPU batch) to the device; a no-op on the CPU."""
        if self.device.type != "cuda":
            return Staged(x)
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        host = x.pin_memory()
        with torch.cuda.stream(self._copy_stream):
            on_gpu = host.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        return Staged(host, on_gpu, ready)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor | Staged) -> torch.Tensor:
        if isinstance(x, Staged):
            if x.device is not None:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(x.ready)
                x.device.record_stream(compute)  # the allocator keeps it until used there
                x = x.device
            else:
                x = x.host
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self._run(x, self.autocast)
        if self.autocast is torch.float16 and not bool(torch.isfinite(y).all()):
            # fp16 tops out at 65504: activations beyond it (unusual input) become inf;
            # this batch runs again at fp32 rather than failing or writing garbage
            if not self._warned:
                log.warning("the network overflowed fp16 on a batch of tiles: running such "
                            "batches at fp32 (--precision fp32 or bf16 avoids the retries)")
                self._warned = True
            y = self._run(x, None)
        return y.float()

    def _run(self, x: torch.Tensor, autocast: torch.dtype | None) -> torch.Tensor:
        with cudnn_settings(self.device, autocast), \
                torch.autocast(self.device.type, dtype=autocast or torch.float32,
                               enabled=autocast is not None):
            return self.model(x)


def cudnn_settings(device: torch.device, autocast: torch.dtype | None
                   ) -> contextlib.AbstractContextManager[Any]:
    """cuDNN's settings around a forward on ``device``: on CUDA, its autotuner on (the
    tiles keep one shape, so the fastest algorithm is found once) and, at fp32, no TF32
    (PyTorch lets cuDNN round convolution inputs to TF32's 10-bit mantissa by default:
    fp32 means fp32 here). Restored on exit; nothing changes on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=True,
                       benchmark_limit=cudnn.benchmark_limit,
                       deterministic=cudnn.deterministic,
                       allow_tf32=cudnn.allow_tf32 and autocast is not None)


class OnnxRuntimeBackend:
    """An ONNX model in an ONNX Runtime session.

    Args:
        data: the serialised ONNX model (checked: see :func:`s2sr.models.exported.read_onnx`).
        bands: the model's bands. scale: its scale (a probe tile's output is checked).
        threads: intra-op threads.
        providers: ONNX Runtime execution providers, in order of preference, each a name
            or ``(name, options)``.

    Raises:
        UsageError: ONNX Runtime is not installed.
        WeightsError: the model does not load, or a probe tile does not give a finite
            output of the right shape.
    """

    name = "onnxruntime"

    def __init__(self, data: bytes, bands: int, scale: int, threads: int,
                 providers: Sequence[str | tuple[str, dict[str, Any]]] = ("CPUExecutionProvider",),
                 ) -> None:
        try:
            import onnxruntime as ort  # optional dependency (s2sr[onnx])
        except ImportError:
            raise UsageError(f"--backend onnxruntime needs ONNX Runtime: {_INSTALL}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's memory pattern pre-plans one buffer per activation of the largest shape seen:
        # ~440 MB more peak memory for a 544 px x2 tile, for no measurable speed here
        # (benchmarks/README.md, "Backends"); the arena stays on
        options.enable_mem_pattern = False
        options.log_severity_level = 3  # errors only: s2sr reports failures itself
        try:
            self.session = ort.InferenceSession(data, options, providers=list(providers))
        except Exception as err:  # ORT raises its own exception types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsError(f"ONNX Runtime cannot load the model ({first[:160]}): export "
                               "it again with s2sr export") from None
        self.input_name = self.session.get_inputs()[0].name
        self.scale = scale
        self.threads = threads
        self._probe(bands)

    def _probe(self, bands: int) -> None:
        size = 16
        x = torch.full((1, bands, size, size), 0.1, dtype=torch.float32)
        try:
            y = self(x)
        except Exception as err:  # a graph that loads but fails to run
            raise WeightsError(f"the ONNX model fails on a {size}x{size} tile "
                               f"({str(err).strip()[:160]}): export it again with "
                               "s2sr export") from None
        want = (1, bands, size * self.scale, size * self.scale)
        if tuple(y.shape) != want:
            raise WeightsError(f"the ONNX model turns a (1, {bands}, {size}, {size}) tile into "
                               f"{tuple(y.shape)}, not {want} as its header says: export "
                               "it again with s2sr export")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.numpy()})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def ort_providers() -> list[str] | None:
    """ONNX Runtime's available execution providers, or ``None`` when it is not installed."""
    try:
        import onnxruntime as ort  # optional dependency (s2sr[onnx])
    except ImportError:
        return None
    return list(ort.get_available_providers())


@dataclass(frozen=True)
class BackendChoice:
    """The backend that runs prediction and its device."""

    backend: str
    device: torch.device


def _no_ort(onnx_file: bool, precision: str) -> UsageError:
    """The error for a run that needs ONNX Runtime where it is not installed."""
    what = "an ONNX model runs on ONNX Runtime" if onnx_file else \
        "--precision int8 needs ONNX Runtime" if precision == "int8" else \
        "--backend onnxruntime needs ONNX Runtime"
    return UsageError(f"{what}: {_INSTALL}")


def choose_backend(backend: str, device: str, cuda_count: int,
                   providers: Sequence[str] | None, onnx_file: bool = False,
                   precision: str = "fp32") -> BackendChoice:
    """Choose the backend and device of prediction.

    ``auto`` picks ONNX Runtime where it is installed and the device is the CPU, or the
    device is CUDA and ONNX Runtime has its ``CUDAExecutionProvider`` (the
    ``onnxruntime-gpu`` build); PyTorch otherwise. An exported ONNX file runs on ONNX
    Runtime only. bf16 and fp16 run on PyTorch (autocast), int8 on ONNX Runtime's CPU
    provider (the precision comes from :func:`s2sr.models.device.choose_precision`, which refuses
    the combinations that cannot run).

    Args:
        backend: ``--backend``: ``auto``, ``torch`` or ``onnxruntime``.
        device: ``--device`` (see :func:`s2sr.models.device.select_device`).
        cuda_count: CUDA GPUs PyTorch sees.
        providers: ONNX Runtime's execution providers (:func:`ort_providers`), ``None``
            when it is not installed.
        onnx_file: the model is an exported ONNX file (no PyTorch model to run).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``.

    Raises:
        UsageError: an unknown backend; ONNX Runtime asked (or needed) but missing, or
            asked on CUDA without its CUDA provider; PyTorch asked for an ONNX file.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown --backend {backend!r}: use {', '.join(BACKENDS)}")
    dev = select_device(device, cuda_count)
    ort_cuda = providers is not None and "CUDAExecutionProvider" in providers
    if backend == "torch":
        if onnx_file:
            raise UsageError("--backend torch cannot run an ONNX model: use --backend "
                             "onnxruntime (or auto), or pass the .safetensors weights")
        if precision == "int8":
            raise UsageError("--precision int8 runs on ONNX Runtime: use --backend "
                             "onnxruntime (or auto)")
        return BackendChoice("torch", dev)
    if precision in ("bf16", "fp16"):
        if backend == "onnxruntime" or onnx_file:
            raise UsageError(f"--precision {precision} runs on PyTorch, ONNX Runtime "
                             "only at fp32 or int8: use --backend torch with the "
                             ".safetensors weights")
        return BackendChoice("torch", dev)
    if backend == "auto" and not onnx_file and precision != "int8":
        if providers is None or (dev.type == "cuda" and not ort_cuda):
            return BackendChoice("torch", dev)
        return BackendChoice("onnxruntime", dev)
    if providers is None:
        raise _no_ort(onnx_file, precision)
    if precision == "int8" and dev.type == "cuda":
        raise UsageError("--precision int8 runs on ONNX Runtime's CPU provider: add "
                         "--device cpu")
    if dev.type == "cuda" and not ort_cuda:
        if device == "auto":  # a GPU is there but this ONNX Runtime cannot use it
            return BackendChoice("onnxruntime", torch.device("cpu"))
        raise UsageError(f"--device {device} with ONNX Runtime needs its CUDA provider, "
                         "which this installation lacks (it has "
                         f"{', '.join(providers) or 'none'}): install onnxruntime-gpu, use "
                         "--device cpu, or --backend torch")
    return BackendChoice("onnxruntime", dev)


def execution_providers(device: torch.device) -> list[str | tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers for ``device``: CUDA (with its index) before the CPU."""
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def count_physical_cores(cpus: Iterable[int],
                         core_of: Callable[[int], tuple[str, str] | None]) -> int | None:
    """Physical cores behind the logical ``cpus``.

    Args:
        cpus: logical CPU numbers this process may run on.
        core_of: ``(package, core)`` of a logical CPU, ``None`` when unknown.

    Returns:
        The number of distinct cores, or ``None`` when any CPU's core is unknown.
    """
    cores = set()
    for cpu in cpus:
        core = core_of(cpu)
        if core is None:
            return None
        cores.add(core)
    return len(cores) or None


def _sysfs_core(cpu: int, root: Path = Path("/sys/devices/system/cpu")) -> tuple[str, str] | None:
    topology = root / f"cpu{cpu}" / "topology"
    try:
        return ((topology / "physical_package_id").read_text().strip(),
                (topology / "core_id").read_text().strip())
    except OSError:
        return None


def physical_cores() -> int:
    """Physical cores this process may use (its CPU affinity, SMT siblings counted once).

    From Linux's ``/sys`` topology; else psutil's physical count (capped by the affinity);
    else ``os.cpu_count()``.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    found = count_physical_cores(cpus, _sysfs_core)
    if found is not None:
        return found
    with contextlib.suppress(ImportError):
        import psutil  # optional: not a dependency

        physical = psutil.cpu_count(logical=False)
        if physical:
            return max(1, min(int(physical), len(cpus)))
    return max(1, os.cpu_count() or 1)


def default_threads(env: dict[str, str] | None = None, cores: int | None = None) -> int:
    """Intra-op threads when ``--threads`` is not given: ``OMP_NUM_THREADS`` when set to
    a positive integer (the knob PyTorch obeys too), else the physical cores."""
    env = dict(os.environ) if env is None else env
    value = env.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and 0 < int(value) <= MAX_THREADS:
        return int(value)
    return cores if cores is not None else physical_cores()


def check_threads(threads: int | None) -> int | None:
    """``--threads``: ``None`` or 1 to :data:`MAX_THREADS`."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise UsageError(f"--threads must be an integer from 1 to {MAX_THREADS}, got "
                         f"{threads!r}: leave it out for one per physical core")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Any:
    """Within the block, PyTorch uses ``threads`` intra-op threads (``None``: unchanged)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
