"""Was OSCD's second date (imgs_2) resampled when the dataset registered it onto the first?

A measurement, not a test (issue #20). Interpolating an image onto another grid (bilinear,
bicubic or a dense optical-flow warp, as OSCD's GeFolki registration does) attenuates its
Fourier content near the Nyquist frequency: a bilinear warp by half a pixel keeps
cos^2(pi f)^2 of the power at f cycles/px, 2 % at 0.45. So per city and band (B02 B03 B04
B08) this prints the *sharpness index*: the mean Hann-windowed power spectrum
(:func:`s2sr.losses.artefacts.power_spectrum`, 64 px windows) in the radial band
0.40-0.50 cycles/px over the band 0.10-0.20, for imgs_1 and imgs_2, and their ratio
(imgs_2 / imgs_1, geometric mean over the four bands). Also the mean absolute difference
of neighbouring columns over that of neighbouring rows (an axis-dependent warp or a
resampling in one direction shows up there), the number of duplicated neighbouring rows
or columns (a nearest-neighbour resampling repeats some) and each date's grid.

Controls: the cities whose imgs_2 has another size and pixel size than imgs_1 were not
put on imgs_1's grid (their crops are native); a resampled imgs_2 elsewhere would show a
ratio well below theirs, and below the spread between two native dates.

Usage: python benchmarks/oscd_resampling.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

from s2sr.io.scene import open_scene
from s2sr.losses.artefacts import power_spectrum

BANDS = ("B02", "B03", "B04", "B08")


def sharpness(refl: np.ndarray) -> float:
    """Power in 0.40-0.50 cycles/px over power in 0.10-0.20, geometric mean over bands."""
    vals = []
    for band in refl:
        p = power_spectrum(band.astype(np.float64))
        f = np.fft.fftfreq(p.shape[0])
        r = np.hypot(f[:, None], f[None, :])
        vals.append(p[(r >= 0.40) & (r <= 0.5)].mean() / p[(r >= 0.10) & (r < 0.20)].mean())
    return float(np.exp(np.mean(np.log(vals))))


def column_row(refl: np.ndarray) -> float:
    """Mean |difference of neighbouring columns| over that of neighbouring rows."""
    return float(np.abs(np.diff(refl, axis=2)).mean() / np.abs(np.diff(refl, axis=1)).mean())


def duplicates(refl: np.ndarray) -> int:
    """Neighbouring columns or rows identical in every band (a nearest-neighbour resampling
    onto a finer or shifted grid repeats some)."""
    cols = int((np.diff(refl, axis=2) == 0).all(axis=(0, 1)).sum())
    rows = int((np.diff(refl, axis=1) == 0).all(axis=(0, 2)).sum())
    return cols + rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    root = args.shared / "sentinel2" / "oscd"
    if not root.is_dir():
        print(f"no OSCD data at {root}: pass --shared DIR", file=sys.stderr)
        return 2
    print("| city | grid imgs_1 | grid imgs_2 | same grid | sharpness 1 | sharpness 2 | "
          "ratio 2/1 | col/row 1 | col/row 2 | duplicated 1 | duplicated 2 |\n"
          "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[bool, list[float]] = {True: [], False: []}
    for city in sorted(p for p in root.iterdir() if p.is_dir()):
        stats = []
        for date in ("imgs_1", "imgs_2"):
            folder = city / date
            b02 = next(folder.glob("*_B02.tif"))
            with rasterio.open(b02) as ds:
                grid = (ds.width, ds.height, ds.res[0], ds.bounds)
            with open_scene(folder, bands=BANDS, dn_offset=0) as scene:
                refl = scene.read_all().astype(np.float64)
            stats.append((grid, sharpness(refl), column_row(refl), duplicates(refl)))
        (g1, s1, c1, d1), (g2, s2, c2, d2) = stats
        same = g1[:2] == g2[:2] and abs(g1[2] - g2[2]) < 1e-12
        ratios[same].append(s2 / s1)
        print(f"| {city.name} | {g1[0]}x{g1[1]} | {g2[0]}x{g2[1]} | {'yes' if same else 'no'} "
              f"| {s1:.4f} | {s2:.4f} | {s2 / s1:.2f} | {c1:.3f} | {c2:.3f} | {d1} | {d2} |")
    for same, vals in ratios.items():
        if vals:
            print(f"\nimgs_2 on imgs_1's grid: {'yes' if same else 'no'} ({len(vals)} cities): "
                  f"ratio 2/1 median {np.median(vals):.2f}, range {min(vals):.2f}-"
                  f"{max(vals):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
