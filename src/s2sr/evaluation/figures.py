"""Comparison figures in the layout of the study's Figure 5, legible at 100 %.

One PNG per patch, drawn with matplotlib (Agg) at :data:`DPI` dots per inch:

* columns: the input (enlarged by nearest neighbour), bicubic, the model(s), the
  reference; rows: true colour (B04, B03, B02) and, when the bands include B08, NIR false
  colour (B08, B04, B03) (bands without either: the first three, or the first as grey);
* every panel is at least :data:`MIN_PANEL` px a side, each source pixel a square block
  (integer nearest-neighbour zoom); a patch over :data:`MAX_SIDE` px is shown as the
  :data:`MAX_SIDE` px window with the most contrast (the caption says which);
* one stretch per row (:class:`~s2sr.io.visualize.Stretch`): per channel, the 2nd to 98th
  percentile of the pixels of *all* panels of the row together, at least
  :data:`~s2sr.io.visualize.MIN_SPAN` reflectance wide, applied to every panel, so brightness
  and contrast compare across panels and a flat patch is not shown as magnified noise;
* text: a title and a subtitle, one line above each panel (method, PSNR / SSIM), the row
  names on the left and a caption under the panels; each line fits its space (smaller type
  down to :data:`MIN_PT`, then an ellipsis in the middle), so nothing overlaps or is cut.

The panel count is stored in the PNG as the text chunk ``s2sr:panels``. The patches worth
showing are chosen with :func:`contrast` and :func:`pick_patches`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from s2sr.io.visualize import Stretch, shared_stretch

ROWS = {"true colour": ("B04", "B03", "B02"), "NIR false colour": ("B08", "B04", "B03")}
#: Dots per inch of the PNG (stored in it): type sizes below are at this resolution.
DPI = 150
#: Smallest panel side in pixels of the PNG.
MIN_PANEL = 288
#: Largest patch side shown whole (px); a larger one is shown as its most contrasted window.
MAX_SIDE = 384
#: Type sizes (points): title, panel titles and row names, subtitle and caption, smallest.
TITLE_PT, LABEL_PT, SMALL_PT, MIN_PT = 11.0, 9.0, 8.5, 7.0
#: A patch whose reference spans less reflectance than this (2-98 %, mean over the shown
#: channels) is too flat to show: its 2-98 % stretch would be noise (see pick_patches).
MIN_CONTRAST = 0.05

_MARGIN, _GAP, _LEFT = 10, 10, 58  # px: figure margin, between panels, row-name column


class Panel(NamedTuple):
    """One column of a figure: its name, ``(C, H, W)`` reflectance and scores (or "")."""

    name: str
    array: np.ndarray
    scores: str = ""


@dataclass
class FigureInfo:
    """What was drawn: size in px, DPI, panel count, the stretch of each row, the pixel box
    ``(x0, y0, x1, y1)`` of each panel (row, column) and the window shown, if cropped."""

    width: int
    height: int
    dpi: int
    panels: int
    stretches: dict[str, Stretch] = field(default_factory=dict)
    boxes: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)
    window: tuple[int, int, int, int] | None = None


def display_rows(bands: Sequence[str]) -> list[tuple[str, list[int]]]:
    """The rows drawn for these bands: ``(name, three band indices)``."""
    rows = [(name, [list(bands).index(b) for b in combo]) for name, combo in ROWS.items()
            if all(b in bands for b in combo)]
    if rows:
        return rows
    if len(bands) >= 3:
        return [(" ".join(bands[:3]), [0, 1, 2])]
    return [(bands[0], [0, 0, 0])]


def contrast(reference: np.ndarray, bands: Sequence[str]) -> float:
    """Spread of a ``(C, H, W)`` reflectance patch: 98th minus 2nd percentile per channel of
    its first display row, averaged (0 for a patch without finite pixels)."""
    idx = display_rows(bands)[0][1]
    spans = []
    for i in dict.fromkeys(idx):
        values = reference[i][np.isfinite(reference[i])]
        if values.size:
            lo, hi = np.percentile(values, [2, 98])
            spans.append(hi - lo)
    return float(np.mean(spans)) if spans else 0.0


def pick_patches(gains: Sequence[float], contrasts: Sequence[float],
                 min_contrast: float = MIN_CONTRAST) -> tuple[dict[str, int], int]:
    """Best, median and worst patch by gain, among those of at least ``min_contrast``.

    Patches too flat to show are left out unless every patch is (then all count); a NaN
    gain ranks below every other.

    Returns:
        ``{"best": k, "median": k, "worst": k}`` (indices, possibly equal) and how many
        patches were eligible.
    """
    eligible = [k for k, c in enumerate(contrasts) if c >= min_contrast]
    pool = eligible or list(range(len(gains)))
    order = sorted(pool, key=lambda k: (not math.isnan(gains[k]),
                                        gains[k] if not math.isnan(gains[k]) else 0.0))
    return ({"best": order[-1], "median": order[len(order) // 2], "worst": order[0]},
            len(eligible))


def display_window(reference: np.ndarray, bands: Sequence[str],
                   side: int = MAX_SIDE) -> tuple[int, int, int, int] | None:
    """The ``side`` px window ``(row0, row1, col0, col1)`` of the most contrast, or None
    when the patch fits whole."""
    h, w = reference.shape[-2:]
    if max(h, w) <= side:
        return None
    sh, sw = min(side, h), min(side, w)
    rows = sorted({*range(0, h - sh + 1, max(1, sh // 2)), h - sh})
    cols = sorted({*range(0, w - sw + 1, max(1, sw // 2)), w - sw})
    best = max((contrast(reference[:, r:r + sh, c:c + sw], bands), -r, -c)
                for r in rows for c in cols)
    r, c = -best[1], -best[2]
    return r, r + sh, c, c + sw


def _px(pt: float) -> float:
    return pt * DPI / 72.0


def _width(renderer: RendererAgg, text: str, pt: float) -> float:
    w, _, _ = renderer.get_text_width_height_descent(text, FontProperties(size=pt),
                                                     ismath=False)
    return float(w)


def fit(renderer: RendererAgg, text: str, width: float, pt: float,
        keep_end: int = 0) -> tuple[str, float]:
    """``text`` and a type size (from ``pt`` down to :data:`MIN_PT`) that fit ``width`` px;
    past that, characters before the last ``keep_end`` are replaced by an ellipsis from
    the middle out."""
    size = pt
    while size > MIN_PT and _width(renderer, text, size) > width:
        size = max(MIN_PT, size - 0.5)
    if _width(renderer, text, size) <= width:
        return text, size
    head, tail = text[:len(text) - keep_end], text[len(text) - keep_end:]
    for cut in range(1, len(head) + 1):
        left = (len(head) - cut + 1) // 2
        short = head[:left] + "\u2026" + head[left + cut:] + tail
        if _width(renderer, short, size) <= width:
            return short, size
    return "\u2026" + tail, size


def wrap(renderer: RendererAgg, text: str, width: float, pt: float) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` px (a longer word is cut
    by :func:`fit`)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if line and _width(renderer, trial, pt) > width:
            lines.append(line)
            trial = word
        line = trial
    if line:
        lines.append(line)
    return [fit(renderer, ln, width, pt)[0] for ln in lines]


def _panels(panels: Sequence[Panel | tuple[str, np.ndarray]]) -> list[Panel]:
    return [p if isinstance(p, Panel) else Panel(p[0], p[1]) for p in panels]


def build_figure(panels: Sequence[Panel | tuple[str, np.ndarray]], bands: Sequence[str], *,
                 title: str = "", subtitle: str = "", caption: str = "",
                 crop: bool = True) -> tuple[Figure, FigureInfo]:
    """Lay out a comparison figure (see the module docstring); nothing is written.

    Args:
        panels: one per column, ``(C, H, W)`` reflectance on the same grid; the reference
            last (the crop window is chosen on it).
        bands: band names of the arrays.
        title: the first line (bold).
        subtitle: a second line (e.g. which patch).
        caption: a paragraph under the panels (wrapped to the figure's width).
        crop: show a patch over :data:`MAX_SIDE` px as its most contrasted window.

    Returns:
        The figure (an Agg canvas attached) and what was drawn.
    """
    cols = _panels(panels)
    rows = display_rows(bands)
    window = display_window(cols[-1].array, bands) if crop else None
    if window is not None:
        cols, caption = _crop(cols, window, caption)
    h, w = cols[0].array.shape[-2:]
    zoom = max(1, math.ceil(MIN_PANEL / min(h, w)))
    pw, ph = w * zoom, h * zoom
    width = _LEFT + len(cols) * pw + (len(cols) - 1) * _GAP + _MARGIN
    fig = Figure(dpi=DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    inner = width - 2 * _MARGIN
    cap_lines = wrap(renderer, caption, inner, SMALL_PT) if caption else []
    line = {pt: math.ceil(_px(pt) * 1.4) for pt in (TITLE_PT, LABEL_PT, SMALL_PT)}
    top = _MARGIN + (line[TITLE_PT] if title else 0) + (line[SMALL_PT] if subtitle else 0)
    top += 6 + line[LABEL_PT]  # the panel titles
    height = top + len(rows) * ph + (len(rows) - 1) * _GAP + 8 + \
        len(cap_lines) * line[SMALL_PT] + _MARGIN + 4
    fig.set_size_inches(width / DPI, height / DPI)
    page = _Page(fig, renderer, width, height)
    y = _MARGIN
    if title:
        s, pt = fit(renderer, title, inner, TITLE_PT)
        page.text(_MARGIN, y, s, pt, va="top", fontweight="bold")
        y += line[TITLE_PT]
    if subtitle:
        s, pt = fit(renderer, subtitle, inner, SMALL_PT)
        page.text(_MARGIN, y, s, pt, va="top")
        y += line[SMALL_PT]
    info = FigureInfo(width, height, DPI, 0, window=window)
    for c, p in enumerate(cols):
        x = _LEFT + c * (pw + _GAP)
        label = f"{p.name}: {p.scores}" if p.scores else p.name
        s, pt = fit(renderer, label, pw, LABEL_PT, keep_end=len(p.scores) + 2 if p.scores
                    else 0)
        page.text(x + pw / 2, top - 4, s, pt, ha="center", va="bottom")
    for r, (row_name, idx) in enumerate(rows):
        _draw_row(page, info, cols, r, row_name, idx, bands, zoom, top, (pw, ph))
    y = top + len(rows) * ph + (len(rows) - 1) * _GAP + 8
    for ln in cap_lines:
        page.text(_MARGIN, y, ln, SMALL_PT, va="top")
        y += line[SMALL_PT]
    return fig, info


def _crop(cols: list[Panel], window: tuple[int, int, int, int], caption: str
          ) -> tuple[list[Panel], str]:
    """The panels cut to ``window`` (rows r0-r1, columns c0-c1), and the caption saying so."""
    r0, r1, c0, c1 = window
    full = cols[-1].array.shape[-2:]
    cols = [p._replace(array=p.array[:, r0:r1, c0:c1]) for p in cols]
    caption = (f"Shown: rows {r0}-{r1} and columns {c0}-{c1} of the {full[0]}x{full[1]} "
               f"px patch, the {r1 - r0}x{c1 - c0} px window with the most contrast. "
               + caption).strip()
    return cols, caption


@dataclass(frozen=True)
class _Page:
    """A figure being laid out in pixels from its top left corner."""

    fig: Figure
    renderer: RendererAgg
    width: int
    height: int

    def text(self, x: float, y: float, s: str, pt: float, **kw: Any) -> None:
        self.fig.text(x / self.width, 1 - y / self.height, s, fontsize=pt, parse_math=False,
                      **kw)


def _draw_row(page: _Page, info: FigureInfo, cols: list[Panel], r: int, row_name: str,
              idx: Sequence[int], bands: Sequence[str], zoom: int, top: int,
              size: tuple[int, int]) -> None:
    """Row ``r`` of the figure: its name at the left, then each panel in one stretch."""
    pw, ph = size
    width, height = page.width, page.height
    y0 = top + r * (ph + _GAP)
    stretch = shared_stretch([p.array[idx] for p in cols])
    info.stretches[row_name] = stretch
    names = [row_name] + ([" ".join(bands[i] for i in idx)] if len(set(idx)) > 1
                          else [])
    fitted = [fit(page.renderer, n, ph, LABEL_PT) for n in names]
    page.text(_LEFT / 2 - 2, y0 + ph / 2, "\n".join(s for s, _ in fitted),
              min(pt for _, pt in fitted), rotation=90, ha="center", va="center",
              multialignment="center")
    for c, p in enumerate(cols):
        x0 = _LEFT + c * (pw + _GAP)
        img = np.repeat(np.repeat(stretch.apply(p.array[idx]), zoom, 0), zoom, 1)
        ax = page.fig.add_axes((x0 / width, 1 - (y0 + ph) / height, pw / width, ph / height))
        ax.imshow(img, interpolation="nearest", resample=False)
        ax.set_axis_off()
        info.boxes[(r, c)] = (x0, y0, x0 + pw, y0 + ph)
        info.panels += 1


def comparison_figure(panels: Sequence[Panel | tuple[str, np.ndarray]], bands: Sequence[str],
                      path: str | os.PathLike[str], title: str = "", *, subtitle: str = "",
                      caption: str = "", text: dict[str, str] | None = None) -> FigureInfo:
    """Write a Figure-5-style PNG (see :func:`build_figure` for the arguments).

    Args:
        text: more PNG text chunks (e.g. ``{"s2sr:patch": patch_id}``).

    Returns:
        What was drawn (the panel count is also in the PNG's ``s2sr:panels`` text chunk).
    """
    fig, info = build_figure(panels, bands, title=title, subtitle=subtitle, caption=caption)
    fig.savefig(path, dpi=DPI, metadata={**(text or {}), "s2sr:panels": str(info.panels)})
    return info
