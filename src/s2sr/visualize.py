"""Pictures for people: true-colour renderings and side-by-side panels (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def stretch_limits(rgb: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple[
        np.ndarray, np.ndarray]:
    """Per-channel percentile limits of ``(3, H, W)`` reflectance, ignoring NaN."""
    flat = rgb.reshape(3, -1)
    lo = np.nanpercentile(flat, low, axis=1)
    hi = np.nanpercentile(flat, high, axis=1)
    return lo, np.maximum(hi, lo + 1e-6)


def to_uint8(rgb: np.ndarray, limits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(3, H, W)`` reflectance -> ``(H, W, 3)`` uint8 with a linear stretch."""
    lo, hi = limits
    scaled = (rgb - lo[:, None, None]) / (hi - lo)[:, None, None]
    out = np.clip(np.nan_to_num(scaled) * 255.0, 0, 255).astype(np.uint8)
    return np.transpose(out, (1, 2, 0))


def side_by_side(panels: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike[str],
                 reference: int = 0) -> None:
    """Write RGB panels of equal size next to each other with captions.

    Args:
        panels: ``(caption, (3, H, W) reflectance)`` pairs, red-green-blue order.
        path: PNG to write.
        reference: index of the panel whose 2-98 % stretch all panels share, so that
            brightness is comparable.
    """
    limits = stretch_limits(panels[reference][1])
    images = [Image.fromarray(to_uint8(rgb, limits)) for _, rgb in panels]
    w, h = images[0].size
    caption_h, gap = 18, 4
    canvas = Image.new("RGB", (len(images) * (w + gap) - gap, h + caption_h), "white")
    draw = ImageDraw.Draw(canvas)
    for k, ((caption, _), image) in enumerate(zip(panels, images, strict=True)):
        x = k * (w + gap)
        canvas.paste(image, (x, caption_h))
        draw.text((x + 2, 3), caption, fill="black")
    canvas.save(path)
