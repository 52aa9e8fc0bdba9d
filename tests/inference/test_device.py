"""Device and precision selection of ``s2sr predict``, tested on any machine (CPU included).

The choices are pure functions of the request and of the GPUs present, so the CUDA
branches are exercised here by passing the GPU count; the end-to-end checks use this
machine's real CUDA state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from s2sr.cli.main import cli
from s2sr.core.errors import UsageError
from s2sr.inference import predict, super_resolve
from s2sr.models import load_model
from s2sr.models.device import (
    DEFAULT_BATCH,
    cuda_device_count,
    inference_plan,
    resolve_device,
    select_device,
)
from support.rasters import field, write_geotiff

no_cuda = pytest.mark.skipif(torch.cuda.is_available(),
                             reason="checks the refusal of --device cuda on a machine without "
                                    "a CUDA GPU; this one has one")


@pytest.mark.parametrize(("request_", "gpus", "want"), [
    ("auto", 0, "cpu"), ("auto", 1, "cuda"), ("auto", 4, "cuda"),
    ("cpu", 0, "cpu"), ("cpu", 2, "cpu"),
    ("cuda", 1, "cuda"), ("cuda:0", 1, "cuda:0"), ("cuda:3", 4, "cuda:3"),
])
def test_device_choice(request_: str, gpus: int, want: str) -> None:
    assert select_device(request_, gpus) == torch.device(want)


@pytest.mark.parametrize("request_", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_with_the_fix(request_: str) -> None:
    with pytest.raises(UsageError, match=rf"--device {request_} asked but no CUDA GPU is "
                                         r"available: use --device cpu"):
        select_device(request_, 0)


def test_gpu_index_beyond_those_present_is_refused() -> None:
    with pytest.raises(UsageError, match=r"cuda:2 asked but this machine has 2 CUDA GPUs "
                                         r"\(cuda:0 to cuda:1\)"):
        select_device("cuda:2", 2)
    with pytest.raises(UsageError, match=r"has 1 CUDA GPU \(cuda:0 to cuda:0\)"):
        select_device("cuda:1", 1)


@pytest.mark.parametrize("request_", ["gpu", "CUDA", "cuda:x", "cuda:", "mps", "", "cpu:0"])
def test_unknown_device_is_refused(request_: str) -> None:
    with pytest.raises(UsageError, match=r"unknown --device .*: use auto, cpu or cuda"):
        select_device(request_, 1)


def test_resolve_device_asks_this_machine() -> None:
    assert cuda_device_count() == (torch.cuda.device_count() if torch.cuda.is_available()
                                   else 0)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(want)
    assert resolve_device("cpu") == torch.device("cpu")


def test_plan_on_a_machine_without_cuda() -> None:
    """``auto`` without a GPU: CPU, one tile per pass, float32, channels-last."""
    plan = inference_plan("auto", None, 0)
    assert plan.device == torch.device("cpu")
    assert plan.batch_size == 1 == DEFAULT_BATCH["cpu"]
    assert plan.dtype == torch.float32 and plan.channels_last


def test_plan_on_a_machine_with_cuda() -> None:
    """``auto`` with a GPU: CUDA, eight tiles per pass, float32 (no autocast), default
    memory format."""
    plan = inference_plan("auto", None, 1)
    assert plan.device == torch.device("cuda")
    assert plan.batch_size == 8 == DEFAULT_BATCH["cuda"]
    assert plan.dtype == torch.float32 and not plan.channels_last
    assert inference_plan("cuda", 3, 1).batch_size == 3
    assert inference_plan("cpu", None, 1).device == torch.device("cpu")


def test_plan_refusals_device_first() -> None:
    with pytest.raises(UsageError, match="--batch-size must be at least 1, got 0"):
        inference_plan("cpu", 0, 0)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        inference_plan("cuda", 0, 0)  # both wrong: the device is named first


@no_cuda
def test_predict_refuses_cuda_before_reading_anything(tmp_path: Path,
                                                      tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    out = tmp_path / "out.tif"
    with pytest.raises(UsageError, match="no CUDA GPU is available: use --device cpu"):
        predict(src, out, tiny_weights, device="cuda")
    assert not out.exists()
    result = CliRunner().invoke(cli, ["predict", str(src), "-o", str(out), "--weights",
                                      str(tiny_weights), "--device", "cuda"])
    assert result.exit_code == 2
    assert "s2sr: error: --device cuda asked but no CUDA GPU is available" in result.output
    assert not out.exists()
    with pytest.raises(UsageError, match="no CUDA GPU"):
        super_resolve(np.zeros((4, 8, 8), np.float32), load_model(tiny_weights),
                      device="cuda")


@no_cuda
def test_auto_without_cuda_runs_on_the_cpu_as_cpu_does(tiny_weights: Path) -> None:
    model = load_model(tiny_weights)
    x = (field((20, 24), 4) * 1e-4).astype(np.float32)
    auto = super_resolve(x, model, device="auto", tile=16, overlap=4)
    cpu = super_resolve(x, model, device="cpu", tile=16, overlap=4)
    assert auto.dtype == np.float32 and auto.shape == (4, 40, 48)
    np.testing.assert_array_equal(auto, cpu)
    assert next(model.parameters()).device.type == "cpu"
    assert next(model.parameters()).dtype == torch.float32
