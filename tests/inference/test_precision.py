"""Reduced precision: the choice of precision, backend and CUDA batch as pure functions
(every CUDA branch tested on the CPU by passing what the machine has), PyTorch autocast
on the CPU, and outputs at bf16 and int8 against fp32 with the shipped models on a
generated scene (the bounds state what was measured)."""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr import predict, super_resolve
from s2sr.core.constants import PRECISIONS
from s2sr.core.errors import UsageError
from s2sr.inference.backends import Staged, TorchBackend, choose_backend
from s2sr.inference.plan import network_bytes, sized
from s2sr.inference.tiling import TileLayout
from s2sr.models import get_spec, load_model, pretrained_path
from s2sr.models.device import (
    AUTOCAST,
    BYTES_PER_ELEMENT,
    MAX_AUTO_BATCH,
    auto_batch,
    choose_precision,
    inference_plan,
)
from support.rasters import texture, write_geotiff

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
ORT = ["CPUExecutionProvider"]
ORT_GPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("precision", "device", "backend", "bf16", "want"), [
    # auto: fp32 on the CPU, whatever runs it
    ("auto", CPU, "auto", True, "fp32"), ("auto", CPU, "torch", True, "fp32"),
    ("auto", CPU, "onnxruntime", True, "fp32"),
    # auto on CUDA: fp16 (as fast as bf16, closer to fp32); ONNX Runtime stays at fp32
    ("auto", CUDA, "auto", True, "fp16"), ("auto", CUDA, "torch", True, "fp16"),
    ("auto", CUDA, "auto", False, "fp16"), ("auto", CUDA, "torch", False, "fp16"),
    ("auto", CUDA, "onnxruntime", True, "fp32"),
    # asked
    ("fp32", CPU, "onnxruntime", False, "fp32"), ("fp32", CUDA, "torch", True, "fp32"),
    ("bf16", CPU, "torch", False, "bf16"), ("bf16", CPU, "auto", False, "bf16"),
    ("bf16", CUDA, "auto", True, "bf16"), ("fp16", CUDA, "torch", False, "fp16"),
    ("fp16", CUDA, "auto", True, "fp16"),
    ("int8", CPU, "auto", False, "int8"), ("int8", CPU, "onnxruntime", False, "int8"),
])
def test_precision_choice(precision: str, device: torch.device, backend: str, bf16: bool,
                          want: str) -> None:
    assert choose_precision(precision, device, backend, cuda_bf16=bf16) == want


