"""Benchmark of whole-scene prediction against the raw network (issue #2).

Prints, on the current machine:

(a) raw network throughput: megapixels of *input* per second through the network alone,
    one large in-memory batch (same model, threads and memory format as ``s2sr predict``);
(b) ``s2sr predict`` end to end (a fresh process: start-up, reading, tiling, network,
    blending, writing) on generated 2048x2048 and 4096x4096 4-band uint16 GeoTIFFs,
    in input megapixels per second, with the peak RSS of that process;
and the ratio (b)/(a) and the RSS ratio 4096/2048.

Targets at default settings on 2 CPU cores: (b)/(a) >= 0.85, peak RSS <= 1.5 GB, and
peak RSS the same for 2048 and 4096 within 10 %.

Usage: python benchmarks/bench_predict.py [--sizes 2048 4096] [--scale 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from s2sr.models import build_model, save_model

CHILD = """
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:]).returncode
wall = time.perf_counter() - t
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def make_scene(path: Path, size: int, seed: int = 0) -> None:
    """A textured 4-band uint16 reflectance scene, written block by block."""
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(10, 0, 500000, 0, -10, 5000000),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "nodata": 0,
    }
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = ("B02", "B03", "B04", "B08")
        for _, window in dst.block_windows(1):
            h, w = window.height, window.width
            yy, xx = np.mgrid[0:h, 0:w]
            base = 1500 + 700 * np.sin((xx + window.col_off) / 37.0) * np.cos(
                (yy + window.row_off) / 23.0)
            block = np.stack([base + 300 * b + rng.normal(0, 150, (h, w)) for b in range(4)])
            dst.write(np.clip(block, 1, 65535).astype("uint16"), window=window)


def raw_throughput(model: torch.nn.Module, shape: tuple[int, int, int, int] = (4, 4, 512, 512),
                   repeats: int = 3) -> float:
    """Input megapixels per second through the network alone, one in-memory batch."""
    x = (torch.rand(*shape) * 0.3).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    times = []
    with torch.inference_mode():
        model(x[:1, :, :128, :128])  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return x.shape[0] * x.shape[2] * x.shape[3] / statistics.median(times) / 1e6


def run_predict(scene: Path, weights: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``s2sr predict`` process."""
    exe = Path(sys.executable).with_name("s2sr")
    cmd = [sys.executable, "-c", CHILD, str(exe), "predict", str(scene), "-o", str(out),
           "--weights", str(weights), "--overwrite", "--quiet", *extra]
    wall, rss_kb, rc = subprocess.run(cmd, capture_output=True, text=True,
                                      check=True).stdout.split()
    if rc != "0":
        raise SystemExit(f"s2sr predict failed with exit code {rc}")
    return float(wall), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep scenes here")
    parser.add_argument("--extra", default="", help="extra predict options, quoted")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("edsr", scale=args.scale)
    weights = save_model(model, workdir / f"edsr_x{args.scale}.safetensors")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"EDSR 8x64 x{args.scale}")
    raw = raw_throughput(model)
    tile = 544 if args.scale == 2 else 288
    raw_tile = raw_throughput(model, (1, 4, tile, tile))
    print(f"(a) raw network, one 4x512x512 batch: {raw:.4f} input MP/s")
    print(f"    (for reference: one {tile}x{tile} tile, predict's default: {raw_tile:.4f} "
          "input MP/s)")
    results = {}
    for size in args.sizes:
        scene = workdir / f"scene_{size}.tif"
        if not scene.exists():
            make_scene(scene, size)
        wall, rss = run_predict(scene, weights, workdir / f"out_{size}.tif", args.extra.split())
        mps = size * size / wall / 1e6
        results[size] = {"wall_s": wall, "input_MP_per_s": mps, "peak_rss_MB": rss,
                         "ratio_b_over_a": mps / raw}
        print(f"(b) predict {size}x{size}: {wall:.1f} s, {mps:.4f} input MP/s, "
              f"(b)/(a) = {mps / raw:.3f} (vs one tile: {mps / raw_tile:.3f}), "
              f"peak RSS {rss:.0f} MB")
    if len(args.sizes) >= 2:
        lo, hi = results[args.sizes[0]], results[args.sizes[-1]]
        print(f"peak RSS {args.sizes[-1]}/{args.sizes[0]} = "
              f"{hi['peak_rss_MB'] / lo['peak_rss_MB']:.3f}")
    print(json.dumps({"raw_MP_per_s": raw, "raw_tile_MP_per_s": raw_tile, "predict": results}))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(benchmark process itself: peak RSS {peak:.0f} MB)")


if __name__ == "__main__":
    main()
