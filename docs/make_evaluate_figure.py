"""Make docs/img/evaluate_figure.png: a comparison figure of ``s2sr evaluate`` on real data.

Wald pairs (20 m -> 10 m, 64 px inputs) are made with ``s2sr pairs degrade`` from two real
Sentinel-2 crops in ``../shared/data/sentinel2`` (farmland in Germany, a reservoir and
mountain forest in Catalonia); the shipped x2 model is evaluated on them and its *worst*
figure (lowest PSNR gain over bicubic among the patches with content) is copied, reduced
to 256 colours (median cut, no dithering: 0.14 instead of 0.43 MB, alike at 100 %) to keep
the repository small.

Usage: python docs/make_evaluate_figure.py [-o docs/img/evaluate_figure.png] [--which worst]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from PIL import Image

from s2sr.data import DegradeOptions, degrade_scene
from s2sr.evaluation.report import evaluate_models
from s2sr.models.pretrained import pretrained_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentinel2"
SCENES = ("dsen2_T33UUB_20170527_L1C.tif", "boadella_20200113_L2A.tif")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path,
                        default=Path(__file__).parent / "img" / "evaluate_figure.png")
    parser.add_argument("--which", choices=("best", "median", "worst"), default="worst")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the crops carry no processing baseline
    with tempfile.TemporaryDirectory(prefix="s2sr-figure-") as tmp:
        root = Path(tmp)
        for name in SCENES:
            degrade_scene(SHARED / name, root / "ds", DegradeOptions(
                patch=64, split="test", site=name.split("_")[0], resolution=10.0))
        evaluate_models({"s2sr_x2": pretrained_path(2)}, [root / "ds"], root / "report",
                        with_consistency=False)
        figures = sorted((root / "report" / "figures").glob(f"*_{args.which}*.png"))
        with Image.open(figures[0]) as img:
            small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
            small.save(args.out, optimize=True, dpi=img.info.get("dpi", (150, 150)))
    print(args.out)


if __name__ == "__main__":
    main()
