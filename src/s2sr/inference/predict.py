"""The one orchestrator: super-resolve a scene file (or an in-memory array) with a model."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from s2sr.core.bands import DEFAULT_BANDS, RGB_BANDS
from s2sr.core.dn import SUPPORTED_DTYPES, default_gain
from s2sr.core.errors import (
    BandError,
    DataError,
    GridMismatchError,
    InputNotFoundError,
    UsageError,
    WeightsError,
)
from s2sr.core.files import exclusive_output, make_parents, remove_made
from s2sr.core.version import __version__
from s2sr.inference.adapt import adapt_for_run, check_options
from s2sr.inference.backends import (
    BACKENDS,
    Backend,
    BackendChoice,
    OnnxRuntimeBackend,
    TorchBackend,
    check_threads,
    choose_backend,
    default_threads,
    execution_providers,
    ort_providers,
    torch_threads,
)
from s2sr.inference.engine import DnEncoding, TiledSuperResolver
from s2sr.inference.quantize import int8_onnx
from s2sr.inference.tiling import TileLayout
from s2sr.inference.verified_export import onnx_backend
from s2sr.io.base import SCENE_LOGGER, GeoMeta, Scene
from s2sr.io.outputs import check_output_file
from s2sr.io.scene import open_scene
from s2sr.io.writer import ALL_CPUS, RasterWriter, block_size_for, carried_tags, output_meta
from s2sr.models import ModelSpec, file_sha256, get_spec, load_model, pretrained_path
from s2sr.models.device import (
    BYTES_PER_ELEMENT,
    PRECISIONS,
    InferencePlan,
    auto_batch,
    choose_precision,
    cpu_bf16_supported,
    cuda_bf16_supported,
    cuda_device_count,
    inference_plan,
    select_device,
)
from s2sr.models.exported import OnnxModel, load_torchscript, read_onnx, sniff

log = logging.getLogger(__name__)

#: Default network input tile per scale: its core (tile - overlap) times the scale is a
#: multiple of 512, so every write fills whole GeoTIFF blocks.
DEFAULT_TILE = {2: 544, 4: 288}
#: ONNX Runtime's default tiles where they differ: its memory arena keeps the peak of the
#: largest tile, and small tiles run faster per pixel there. At x2 on a 2048^2 scene (2
#: threads): 288 px 44.2 s, peak RSS 767 MB; 416 px 58.4 s, 1133 MB (its 384 px cores do
#: not divide 2048); 544 px 41.0 s, 1616 MB. On a whole 10980^2 tile 288 px computes 7 %
#: more pixels than 544 px at about 4 % more speed per pixel.
ORT_TILE = {2: 288}
DEFAULT_OVERLAP = 32
#: Largest accepted ``--tile`` (input pixels a side); memory is checked as well.
MAX_TILE = 8192
#: Share of the memory that one batch of tiles may take in the network.
MEMORY_SHARE = 0.5


def default_tile(scale: int, backend: str = "torch") -> int:
    """``--tile`` when not given, for the model's scale and the backend that runs it."""
    if backend == "onnxruntime" and scale in ORT_TILE:
        return ORT_TILE[scale]
    return DEFAULT_TILE.get(scale, 256)


def _prepare(model: nn.Module, plan: InferencePlan) -> nn.Module:
    model = model.to(device=plan.device, dtype=plan.dtype).eval()
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _fill(model: nn.Module | ModelSpec, n: int) -> np.ndarray:
    """Per band, the reflectance put into nodata pixels: the model's mean."""
    if isinstance(model, ModelSpec):
        mean = model.options.get("mean")
        if isinstance(mean, list) and len(mean) == n:
            return np.asarray(mean, np.float32)
        return np.zeros(n, np.float32)
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.numel() == n:
        return mean.detach().cpu().numpy().reshape(-1).astype(np.float32)
    return np.zeros(n, np.float32)


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


