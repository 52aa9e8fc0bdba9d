"""Benchmark of pair building (issue #3): throughput on large generated scene pairs.

Generates a Sentinel-2-like scene of N x N pixels (10 m) and a reference of 2N x 2N (5 m)
from a synthetic landscape with known perturbations (shift, gain/offset, blur), then runs
``s2sr pairs build`` in a fresh process and prints wall time, Sentinel-2 megapixels per
second, patches per second and peak RSS. The scenes are written block by block, and the
builder reads window by window, so memory should not follow the scene size.

Usage: python benchmarks/bench_pairs.py [--sizes 1024 2048] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

from s2sr.data.degrade import degrade

CHILD = """
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def _landscape(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = sum(ndimage.gaussian_filter(rng.normal(size=(h, w)).astype(np.float32), s) * s
               for s in (1, 3, 8))
    fields = ndimage.zoom(rng.uniform(0, 1, (h // 24 + 2, w // 24 + 2)), 24, order=0)[:h, :w]
    return np.stack([0.08 + 0.03 * b + 0.01 * base + 0.06 * fields * (1 + 0.2 * b)
                     for b in range(4)]).astype(np.float32)


def make_scenes(folder: Path, n: int) -> tuple[Path, Path]:
    """Write s2_<n>.tif (n x n, 10 m) and ref_<n>.tif (2n x 2n, 5 m), strip by strip."""
    lr_path, hr_path = folder / f"s2_{n}.tif", folder / f"ref_{n}.tif"
    common = {"driver": "GTiff", "count": 4, "dtype": "uint16", "crs": "EPSG:32633",
              "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    strip = 256
    with rasterio.open(lr_path, "w", width=n, height=n,
                       transform=Affine(10, 0, 500000, 0, -10, 5000000), **common) as lr, \
         rasterio.open(hr_path, "w", width=2 * n, height=2 * n,
                       transform=Affine(5, 0, 500000 + 3.0, 0, -5, 5000000 - 2.0),
                       **common) as hr:
        lr.descriptions = ("B02", "B03", "B04", "B08")
        hr.descriptions = ("blue", "green", "red", "nir")
        gains = np.array([1.1, 0.9, 1.05, 0.95], np.float32)[:, None, None]
        for r in range(0, n, strip):
            truth = _landscape(2 * strip, 2 * n, seed=r)
            lr.write(np.clip(degrade(truth, 2) * 10000, 1, 65535).astype(np.uint16),
                     window=((r, r + strip), (0, n)))
            hr.write(np.clip(truth * gains * 10000 + 50, 1, 65535).astype(np.uint16),
                     window=((2 * r, 2 * r + 2 * strip), (0, 2 * n)))
    return lr_path, hr_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-pairs-"))
    folder.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("s2sr"))
    results = {}
    for n in args.sizes:
        lr, hr = make_scenes(folder, n)
        ds = folder / f"ds_{n}"
        cmd = [sys.executable, "-c", CHILD, exe, "pairs", "build", "--lr", str(lr), "--hr",
               str(hr), "-o", str(ds), "--lr-date", "2020-01-01", "--hr-date", "2020-01-05"]
        wall, rss, rc = subprocess.run(cmd, capture_output=True, text=True,
                                       check=True).stdout.split()
        if rc != "0":
            raise SystemExit(f"pairs build failed ({rc})")
        patches = len(json.loads((ds / "manifest.json").read_text())["patches"])
        w, mb = float(wall), int(rss) / 1024
        results[n] = {"wall_s": w, "s2_MP_per_s": n * n / w / 1e6, "patches": patches,
                      "patches_per_s": patches / w, "peak_rss_MB": mb}
        print(f"pairs build {n}x{n} S2 + {2 * n}x{2 * n} reference: {w:.1f} s, "
              f"{n * n / w / 1e6:.3f} S2 MP/s, {patches} patches ({patches / w:.1f}/s), "
              f"peak RSS {mb:.0f} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
