"""Streaming forward (issue 23): per-pixel speed against band height, vs the tiled forward.

On a generated scene of ``--sizes`` input pixels square (4 bands, reflectance) and the
shipped EDSR 8x64 models (``s2sr_x2``, ``s2sr_x4``), each measurement in a fresh process
(so that its peak RSS is its own):

* ``stream``: :class:`s2sr.inference.stream.StreamingForward` over the whole scene in bands
  of ``--bands`` rows (the output blocks are produced and dropped);
* ``tiles``: the bare whole-tile forward of the tiled engine's tiles (544 px at x2, 288 px at
  x4, channels-last, ``torch.inference_mode``) over ``--tiles`` tiles, counted in *useful*
  input pixels: each tile's core (the tile minus the engine's 32 px overlap), so the figure
  is what the tiled engine's network can deliver, before reading, blending and writing.

Prints the CPU's instruction sets (avx2, avx512f, avx512_bf16, amx), the load average (the
figures are indicative on a shared machine) and a table: input Mpx/s and peak RSS per run.

Usage: nice -n 5 python benchmarks/stream_forward.py [--sizes 1024 2048] [--scales 2 4]
           [--bands 16 32 64 128 256 512] [--tiles 4] [--threads N] [--strip-cols N]
           [--high-pixels N] [--interleave ROUNDS] [--rows N] [--sweep ROUNDS]
           [--sweep-strips 0 2048 1024] [--heap reused|pinned]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from s2sr.core.constants import DEFAULT_OVERLAP
from s2sr.core.heap import pin_mmap_threshold, reused_heap
from s2sr.inference.stream import HIGH_PIXELS, StreamingForward
from s2sr.inference.stream_budget import HEAP_THRESHOLD
from s2sr.models import load_model, pretrained_path

TILE = {2: 544, 4: 288}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_flags() -> str:
    """The instruction sets of interest the CPU has, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            line = next((x for x in f if x.startswith("flags")), "")
    except OSError:
        return "unknown"
    have = set(line.split(":", 1)[-1].split())
    return " ".join(f"{f}={'yes' if f in have else 'no'}" for f in FLAGS)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(kind: str, size: int, scale: int, band: int, tiles: int, strip_cols: int | None,
        high_pixels: int, rows: int = 0) -> dict[str, float]:
    """One measurement in this process: input Mpx/s and peak RSS."""
    pin_mmap_threshold()  # as s2sr predict does
    model = load_model(pretrained_path(scale))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        if kind == "stream":
            stream = StreamingForward(model, high_pixels=high_pixels)
            height = rows or size
            x = torch.rand((1, 4, height, size), generator=gen) * 0.4
            for _ in stream.run(x[:, :, :48, :64], band_rows=16):  # warm-up
                pass
            t0 = time.perf_counter()
            out = sum(b.shape[2] for b in stream.run(x, band_rows=band, strip_cols=strip_cols))
            dt = time.perf_counter() - t0
            assert out == height * scale
            pixels = height * size
        else:
            t = TILE[scale]
            x = (torch.rand((1, 4, t, t), generator=gen) * 0.4).contiguous(
                memory_format=torch.channels_last)
            model(x)  # warm-up
            t0 = time.perf_counter()
            for _ in range(tiles):
                model(x)
            dt = time.perf_counter() - t0
            pixels = tiles * (t - DEFAULT_OVERLAP) ** 2
    return {"seconds": dt, "mpx_s": pixels / dt / 1e6, "peak_mb": _peak_mb()}


def interleaved(size: int, scale: int, band: int, tiles: int, rounds: int) -> None:
    """Tiles and stream alternately in this process (``rounds`` times each): on a shared
    machine, each pair ran under about the same load."""
    pin_mmap_threshold()
    model = load_model(pretrained_path(scale))
    stream = StreamingForward(model)
    t = TILE[scale]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, 4, size, size), generator=gen) * 0.4
    tile = (torch.rand((1, 4, t, t), generator=gen) * 0.4).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        model(tile)
        for k in range(rounds):
            t0 = time.perf_counter()
            for _ in range(tiles):
                model(tile)
            tiled = tiles * (t - DEFAULT_OVERLAP) ** 2 / (time.perf_counter() - t0) / 1e6
            t0 = time.perf_counter()
            for _ in stream.run(x, band_rows=band):
                pass
            streamed = size * size / (time.perf_counter() - t0) / 1e6
            print(f"| x{scale} | round {k + 1} | {t} px tiles {tiled:.4f} | {size}^2 stream "
                  f"{band} rows {streamed:.4f} | {streamed / tiled:.2f} |", flush=True)


