"""Prediction on a CUDA GPU against the CPU, with the shipped models (skipped without a GPU:
CI has none; these run on a GPU machine, see benchmarks/bench_gpu.py).

The CPU's fp32 PyTorch output is the reference. On the GPU: fp32 (cuDNN without TF32) within
1 DN, bf16 and fp16 (autocast) within the bounds measured on the CPU's bf16; the batch is
sized from free GPU memory and staged through pinned memory; cuDNN's global settings are
left as they were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr import predict, super_resolve
from s2sr.inference.backends import TorchBackend
from s2sr.inference.predict import prepare_run
from s2sr.models import load_model, pretrained_path
from support.rasters import texture, write_geotiff

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU (none here; CI has none)")]

#: (99th percentile, max) DN difference to the CPU's fp32 per precision and scale.
BOUNDS = {("fp32", 2): (1, 1), ("fp32", 4): (1, 1), ("bf16", 2): (4, 15),
          ("bf16", 4): (8, 30), ("fp16", 2): (2, 8), ("fp16", 4): (3, 15)}


def _scene(path: Path) -> Path:
    return write_geotiff(path, (texture((150, 130), 4, seed=3) * 10000).astype(np.uint16),
                         nodata=0)


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int32), ds.tags()


@pytest.mark.parametrize("scale", [2, 4])
def test_gpu_precisions_against_the_cpu(tmp_path: Path, scale: int) -> None:
    src = _scene(tmp_path / "in.tif")
    weights = pretrained_path(scale)
    opts = {"tile": 96, "overlap": 16}
    ref, _ = _read(predict(src, tmp_path / "cpu.tif", weights, device="cpu", backend="torch",
                           **opts))
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    for precision in ("fp32", "bf16", "fp16"):
        out, tags = _read(predict(src, tmp_path / f"{precision}.tif", weights, device="cuda",
                                  precision=precision, backend="torch", **opts))
        assert (tags["S2SR_PRECISION"], tags["S2SR_BACKEND"]) == (precision, "torch")
        diff = np.abs(out - ref)
        p99, worst = BOUNDS[(precision, scale)]
        print(f"x{scale} {precision}: p99 {np.percentile(diff, 99):.0f} DN, max {diff.max()}")
        assert np.percentile(diff, 99) <= p99 and diff.max() <= worst, precision
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) == flags
    _, tags = _read(predict(src, tmp_path / "auto.tif", weights, device="cuda", **opts))
    assert tags["S2SR_PRECISION"] == "fp16"  # auto on CUDA


def test_gpu_batch_from_free_memory_and_staged_copies(tmp_path: Path) -> None:
    src = _scene(tmp_path / "in.tif")
    with prepare_run(src, pretrained_path(2), device="cuda", tile=64, overlap=16) as run:
        assert run.runner.batch_size > 1  # sized from free memory
        backend = run.runner.backend
        assert isinstance(backend, TorchBackend) and backend.device.type == "cuda"
        x = torch.rand(2, 4, 64, 64)
        staged = backend.stage(x)
        assert staged.host.is_pinned() and staged.device is not None
        y = backend(staged)
        assert y.device.type == "cuda" and y.dtype == torch.float32
        assert torch.allclose(y, backend(x), atol=1e-5)


def test_super_resolve_on_the_gpu_matches_predict(tmp_path: Path) -> None:
    data = (texture((120, 100), 4, seed=4) * 10000).astype(np.uint16)
    src = write_geotiff(tmp_path / "in.tif", data)
    model = load_model(pretrained_path(2))
    arr = super_resolve(data, model, device="cuda", precision="fp32", tile=64, overlap=16,
                        batch_size=4)
    ref, _ = _read(predict(src, tmp_path / "out.tif", pretrained_path(2), device="cuda",
                           precision="fp32", backend="torch", tile=64, overlap=16))
    assert np.abs(arr.astype(np.int32) - ref).max() <= 1