def _layout(height: int, width: int, scale: int, tile: int | None, overlap: int | None,
            backend: str = "torch") -> TileLayout:
    tile = default_tile(scale, backend) if tile is None else int(tile)
    overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
    if tile < 8:
        raise UsageError(f"--tile must be at least 8 pixels, got {tile}")
    if tile > MAX_TILE:
        raise UsageError(f"--tile {tile} is larger than {MAX_TILE} pixels: use a tile of "
                         f"{default_tile(scale, backend)} to 2048 (memory grows with its square)")
    # A tile larger than the scene only adds padding: shrink it to what covers the scene.
    needed = max(height, width, overlap // 2, 8) + overlap
    needed += -needed % 8
    tile = min(tile, needed)
    return TileLayout.from_tile(height, width, tile, overlap, scale)


def _check_memory(model: nn.Module | ModelSpec, lay: TileLayout, plan: InferencePlan,
                  backend: str = "torch") -> None:
    batch, dev = plan.batch_size, plan.device
    need = network_bytes(model, lay.tile, batch, BYTES_PER_ELEMENT[plan.precision])
    have = _memory_bytes(dev)
    if need > MEMORY_SHARE * have:
        where = "free GPU memory" if dev.type == "cuda" else "memory"
        raise UsageError(
            f"--tile {lay.tile} with --batch-size {batch} needs about {need / 2**30:.1f} GiB "
            f"but this machine has {have / 2**30:.1f} GiB of {where}: use a smaller --tile "
            f"(default {default_tile(lay.scale, backend)}) or --batch-size"
        )


def _sized(plan: InferencePlan, spec: ModelSpec, lay: TileLayout, asked: int | None
           ) -> InferencePlan:
    """On CUDA without ``--batch-size``: the batch that fits :data:`MEMORY_SHARE` of the
    free GPU memory (:func:`s2sr.models.device.auto_batch`) at the plan's precision."""
    if plan.device.type != "cuda" or asked is not None:
        return plan
    per_tile = network_bytes(spec, lay.tile, 1, BYTES_PER_ELEMENT[plan.precision])
    return replace(plan, batch_size=auto_batch(per_tile, _memory_bytes(plan.device),
                                                MEMORY_SHARE))


def _check_precision_name(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown --precision {precision!r}: use {', '.join(PRECISIONS)}")


def _device_for(precision: str, device: str) -> str:
    """int8 runs on ONNX Runtime's CPU provider: ``--device auto`` means the CPU then."""
    return "cpu" if precision == "int8" and device == "auto" else device


def _warn_emulated(plan: InferencePlan) -> None:
    if plan.precision == "bf16" and plan.device.type == "cpu" and not cpu_bf16_supported():
        log.warning("this CPU has no native bfloat16 (AVX512_BF16 or AMX): --precision bf16 "
                    "runs emulated, slower than fp32")


def _file_precision(model: OnnxModel) -> str:
    """The precision an exported ONNX model was made at (its header's ``precision``)."""
    value = model.header.get("precision", "fp32")
    if value not in ("fp32", "int8"):
        raise WeightsError(f"ONNX model {model.path}: header precision {value[:20]!r} is not "
                           "fp32 or int8: export it again with s2sr export")
    return value


def _is_missing_band(err: Exception) -> bool:
    """A :class:`BandError` that means "the band is not there" (not "it is unusable")."""
    return not isinstance(err, GridMismatchError)


def choose_weights(input: str | os.PathLike[str], scale: int | None,
                   band_names: Sequence[str] | None, dn_offset: float | None = None) -> Path:
    """The shipped model for a scene: x2 unless ``scale`` says 4; the RGB variant when the
    scene has no B08 (bands found by description, in any order)."""
    scene_log = logging.getLogger(SCENE_LOGGER)
    was = scene_log.disabled
    scene_log.disabled = True  # the real open, right after, gives the warnings once
    try:
        open_scene(input, bands=DEFAULT_BANDS, band_names=band_names,
                   dn_offset=dn_offset).close()
        rgb = False
    except BandError as first:
        if not _is_missing_band(first):
            raise  # e.g. B08 on another grid: not a reason to drop it silently
        try:
            open_scene(input, bands=RGB_BANDS, band_names=band_names,
                       dn_offset=dn_offset).close()
        except BandError:
            raise first from None
        rgb = True
    finally:
        scene_log.disabled = was
    if rgb:
        log.warning("%s has no B08: using the RGB model (B02, B03, B04); pass --weights to "
                    "choose another", input)
    return pretrained_path(scale or 2, rgb=rgb)


def _load(weights: str | os.PathLike[str]) -> nn.Module | OnnxModel:
    """The model behind ``--weights``: a weights file or a TorchScript export (a PyTorch
    model), or an ONNX export (its checked graph)."""
    kind = sniff(weights)
    if kind == "onnx":
        return read_onnx(weights)
    return load_torchscript(weights) if kind == "torchscript" else load_model(weights)


def _backend(choice: BackendChoice, plan: InferencePlan, model: nn.Module | OnnxModel,
             threads: int | None, source_sha256: str = "0" * 64) -> Backend:
    """The backend :func:`choose_backend` named, ready to run at the plan's precision."""
    if isinstance(model, OnnxModel):  # choose_backend gives ONNX Runtime for these only
        spec = model.spec
        return OnnxRuntimeBackend(model.data, len(spec.bands), spec.scale,
                                  threads or default_threads(), execution_providers(plan.device))
    if choice.backend == "torch":
        return TorchBackend(_prepare(model, plan), plan.device, plan.channels_last,
                            plan.autocast)
    n = threads or default_threads()
    if plan.precision == "int8":
        spec = get_spec(model)
        data = int8_onnx(model, source_sha256, threads=n).data
        return OnnxRuntimeBackend(data, len(spec.bands), spec.scale, n,
                                  execution_providers(plan.device))
    return onnx_backend(model, n, execution_providers(plan.device))


def predict(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None,
    *,
    scale: int | None = None,
    bands: Sequence[str] | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    cog: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    consistency: bool = False,
    dn_offset: float | None = None,
    backend: str = "auto",
    threads: int | None = None,
    precision: str = "auto",
    adapt: str = "off",
    adapt_steps: int | None = None,
    adapt_seed: int = 0,
) -> Path:
    """Super-resolve a Sentinel-2 scene into a georeferenced GeoTIFF/COG.

    The output has the input's CRS, bounds, dtype, DN encoding, nodata and band names,
    with the pixel size divided by the model's scale.

    Args:
        input: multi-band GeoTIFF/COG, per-band folder, ``.SAFE`` folder or ``.zip``.
        output: the GeoTIFF to write (refused if it exists, unless ``overwrite``).
        weights: an s2sr ``.safetensors`` weights file, or a model exported from one by
            ``s2sr export`` (ONNX or TorchScript); ``None``: the shipped model (x2,
            or x4 with ``scale=4``; its RGB variant when the scene has no B08).
        scale: with ``weights=None``, which shipped model (2 or 4); with weights, a check.
        bands: names of a multi-band file's bands by position, when it has no descriptions.
        tile: network input size in pixels (default 544 at x2 with PyTorch, else 288).
        overlap: overlap of neighbouring tiles in pixels (default 32).
        batch_size: tiles per forward pass (default 1 on CPU, 8 on CUDA).
        device: ``auto``, ``cpu`` or ``cuda``.
        cog: write a Cloud Optimised GeoTIFF.
        overwrite: replace an existing output.
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

    Returns:
        The output path.
    """
    out_path = Path(output)
    check_output_file(out_path, overwrite, (input, weights), create_parent=True)
    made: list[Path] = []
    try:
        with prepare_run(
            input, weights, scale=scale, bands=bands, tile=tile, overlap=overlap,
            batch_size=batch_size, device=device, progress=progress, consistency=consistency,
            dn_offset=dn_offset, backend=backend, threads=threads, precision=precision,
            adapt=adapt, adapt_steps=adapt_steps, adapt_seed=adapt_seed,
        ) as run:
            made = make_parents(out_path)  # missing folders above -o, as export does
            return _write_scene(run, input, out_path, overwrite, cog)
    except BaseException:
        remove_made(made)
        raise


def _write_scene(run: PreparedRun, input: str | os.PathLike[str], out_path: Path,
                 overwrite: bool, cog: bool) -> Path:
    """Run the prepared engine over the scene into ``out_path`` (see :func:`predict`)."""
    with exclusive_output(out_path), RasterWriter(
        out_path, run.out_meta, overwrite=overwrite, cog=cog, tags=run.tags,
        blocksize=run.blocksize, write_scales=run.write_scales, threads=run.write_threads,
    ) as writer:
        valid = run.runner.run(run.scene.read, writer.write)
        if valid == 0:
            raise DataError(
                f"{input} holds no valid pixels (all nodata): check the scene or its "
                "nodata value"
            )
        if run.runner.saturated_samples:
            log.info("%s: %d saturated samples (DN %s) were not fed to the network and are "
                     "written saturated", input, run.runner.saturated_samples,
                     run.runner.radiometry.saturated_value())
        return writer.commit()


@dataclass
class PreparedRun:
    """Everything :func:`predict` writes a scene with (see :func:`prepare_run`).

    Attributes:
        scene: the open input. runner: the tiled engine, its backend ready.
        weights: the weights file used (the shipped one chosen when none was given).
        spec: the model's spec. tags: the output's dataset tags.
        out_meta: the output grid. write_scales: record gains/offsets in the output.
        blocksize: the output's GeoTIFF block size.
        write_threads: GDAL's compression threads while writing: all CPUs when the network
            runs on a GPU, else 1 (see :data:`s2sr.io.writer.ALL_CPUS`).
    """

    scene: Scene
    runner: TiledSuperResolver
    weights: Path
    spec: ModelSpec
    tags: dict[str, str]
    out_meta: GeoMeta
    write_scales: bool
    blocksize: int
    write_threads: str = "1"


@contextmanager
def prepare_run(
    input: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, *,
    scale: int | None = None, bands: Sequence[str] | None = None, tile: int | None = None,
    overlap: int | None = None, batch_size: int | None = None, device: str = "auto",
    progress: bool = False, consistency: bool = False, dn_offset: float | None = None,
    backend: str = "auto", threads: int | None = None, precision: str = "auto",
    adapt: str = "off", adapt_steps: int | None = None, adapt_seed: int = 0,
) -> Iterator[PreparedRun]:
    """Check the options, load the model, open the scene and set up the tiled engine, as
    :func:`predict` does before it writes (arguments as :func:`predict`'s); the scene is
    closed and the thread setting restored on exit. Also used to compute row-bands of a
    scene on several workers (:mod:`s2sr.batch.blocks`)."""
    cuda_count = cuda_device_count()
    _check_precision_name(precision)
    device = _device_for(precision, device)
    inference_plan(device, batch_size, cuda_count)  # option checks before any file is read
    if backend not in BACKENDS:
        raise UsageError(f"unknown --backend {backend!r}: use {', '.join(BACKENDS)}")
    check_threads(threads)
    check_options(adapt, adapt_steps, adapt_seed)
    _layout(1, 1, scale or 2, tile, overlap)
    if weights is None:
        if not Path(input).exists():
            raise InputNotFoundError(f"input {input} does not exist: check the path")
        weights = choose_weights(input, scale, bands, dn_offset)
    model = _load(weights)
    exported = model if isinstance(model, OnnxModel) else None
    spec = model.spec if isinstance(model, OnnxModel) else get_spec(model)
    if scale is not None and scale != spec.scale:
        raise UsageError(f"--scale {scale} but {weights} is a x{spec.scale} model: drop "
                         "--scale or use matching weights")
    prec = choose_precision(
        precision, select_device(device, cuda_count), backend, cuda_bf16=cuda_bf16_supported(),
        file_precision=None if exported is None else _file_precision(exported))
    choice = choose_backend(backend, device, cuda_count, ort_providers(),
                            onnx_file=exported is not None, precision=prec)
    plan = inference_plan(str(choice.device), batch_size, cuda_count, prec)
    _warn_emulated(plan)
    sha = file_sha256(weights)
    with open_scene(input, bands=spec.bands, band_names=bands, dn_offset=dn_offset) as scene, \
            torch_threads(threads if choice.backend == "torch" else None):
        meta = scene.meta
        lay = _layout(meta.height, meta.width, spec.scale, tile, overlap, choice.backend)
        plan = _sized(plan, spec, lay, batch_size)
        _check_memory(spec, lay, plan, choice.backend)
        model, adapt_tags = adapt_for_run(model, scene, adapt, adapt_steps, adapt_seed,
                                          plan.device, prec)
        radiometry = DnEncoding(meta.dtype, meta.gains, meta.offsets, meta.nodata)
        plain = default_gain(meta.dtype)
        write_scales = any(g != plain for g in meta.gains) or any(meta.offsets)
        tags = {
            **carried_tags(meta.tags),
            "S2SR_MODEL": spec.name,
            "S2SR_MODEL_SHA256": sha,
            "S2SR_MODEL_FILE": Path(weights).name,
            "S2SR_SCALE": str(spec.scale),
            "S2SR_SOURCE": str(Path(input).resolve()),
            "S2SR_VERSION": __version__,
            "S2SR_TILE": f"{lay.tile}/{lay.tile - lay.stride}",
            "S2SR_CONSISTENCY": "back-projection x3" if consistency else "off",
            "S2SR_BACKEND": choice.backend,
            "S2SR_PRECISION": prec,
            **adapt_tags,
        }
        if exported is not None:
            tags["S2SR_MODEL_SOURCE_SHA256"] = exported.source_sha256
        runner = TiledSuperResolver(
            _backend(choice, plan, model, threads, sha), lay, radiometry,
            _fill(spec, len(spec.bands)), plan.device, plan.batch_size, progress,
            consistency=3 if consistency else 0,
        )
        yield PreparedRun(
            scene, runner, Path(weights), spec, tags, output_meta(meta, spec.scale),
            write_scales, block_size_for(lay.stride * spec.scale),
            ALL_CPUS if plan.device.type == "cuda" else "1")


def super_resolve(
    array: np.ndarray,
    model: nn.Module,
    *,
    nodata: float | None = None,
    gain: float | None = None,
    offset: float = 0.0,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 1,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "torch",
    threads: int | None = None,
) -> np.ndarray:
    """Super-resolve an in-memory ``(C, H, W)`` array with the same tiling as :func:`predict`.

    Args:
        array: DN in the model's band order; integers are reflectance x 10000 (unless
            ``gain`` says otherwise), floats are reflectance.
        model: a model from ``build_model`` or ``load_model``.
        nodata: value marking missing pixels (they stay missing).
        gain: reflectance per DN (default 1e-4 for integers, 1 for floats).
        offset: reflectance of DN 0.
        tile: network input size. overlap: tile overlap. batch_size: tiles per pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: as :func:`predict`'s (``auto``: fp32 on the CPU, fp16 on
            CUDA; ``int8`` needs ``backend`` ``onnxruntime`` or ``auto``).
        backend: ``torch`` (default), ``onnxruntime`` or ``auto``, as :func:`predict`'s.
        threads: intra-op threads, as :func:`predict`'s.

    Returns:
        ``(C, H*scale, W*scale)`` array of the input dtype.
    """
    spec = get_spec(model)
    if array.ndim != 3 or array.shape[0] != len(spec.bands):
        raise UsageError(
            f"array of shape {array.shape} does not match the model's {len(spec.bands)} bands "
            f"({', '.join(spec.bands)}): pass (C, H, W) with C = {len(spec.bands)}"
        )
    if array.dtype.name not in SUPPORTED_DTYPES:
        raise DataError(f"unsupported dtype {array.dtype}: use uint16/int16 DN or float32")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise DataError("the array is empty: pass at least one pixel")
    g = gain if gain is not None else default_gain(array.dtype.name)
    n = len(spec.bands)
    radiometry = DnEncoding(array.dtype.name, (g,) * n, (offset,) * n, nodata)
    lay = _layout(array.shape[1], array.shape[2], spec.scale, tile, overlap)
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    check_threads(threads)
    _check_precision_name(precision)
    device = _device_for(precision, device)
    cuda_count = cuda_device_count()
    prec = choose_precision(precision, select_device(device, cuda_count), backend,
                            cuda_bf16=cuda_bf16_supported())
    choice = choose_backend(backend, device, cuda_count, ort_providers(), precision=prec)
    plan = inference_plan(str(choice.device), batch_size, cuda_count, prec)
    _warn_emulated(plan)
    if tile is None:
        lay = _layout(array.shape[1], array.shape[2], spec.scale, tile, overlap, choice.backend)
    _check_memory(model, lay, plan, choice.backend)
    s = spec.scale
    out = np.empty((n, array.shape[1] * s, array.shape[2] * s), array.dtype)

    def read(window: Window) -> np.ndarray:
        r, c = int(window.row_off), int(window.col_off)
        return array[:, r:r + int(window.height), c:c + int(window.width)]

    def write(window: Window, data: np.ndarray) -> None:
        r, c = int(window.row_off), int(window.col_off)
        out[:, r:r + data.shape[1], c:c + data.shape[2]] = data

    with torch_threads(threads if choice.backend == "torch" else None):
        runner = TiledSuperResolver(_backend(choice, plan, model, threads), lay, radiometry,
                                    _fill(model, n), plan.device, plan.batch_size)
        if runner.run(read, write) == 0:
            raise DataError("the array holds no valid pixels (all nodata)")
    return out
