"""Side-by-side crops at 100 % zoom of real 10 m scenes super-resolved by the shipped models.

There is no truth at 5 m or 2.5 m: these pictures are for eyes (checkerboards, halos,
ringing, invented texture), not for scores. Each panel: the 10 m input (nearest, so its
pixels show), bicubic, the unsharp mask, s2sr. Output pixels are shown 1:1 (100 %).

With ``--previous DIR`` (a folder holding earlier ``s2sr_x2/x4.safetensors``, e.g. from
``git show 9085bc8:src/s2sr/weights/s2sr_x2.safetensors``), their output is added as a
fifth panel.

Usage: python docs/make_model_card_figures.py [--shared ../shared/data] [-o docs/img]
       [--previous DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from s2sr.inference import super_resolve
from s2sr.inference.baselines import upsample
from s2sr.io.scene import open_scene
from s2sr.io.visualize import side_by_side
from s2sr.models import load_model
from s2sr.models.pretrained import WEIGHTS_DIR

#: (scene under sentinel2/, row, col, size in 10 m pixels): held-out test scenes and one
#: cloudy training scene's cloud-free corner; sizes chosen so that x2 panels are 192 px.
CROPS = [
    ("boston_roads_L2A.tif", 20, 30, 96),
    ("boadella_20200113_L2A.tif", 150, 120, 96),
    ("bigearthnet/S2B_MSIL2A_20180204T94161_57_38", 12, 12, 96),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--previous", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rgb = [2, 1, 0]  # B04, B03, B02 of B02, B03, B04(, B08)
    for scale in (2, 4):
        model = load_model(WEIGHTS_DIR / f"s2sr_x{scale}.safetensors")
        previous = (load_model(args.previous / f"s2sr_x{scale}.safetensors")
                    if args.previous else None)
        for name, r, c, size in CROPS:
            n = size if scale == 2 else size // 2
            with open_scene(args.shared / "sentinel2" / name, bands=model.spec.bands,
                            dn_offset=0) as scene:
                full = scene.read_all()
            # the model sees context around the crop, as in a whole-scene prediction
            sr_full = super_resolve(full, model, device="cpu")
            lr = full[:, r:r + n, c:c + n]
            sr = sr_full[:, r * scale:(r + n) * scale, c * scale:(c + n) * scale]
            bic = upsample(full, scale)[:, r * scale:(r + n) * scale, c * scale:(c + n) * scale]
            usm = upsample(full, scale, "unsharp")[:, r * scale:(r + n) * scale,
                                                   c * scale:(c + n) * scale]
            stem = Path(name).name.split(".")[0].split("_L2A")[0]
            path = args.out / f"{stem}_x{scale}.png"
            panels = [("10 m input", upsample(lr, scale, "nearest")[rgb]),
                      (f"bicubic x{scale}", bic[rgb]),
                      (f"unsharp mask x{scale}", usm[rgb])]
            if previous is not None:
                old = super_resolve(full, previous, device="cpu")
                panels.append((f"previous s2sr x{scale}", np.asarray(old)[
                    :, r * scale:(r + n) * scale, c * scale:(c + n) * scale][rgb]))
            panels.append((f"s2sr x{scale}", np.asarray(sr)[rgb]))
            side_by_side(panels, path)
            print(path)


if __name__ == "__main__":
    main()
