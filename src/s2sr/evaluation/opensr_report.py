"""The opensr-test metrics (:mod:`s2sr.evaluation.opensr`) in ``s2sr evaluate``'s reports.

The robustness panel (:mod:`s2sr.evaluation.panel`) stores them in its rows as
``osr_<key>`` (:func:`panel_metrics`, None where a value is undefined) and writes
``opensr.csv`` and a section of ``report.md`` (:func:`panel_section`): the means over
scenes, every place, and the target of issue 20 per place (a method's reflectance L1 at
most bicubic's + :data:`REFLECTANCE_MARGIN`, in every case). The scene and consistency
reports take their lines from :func:`metric_lines`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.errors import DataError
from s2sr.evaluation.markdown import table as md_table
from s2sr.evaluation.opensr import CONSISTENCY_KEYS, CORRECTNESS_KEYS, opensr_metrics

__all__ = ["MAX_PIXELS", "PANEL_KEYS", "REFLECTANCE_MARGIN", "mean_metrics", "metric_lines",
           "native_metrics", "native_section", "panel_metrics", "panel_section",
           "scene_metrics", "write_panel_csv"]

log = logging.getLogger(__name__)

#: The metrics in table order; the panel's rows hold them as ``osr_<key>``.
PANEL_KEYS = (*CONSISTENCY_KEYS, *CORRECTNESS_KEYS)
#: Issue 20's target: reflectance L1 of a method at most bicubic's plus this.
REFLECTANCE_MARGIN = 0.002
#: Largest output (pixels per band) the scene and consistency reports score (histogram
#: matching and phase correlation hold several float64 copies of it).
MAX_PIXELS = 4096 * 4096
#: Column titles of the Markdown tables (the hard fractions are in the CSV and JSON).
TITLES = ("L1", "SAD (deg)", "shift (px)", "improvement", "omission", "hallucination")
DEFINITION = (
    "opensr-test (Aybar et al., IEEE GRSL 2024; github.com/ESAOpenSR/opensr-test, default "
    "configuration): consistency of the output with its input, the output brought to the "
    "input grid by antialiased bilinear downsampling after a 16-px border cut: L1 "
    "(reflectance), spectral angle SAD (degrees), shift by phase correlation (input px; — "
    "where the aligner fails); correctness against the truth: mean softmin memberships of "
    "improvement, omission and hallucination (each pixel's normalised distances to the "
    "truth and to the bilinear-upsampled input; a perfect output scores 0.96 / 0.02 / "
    "0.02). `s2sr.evaluation.opensr` and docs/evaluation.md define them.")


def _clean(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def panel_metrics(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray | None) -> dict[str, Any]:
    """``osr_<key>`` for every :data:`PANEL_KEYS`: None where undefined (the aligner failed,
    or the image is too small for opensr-test's border; logged)."""
    try:
        got = opensr_metrics(lr, sr, hr)
    except DataError as err:
        log.warning("opensr-test metrics left out: %s", err)
        got = {}
    return {f"osr_{k}": _clean(got.get(k)) for k in PANEL_KEYS}


def native_metrics(lr: np.ndarray, sr: np.ndarray) -> dict[str, Any]:
    """``osr_<key>`` of the consistency keys alone, of an output of the undegraded scene
    ``lr`` (no truth there); None where undefined."""
    got = panel_metrics(lr, sr, None)
    return {f"osr_{k}": got[f"osr_{k}"] for k in CONSISTENCY_KEYS}


def scene_metrics(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray | None
                  ) -> dict[str, Any] | None:
    """:func:`panel_metrics` for a whole scene; None (logged) when the output has more than
    :data:`MAX_PIXELS` pixels per band."""
    if sr.shape[-1] * sr.shape[-2] > MAX_PIXELS:
        log.warning("opensr-test metrics left out: the output has %d px a band, above %d",
                    sr.shape[-1] * sr.shape[-2], MAX_PIXELS)
        return None
    return panel_metrics(lr, sr, hr)


def mean_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of each ``osr_<key>`` over ``rows``, leaving out None (None if all are)."""
    out: dict[str, Any] = {}
    for k in PANEL_KEYS:
        vals = [r[f"osr_{k}"] for r in rows if r.get(f"osr_{k}") is not None]
        out[f"osr_{k}"] = float(np.mean(vals)) if vals else None
    return out


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _cells(row: Mapping[str, Any] | None) -> list[str]:
    if row is None:
        return ["—"] * len(TITLES)
    return [_fmt(row.get("osr_reflectance"), 5), _fmt(row.get("osr_spectral"), 3),
            _fmt(row.get("osr_spatial"), 3),
            *(_fmt(row.get(f"osr_{k}"), 3) for k in ("improvement", "omission",
                                                     "hallucination"))]


def _excess(rows: Sequence[Mapping[str, Any]], method: str, scene: str
            ) -> tuple[float, str] | None:
    """The largest reflectance L1 of ``method`` minus bicubic's over the cases at
    ``scene``, and that case; None where a value is missing."""
    got: list[tuple[float, str]] = []
    for r in rows:
        if r["method"] != method or r["scene"] != scene:
            continue
        base = next((b for b in rows if b["method"] == "bicubic" and b["scene"] == scene
                     and b["case"] == r["case"]), None)
        if base is None or r.get("osr_reflectance") is None \
                or base.get("osr_reflectance") is None:
            return None
        got.append((r["osr_reflectance"] - base["osr_reflectance"], r["case"]))
    return max(got) if got else None


def panel_section(rows: Sequence[Mapping[str, Any]], cases: Sequence[str],
                  scenes: Sequence[str], methods: Sequence[str],
                  label: Mapping[str, str]) -> list[str]:
    """The panel's opensr-test section of ``report.md`` (Markdown lines, no trailing blank).

    Args:
        rows: the panel's rows (:func:`s2sr.evaluation.panel.panel_rows`).
        cases: case labels in report order. scenes: scene names in report order.
        methods: methods in column order (baselines first). label: display names.
    """
    means = {(r["case"], r["method"]): r for r in rows if r["scene"] == "mean"}
    per = {(r["case"], r["scene"], r["method"]): r for r in rows
           if r["scene"] not in ("mean", "worst")}
    present = [m for m in methods if any(k[1] == m for k in means)]
    lines = ["", "## opensr-test metrics (mean over scenes)", "", DEFINITION, ""]
    lines += md_table(["case", "method"], TITLES, (
        ([case, label.get(m, m)], _cells(means[(case, m)]))
        for case in cases for m in present if (case, m) in means))
    plain = [r for r in rows if r["scene"] not in ("mean", "worst")]
    others = [m for m in present if m != "bicubic"]
    lines += ["", f"## opensr-test reflectance target: L1 minus bicubic's, worst case per "
              f"place (target <= +{REFLECTANCE_MARGIN:.3f})", ""]
    cells = []
    for m in others:
        row = []
        for scene in scenes:
            got = _excess(plain, m, scene)
            row.append("—" if got is None else f"{got[0]:+.5f} ({got[1]})"
                       + (" **over**" if got[0] > REFLECTANCE_MARGIN else ""))
        cells.append(([label.get(m, m)], row))
    lines += md_table(["method"], list(scenes), cells)
    lines += ["", "## opensr-test metrics per place", ""]
    lines += md_table(["case", "scene", "method"], TITLES, (
        ([case, scene, label.get(m, m)], _cells(per[(case, scene, m)]))
        for case in cases for scene in scenes for m in present
        if (case, scene, m) in per))
    return lines


def native_section(arts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The opensr-test consistency of each model's output of the undegraded scenes (the
    panel's artefact rows, :func:`native_metrics`) beside bicubic's at its scale, and the
    reflectance target per scene (Markdown lines)."""
    table = {(r["scene"], r["method"]): r for r in arts if r["scene"] != "max"}
    scenes = list(dict.fromkeys(k[0] for k in table))
    models = [m for m in dict.fromkeys(k[1] for k in table) if not m.startswith("bicubic x")]
    lines = ["", "## opensr-test consistency on the undegraded scenes (what users feed the "
             "models; no truth there)", "",
             "L1 / SAD (deg) / shift (px) of each output with the 10 m scene itself; `vs "
             f"bicubic`: its L1 minus bicubic's at the same scale (target <= "
             f"+{REFLECTANCE_MARGIN:.3f}).", ""]
    rows = []
    for scene in scenes:
        for m in models:
            r = table.get((scene, m))
            if r is None:
                continue
            b = table.get((scene, f"bicubic x{r['scale']}"))
            cells = [f"{_fmt(r.get('osr_reflectance'), 5)} / {_fmt(r.get('osr_spectral'), 3)}"
                     f" / {_fmt(r.get('osr_spatial'), 3)}"]
            cells.append("—" if b is None else
                         f"{_fmt(b.get('osr_reflectance'), 5)} / "
                         f"{_fmt(b.get('osr_spectral'), 3)} / {_fmt(b.get('osr_spatial'), 3)}")
            if b is None or r.get("osr_reflectance") is None \
                    or b.get("osr_reflectance") is None:
                cells.append("—")
            else:
                d = r["osr_reflectance"] - b["osr_reflectance"]
                cells.append(f"{d:+.5f}" + (" **over**" if d > REFLECTANCE_MARGIN else ""))
            rows.append(([scene, m], cells))
    return lines + md_table(["scene", "method"], ["model", "bicubic", "vs bicubic"], rows)


def write_panel_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``opensr.csv``: one row per case, scene (``mean`` too) and method, every metric and
    the reflectance L1 minus bicubic's (same case and scene)."""
    keep = [r for r in rows if r["scene"] != "worst"]
    base = {(r["case"], r["scene"]): r.get("osr_reflectance") for r in keep
            if r["method"] == "bicubic"}
    fields = ["case", "scale", "mtf", "scene", "method", *PANEL_KEYS,
              "reflectance_minus_bicubic"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        for r in keep:
            out: dict[str, Any] = {k: r[k] for k in ("case", "scale", "scene", "method")}
            out["mtf"] = "block" if r["mtf"] is None else r["mtf"]
            out.update({k: "" if r.get(f"osr_{k}") is None else r[f"osr_{k}"]
                        for k in PANEL_KEYS})
            b, v = base.get((r["case"], r["scene"])), r.get("osr_reflectance")
            out["reflectance_minus_bicubic"] = "" if b is None or v is None else v - b
            writer.writerow(out)


def metric_lines(results: Mapping[str, Mapping[str, Any] | None], correctness: bool = True
                 ) -> list[str]:
    """A Markdown section for a scene or consistency report: one row per method of its
    ``osr_<key>`` values (:func:`scene_metrics`; None: left out); the correctness columns
    only when ``correctness``."""
    titles = TITLES if correctness else TITLES[:3]
    lines = ["", "## opensr-test metrics", "", DEFINITION, ""]
    if any(r is None for r in results.values()):
        lines += [f"Left out (—) above {MAX_PIXELS} output pixels a band.", ""]
    lines += md_table(["method"], titles,
                      (([m], _cells(r)[:len(titles)]) for m, r in results.items()))
    return lines
