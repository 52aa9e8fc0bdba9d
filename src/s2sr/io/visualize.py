"""Pictures for people: true-colour renderings and side-by-side panels (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from s2sr.core.files import atomic_path


@dataclass(frozen=True)
class Stretch:
    """A linear per-channel stretch of reflectance to 0-255.

    Attributes:
        lo: ``(3,)`` reflectance shown as 0, one per channel.
        hi: ``(3,)`` reflectance shown as 255 (above ``lo``).
    """

    lo: np.ndarray
    hi: np.ndarray

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``(3, H, W)`` reflectance -> ``(H, W, 3)`` uint8 (NaN as 0, clipped)."""
        return to_uint8(rgb, (self.lo, self.hi))


#: The narrowest stretch (reflectance) of :func:`shared_stretch`: a flat, noisy patch is
#: shown flat rather than as noise magnified to the full range.
MIN_SPAN = 0.02


def shared_stretch(panels: Sequence[np.ndarray], low: float = 2.0, high: float = 98.0,
                   min_span: float = MIN_SPAN) -> Stretch:
    """One stretch for several ``(3, H, W)`` reflectance panels of the same place.

    Per channel, from the ``low`` to the ``high`` percentile of the pixels of all panels
    together (NaN ignored), widened about its middle to at least ``min_span``; applied to
    every panel, brightness and contrast compare across them.
    """
    flat = np.concatenate([np.asarray(p, dtype=np.float64).reshape(3, -1) for p in panels],
                          axis=1)
    finite = np.isfinite(flat)
    lo, hi = np.zeros(3), np.ones(3)
    for c in range(3):
        values = flat[c][finite[c]]
        if values.size:
            lo[c], hi[c] = np.percentile(values, [low, high])
    mid, half = (lo + hi) / 2, np.maximum(hi - lo, min_span) / 2
    return Stretch(mid - half, mid + half)


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
    with atomic_path(path, os.path.splitext(path)[1]) as tmp:  # the suffix names the format
        canvas.save(tmp)
