"""Benchmark of ``s2sr predict`` against the bare network, streamed and tiled (issues 2, 23).

Prints, in one run on the current machine, for each scale (x2, x4) of the shipped models:

(a) the bare forward of the PyTorch backend: input megapixels per second of the network
    alone on one in-memory 512x512 tile (no overlap), with the same threads, memory format
    (channels-last) and inference mode as ``s2sr predict``, the best of 5 after a warm-up;
(b) ``s2sr predict --backend torch`` end to end, in a fresh process each (start-up,
    reading, network, writing), with ``--engine stream`` and ``--engine tiled``, on
    generated 4-band uint16 GeoTIFFs of each size: wall seconds, input megapixels per
    second, the ratio (b)/(a), and the peak RSS of the process;
(c) the streamed network alone (:class:`s2sr.inference.stream.StreamingForward` in the
    band layout ``s2sr predict`` picks, no reading or writing) over ``--alone-rows`` full-
    width rows of each size, in megapixels per second, and (b)/(c): what the rest of
    ``s2sr predict`` (start-up, reading, DN conversion, compression, writing) costs the
    network's own streamed speed;
with ``--onnx``, (d) ``s2sr predict --backend onnxruntime`` (its tiled engine) end to end,
the default before the stream on a machine with ONNX Runtime installed;
and the CPU's instruction sets that matter to the backends (``lscpu`` flags: AVX2,
AVX-512, its BF16 and VNNI extensions, AMX). ONNX Runtime's bare forward: bench_backends.py.

Targets (issue 23, quiet machine): (b)/(a) >= 0.95 streamed at x2 and x4 on 2048^2 and
4096^2; peak RSS <= 1.0 GB, flat in the scene size. On a shared machine, give the run the
CPU (as root: ``echo -20 > /proc/self/autogroup`` in the shell that starts it; ``nice``
alone does not reach other sessions' processes when the kernel groups them by session).

Usage: python benchmarks/bench_predict.py [--sizes 2048 4096] [--scales 2 4]
       [--engines stream tiled] [--onnx] [--alone-rows 256] [--keep DIR]
       [--extra "--threads 2"]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from s2sr.inference.stream import StreamingForward
from s2sr.inference.stream_budget import STREAM_BUDGET, pick_layout
from s2sr.models import load_model, pretrained_path

CHILD = """
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:]).returncode
wall = time.perf_counter() - t
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""

#: ``lscpu`` flags that decide which kernels the backends run.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16",
             "amx_int8")


def cpu_flags() -> str:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (from /proc/cpuinfo,
    what ``lscpu`` reads)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    flags: set[str] = set()
    name = "unknown CPU"
    for line in text.splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("model name") and name == "unknown CPU":
            name = line.split(":", 1)[1].strip()
    have = [f for f in CPU_FLAGS if f in flags]
    return f"{name}; {', '.join(have) or 'none of ' + ', '.join(CPU_FLAGS)}"


def make_scene(path: Path, size: int, seed: int = 0,
               bands: tuple[str, ...] = ("B02", "B03", "B04", "B08"), pixel: int = 10,
               texture: tuple[float, ...] = (1500, 700, 37.0, 23.0, 300, 150),
               rows: int | None = None) -> None:
    """A textured uint16 reflectance scene of ``size`` ^2 ``pixel`` m pixels (``size``
    columns by ``rows`` rows when given; its grid starting at the same corner whatever
    ``pixel``), written block by block. ``texture``: base, amplitude, x and y periods (px),
    per-band step and noise, in DN."""
    base0, amp, px, py, step, noise = texture
    profile = {
        "driver": "GTiff", "width": size, "height": rows or size, "count": len(bands),
        "dtype": "uint16", "crs": "EPSG:32633",
        "transform": Affine(pixel, 0, 500000, 0, -pixel, 5000000),
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
        "nodata": 0,
    }
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = bands
        for _, window in dst.block_windows(1):
            h, w = window.height, window.width
            yy, xx = np.mgrid[0:h, 0:w]
            base = base0 + amp * np.sin((xx + window.col_off) / px) * np.cos(
                (yy + window.row_off) / py)
            block = np.stack([base + step * b + rng.normal(0, noise, (h, w))
                              for b in range(len(bands))])
            dst.write(np.clip(block, 1, 65535).astype("uint16"), window=window)


