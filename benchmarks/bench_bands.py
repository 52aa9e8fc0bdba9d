"""Benchmark of ``s2sr predict --bands all`` against today's 4-band x2 predict (issue 22).

For each size N (10 m pixels), on generated scenes (a 4-band uint16 10 m GeoTIFF of N^2 and
a 6-band 20 m GeoTIFF of (N/2)^2 on the nesting grid), each run in a fresh process
(start-up, reading, networks, writing), with the same threads:

(a) ``s2sr predict 10m.tif --backend torch``: the 4 bands to 5 m with the shipped s2sr_x2
    (the reference time);
(b) ``--bands all --resolution 10``: the 10 m bands copied, the six 20 m bands by the
    guided x2 model, 10 bands at 10 m;
(c) ``--bands all --resolution 5``: the 10 m bands by s2sr_x2, the 20 m bands by the
    guided x2 model twice (the cascade, guided by the native 10 m bands, then by the 10 m
    bands s2sr_x2 has sharpened to 5 m), 10 bands at 5 m;

printing wall seconds, the ratios (b)/(a) and (c)/(a), and each process's peak RSS.

Targets (issue 22, a quiet machine, N = 10980, a whole Sentinel-2 tile): (b)/(a) <= 1,
(c)/(a) <= 2.5, peak RSS <= 1.5 GB (flat in N).

The guided model is the shipped ``s2sr_20m_x2`` when installed; until then an untrained
``guided-edsr`` of the same architecture (the shipped models' cost; the
timings are of the network's size, not of its weights), said so in the output.

With ``--rows R`` the scenes are N columns by R rows (10 m pixels): ``--sizes 10980 --rows
2048`` runs a whole tile's width (where the strips' memory is decided) on a fifth of its
rows, a fifth of the time.

Usage: python benchmarks/bench_bands.py [--sizes 10980] [--rows R] [--keep DIR]
       [--extra "--threads 2"] [--tile-5m N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import CHILD, cpu_flags, make_scene
from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.models import build_model, save_model
from s2sr.models.open import shipped_path

#: The targets: (b)/(a), (c)/(a), and peak RSS in MB.
TARGETS = {"10m_over_x2": 1.0, "5m_over_x2": 2.5, "peak_rss_MB": 1536.0}


def guided_weights(scale: int, workdir: Path) -> tuple[Path, str]:
    """The shipped guided model of ``scale``, else an untrained one of its architecture."""
    name = f"s2sr_20m_x{scale}"
    found = shipped_path(name)
    if found is not None:
        return found, f"shipped {name}"
    path = workdir / f"guided_untrained_x{scale}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_model(build_model("guided-edsr", bands=BANDS_20M, scale=scale,
                               guide_bands=DEFAULT_BANDS, guide_scale=2), path)
    return path, f"untrained guided-edsr x{scale} ({name} is not installed yet)"


def timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``s2sr ARGS`` process."""
    exe = Path(sys.executable).with_name("s2sr")
    cmd = [sys.executable, "-c", CHILD, str(exe), *args, "--overwrite", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall, rss_kb, rc = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"s2sr {' '.join(args)} failed with exit code {rc}: {done.stderr}")
    return float(wall), int(rss_kb) / 1024


def bench_size(size: int, workdir: Path, extra: list[str],
               weights: dict[int, Path], tile5: list[str],
               rows: int | None = None) -> dict[str, float]:
    """The three runs on one scene size (see the module's text)."""
    rows = rows or size
    if size % 2 or rows % 2:
        raise SystemExit(f"--sizes {size} --rows {rows}: give even sizes (the 20 m scene "
                         "is half)")
    scene10, scene20 = workdir / f"s10_{size}x{rows}.tif", workdir / f"s20_{size}x{rows}.tif"
    if not scene10.exists():
        make_scene(scene10, size, rows=rows)
        make_scene(scene20, size // 2, seed=1, bands=BANDS_20M, pixel=20,
                   texture=(1800, 600, 19.0, 11.0, 250, 120), rows=rows // 2)
    out = workdir / f"out_{size}.tif"
    x2, rss_x2 = timed(["predict", str(scene10), "-o", str(out), "--backend", "torch",
                        *extra])
    bands = ["predict", str(scene10), "-o", str(out), "--bands", "all", "--input-20m",
             str(scene20), *extra]
    t10, rss10 = timed([*bands, "--resolution", "10", "--weights-20m", str(weights[2])])
    t5, rss5 = timed([*bands, "--resolution", "5", "--weights-20m", str(weights[2]),
                      *tile5])
    result = {"x2_4band_s": x2, "all_10m_s": t10, "all_5m_s": t5,
              "10m_over_x2": t10 / x2, "5m_over_x2": t5 / x2,
              "peak_rss_MB": max(rss10, rss5), "x2_peak_rss_MB": rss_x2}
    print(f"{size}x{rows}: (a) 4-band x2 {x2:.1f} s ({rss_x2:.0f} MB); (b) ten bands at 10 m "
          f"{t10:.1f} s ({rss10:.0f} MB), (b)/(a) {t10 / x2:.2f} [target <= 1]; (c) at 5 m "
          f"{t5:.1f} s ({rss5:.0f} MB), (c)/(a) {t5 / x2:.2f} [target <= 2.5]")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10980])
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of the scenes (10 m pixels); default: square")
    parser.add_argument("--keep", type=Path, default=None, help="keep scenes here")
    parser.add_argument("--extra", default="", help="extra predict options, quoted")
    parser.add_argument("--tile-5m", type=int, default=None,
                        help="--tile of the 5 m run only (20 m pixels, context included)")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="s2sr-bench-bands-"))
    workdir.mkdir(parents=True, exist_ok=True)
    weights, said = {}, []
    weights[2], what = guided_weights(2, workdir)
    said.append(what)
    print(f"CPU: {cpu_flags()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; guided models: "
          f"{'; '.join(said)}; predict options: {args.extra or '(defaults)'}")
    tile5 = [] if args.tile_5m is None else ["--tile", str(args.tile_5m)]
    results = {str(size): bench_size(size, workdir, args.extra.split(), weights, tile5,
                                          args.rows)
               for size in args.sizes}
    met = {size: {k: r[k] <= v for k, v in TARGETS.items()} for size, r in results.items()}
    print(json.dumps({"cpu": cpu_flags(), "models": said, "results": results,
                      "targets": TARGETS, "met": met}))


if __name__ == "__main__":
    main()
