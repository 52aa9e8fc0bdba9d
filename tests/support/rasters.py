"""Small synthetic rasters: textured fields, GeoTIFFs and miniature Sentinel-2 products."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

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
    return zip_product(safe) if as_zip else safe


def zip_product(safe: Path) -> Path:
    """The ``.zip`` of a SAFE folder beside it (``NAME.zip``, the ``NAME.SAFE/`` folder
    inside, as ESA distributes products)."""
    archive = safe.parent / (safe.name[:-5] + ".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(safe.rglob("*")):
            zf.write(file, file.relative_to(safe.parent).as_posix())
    return archive

