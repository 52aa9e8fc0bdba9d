"""Inference cost of a wider or deeper EDSR than the shipped one (issue #20's capacity study).

Issue 20 allows the default model at most 1.3x today's predict time on the CPU. Before
training a bigger network, this measures what each candidate costs: the same in-memory
``s2sr.super_resolve`` (the predict engine's tiling, fp32 on the CPU as ``auto`` picks)
of a 512 x 512 4-band scene, per architecture (random weights: the time does not depend on
them), the minimum of ``--repeat`` runs each after one warm-up, and the ratio to the
shipped 8 blocks x 64 filters, in wall time and in CPU time of this process (all threads;
steadier than wall time when other work shares the cores). Multiply-accumulates per
input pixel are printed beside it (the body's 3x3 convolutions dominate: blocks x
filters^2).

Usage: python benchmarks/capacity_cost.py [--scale 2] [--side 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

import s2sr
from s2sr.core.constants import SCALES
from s2sr.models import build_model

#: (residual blocks, filters); the first is the shipped architecture.
CANDIDATES = ((8, 64), (10, 64), (12, 64), (16, 64), (8, 80), (8, 96), (16, 96), (32, 64))


def macs_per_pixel(blocks: int, feats: int, bands: int, scale: int) -> int:
    """Multiply-accumulates per input pixel of EDSR's convolutions (3x3 kernels)."""
    head = 9 * bands * feats
    body = blocks * 2 * 9 * feats * feats + 9 * feats * feats
    up = (9 * feats * feats * 4) * (1 if scale == 2 else 1 + 4)  # x4: two x2 stages
    tail = 9 * feats * bands * scale * scale
    return head + body + up + tail


def seconds(model: torch.nn.Module, scene: np.ndarray, repeat: int) -> tuple[float, float]:
    """Least wall and CPU time of ``repeat`` super-resolutions after one warm-up."""
    s2sr.super_resolve(scene, model, device="cpu")
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        s2sr.super_resolve(scene, model, device="cpu")
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=SCALES, default=2)
    parser.add_argument("--side", type=int, default=512, help="input side (px)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    scene = (rng.random((4, args.side, args.side)) * 0.3).astype(np.float32)
    base = None
    print(f"x{args.scale}, {args.side} px input, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| blocks x filters | MMAC / input px | wall s (min) | wall ratio | CPU s (min) | "
          "CPU ratio | MAC ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for blocks, feats in CANDIDATES:
        torch.manual_seed(0)
        model = build_model("edsr", scale=args.scale, n_resblocks=blocks, n_feats=feats,
                            global_residual=True)
        wall, cpu = seconds(model, scene, args.repeat)
        macs = macs_per_pixel(blocks, feats, 4, args.scale)
        if base is None:
            base = (wall, cpu, macs)
        print(f"| {blocks} x {feats} | {macs / 1e6:.2f} | {wall:.2f} | {wall / base[0]:.2f} | "
              f"{cpu:.2f} | {cpu / base[1]:.2f} | {macs / base[2]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
