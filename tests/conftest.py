"""Fixtures shared by every test: small GeoTIFFs, tiny models, a Wald dataset, and the CPU
for ``--device auto`` unless a test is marked ``gpu``. Plain helpers are in tests/support/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from s2sr.models import build_model, save_model
from support.rasters import field, texture, write_geotiff


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request: pytest.FixtureRequest,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with a CUDA GPU, ``--device auto`` means the CPU in every test not
    marked ``gpu``: their expectations (exact tiling invariance, DN bounds) are the CPU's
    fp32 ones, and ``auto`` would run them on the GPU at fp16 (CUDA_VISIBLE_DEVICES is left
    alone: changed in-process it breaks CUDA's lazy start for the gpu tests). Nothing changes
    where there is no GPU (CI)."""
    if request.node.get_closest_marker("gpu") is not None or not torch.cuda.is_available():
        return
    import importlib

    for name in ("s2sr.models.device", "s2sr.inference.predict"):
        monkeypatch.setattr(importlib.import_module(name), "cuda_device_count", lambda: 0)


@pytest.fixture
def geotiff(tmp_path: Path) -> Callable[..., Path]:
    """``geotiff(name="in.tif", shape=(H, W), bands=4, dtype=..., **write_kwargs)``."""

    def make(name: str = "in.tif", shape: tuple[int, int] = (96, 80), bands: int = 4,
             dtype: str = "uint16", seed: int = 0, data: np.ndarray | None = None,
             **kwargs: Any) -> Path:
        arr = field(shape, bands, seed, dtype) if data is None else data
        return write_geotiff(tmp_path / name, arr, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a tiny x2 EDSR on B02, B03, B04, B08 (seeded)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_x2.safetensors"
    return save_model(build_model("edsr-tiny", scale=2), path)


@pytest.fixture(scope="session")
def tiny_weights_x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a tiny x4 EDSR on B02, B03, B04, B08 (seeded)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "tiny_x4.safetensors"
    return save_model(build_model("edsr-tiny", scale=4), path)


@pytest.fixture(scope="session")
def rgb_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a tiny x2 EDSR on B02, B03, B04 only."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("weights") / "tiny_rgb_x2.safetensors"
    return save_model(build_model("edsr-tiny", bands=("B02", "B03", "B04"), scale=2), path)


@pytest.fixture(scope="session")
def wald_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SE20>SE10 pairs (patch 12 -> 24) from three synthetic scenes: 2 train, 1 val."""
    root = tmp_path_factory.mktemp("wald")
    for k, split in enumerate(("train", "train", "val")):
        from s2sr.data import DegradeOptions, degrade_scene

        dn = np.rint(texture((144, 144), seed=30 + k) * 10000).astype(np.uint16)
        scene = write_geotiff(root / f"scene{k}.tif", dn)
        degrade_scene(scene, root / "ds", DegradeOptions(patch=12, split=split,
                                                        site=f"s{k}"))
    return root / "ds"