@pytest.mark.parametrize(("precision", "device", "backend", "bf16", "message"), [
    ("fp64", CPU, "auto", True, r"unknown --precision 'fp64': use auto, fp32, bf16, fp16, "
                                r"int8"),
    ("fp16", CPU, "torch", True, r"fp16 runs on CUDA only: on the CPU use bf16"),
    ("bf16", CUDA, "torch", False, r"this GPU has no bfloat16 support: use --precision fp16"),
    ("bf16", CPU, "onnxruntime", True, r"ONNX's Conv has no bfloat16.*use --backend torch"),
    ("fp16", CUDA, "onnxruntime", True, r"fp32 or int8 only.*use --backend torch"),
    ("int8", CUDA, "auto", True, r"int8 runs on ONNX Runtime's CPU provider: add --device "
                                 r"cpu"),
    ("int8", CPU, "torch", True, r"int8 runs on ONNX Runtime .*use --backend onnxruntime"),
])
def test_precision_refusals_name_the_fix(precision: str, device: torch.device, backend: str,
                                         bf16: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        choose_precision(precision, device, backend, cuda_bf16=bf16)


def test_an_exported_file_runs_at_its_own_precision() -> None:
    for asked in ("auto", "int8"):
        assert choose_precision(asked, CPU, "auto", cuda_bf16=True,
                                file_precision="int8") == "int8"
    assert choose_precision("auto", CUDA, "auto", cuda_bf16=True,
                            file_precision="fp32") == "fp32"
    for asked, has in (("bf16", "fp32"), ("fp32", "int8"), ("int8", "fp32")):
        with pytest.raises(UsageError, match=rf"--precision {asked} with an exported {has} "
                                             r"ONNX model: pass the .safetensors weights"):
            choose_precision(asked, CPU, "auto", cuda_bf16=True, file_precision=has)


@pytest.mark.parametrize(("precision", "backend", "device", "gpus", "providers", "want"), [
    ("bf16", "auto", "cpu", 0, ORT, ("torch", "cpu")),  # ORT is there, bf16 runs on torch
    ("fp16", "auto", "cuda", 1, ORT_GPU, ("torch", "cuda")),
    ("bf16", "auto", "auto", 1, ORT_GPU, ("torch", "cuda")),
    ("fp32", "auto", "cuda", 1, ORT_GPU, ("onnxruntime", "cuda")),  # unchanged at fp32
    ("fp32", "auto", "cpu", 0, None, ("torch", "cpu")),
    ("int8", "auto", "cpu", 0, ORT, ("onnxruntime", "cpu")),
    ("int8", "onnxruntime", "cpu", 1, ORT_GPU, ("onnxruntime", "cpu")),
])
def test_backend_follows_the_precision(precision: str, backend: str, device: str, gpus: int,
                                       providers: list[str] | None,
                                       want: tuple[str, str]) -> None:
    choice = choose_backend(backend, device, gpus, providers, precision=precision)
    assert (choice.backend, str(choice.device)) == want


@pytest.mark.parametrize(("args", "message"), [
    (("torch", "cpu", 0, ORT), r"int8 runs on ONNX Runtime: use --backend onnxruntime"),
    (("auto", "cpu", 0, None), r"--precision int8 needs ONNX Runtime: install the onnx "
                               r"extra"),
    (("auto", "cuda", 1, ORT_GPU), r"int8 runs on ONNX Runtime's CPU provider"),
])
def test_int8_backend_refusals(args: tuple[str, str, int, list[str] | None],
                               message: str) -> None:
    backend, device, gpus, providers = args
    with pytest.raises(UsageError, match=message):
        choose_backend(backend, device, gpus, providers, precision="int8")


def test_reduced_precision_never_runs_an_onnx_file() -> None:
    with pytest.raises(UsageError, match=r"bf16 runs on PyTorch, ONNX Runtime only at fp32 "
                                         r"or int8"):
        choose_backend("auto", "cpu", 0, ORT, onnx_file=True, precision="bf16")


def test_plan_autocast_and_memory_format() -> None:
    assert inference_plan("cpu", None, 0).autocast is None
    cpu_bf16 = inference_plan("cpu", None, 0, "bf16")
    assert cpu_bf16.autocast == torch.bfloat16 and cpu_bf16.channels_last
    assert cpu_bf16.dtype == torch.float32  # weights stay float32: autocast around them
    gpu = {p: inference_plan("cuda", None, 1, p) for p in ("fp32", "bf16", "fp16")}
    assert [gpu[p].channels_last for p in gpu] == [False, True, True]
    assert gpu["fp16"].autocast == torch.float16 and gpu["fp32"].autocast is None
    assert inference_plan("cpu", None, 0, "int8").autocast is None
    assert set(AUTOCAST) | {"fp32", "int8", "auto"} == set(PRECISIONS)
    assert set(BYTES_PER_ELEMENT) == set(PRECISIONS) - {"auto"}


def test_auto_batch_from_free_memory() -> None:
    assert auto_batch(100, 1000) == 5  # half of the free memory
    assert auto_batch(100, 1000, share=0.9) == 9
    assert auto_batch(100, 10**9) == MAX_AUTO_BATCH
    assert auto_batch(10**9, 100) == 1  # never below one tile
    assert auto_batch(0, 100) == MAX_AUTO_BATCH
    spec = get_spec(load_model(pretrained_path(2)))
    fp32, bf16 = (network_bytes(spec, 544, 1, BYTES_PER_ELEMENT[p]) for p in ("fp32", "bf16"))
    assert fp32 == 2 * bf16 == 3 * 4 * 64 * 1088 ** 2
    # a 544-px tile at x2 with 20 GiB free (0.9 GB per tile at fp32): bf16 fits twice
    # the tiles; with 70 GiB free (an H100) both reach the cap
    assert (auto_batch(fp32, 20 << 30), auto_batch(bf16, 20 << 30)) == (11, 23)
    assert auto_batch(fp32, 70 << 30) == MAX_AUTO_BATCH


def test_cpu_plans_keep_their_batch() -> None:
    """On the CPU the batch is ``--batch-size``, or 1 without it, never sized from the
    memory (which would make it larger for this tile); an asked batch stays as asked on
    CUDA too (sizing from free GPU memory is tested on a GPU, in test_cuda)."""
    spec = get_spec(load_model(pretrained_path(2)))
    lay = TileLayout.from_tile(100, 100, 64, 16, 2)
    per_tile = network_bytes(spec, lay.tile, 1, BYTES_PER_ELEMENT["bf16"])
    assert auto_batch(per_tile, 1 << 30) > 1  # sized from even 1 GiB, the batch would grow
    default = inference_plan("cpu", None, 0, "bf16")
    assert default.batch_size == 1
    assert sized(default, spec, lay, None) == default
    asked = inference_plan("cpu", 3, 0, "bf16")
    assert asked.batch_size == 3
    assert sized(asked, spec, lay, 3) == asked
    on_cuda = replace(asked, device=CUDA)
    assert sized(on_cuda, spec, lay, 3) == on_cuda


def test_torch_backend_under_cpu_autocast() -> None:
    model = load_model(pretrained_path(2)).eval()
    x = torch.from_numpy(texture((40, 36), 4, seed=1)[None].astype(np.float32))
    fp32 = TorchBackend(model, CPU, channels_last=True)(x)
    bf16 = TorchBackend(model, CPU, channels_last=True, autocast=torch.bfloat16)
    y = bf16(x)
    assert y.dtype == torch.float32 and y.shape == fp32.shape == (1, 4, 80, 72)
    diff = (y - fp32).abs()
    assert 0 < float(diff.max()) < 5e-3  # bf16 differs, by a few DN
    staged = bf16.stage(x)
    assert isinstance(staged, Staged) and staged.device is None and staged.ready is None
    torch.testing.assert_close(bf16(staged), y, rtol=0, atol=0)


def _scene(path: Path) -> Path:
    return write_geotiff(path, (texture((90, 70), 4, seed=3) * 10000).astype(np.uint16),
                         nodata=0)


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int32), ds.tags()


