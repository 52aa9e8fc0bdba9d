"""Calibration of the artefact score (issue #10): a measurement, not a test.

Prints the artefact score (:func:`s2sr.losses.artefacts.artefact_score`) of

* every real image in ``../shared/data`` (Sentinel-2 10 m crops, bands B02 B03 B04 B08 at
  their native 10 m; the 5 m RGBN image; the WorldView-2 multispectral and panchromatic
  crops; the SpaceNet Atlanta pan crop; the NEON aerial RGB; the Landsat 8 scenes), nodata
  windows skipped (nodata: the file's value, 0 for the WorldView-2 and Landsat files);
* bicubic x2 and x4 of the Sentinel-2 crops;
* the shipped models' outputs (``src/s2sr/weights``, through ``s2sr.super_resolve``) on the
  Sentinel-2 crops;

then the highest real-imagery score and the threshold it suggests (that score plus a
margin of 0.2, rounded up to 0.05). The score is a ratio, so DN need no conversion.

Usage: python benchmarks/calibrate_artefacts.py [--shared ../shared/data] [--no-models]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import rasterio

from s2sr.core.constants import SCALES
from s2sr.inference.baselines import upsample
from s2sr.io.scene import open_scene
from s2sr.losses.artefacts import ARTEFACT_THRESHOLD, artefact_score

BANDS = ("B02", "B03", "B04", "B08")
MARGIN = 0.2


def sentinel2_crops(shared: Path) -> list[tuple[str, np.ndarray]]:
    """Every real Sentinel-2 crop as reflectance, the 10 m bands (B02 B03 B04 B08)."""
    s2 = shared / "sentinel2"
    paths = sorted(p for p in s2.glob("*.tif") if not p.name.endswith("_labels.tif"))
    paths += sorted(p for p in (s2 / "bigearthnet").iterdir() if p.is_dir())
    out = []
    for p in paths:
        with open_scene(p, bands=BANDS, dn_offset=0) as scene:
            out.append((p.name, scene.read_all().astype(np.float32)))
    return out


def reference_images(shared: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every other real image: (name, (C, H, W) float DN, (H, W) validity mask)."""
    files = sorted((shared / "reference").glob("*.tif"))
    files += sorted((shared / "landsat8").glob("*.tif"))
    out = []
    for f in files:
        with rasterio.open(f) as src:
            dn = src.read().astype(np.float64)
            nodata = src.nodata
        if nodata is None and (f.name.startswith(("worldview2", "LC08"))):
            nodata = 0.0
        valid = np.ones(dn.shape[1:], bool) if nodata is None else (dn != nodata).all(axis=0)
        out.append((f"{f.parent.name}/{f.name}", dn, valid))
    return out


def rows(shared: Path, models: bool) -> list[tuple[str, str, float]]:
    """(group, image, score) for every measured image."""
    table: list[tuple[str, str, float]] = []
    crops = sentinel2_crops(shared)
    for name, refl in crops:
        table.append(("real: Sentinel-2 10 m", name, artefact_score(refl)))
    for name, dn, valid in reference_images(shared):
        table.append(("real: finer sensors / Landsat", name, artefact_score(dn, valid)))
    for scale in SCALES:
        for name, refl in crops:
            table.append((f"bicubic x{scale} of S2", name,
                          artefact_score(upsample(refl, scale, "bicubic"))))
    if models:
        import s2sr
        from s2sr.models import get_spec, load_model

        weights = Path(__file__).resolve().parents[1] / "src" / "s2sr" / "weights"
        for file in sorted(weights.glob("*.safetensors")):
            model = load_model(file)
            idx = [BANDS.index(b) for b in get_spec(model).bands]
            for name, refl in crops:
                sr = s2sr.super_resolve(refl[idx], model, device="cpu")
                table.append((f"shipped {file.stem}", name, artefact_score(sr)))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--no-models", action="store_true", help="skip the shipped models")
    args = parser.parse_args(argv)
    if not (args.shared / "sentinel2").is_dir():
        print(f"no real imagery at {args.shared}: pass --shared DIR", file=sys.stderr)
        return 2
    table = rows(args.shared, not args.no_models)
    print("| group | image | score |\n|---|---|---:|")
    for group, name, score in table:
        print(f"| {group} | {name} | {score:.3f} |")
    print("\n| group | min | max |\n|---|---:|---:|")
    for group in dict.fromkeys(g for g, _, _ in table):
        scores = [s for g, _, s in table if g == group]
        print(f"| {group} | {min(scores):.3f} | {max(scores):.3f} |")
    real = max(s for g, _, s in table if g.startswith("real"))
    suggested = math.ceil((real + MARGIN) * 20) / 20
    print(f"\nhighest real-imagery score {real:.3f}; + margin {MARGIN} -> suggested threshold "
          f"{suggested:.2f} (ARTEFACT_THRESHOLD is {ARTEFACT_THRESHOLD:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
