"""The one orchestrator: super-resolve a scene file (or an in-memory array) with a model.

Both entries only open their input and the model, then follow the run plan
(:mod:`s2sr.inference.plan`): the options are checked once, the plan is built once from
them and the scene, and the engine it names runs the tiles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window
from torch import nn

from s2sr.core.dn import SUPPORTED_DTYPES, default_gain
from s2sr.core.errors import DataError, UsageError
from s2sr.core.files import exclusive_output, make_parents, remove_made
from s2sr.core.version import __version__
from s2sr.inference.adapt import adapt_for_run
from s2sr.inference.backends import torch_threads
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.multires_predict import (
    predict_ten_bands,
    refuse_options,
    super_resolve_bands,
    ten_bands_asked,
)
from s2sr.inference.plan import (
    Engine,
    RunOptions,
    RunPlan,
    check_scale,
    choose_execution,
    make_backend,
    make_engine,
    model_fill,
    open_shipped,
    plan_run,
)
from s2sr.inference.stream_engine import model_refusal
from s2sr.io.base import GeoMeta, Scene
from s2sr.io.outputs import check_output_file
from s2sr.io.scene import open_scene
from s2sr.io.writer import (
    ALL_CPUS,
    RasterWriter,
    block_size_for,
    carried_tags,
    output_meta,
    row_block_size,
)
from s2sr.models import ModelSpec, file_sha256, get_spec
from s2sr.models.device import cuda_device_count
from s2sr.models.open import OpenModel, open_model

log = logging.getLogger(__name__)


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
    engine: str = "auto",
    resolution: int | None = None,
    input_20m: str | os.PathLike[str] | None = None,
    weights_20m: str | os.PathLike[str] | None = None,
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
        cog: write a Cloud Optimised GeoTIFF.
        overwrite: replace an existing output.
        scale, bands, tile, overlap, batch_size, device, progress, consistency, dn_offset,
            backend, threads, precision, adapt, adapt_steps, adapt_seed, engine: the run
            options,
            each described at :class:`~s2sr.inference.plan.RunOptions`.
        resolution, input_20m, weights_20m: with ``bands="all"``, the ten bands B02-B12
            at ``resolution`` 10 or 5 m (:func:`~s2sr.inference.multires_predict.predict_bands`).

    Returns:
        The output path.
    """
    if ten_bands_asked(bands, resolution, input_20m, weights_20m):
        return predict_ten_bands(
            input, output, weights, resolution=resolution, input_20m=input_20m,
            weights_20m=weights_20m, tile=tile, device=device, cog=cog, overwrite=overwrite,
            progress=progress, dn_offset=dn_offset, threads=threads, scale=scale,
            overlap=overlap, batch_size=batch_size, consistency=consistency, backend=backend,
            precision=precision, adapt=adapt, adapt_steps=adapt_steps, engine=engine)
    out_path = Path(output)
    check_output_file(out_path, overwrite, (input, weights), create_parent=True)
    made: list[Path] = []
    try:
        with prepare_run(
            input, weights, scale=scale, bands=bands, tile=tile, overlap=overlap,
            batch_size=batch_size, device=device, progress=progress, consistency=consistency,
            dn_offset=dn_offset, backend=backend, threads=threads, precision=precision,
            adapt=adapt, adapt_steps=adapt_steps, adapt_seed=adapt_seed, engine=engine,
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
        scene: the open input. runner: the engine the plan names, its backend ready.
        plan: the run plan. weights: the model file used (the shipped one chosen when
            none was given). spec: the model's spec. tags: the output's dataset tags.
        out_meta: the output grid. write_scales: record gains/offsets in the output.
        blocksize: the output's GeoTIFF block size.
        write_threads: GDAL's compression threads while writing: all CPUs when the network
            runs on a GPU, else 1 (see :data:`s2sr.io.writer.ALL_CPUS`).
    """

    scene: Scene
    runner: Engine
    plan: RunPlan
    weights: Path
    spec: ModelSpec
    tags: dict[str, str]
    out_meta: GeoMeta
    write_scales: bool
    blocksize: int
    write_threads: str = "1"


def _tags(plan: RunPlan, model: OpenModel, sha: str, input: str | os.PathLike[str],
          meta: GeoMeta, adapt_tags: dict[str, str]) -> dict[str, str]:
    """The output's dataset tags: the input's worth carrying, then what made the output."""
    lay, spec = plan.layout, plan.spec
    tags = {
        **carried_tags(meta.tags),
        "S2SR_MODEL": spec.name,
        "S2SR_MODEL_SHA256": sha,
        "S2SR_MODEL_FILE": model.path.name,
        "S2SR_SCALE": str(spec.scale),
        "S2SR_SOURCE": str(Path(input).resolve()),
        "S2SR_VERSION": __version__,
        "S2SR_ENGINE": plan.execution_kind,
        "S2SR_CONSISTENCY": "back-projection x3" if plan.consistency else "off",
        "S2SR_BACKEND": plan.execution.backend,
        "S2SR_PRECISION": plan.execution.precision,
        **adapt_tags,
    }
    if plan.execution_kind == "tiled":
        tags["S2SR_TILE"] = f"{lay.tile}/{lay.tile - lay.stride}"
    if model.source_sha256 is not None:
        tags["S2SR_MODEL_SOURCE_SHA256"] = model.source_sha256
    return tags


@contextmanager
def prepare_run(input: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None,
                **options: Any) -> Iterator[PreparedRun]:
    """Check the options, open the model and the scene (once each), plan the run and set
    up its engine, as :func:`predict` does before it writes (``options``: :func:`predict`'s
    run options, see :class:`~s2sr.inference.plan.RunOptions`); the scene is closed and
    the thread setting restored on exit. Also used to compute row-bands of a scene on
    several workers (:mod:`s2sr.batch.blocks`)."""
    opts = RunOptions(**options)
    cuda_count = cuda_device_count()
    asked = opts.check(cuda_count)
    with ExitStack() as stack:
        scene: Scene | None = None
        if weights is None:
            scene, weights = open_shipped(input, opts.scale, opts.bands, opts.dn_offset)
            stack.callback(scene.close)
        model = open_model(weights)
        check_scale(opts.scale, model.spec, weights)
        execution = choose_execution(opts, asked, cuda_count, model.file_precision,
                                     model_refusal(model.network))
        sha = file_sha256(model.path)
        if scene is None:
            scene = stack.enter_context(open_scene(
                input, bands=model.spec.bands, band_names=opts.bands, dn_offset=opts.dn_offset))
        stack.enter_context(torch_threads(opts.threads if execution.backend == "torch"
                                          else None))
        meta = scene.meta
        plan = plan_run(model.spec, opts, execution, meta.height, meta.width,
                        DnEncoding(meta.dtype, meta.gains, meta.offsets, meta.nodata))
        network, adapt_tags = adapt_for_run(model.network, scene, opts.adapt,
                                            opts.adapt_steps, opts.adapt_seed, plan.device,
                                            plan.execution.precision)
        plain = default_gain(meta.dtype)
        out_meta = output_meta(meta, model.spec.scale)
        yield PreparedRun(
            scene, make_engine(plan, make_backend(plan, network, sha)), plan, model.path,
            model.spec, _tags(plan, model, sha, input, meta, adapt_tags),
            out_meta, any(g != plain for g in meta.gains) or any(meta.offsets),
            _blocksize(plan, out_meta, model.spec.scale),
            ALL_CPUS if plan.device.type == "cuda" else "1")


def _blocksize(plan: RunPlan, out_meta: GeoMeta, scale: int) -> int:
    """The output's block size: the tiled engine's tiles fill whole blocks; the stream
    writes a few rows at a time, its block rows kept small against GDAL's cache."""
    if plan.execution_kind == "stream":
        return row_block_size(out_meta.width, len(out_meta.bands), out_meta.dtype)
    return block_size_for(plan.layout.stride * scale)


class _InMemory:
    """Windows of an in-memory ``(C, H, W)`` array, and the output ``scale`` times larger
    they are written into (the reader and writer of :func:`super_resolve`'s engine)."""

    def __init__(self, array: np.ndarray, scale: int) -> None:
        self.array = array
        self.out = np.empty((array.shape[0], array.shape[1] * scale, array.shape[2] * scale),
                            array.dtype)

    def read(self, window: Window) -> np.ndarray:
        r, c = int(window.row_off), int(window.col_off)
        return self.array[:, r:r + int(window.height), c:c + int(window.width)]

    def write(self, window: Window, data: np.ndarray) -> None:
        r, c = int(window.row_off), int(window.col_off)
        self.out[:, r:r + data.shape[1], c:c + data.shape[2]] = data


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
    engine: str = "auto",
    array_20m: np.ndarray | None = None,
    model_10m: nn.Module | None = None,
) -> np.ndarray:
    """Super-resolve an in-memory ``(C, H, W)`` array with the same engine as :func:`predict`.

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
        engine: ``auto`` (the stream wherever it runs, else ``tiled``), ``tiled`` or
            ``stream``, as :func:`predict`'s.
        array_20m: the six 20 m bands ``(6, H/2, W/2)`` beside the 10 m bands ``array``
            ``(4, H, W)``, with a guided ``model``: the ten bands at 10 m, or at 5 m with
            ``model_10m`` (the 10 m bands' x2 model; a x2 guided model then runs twice,
            the cascade; a x4 one once); see
            :func:`~s2sr.inference.multires_predict.super_resolve_bands`.

    Returns:
        ``(C, H*scale, W*scale)`` array of the input dtype.
    """
    if array_20m is not None or model_10m is not None:
        if array_20m is None:
            raise UsageError("model_10m goes with array_20m (the ten bands): pass both")
        refuse_options(overlap=overlap, batch_size=None if batch_size == 1 else batch_size,
                       precision=precision, backend=backend, engine=engine)
        return super_resolve_bands(array, array_20m, model, model_10m=model_10m,
                                   nodata=nodata, gain=gain, offset=offset, tile=tile,
                                   device=device, threads=threads)
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
    opts = RunOptions(tile=tile, overlap=overlap, batch_size=batch_size, device=device,
                      precision=precision, backend=backend, threads=threads, engine=engine)
    cuda_count = cuda_device_count()
    asked = opts.check(cuda_count, batch_name="batch_size")
    n, s = len(spec.bands), spec.scale
    g = gain if gain is not None else default_gain(array.dtype.name)
    plan = plan_run(spec, opts, choose_execution(opts, asked, cuda_count,
                                                 refusal=model_refusal(model)), array.shape[1],
                    array.shape[2], DnEncoding(array.dtype.name, (g,) * n, (offset,) * n,
                                               nodata), model_fill(model, n))
    arrays = _InMemory(array, s)
    with torch_threads(threads if plan.execution.backend == "torch" else None):
        if make_engine(plan, make_backend(plan, model)).run(arrays.read, arrays.write) == 0:
            raise DataError("the array holds no valid pixels (all nodata)")
    return arrays.out