def bare_forward(model: torch.nn.Module, tile: int = 512, repeats: int = 5) -> float:
    """Input megapixels per second through the network alone on one ``tile`` x ``tile``
    in-memory tile (no overlap), channels-last, in inference mode: the best of
    ``repeats`` after a warm-up on the same tile (the network's full speed)."""
    x = (torch.rand(1, 4, tile, tile) * 0.3).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    times = []
    with torch.inference_mode():
        model(x)  # warm-up: oneDNN's primitives for this shape
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return tile * tile / min(times) / 1e6


def stream_alone(model: torch.nn.Module, width: int, rows: int) -> float:
    """Input megapixels per second of the streamed network alone over ``rows`` x ``width``
    in-memory reflectance, in the band layout ``s2sr predict`` picks (after a warm-up
    over a few rows: oneDNN's first calls per shape)."""
    model = model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    stream = StreamingForward(model)
    band_rows, strip_cols = pick_layout(stream, width, STREAM_BUDGET)
    x = np.random.default_rng(0).uniform(0.0, 0.3, (4, rows, width)).astype(np.float32)
    for _ in stream.run(x[:, :2 * band_rows], band_rows, strip_cols):
        pass
    t = time.perf_counter()
    for _ in stream.run(x, band_rows, strip_cols):
        pass
    return rows * width / (time.perf_counter() - t) / 1e6


def run_predict(scene: Path, weights: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``s2sr predict`` process."""
    exe = Path(sys.executable).with_name("s2sr")
    cmd = [sys.executable, "-c", CHILD, str(exe), "predict", str(scene), "-o", str(out),
           "--weights", str(weights), "--overwrite", "--quiet", *extra]
    wall, rss_kb, rc = subprocess.run(cmd, capture_output=True, text=True,
                                      check=True).stdout.split()
    if rc != "0":
        raise SystemExit(f"s2sr predict {' '.join(extra)} failed with exit code {rc}")
    return float(wall), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4], choices=[2, 4])
    parser.add_argument("--engines", nargs="+", default=["stream", "tiled"],
                        choices=["stream", "tiled"])
    parser.add_argument("--onnx", action="store_true",
                        help="also run s2sr predict --backend onnxruntime (tiled)")
    parser.add_argument("--alone-rows", type=int, default=256,
                        help="rows of the streamed network alone, (c)")
    parser.add_argument("--keep", type=Path, default=None, help="keep scenes here")
    parser.add_argument("--extra", default="", help="extra predict options, quoted")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_flags()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shipped models, "
          f"fp32, PyTorch backend; predict options: {args.extra or '(defaults)'}")
    results: dict[str, dict[str, float]] = {}
    for scale in args.scales:
        weights = pretrained_path(scale)
        bare = bare_forward(load_model(weights))
        print(f"x{scale} (a) bare forward, one 512^2 tile: {bare:.4f} input Mpx/s")
        for size in args.sizes:
            scene = workdir / f"scene_{size}.tif"
            if not scene.exists():
                make_scene(scene, size)
            alone = stream_alone(load_model(weights), size, min(size, args.alone_rows))
            print(f"x{scale} (c) streamed network alone, {size} columns: {alone:.4f} input "
                  "Mpx/s")
            runs = [(engine, ["--backend", "torch", "--engine", engine])
                    for engine in args.engines]
            if args.onnx:
                runs.append(("onnxruntime-tiled", ["--backend", "onnxruntime"]))
            for name, options in runs:
                wall, rss = run_predict(scene, weights, workdir / f"out_{size}.tif",
                                        [*options, *args.extra.split()])
                mps = size * size / wall / 1e6
                results[f"x{scale}_{size}_{name}"] = {
                    "bare_Mpx_s": bare, "alone_Mpx_s": alone, "wall_s": wall,
                    "input_Mpx_s": mps, "predict_over_bare": mps / bare,
                    "predict_over_alone": mps / alone, "peak_rss_MB": rss}
                print(f"x{scale} (b) predict {size}^2 {name}: {wall:.1f} s, "
                      f"{mps:.4f} input Mpx/s, predict/bare {mps / bare:.3f}, "
                      f"predict/alone {mps / alone:.3f}, peak RSS {rss:.0f} MB")
    print(json.dumps({"cpu": cpu_flags(), "results": results}))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(benchmark process itself: peak RSS {peak:.0f} MB)")


if __name__ == "__main__":
    main()
