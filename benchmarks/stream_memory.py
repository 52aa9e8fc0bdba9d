"""Peak RSS of the streaming forward (issue 23): flat in the scene's height, <= 1 GB at 10980.

Each case runs in a fresh process (its peak RSS, read by the parent with ``os.wait4``, is
its own): the shipped EDSR 8x64 model (``s2sr_x2``, ``s2sr_x4``) streams a generated scene
``WIDTH`` columns wide and ``ROWS`` rows high, fed band by band (the scene is never whole
in memory, as ``s2sr predict --engine stream`` reads it), its output rows dropped; the band
height and column strips are :func:`s2sr.inference.stream_budget.pick_layout`'s for the
engine's budget unless ``--band-rows`` / ``--strip-cols`` are given. With ``--predict``,
``s2sr predict --engine stream`` also runs on a generated 4-band uint16 GeoTIFF of each
case (reading, DN encoding, writing included; its row names the output's block size and
file size; ``GDAL_CACHEMAX`` in the environment reaches it).

The memory of a stream depends on the width and the band height, not on the height: a few
hundred rows of a 10980-column scene show the peak of a whole 10980^2 tile (whose full run
takes hours on a 2-core CPU). Printed: the CPU's instruction sets, then per case the band
layout, the process's RSS with the model loaded (before streaming), its peak, seconds.

Usage: nice -n 5 python benchmarks/stream_memory.py [--scales 2 4]
           [--cases 10980x32 10980x96 10980x192 2048x128 4096x128] [--band-rows N]
           [--strip-cols N] [--budget-mb MB] [--predict] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
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

from s2sr.core.heap import pin_mmap_threshold
from s2sr.inference.stream import StreamingForward
from s2sr.inference.stream_budget import STREAM_BUDGET, pick_layout
from s2sr.models import load_model, pretrained_path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_flags() -> str:
    """The CPU's model and which of :data:`FLAGS` it has (/proc/cpuinfo, as lscpu)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "unknown CPU"
    lines = text.splitlines()
    name = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")),
                "unknown CPU")
    have = set(next((x for x in lines if x.startswith("flags")), ":").split(":", 1)[1].split())
    return f"{name}: " + " ".join(f"{f}={'yes' if f in have else 'no'}" for f in FLAGS)


def one(scale: int, width: int, rows: int, band_rows: int, strip_cols: int,
        budget: int) -> dict[str, float]:
    """One case in this process: layout, RSS before streaming, seconds."""
    pin_mmap_threshold()  # as s2sr predict does
    stream = StreamingForward(load_model(pretrained_path(scale)))
    band, strips = pick_layout(stream, width, budget)
    band, strips = band_rows or band, strip_cols or strips
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gen = torch.Generator().manual_seed(0)

    def bands():  # type: ignore[no-untyped-def]
        for r in range(0, rows, band):
            yield torch.rand((1, 4, min(band, rows - r), width), generator=gen) * 0.4

    t0 = time.perf_counter()
    out = sum(b.shape[2] for b in stream.run(bands(), band, strips))
    assert out == rows * scale
    return {"band_rows": band, "strip_cols": strips or 0, "base_mb": base,
            "seconds": time.perf_counter() - t0}


def measure(cmd: list[str]) -> tuple[str, float]:
    """stdout and peak RSS (MB) of ``cmd`` in a fresh process."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed with exit code {proc.returncode}")
    return text, usage.ru_maxrss / 1024


def make_scene(path: Path, width: int, rows: int, seed: int = 0) -> None:
    """A textured 4-band uint16 scene ``width`` x ``rows``, written 256 rows at a time."""
    profile = {"driver": "GTiff", "width": width, "height": rows, "count": 4,
               "dtype": "uint16", "crs": "EPSG:32633", "nodata": 0,
               "transform": Affine(10, 0, 500000, 0, -10, 5000000), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = ("B02", "B03", "B04", "B08")
        for r in range(0, rows, 256):
            h = min(256, rows - r)
            texture = 1500 + 700 * np.sin(np.arange(width) / 37.0)[None] * np.cos(
                (np.arange(h)[:, None] + r) / 23.0)
            block = np.stack([texture + 300 * b + rng.normal(0, 150, (h, width))
                              for b in range(4)])
            dst.write(np.clip(block, 1, 65535).astype("uint16"),
                      window=((r, r + h), (0, width)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--cases", nargs="+", default=["10980x32", "10980x96", "10980x192",
                                                   "2048x128", "4096x128"],
                   help="WIDTHxROWS of the generated scenes")
    p.add_argument("--band-rows", type=int, default=0, help="0: pick_layout's")
    p.add_argument("--strip-cols", type=int, default=0, help="0: pick_layout's")
    p.add_argument("--budget-mb", type=int, default=STREAM_BUDGET >> 20)
    p.add_argument("--predict", action="store_true",
                   help="also s2sr predict --engine stream on a generated GeoTIFF per case")
    p.add_argument("--keep", type=Path, help="folder for the generated scenes (kept)")
    p.add_argument("--one", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    budget = args.budget_mb << 20
    if args.one:
        scale, width, rows = args.one
        print(json.dumps(one(scale, width, rows, args.band_rows, args.strip_cols, budget)))
        return
    print(f"CPU: {cpu_flags()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| scale | width x rows | run | band rows | strips | RSS, model loaded | peak RSS "
          "| seconds |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="stream_memory_") as tmp:
        run_cases(args, args.keep or Path(tmp))


def run_cases(args: argparse.Namespace, folder: Path) -> None:
    """Each case (and its ``s2sr predict`` with ``--predict``) in a fresh process."""
    for scale in args.scales:
        for case in args.cases:
            width, rows = (int(v) for v in case.split("x"))
            cmd = [sys.executable, __file__, "--one", str(scale), str(width), str(rows),
                   "--band-rows", str(args.band_rows), "--strip-cols", str(args.strip_cols),
                   "--budget-mb", str(args.budget_mb)]
            text, peak = measure(cmd)
            r = json.loads(text.strip().splitlines()[-1])
            print(f"| x{scale} | {width} x {rows} | forward | {r['band_rows']} | "
                  f"{r['strip_cols'] or 'none'} | {r['base_mb']:.0f} MB | {peak:.0f} MB | "
                  f"{r['seconds']:.1f} |", flush=True)
            if args.predict:
                scene = folder / f"scene_{width}x{rows}.tif"
                if not scene.exists():
                    make_scene(scene, width, rows)
                exe = Path(sys.executable).with_name("s2sr")
                out = folder / f"out_x{scale}.tif"
                t0 = time.perf_counter()
                _, peak = measure([str(exe), "predict", str(scene), "-o", str(out),
                                   "--scale", str(scale), "--engine", "stream", "--backend",
                                   "torch", "--overwrite", "--quiet"])
                seconds = time.perf_counter() - t0
                with rasterio.open(out) as ds:  # GDAL_CACHEMAX sizes the blocks
                    block = ds.block_shapes[0][0]
                print(f"| x{scale} | {width} x {rows} | s2sr predict --engine stream "
                      f"({block} px blocks, {out.stat().st_size / 1e6:.1f} MB file) | | | | "
                      f"{peak:.0f} MB | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
