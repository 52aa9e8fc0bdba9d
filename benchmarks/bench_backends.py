"""Backends side by side (issue #12): bare network forwards against ``s2sr predict``.

On generated 2048^2 and 4096^2 4-band uint16 scenes (the same as ``bench_predict.py``) and the
shipped EDSR 8x64 models (``s2sr_x2``, and ``s2sr_x4`` with ``--models x2 x4``), in one run:

* bare PyTorch forward: the network alone over the scene's input pixels, cut into
  non-overlapping tiles (no reading, no overlap, no blending, no writing), channels-last,
  ``torch.inference_mode``, the threads ``s2sr predict`` uses;
* bare ONNX Runtime forward: the same tiles through an ONNX Runtime session of the same model
  (exported as ``s2sr predict --backend onnxruntime`` does);
* ``s2sr predict --backend torch`` and ``--backend onnxruntime`` end to end in a fresh process
  (start-up, reading, tiling with its overlap, network, blending, writing), with the process's
  peak RSS.

Prints each time, the ratios bare/predict per backend (the share of the pipeline's time spent
in the bare network: the issue's targets are >= 0.92 for ONNX Runtime and >= 0.90 for torch),
the speed-up of ``--backend onnxruntime`` over ``--backend torch``, and the RSS ratio
4096/2048 (flat in scene size). Pass ``--extra "--tile 1024"`` to try predict options.

Usage: python benchmarks/bench_backends.py [--sizes 2048 4096] [--models x2 x4]
           [--tile 512] [--threads N] [--keep DIR] [--extra "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from s2sr.inference.backends import OnnxRuntimeBackend, default_threads
from s2sr.models import load_model, pretrained_path
from s2sr.models.serialize import onnx_bytes

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import make_scene, run_predict


def scene_tiles(path: Path, tile: int) -> list[np.ndarray]:
    """The scene as reflectance tiles (non-overlapping; edge tiles smaller)."""
    tiles = []
    with rasterio.open(path) as ds:
        for row in range(0, ds.height, tile):
            for col in range(0, ds.width, tile):
                win = rasterio.windows.Window(col, row, min(tile, ds.width - col),
                                              min(tile, ds.height - row))
                tiles.append((ds.read(window=win).astype(np.float32) / 10000)[None])
    return tiles


def bare(run: object, tiles: list[np.ndarray]) -> float:
    """Seconds to run every tile through ``run`` (after one warm-up tile)."""
    call = run  # a callable taking a (1, C, H, W) float32 tensor
    call(torch.from_numpy(tiles[0][..., :64, :64]))  # type: ignore[operator]
    t = time.perf_counter()
    for x in tiles:
        call(torch.from_numpy(x))  # type: ignore[operator]
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--models", nargs="+", default=["x2"], choices=["x2", "x4"])
    parser.add_argument("--tile", type=int, default=512, help="bare forward tile size")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep scenes here")
    parser.add_argument("--extra", default="", help="extra predict options, quoted")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = [*args.extra.split(), "--threads", str(threads)]
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs, "
          f"bare tiles {args.tile}^2, predict options: {' '.join(extra)}")
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name in args.models:
        weights = pretrained_path(int(name[1:]))
        model = load_model(weights).eval()
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        scale = int(name[1:])
        ort = OnnxRuntimeBackend(onnx_bytes(model), 4, scale, threads)

        def torch_run(x: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
            with torch.inference_mode():
                return model(x.contiguous(memory_format=torch.channels_last))

        results[name] = {}
        for size in args.sizes:
            scene = workdir / f"scene_{size}.tif"
            if not scene.exists():
                make_scene(scene, size)
            tiles = scene_tiles(scene, args.tile)
            row: dict[str, float] = {"bare_torch_s": bare(torch_run, tiles),
                                     "bare_ort_s": bare(ort, tiles)}
            del tiles
            for backend in ("torch", "onnxruntime"):
                wall, rss = run_predict(scene, weights, workdir / f"out_{size}.tif",
                                        ["--backend", backend, *extra])
                row[f"predict_{backend}_s"], row[f"predict_{backend}_rss_MB"] = wall, rss
            row["torch_bare_over_predict"] = row["bare_torch_s"] / row["predict_torch_s"]
            row["ort_bare_over_predict"] = row["bare_ort_s"] / row["predict_onnxruntime_s"]
            row["ort_speedup_over_torch_predict"] = (row["predict_torch_s"]
                                                     / row["predict_onnxruntime_s"])
            results[name][size] = row
            print(f"s2sr_{name} {size}^2: bare torch {row['bare_torch_s']:.1f} s, bare ORT "
                  f"{row['bare_ort_s']:.1f} s | predict torch {row['predict_torch_s']:.1f} s "
                  f"(RSS {row['predict_torch_rss_MB']:.0f} MB), predict ORT "
                  f"{row['predict_onnxruntime_s']:.1f} s (RSS "
                  f"{row['predict_onnxruntime_rss_MB']:.0f} MB)")
            print(f"    bare/predict: torch {row['torch_bare_over_predict']:.3f} (target "
                  f">= 0.90), ORT {row['ort_bare_over_predict']:.3f} (target >= 0.92); "
                  f"predict ORT is {row['ort_speedup_over_torch_predict']:.2f}x predict torch")
        if len(args.sizes) >= 2:
            lo, hi = results[name][args.sizes[0]], results[name][args.sizes[-1]]
            for backend in ("torch", "onnxruntime"):
                key = f"predict_{backend}_rss_MB"
                print(f"    peak RSS {args.sizes[-1]}/{args.sizes[0]} ({backend}): "
                      f"{hi[key] / lo[key]:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