#: Measured on the generated scene below (tile 64, overlap 16): difference to fp32 in DN,
#: (99th percentile, max): bf16 x2 (3, 9), x4 (6, 20); int8 x2 (13, 27), x4 (28, 68); the
#: eleventh session's s2sr_x2 (a6f357168e14): bf16 (4, 12), int8 (17, 38) (the one before
#: it: int8 (16, 33) on the same AVX2 CPU).
BOUNDS = {("bf16", 2): (5, 15), ("bf16", 4): (8, 30), ("int8", 2): (20, 48),
          ("int8", 4): (35, 90)}


@pytest.mark.parametrize("scale", [2, 4])
def test_reduced_precision_close_to_fp32_with_the_shipped_models(
        tmp_path: Path, scale: int, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime", reason="int8 runs on ONNX Runtime (pip install "
                                              "'s2sr[onnx]')")
    try:
        importlib.metadata.distribution("bigearthnet-common")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("int8 calibrates on the demo sample: pip install 's2sr[demo]'")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = _scene(tmp_path / "in.tif")
    weights = pretrained_path(scale)
    opts = {"tile": 64, "overlap": 16, "threads": 1, "device": "cpu"}
    ref, tags = _read(predict(src, tmp_path / "fp32.tif", weights, backend="torch", **opts))
    assert tags["S2SR_PRECISION"] == "fp32"  # auto on the CPU
    for precision, backend in (("bf16", "torch"), ("int8", "onnxruntime")):
        data, tags = _read(predict(src, tmp_path / f"{precision}.tif", weights,
                                   precision=precision, **opts))
        assert (tags["S2SR_PRECISION"], tags["S2SR_BACKEND"]) == (precision, backend)
        diff = np.abs(data - ref)
        p99, worst = BOUNDS[(precision, scale)]
        assert 0 < np.percentile(diff, 99) <= p99 and diff.max() <= worst, precision
    cached = list((tmp_path / "cache" / "s2sr").glob("int8-*.onnx"))
    assert len(cached) == 1


def test_super_resolve_takes_a_precision() -> None:
    model = load_model(pretrained_path(2))
    x = (texture((48, 40), 4, seed=5) * 10000).astype(np.uint16)
    fp32 = super_resolve(x, model, device="cpu", precision="fp32", tile=32, overlap=8)
    bf16 = super_resolve(x, model, device="cpu", precision="bf16", tile=32, overlap=8)
    diff = np.abs(bf16.astype(np.int32) - fp32)
    assert 0 < diff.max() <= 15
    np.testing.assert_array_equal(
        super_resolve(x, model, device="cpu", tile=32, overlap=8), fp32)  # auto = fp32
    with pytest.raises(UsageError, match="int8 runs on ONNX Runtime"):
        super_resolve(x, model, precision="int8")  # its backend defaults to torch
    with pytest.raises(UsageError, match="unknown --precision"):
        super_resolve(x, model, precision="half")


def test_fp16_overflow_runs_the_batch_again_at_fp32(caplog: pytest.LogCaptureFixture) -> None:
    """Activations beyond fp16's 65504 become inf under fp16 autocast: the backend runs that
    batch again at fp32 (once warned), so the output is the fp32 one, finite. Exercised
    through CPU autocast to float16, the same code path as CUDA's."""
    model = load_model(pretrained_path(2)).eval()
    with torch.no_grad():
        model.head.weight.mul_(1e4)  # type: ignore[union-attr, operator]
    x = torch.rand(1, 4, 24, 24) * 0.3
    fp32 = TorchBackend(model, CPU, channels_last=False)(x)
    assert torch.isfinite(fp32).all()
    with torch.autocast("cpu", dtype=torch.float16):
        assert not torch.isfinite(model(x)).all()  # the overflow is real
    fp16 = TorchBackend(model, CPU, channels_last=False, autocast=torch.float16)
    with caplog.at_level("WARNING"):
        y = fp16(x)
        fp16(x)
    assert torch.equal(y, fp32)
    assert sum("overflowed fp16" in r.getMessage() for r in caplog.records) == 1
