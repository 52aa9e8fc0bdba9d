"""Factories for small GeoTIFFs, SAFE products and models; paths to the shared real data."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from s2sr.models import build_model, save_model

#: ``../shared`` beside the checkout: the real imagery and weights (CI has it, a plain
#: clone does not).
SHARED_ROOT = Path(__file__).resolve().parents[2] / "shared"
SHARED = SHARED_ROOT / "data"
SENTINEL2 = SHARED / "sentinel2"


def needs_shared(path: Path, what: str = "the real imagery") -> pytest.MarkDecorator:
    """Skip unless ``path`` (under ``../shared``) exists, with a reason that says the truth.

    Args:
        path: the file or folder the test reads.
        what: what it is, in a few words.
    """
    shown = f"../shared/{path.relative_to(SHARED_ROOT).as_posix()}"
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"needs {shown} ({what}; CI has ../shared, a plain clone does not)",
    )


requires_shared = needs_shared(SENTINEL2, "the real Sentinel-2 imagery")


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

UTM_TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def field(shape: tuple[int, int], bands: int, seed: int = 0, dtype: str = "uint16") -> np.ndarray:
    """A smooth, textured reflectance-like field (DN = reflectance x 10000)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((bands, h, w), np.float32)
    for b in range(bands):
        fx, fy, ph = rng.uniform(0.02, 0.2, 3)
        base = 800 + 300 * b + 400 * np.sin(fx * xx + ph) * np.cos(fy * yy)
        out[b] = base + rng.normal(0, 60, (h, w))
    if np.issubdtype(np.dtype(dtype), np.floating):
        return (out / 10000.0).astype(dtype)
    return np.clip(out, 1, None).astype(dtype)


def write_geotiff(
    path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32633",
    transform: Affine = UTM_TRANSFORM, nodata: float | None = None,
    descriptions: Sequence[str | None] | None = ("B02", "B03", "B04", "B08"),
    driver: str = "GTiff", **profile: Any,
) -> Path:
    """Write ``(C, H, W)`` data as a GeoTIFF (or another driver)."""
    kwargs: dict[str, Any] = {
        "driver": driver, "width": data.shape[2], "height": data.shape[1],
        "count": data.shape[0], "dtype": data.dtype.name, "transform": transform,
        "nodata": nodata, **profile,
    }
    if crs is not None:
        kwargs["crs"] = crs
    with rasterio.open(path, "w", **kwargs) as dst:
        dst.write(data)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)[: data.shape[0]]
    return path


@pytest.fixture
def geotiff(tmp_path: Path) -> Callable[..., Path]:
    """``geotiff(name="in.tif", shape=(H, W), bands=4, dtype=..., **write_kwargs)``."""

    def make(name: str = "in.tif", shape: tuple[int, int] = (96, 80), bands: int = 4,
             dtype: str = "uint16", seed: int = 0, data: np.ndarray | None = None,
             **kwargs: Any) -> Path:
        arr = field(shape, bands, seed, dtype) if data is None else data
        return write_geotiff(tmp_path / name, arr, **kwargs)

    return make


_MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{lvl}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lvl}.xsd">
<n1:General_Info><Product_Info>
<PRODUCT_START_TIME>2023-06-01T10:20:31.024Z</PRODUCT_START_TIME>
<PROCESSING_LEVEL>Level-{lvl}</PROCESSING_LEVEL>
<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
</Product_Info>
<Product_Image_Characteristics>
{quant}
{offsets}
<Spectral_Information_List>{spectral}</Spectral_Information_List>
</Product_Image_Characteristics>
</n1:General_Info></n1:Level-{lvl}_User_Product>
"""
_IDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def make_safe(root: Path, data: np.ndarray, *, level: str = "L2A", baseline: str = "04.00",
              offset: int = -1000, as_zip: bool = False,
              bands: Sequence[str] = ("B02", "B03", "B04", "B08")) -> Path:
    """A miniature Sentinel-2 product: MTD XML plus JPEG2000 band files, optionally zipped."""
    lvl = "2A" if level == "L2A" else "1C"
    name = f"S2A_MSIL{lvl}_20230601T102031_N{baseline.replace('.', '')}_R065_T33UUB_20230601T1.SAFE"
    safe = root / name
    tile = "L2A_T33UUB_A041000_20230601T102031" if level == "L2A" else "L1C_T33UUB_A041000"
    img = safe / "GRANULE" / tile / "IMG_DATA"
    if level == "L2A":
        img = img / "R10m"
    img.mkdir(parents=True)
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>' for i, b in enumerate(_IDS))
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    new = float(baseline) >= 4.0
    offsets = ""
    if new:
        items = "".join(f'<{tag} band_id="{i}">{offset}</{tag}>' for i in range(13))
        offsets = f"<{tag}_VALUES_LIST>{items}</{tag}_VALUES_LIST>"
    quant = ("<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000"
             "</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>" if level == "L2A"
             else '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>')
    (safe / f"MTD_MSIL{lvl}.xml").write_text(
        _MTD.format(lvl=lvl, baseline=baseline, quant=quant, offsets=offsets, spectral=spectral))
    suffix = "_10m" if level == "L2A" else ""
    for k, band in enumerate(bands):
        write_geotiff(img / f"T33UUB_20230601T102031_{band}{suffix}.jp2", data[k:k + 1],
                      descriptions=None, driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    # A 20 m band file that must be ignored by the 10 m reader.
    if level == "L2A":
        r20 = safe / "GRANULE" / tile / "IMG_DATA" / "R20m"
        r20.mkdir()
        write_geotiff(r20 / "T33UUB_20230601T102031_B02_20m.jp2", data[:1, ::2, ::2],
                      descriptions=None, driver="JP2OpenJPEG",
                      transform=UTM_TRANSFORM @ Affine.scale(2))
    if not as_zip:
        return safe
    archive = root / (safe.name[:-5] + ".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(safe.rglob("*")):
            zf.write(file, file.relative_to(root).as_posix())
    return archive


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


def texture(shape: tuple[int, int], bands: int = 4, seed: int = 0) -> np.ndarray:
    """Landscape-like reflectance ``(bands, H, W)``: multi-scale filtered noise plus fields
    with sharp edges, for registration and pair tests that must run without ../shared."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    h, w = shape
    base = sum(ndimage.gaussian_filter(rng.normal(size=(h, w)), s) * s for s in (1, 3, 8))
    fields = ndimage.zoom(rng.uniform(0, 1, (h // 24 + 2, w // 24 + 2)), 24, order=0)[:h, :w]
    out = np.empty((bands, h, w), np.float32)
    for b in range(bands):
        out[b] = 0.08 + 0.03 * b + 0.01 * base + 0.06 * fields * (1 + 0.2 * b)
    return np.clip(out, 0.005, 0.6)


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


def write_config(path: Path, dataset: Path, **overrides: Any) -> Path:
    """A tiny, fast experiment (edsr-tiny, pixel loss), with overrides."""
    import yaml

    cfg: dict[str, Any] = {
        "name": "test", "seed": 0, "batch_size": 8,
        "model": {"name": "edsr-tiny", "scale": 2},
        "data": {"datasets": [str(dataset)], "kind": ["SE20>SE10"], "max_val_patches": 8},
        "loss": {"pixel": 1.0},
        "stages": [{"epochs": 2, "lr": 3e-3, "patch": 8}, {"epochs": 1, "lr": 1e-3}],
    }
    for key, value in overrides.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def can_mount_tmpfs() -> bool:
    """Whether ``unshare -rm`` can mount a small tmpfs here (user namespaces on): the way
    the disk-full tests fill a disk for real."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


#: Skip a test that needs ONNX Runtime and onnx (the optional extra ``s2sr[onnx]``).
no_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime/onnx are not installed (the optional extra: pip install 's2sr[onnx]')")


def run_cli(*args: str | Path) -> tuple[int, str]:
    """``s2sr ARGS`` in this process: its exit code and output. An exception other than the
    CLI's own exit is raised again: a traceback would have reached the user."""
    from click.testing import CliRunner

    from s2sr.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    """The single ``s2sr: error:`` line of a command's output (warnings may surround it);
    no traceback."""
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("s2sr: error:")]
    assert len(lines) == 1, output
    return lines[0]
