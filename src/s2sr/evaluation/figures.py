"""Comparison figures in the layout of the study's Figure 5.

One PNG per patch: a row of true colour (B04, B03, B02) and, when the bands include
B08, a row of NIR false colour (B08, B04, B03); columns: input (nearest-neighbour
enlarged), bicubic, the model, the reference; PSNR/SSIM under each. Stretch: each
channel linearly from the 2nd to the 98th percentile of the *reference* panel, shared by
all panels of the row, so brightness is comparable. The panel count is stored in the PNG
as the text chunk ``s2sr:panels``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from s2sr.visualize import stretch_limits, to_uint8

ROWS = {"true colour": ("B04", "B03", "B02"), "NIR false colour": ("B08", "B04", "B03")}


def comparison_figure(panels: Sequence[tuple[str, np.ndarray]], bands: Sequence[str],
                      path: str | os.PathLike[str], title: str = "", zoom: int = 2) -> int:
    """Write a Figure-5-style PNG.

    Args:
        panels: ``(caption, (C, H, W) reflectance)`` on the same grid, the reference last.
        bands: band names of the arrays.
        path: PNG to write.
        title: a line above the panels.
        zoom: nearest-neighbour enlargement for visibility.

    Returns:
        The number of panels drawn.
    """
    rows = [(name, [bands.index(b) for b in combo]) for name, combo in ROWS.items()
            if all(b in bands for b in combo)]
    h, w = panels[0][1].shape[1:]
    pw, ph, cap, gap, head = w * zoom, h * zoom, 30, 4, 18 if title else 0
    canvas = Image.new("RGB", (len(panels) * (pw + gap), head + len(rows) * (ph + cap + gap)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 2), title, fill="black")
    count = 0
    for r, (row_name, idx) in enumerate(rows):
        limits = stretch_limits(panels[-1][1][idx])
        y = head + r * (ph + cap + gap)
        for c, (caption, arr) in enumerate(panels):
            img = Image.fromarray(to_uint8(arr[idx], limits)).resize(
                (pw, ph), Image.Resampling.NEAREST)
            x = c * (pw + gap)
            canvas.paste(img, (x, y))
            lines = caption.split("\n")
            label = f"{lines[0]} ({row_name})" if c == 0 else lines[0]
            draw.text((x + 2, y + ph + 2), label, fill="black")
            if len(lines) > 1:
                draw.text((x + 2, y + ph + 15), lines[1], fill="black")
            count += 1
    info = PngInfo()
    info.add_text("s2sr:panels", str(count))
    canvas.save(path, pnginfo=info)
    return count
