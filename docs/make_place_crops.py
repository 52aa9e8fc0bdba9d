"""Make docs/img/test_places_x{2,4}.png: 100 % crops of the native 10 m test places (issue 20).

For every test place of :data:`s2sr.data.places.TEST_PLACES`, the most textured
``--crop`` px window of the native 10 m scene (no degradation: what a user feeds the model)
shown as the input enlarged by nearest neighbour, bicubic, the shipped s2sr_x2 (or s2sr_x4
with ``--scale 4``) and the difference model - bicubic, each output pixel one screen pixel
(100 %). One stretch per row
(:func:`s2sr.io.visualize.shared_stretch`); the difference is shown at +-0.02 reflectance.

Usage: python docs/make_place_crops.py [--shared ../shared/data] [--scale 2] [--crop 80]
       [-o docs/img/test_places_x2.png]  (x4: --scale 4 --crop 48 -o docs/img/test_places_x4.png)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from s2sr import super_resolve
from s2sr.data.places import TEST_PLACES
from s2sr.inference.baselines import upsample
from s2sr.io.scene import open_scene
from s2sr.io.visualize import shared_stretch
from s2sr.models import load_model, pretrained_path

BANDS = ("B02", "B03", "B04", "B08")
RGB = [2, 1, 0]  # B04 B03 B02


def textured_window(refl: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` px window with the most gradient energy."""
    grey = np.nan_to_num(refl[:3].mean(axis=0))
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]
    h, w = energy.shape
    best, corner = -1.0, (0, 0)
    step = max(size // 2, 1)
    for y in range(0, max(h - size, 0) + 1, step):
        for x in range(0, max(w - size, 0) + 1, step):
            e = float(energy[y:y + size, x:x + size].mean())
            if e > best:
                best, corner = e, (y, x)
    return corner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--scale", type=int, choices=(2, 4), default=2)
    parser.add_argument("--crop", type=int, default=80, help="input crop side (px)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="default docs/img/test_places_x{scale}.png")
    args = parser.parse_args()
    s = args.scale
    output = args.output or Path(f"docs/img/test_places_x{s}.png")
    model = load_model(pretrained_path(s))
    c, gap, caption = args.crop, 6, 16
    titles = ["10 m input (nearest)", f"bicubic x{s}", f"s2sr_x{s}", f"s2sr_x{s} - bicubic"]
    rows: list[tuple[str, list[np.ndarray]]] = []
    for place in TEST_PLACES:
        with open_scene(args.shared / place.path, bands=BANDS, dn_offset=0) as scene:
            refl = scene.read_all()
        y, x = textured_window(refl, c)
        # margin of 16 px around the crop so that neither method sees the crop's borders
        y0, x0 = max(y - 16, 0), max(x - 16, 0)
        window = refl[:, y0:y + c + 16, x0:x + c + 16].astype(np.float32)
        sy, sx = s * (y - y0), s * (x - x0)
        model_out = super_resolve(window, model, device="cpu")[:, sy:sy + s * c, sx:sx + s * c]
        cubic = upsample(window, s)[:, sy:sy + s * c, sx:sx + s * c]
        nearest = np.repeat(np.repeat(refl[:, y:y + c, x:x + c], s, axis=1), s, axis=2)
        stretch = shared_stretch([p[RGB] for p in (nearest, cubic, model_out)])
        diff = (model_out - cubic)[RGB]
        diff_img = np.clip((diff.transpose(1, 2, 0) / 0.02 + 1) * 127.5, 0, 255).astype(np.uint8)
        rows.append((f"{place.name}: {place.setting}",
                     [stretch.apply(p[RGB]) for p in (nearest, cubic, model_out)] + [diff_img]))
    w = s * c
    canvas = Image.new("RGB", (4 * w + 3 * gap, len(rows) * (w + 2 * caption) + caption),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for k, title in enumerate(titles):
        draw.text((k * (w + gap) + 2, 2), title, fill="black")
    for r, (label, images) in enumerate(rows):
        top = caption + r * (w + 2 * caption)
        draw.text((2, top + 2), label, fill="black")
        for k, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (k * (w + gap), top + caption))
    output.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the file small enough for the repository (~0.35 MB)
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    print(f"wrote {output} ({canvas.size[0]}x{canvas.size[1]} px)")


if __name__ == "__main__":
    main()
