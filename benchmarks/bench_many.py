"""Benchmark of many scenes on a local Dask cluster: 1 worker against 2 (issue #13).

Generates N (default 8) 4-band uint16 GeoTIFFs of SIZE x SIZE pixels (default 2048) and
super-resolves them with ``s2sr.predict_many`` on a LocalCluster of 1 worker, then of 2
workers (processes, 1 thread each, ``--threads 1`` for the network), into fresh folders.
Prints scenes per minute for each, the speed-up (target on a 2-core machine: >= 1.8x),
and the peak resident memory of each worker process (getrusage inside the worker).

Usage: python benchmarks/bench_many.py [--scenes 8] [--size 2048] [--workers 1 2]
       [--weights FILE] [--backend auto] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from s2sr import predict_many


def make_scenes(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    paths = []
    for k in range(n):
        data = np.empty((4, size, size), np.uint16)
        for b in range(4):
            fx, fy = rng.uniform(0.01, 0.1, 2)
            data[b] = np.clip(900 + 300 * b + 500 * np.sin(fx * xx + k) * np.cos(fy * yy)
                              + rng.normal(0, 50, (size, size)), 1, None)
        path = folder / f"scene{k:02d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4,
                           dtype="uint16", crs="EPSG:32633", tiled=True, compress="deflate",
                           transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
            dst.write(data)
            dst.descriptions = ("B02", "B03", "B04", "B08")
        paths.append(path)
    return paths


def peak_rss() -> int:
    """Peak resident memory of this process in bytes (runs inside each worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(inputs: Path, out: Path, workers: int, weights: str | None, backend: str
        ) -> dict[str, Any]:
    import distributed

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    try:
        start = time.perf_counter()
        report = predict_many([str(inputs)], out, weights, client=client, threads=1,
                              backend=backend)
        seconds = time.perf_counter() - start
        peaks = client.run(peak_rss)
    finally:
        client.close()
        cluster.close()
    if report.failed:
        raise SystemExit(report.summary())
    n = len(report.scenes)
    return {"workers": workers, "scenes": n, "seconds": round(seconds, 2),
            "scenes_per_minute": round(60 * n / seconds, 3),
            "input_mpx_per_s": round(report.megapixels_per_second, 3),
            "peak_rss_mb_per_worker": sorted(round(v / 2**20) for v in peaks.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--weights", default=None, help="default: the shipped x2 model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-many-"))
    inputs = root / "in"
    make_scenes(inputs, args.scenes, args.size)
    rows = [run(inputs, root / f"out_{w}", w, args.weights, args.backend)
            for w in args.workers]
    for row in rows:
        print(json.dumps(row))
    if len(rows) >= 2:
        speedup = rows[-1]["scenes_per_minute"] / rows[0]["scenes_per_minute"]
        print(f"speed-up {rows[-1]['workers']} vs {rows[0]['workers']} worker(s): "
              f"{speedup:.2f}x (target on 2 cores: >= 1.8x)")


if __name__ == "__main__":
    main()
