"""Backend choice (a pure function, CUDA branches included, tested on the CPU), thread
defaults, and the PyTorch backend the engine wraps models in."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from s2sr.core.errors import UsageError
from s2sr.inference import super_resolve
from s2sr.inference.backends import (
    MAX_THREADS,
    TorchBackend,
    check_threads,
    choose_backend,
    count_physical_cores,
    default_threads,
    execution_providers,
    physical_cores,
    torch_threads,
)
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.engine import TiledSuperResolver
from s2sr.inference.tiling import TileLayout
from s2sr.models import build_model
from support.rasters import field

CPU_ORT = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU_ORT = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("backend", "device", "gpus", "providers", "want"), [
    # auto: ONNX Runtime on the CPU when installed, PyTorch when it is not
    ("auto", "cpu", 0, CPU_ORT, ("onnxruntime", "cpu")),
    ("auto", "auto", 0, CPU_ORT, ("onnxruntime", "cpu")),
    ("auto", "cpu", 0, None, ("torch", "cpu")),
    ("auto", "auto", 0, None, ("torch", "cpu")),
    # auto on CUDA: ONNX Runtime only with its CUDA provider (onnxruntime-gpu)
    ("auto", "cuda", 1, CPU_ORT, ("torch", "cuda")),
    ("auto", "auto", 1, CPU_ORT, ("torch", "cuda")),
    ("auto", "cuda", 1, GPU_ORT, ("onnxruntime", "cuda")),
    ("auto", "cuda:1", 2, GPU_ORT, ("onnxruntime", "cuda:1")),
    ("auto", "cuda", 1, None, ("torch", "cuda")),
    # a GPU machine asked for nothing in particular, ONNX Runtime without CUDA: CPU
    ("onnxruntime", "auto", 1, CPU_ORT, ("onnxruntime", "cpu")),
    ("onnxruntime", "cuda", 1, GPU_ORT, ("onnxruntime", "cuda")),
    ("onnxruntime", "cpu", 0, CPU_ORT, ("onnxruntime", "cpu")),
    ("torch", "cpu", 0, CPU_ORT, ("torch", "cpu")),
    ("torch", "cuda", 1, GPU_ORT, ("torch", "cuda")),
])
def test_backend_choice(backend: str, device: str, gpus: int, providers: list[str] | None,
                        want: tuple[str, str]) -> None:
    choice = choose_backend(backend, device, gpus, providers)
    assert (choice.backend, str(choice.device)) == want


@pytest.mark.parametrize(("device", "gpus", "providers", "want"), [
    ("auto", 0, CPU_ORT, ("onnxruntime", "cpu")),
    ("auto", 1, CPU_ORT, ("onnxruntime", "cpu")),  # the GPU cannot run it: CPU
    ("auto", 1, GPU_ORT, ("onnxruntime", "cuda")),
])
def test_an_onnx_file_runs_on_onnx_runtime(device: str, gpus: int, providers: list[str],
                                           want: tuple[str, str]) -> None:
    for backend in ("auto", "onnxruntime"):
        choice = choose_backend(backend, device, gpus, providers, onnx_file=True)
        assert (choice.backend, str(choice.device)) == want


@pytest.mark.parametrize(("args", "message"), [
    (("torch", "cpu", 0, CPU_ORT, True), "--backend torch cannot run an ONNX model"),
    (("auto", "cpu", 0, None, True), r"an ONNX model runs on ONNX Runtime: install the onnx "
                                     r"extra \(pip install 's2sr\[onnx\]'\)"),
    (("onnxruntime", "cpu", 0, None, False), "--backend onnxruntime needs ONNX Runtime: "
                                             "install"),
    (("onnxruntime", "cuda", 1, CPU_ORT, False), "--device cuda with ONNX Runtime needs its "
                                                 "CUDA provider.*install onnxruntime-gpu"),
    (("onnxruntime", "cuda", 0, GPU_ORT, False), "no CUDA GPU is available"),
    (("tensorrt", "cpu", 0, CPU_ORT, False), "unknown --backend 'tensorrt'"),
])
def test_backend_refusals_name_the_fix(args: tuple, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        choose_backend(*args[:4], onnx_file=args[4])


def test_execution_providers_put_the_gpu_first() -> None:
    assert execution_providers(torch.device("cpu")) == ["CPUExecutionProvider"]
    assert execution_providers(torch.device("cuda:1")) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert execution_providers(torch.device("cuda"))[0] == (
        "CUDAExecutionProvider", {"device_id": 0})


def test_physical_cores_count_smt_siblings_once() -> None:
    # 2 packages x 2 cores x 2 threads; CPUs n and n+4 are siblings
    topo = {n: (str(n // 2 % 2), str(n % 2)) for n in range(8)}
    assert count_physical_cores(range(8), topo.get) == 4
    assert count_physical_cores([0, 4], topo.get) == 1  # siblings: one core
    assert count_physical_cores([0, 1, 2], topo.get) == 3
    assert count_physical_cores([0, 9], topo.get) is None  # topology unknown for CPU 9
    assert count_physical_cores([], topo.get) is None


def test_physical_cores_of_this_machine_within_its_affinity() -> None:
    cores = physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("env", "want"), [
    ({}, 6), ({"OMP_NUM_THREADS": "3"}, 3), ({"OMP_NUM_THREADS": " 2 "}, 2),
    ({"OMP_NUM_THREADS": "0"}, 6), ({"OMP_NUM_THREADS": "x"}, 6),
    ({"OMP_NUM_THREADS": "-4"}, 6), ({"OMP_NUM_THREADS": str(MAX_THREADS + 1)}, 6),
])
def test_default_threads(env: dict[str, str], want: int) -> None:
    assert default_threads(env, cores=6) == want


def test_threads_bounds() -> None:
    assert check_threads(None) is None and check_threads(3) == 3
    for bad in (0, -1, MAX_THREADS + 1, True, 2.0):
        with pytest.raises(UsageError, match="--threads must be an integer from 1"):
            check_threads(bad)  # type: ignore[arg-type]


def test_torch_threads_set_and_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_engine_given_a_backend_equals_engine_given_the_model() -> None:
    """The engine wraps a model in TorchBackend; handing it one (or any callable backend)
    changes nothing in tiling or seams."""
    torch.manual_seed(0)
    model = build_model("edsr-tiny", scale=2).eval()
    data = field((50, 44), 4)
    lay = TileLayout.from_tile(50, 44, 32, 8, 2)
    radiometry = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, None)
    outs = []
    for runner in (model, TorchBackend(model, torch.device("cpu"), channels_last=False)):
        out = np.zeros((4, 100, 88), np.uint16)

        def write(window: Window, block: np.ndarray, out: np.ndarray = out) -> None:
            r, c = int(window.row_off), int(window.col_off)
            out[:, r:r + block.shape[1], c:c + block.shape[2]] = block

        engine = TiledSuperResolver(runner, lay, radiometry, np.zeros(4), torch.device("cpu"))
        engine.run(lambda w: data[:, w.row_off:w.row_off + w.height,
                                  w.col_off:w.col_off + w.width], write)
        outs.append(out.astype(np.int32))
    assert np.abs(outs[0] - outs[1]).max() <= 1
    expected = super_resolve(data, model, tile=32, overlap=8, device="cpu")
    np.testing.assert_array_equal(outs[0], expected.astype(np.int32))


def test_default_tile_per_backend(tmp_path: os.PathLike[str]) -> None:
    """ONNX Runtime's x2 default tile is 288 px (its arena keeps the largest tile's peak),
    PyTorch's 544; x4 is 288 for both; --tile still wins; the tag records what ran."""
    from pathlib import Path

    from s2sr.inference.predict import prepare_run
    from s2sr.inference.tiling import default_tile, fit_layout
    from s2sr.models import pretrained_path
    from support.rasters import texture, write_geotiff

    assert (default_tile(2, "onnxruntime"), default_tile(2, "torch")) == (288, 544)
    assert default_tile(4, "onnxruntime") == default_tile(4, "torch") == 288
    assert fit_layout(5000, 5000, 2, None, None, "onnxruntime").tile == 288
    assert fit_layout(5000, 5000, 2, 256, None, "onnxruntime").tile == 256
    pytest.importorskip("onnxruntime", reason="ONNX Runtime (pip install 's2sr[onnx]')")
    src = write_geotiff(Path(tmp_path) / "in.tif",
                        (texture((600, 600), 4) * 10000).astype(np.uint16))
    for backend, want in (("onnxruntime", "288/32"), ("torch", "544/32")):
        with prepare_run(src, pretrained_path(2), backend=backend, device="cpu",
                         engine="tiled") as run:
            assert run.tags["S2SR_TILE"] == want and run.tags["S2SR_BACKEND"] == backend
