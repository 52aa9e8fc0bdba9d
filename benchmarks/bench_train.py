"""Benchmark of training on CPU (issue #4): patches per second and the share of time spent
loading data.

Builds Wald pairs (SE20>SE10, input patches 48 px) from a generated landscape, then trains
the study's EDSR (8 blocks x 64 filters, x2) for one epoch per configuration: pixel loss
only, and pixel + VGG16 feature + style loss when VGG16 weights are available
(``$S2SR_VGG16_WEIGHTS`` or ``../shared/weights/vgg16_hed_features.pth``). Prints the
figures read from the run's ``metrics.csv``.

Each loss setup runs once per ``--precision`` (default fp32 and bf16: on CPUs with
AVX512-BF16/AMX the bf16 run, channels-last, is many times faster); the ratio is printed.

Usage: python benchmarks/bench_train.py [--patches 256] [--crop 48] [--workers 0]
       [--precision fp32,bf16]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

from s2sr.data import DegradeOptions, degrade_scene
from s2sr.training import load_config, train


def _scene(path: Path, size: int) -> Path:
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    base = sum(ndimage.gaussian_filter(rng.normal(size=(size, size)), s) * s for s in (1, 3, 8))
    img = np.stack([0.1 + 0.02 * b + 0.01 * base for b in range(4)])
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4,
                       dtype="uint16", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
        dst.write(np.clip(img * 10000, 1, 65535).astype("uint16"))
        dst.descriptions = ("B02", "B03", "B04", "B08")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=256, help="training patches")
    parser.add_argument("--crop", type=int, default=48, help="input crop (px)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s2sr-bench-train-"))
    side = int(np.ceil(np.sqrt(args.patches))) * args.crop * 2
    degrade_scene(_scene(work / "scene.tif", side), work / "ds",
                  DegradeOptions(patch=args.crop, site="bench", split="train"))
    vgg = os.environ.get("S2SR_VGG16_WEIGHTS") or str(
        Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_hed_features.pth")
    setups = {"pixel": {"pixel": 1.0}}
    if Path(vgg).exists():
        setups["pixel+feature+style"] = {
            "pixel": 1.0, "feature": {"relu1_2": 0.02, "relu2_2": 0.02, "relu3_3": 0.02},
            "style": {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0}, "style_weight": 5.0,
            "vgg_weights": vgg}
    for name, loss in setups.items():
        speed: dict[str, float] = {}
        for precision in args.precision.split(","):
            cfg = {"name": name, "batch_size": 16, "model": {"name": "edsr", "scale": 2},
                   "data": {"datasets": [str(work / "ds")], "workers": args.workers,
                            "max_val_patches": 1},
                   "precision": precision,
                   "loss": loss, "stages": [{"epochs": 1, "lr": 1e-3, "patch": args.crop}]}
            path = work / f"{name}-{precision}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            run = work / f"run-{name.replace('+', '_')}-{precision}"
            train(load_config(path), run, progress=False)
            with open(run / "metrics.csv") as handle:
                row = next(csv.DictReader(handle))
            seconds, data = float(row["seconds"]), float(row["data_seconds"])
            speed[precision] = float(row["patches_per_s"])
            print(f"{name:<22} {precision:<5} {speed[precision]:6.2f} patches/s "
                  f"({args.crop}x{args.crop} -> x2, batch 16, EDSR 8x64), data loading "
                  f"{100 * data / seconds:.1f} % of {seconds:.1f} s, workers {args.workers}")
        if "fp32" in speed and "bf16" in speed:
            print(f"{name:<22} bf16 / fp32 speed: {speed['bf16'] / speed['fp32']:.1f}x")

if __name__ == "__main__":
    main()
