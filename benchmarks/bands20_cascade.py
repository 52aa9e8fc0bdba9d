"""The guided 20 m model per place and band, and the 5 m product (issue 22).

A measurement, not a test. Wald pairs of the native scenes (:func:`s2sr.data.multires.wald`:
the guide degraded onto the 20 m bands' own footprints, the real 20 m bands the truth), PSNR
per band (reflectance, data range 1, border crop = the scale) of bicubic, the guided
high-pass baseline and the models, as gains over bicubic:

* x2 (block mean and MTF 0.30): ``s2sr_20m_x2``;
* x4 (MTF 0.30): the cascade, as ``s2sr predict --bands all --resolution 5`` runs it
  (:func:`s2sr.evaluation.panel20.run_guided` at factor 4, the engine's tiles):
  ``s2sr_20m_x2`` from the input to the guide's grid, then ``s2sr_20m_x2`` again guided by
  the guide sharpened x2 by the shipped 10 m model ``s2sr_x2`` (what a 5 m product has at
  hand: it computes the 10 m bands at 5 m anyway); with ``--x4 FILE`` beside it a dedicated
  x4 guided model (the dropped ``s2sr_20m_x4``, MODEL_CARD.md's "Tried and dropped").

``--split test``: the held-out places (date 1: abudhabi, rio, hongkong, milano);
``--split val``: the validation place of the training (OSCD beihai, both dates), where the
choice between the dedicated x4 model and the cascade was made.

Usage: nice -n 5 python benchmarks/bands20_cascade.py [--split test|val] [--shared ../shared/data]
       [--x4 FILE] [--only-x4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from torch import nn

from s2sr.data.multires import BANDS_20M, NativeScene, native_scenes, wald
from s2sr.evaluation.panel20 import run_guided
from s2sr.inference.baselines import guided_baseline, upsample
from s2sr.losses.metrics import Conventions, psnr_bands
from s2sr.models import load_model
from s2sr.models.pretrained import pretrained_20m_path

CASES: tuple[tuple[int, float | None], ...] = ((2, None), (2, 0.30), (4, 0.30))


def scores(scene: NativeScene, factor: int, mtf: float | None,
           models: dict[str, nn.Module]) -> dict[str, np.ndarray]:
    """PSNR per band of each method on one Wald case of ``scene``."""
    lr, guide, truth = wald(scene, factor, mtf)
    conv = Conventions().resolve(factor)
    out = {"bicubic": psnr_bands(upsample(lr, factor), truth, conv),
           "guided": psnr_bands(guided_baseline(lr, guide, factor), truth, conv)}
    if factor == 2:
        out["s2sr_20m_x2"] = psnr_bands(run_guided(models["x2"], lr, guide, "cpu"), truth, conv)
    else:
        if "x4" in models:
            out["x4 model"] = psnr_bands(run_guided(models["x4"], lr, guide, "cpu"), truth,
                                         conv)
        out["cascade"] = psnr_bands(run_guided(models["x2"], lr, guide, "cpu", 4), truth,
                                    conv)
    return out


def table(scenes: list[NativeScene], factor: int, mtf: float | None,
          models: dict[str, nn.Module]) -> list[str]:
    """One markdown table: bicubic PSNR, then each method's gain, per place; mean; worst."""
    case = "block mean" if mtf is None else f"MTF {mtf:.2f}"
    lines = [f"\n**Wald x{factor}, {case}** (bicubic: PSNR dB; others: gain over bicubic)\n",
             "| place | method | " + " | ".join(BANDS_20M) + " | mean |",
             "|---|---|" + "---|" * (len(BANDS_20M) + 1)]
    gains: dict[str, list[np.ndarray]] = {}
    for scene in scenes:
        got = scores(scene, factor, mtf, models)
        bic = got.pop("bicubic")
        lines.append(f"| {scene.name} | bicubic | " + " | ".join(f"{v:.2f}" for v in bic)
                     + f" | {bic.mean():.2f} |")
        for method, psnr in got.items():
            g = psnr - bic
            gains.setdefault(method, []).append(g)
            lines.append(f"| {scene.name} | {method} | " + " | ".join(f"{v:+.2f}" for v in g)
                         + f" | {g.mean():+.2f} |")
    for method, rows in gains.items():
        arr = np.stack(rows)
        for label, v, m in (("mean", arr.mean(0), arr.mean()),
                            ("worst", arr.min(0), arr.mean(1).min())):
            lines.append(f"| **{label}** | {method} | " + " | ".join(f"{x:+.2f}" for x in v)
                         + f" | {m:+.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--x4", type=Path, default=None, help="a dedicated x4 guided model")
    parser.add_argument("--only-x4", action="store_true", help="the x4 case only")
    args = parser.parse_args(argv)
    if not (args.shared / "sentinel2").is_dir():
        print(f"no Sentinel-2 data at {args.shared}/sentinel2: pass --shared DIR",
              file=sys.stderr)
        return 2
    if args.split == "test":
        scenes = [s for s in native_scenes(args.shared, held_out=True)
                  if s.name.startswith("oscd/") and s.name.endswith("imgs_1")]
    else:
        scenes = [s for s in native_scenes(args.shared, held_out=False) if s.place == "beihai"]
    models = {"x2": load_model(pretrained_20m_path(2))}
    if args.x4 is not None:
        models["x4"] = load_model(args.x4)
    for factor, mtf in CASES[-1:] if args.only_x4 else CASES:
        print("\n".join(table(scenes, factor, mtf, models)))
    print("\ncommand: nice -n 5 python benchmarks/bands20_cascade.py " + " ".join(
        sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