def sweep(width: int, rows: int, scale: int, bands: list[int], rounds: int,
          strips: list[int], heap: str = "reused") -> None:
    """Band heights (and column strip widths, 0: full-width rows) in turn in this process,
    ``rounds`` times (each round under about the same load): input Mpx/s per layout,
    median over the rounds; glibc's mmap threshold pinned at 4 MiB as the command line
    does, raised for the sweep with ``heap="reused"`` as ``s2sr predict`` does where its
    budget allows (:func:`s2sr.core.heap.reused_heap`, up to about 4096 columns)."""
    pin_mmap_threshold()
    with reused_heap(HEAP_THRESHOLD if heap == "reused" else 0):
        _sweep(width, rows, scale, bands, rounds, strips)


def _sweep(width: int, rows: int, scale: int, bands: list[int], rounds: int,
           strips: list[int]) -> None:
    stream = StreamingForward(load_model(pretrained_path(scale)))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, 4, rows, width), generator=gen) * 0.4
    layouts = [(b, c) for c in strips for b in bands]
    speeds: dict[tuple[int, int], list[float]] = {k: [] for k in layouts}
    with torch.inference_mode():
        for _ in stream.run(x[:, :, :48], band_rows=16):  # warm-up
            pass
        for _ in range(rounds):
            for band, cols in layouts:
                t0 = time.perf_counter()
                for _ in stream.run(x, band_rows=band, strip_cols=cols or None):
                    pass
                speeds[band, cols].append(rows * width / (time.perf_counter() - t0) / 1e6)
    best = max(statistics.median(v) for v in speeds.values())
    for (band, cols), v in speeds.items():
        med = statistics.median(v)
        cut = f"{cols} + 2 x {stream.halo}" if cols else "full width"
        print(f"| x{scale} | {width} x {rows} | {cut} | {band} | {med:.4f} | "
              f"{med / best:.2f} | {' '.join(f'{s:.4f}' for s in v)} |", flush=True)


def run_child(args: argparse.Namespace, kind: str, size: int, scale: int, band: int
              ) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", kind, "--sizes", str(size), "--scales",
           str(scale), "--bands", str(band), "--tiles", str(args.tiles)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.strip_cols:
        cmd += ["--strip-cols", str(args.strip_cols)]
    cmd += ["--high-pixels", str(args.high_pixels), "--rows", str(args.rows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--bands", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    p.add_argument("--tiles", type=int, default=4, help="tiles timed for the tiled forward")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    p.add_argument("--strip-cols", type=int, default=0, help="column strips (0: none)")
    p.add_argument("--high-pixels", type=int, default=HIGH_PIXELS,
                   help="output pixels of the upsampler and tail at once")
    p.add_argument("--rows", type=int, default=0,
                   help="rows of the streamed scenes (0: square scenes); the width is --sizes")
    p.add_argument("--interleave", type=int, default=0,
                   help="rounds of tiles and stream alternately in one process (first size "
                        "and band only)")
    p.add_argument("--sweep", type=int, default=0,
                   help="rounds of all --bands in turn in one process (speed only; first "
                        "size as the width, --rows rows)")
    p.add_argument("--heap", choices=["reused", "pinned"], default="reused",
                   help="--sweep with glibc's heap reused (predict up to about 4096 "
                        "columns) or its mmap threshold pinned at 4 MiB (wider)")
    p.add_argument("--sweep-strips", type=int, nargs="+", default=[0],
                   help="column strip widths of --sweep (0: full-width rows)")
    p.add_argument("--one", choices=["stream", "tiles"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.sizes[0], args.scales[0], args.bands[0],
                             args.tiles, args.strip_cols or None, args.high_pixels,
                             args.rows)))
        return
    print(f"CPU: {cpu_flags()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
          "(a shared machine: the figures are indicative)")
    if args.sweep:
        print("| scale | input | columns | band rows | input Mpx/s (median) | of best | "
              "rounds |")
        print("|---:|---:|---|---:|---:|---:|---|")
        for scale in args.scales:
            sweep(args.sizes[0], args.rows or args.sizes[0], scale, args.bands, args.sweep,
                  args.sweep_strips, args.heap)
        return
    if args.interleave:
        print("| scale | round | tiles Mpx/s (core px) | stream Mpx/s | stream/tiles |")
        print("|---:|---:|---:|---:|---:|")
        for scale in args.scales:
            interleaved(args.sizes[0], scale, args.bands[0], args.tiles, args.interleave)
        return
    print("| scale | input | run | input Mpx/s | seconds | peak RSS MB |")
    print("|---:|---:|---|---:|---:|---:|")
    for scale in args.scales:
        t = TILE[scale]
        r = run_child(args, "tiles", t, scale, 0)
        print(f"| x{scale} | {t} px tiles | bare tile forward ({args.tiles} tiles, per core "
              f"pixel) | {r['mpx_s']:.4f} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |",
              flush=True)
        for size in args.sizes:
            for band in args.bands:
                r = run_child(args, "stream", size, scale, band)
                shape = f"{size}^2" if not args.rows else f"{size} x {args.rows} rows"
                print(f"| x{scale} | {shape} | stream, {band} rows | {r['mpx_s']:.4f} | "
                      f"{r['seconds']:.1f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
