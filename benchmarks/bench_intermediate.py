"""Codec of the intermediate GeoTIFF that ``s2sr predict --cog`` writes before COG conversion.

Writes a 2048 x 2048, 4-band uint16 raster (a real Sentinel-2 crop upsampled and tiled, so
that it compresses like a super-resolved output, not like noise) the way
:class:`s2sr.io.writer.RasterWriter` does (512 px tiles, pixel interleave, 512-row windows)
with each candidate codec, then reads it back once (as the COG conversion does), and prints
seconds and file size::

    .venv/bin/python benchmarks/bench_intermediate.py [--size 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sentinel2"
CODECS: dict[str, dict[str, object]] = {
    "none": {"compress": "none"},
    "zstd-1": {"compress": "zstd", "zstd_level": 1, "predictor": 2},
    "zstd-1-nopred": {"compress": "zstd", "zstd_level": 1},
    "lzw-pred2": {"compress": "lzw", "predictor": 2},
    "deflate-6-pred2 (final output)": {"compress": "deflate", "predictor": 2},
}


def _data(size: int) -> np.ndarray:
    src = SHARED / "dsen2_T33UUB_20170527_L1C.tif"
    if src.exists():
        with rasterio.open(src) as ds:
            names = list(ds.descriptions)
            idx = [names.index(b) + 1 for b in ("B02", "B03", "B04", "B08")]
            crop = ds.read(idx).astype(np.float32)
        up = ndimage.zoom(crop, (1, 2, 2), order=3)
    else:  # smooth synthetic texture when ../shared is absent
        rng = np.random.default_rng(0)
        up = ndimage.gaussian_filter(rng.normal(1500, 800, (4, 512, 512)), (0, 2, 2))
    reps = (1, -(-size // up.shape[1]), -(-size // up.shape[2]))
    return np.clip(np.tile(up, reps)[:, :size, :size], 0, 65535).astype(np.uint16)


def _write(path: Path, data: np.ndarray, codec: dict[str, object]) -> float:
    c, h, w = data.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": "uint16",
               "tiled": True, "blockxsize": 512, "blockysize": 512, "interleave": "pixel",
               "BIGTIFF": "IF_SAFER", "crs": "EPSG:32633",
               "transform": Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0), **codec}
    t0 = time.perf_counter()
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, h, 512):
            dst.write(data[:, row:row + 512], window=Window(0, row, w, min(512, h - row)))
    return time.perf_counter() - t0


def _read(path: Path) -> float:
    t0 = time.perf_counter()
    with rasterio.open(path) as ds:
        ds.read()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = _data(args.size)
    print(f"{args.size}x{args.size} px, 4 bands uint16 ({data.nbytes / 1e6:.1f} MB raw); "
          f"best of {args.repeat}")
    print(f"{'codec':32s} {'write s':>8s} {'read s':>8s} {'MB':>8s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in CODECS.items():
            path = Path(tmp) / "out.tif"
            write = min(_write(path, data, codec) for _ in range(args.repeat))
            read = min(_read(path) for _ in range(args.repeat))
            size = path.stat().st_size
            print(f"{name:32s} {write:8.2f} {read:8.2f} {size / 1e6:8.1f} "
                  f"{data.nbytes / size:6.2f}")
            path.unlink()


if __name__ == "__main__":
    main()
