"""``s2sr evaluate panel``: run the robustness panel (:mod:`s2sr.evaluation.panel`) on
scene files and write its report folder.

The report folder (written atomically, like every ``s2sr evaluate`` report) receives
``report.md`` (summary table laid out for the model card: rows = cases, columns = methods,
``PSNR (gain over bicubic) / SSIM``, then the worst-place table, the artefact and
Nyquist-line tables, consistency and per-place tables), ``report.csv`` (one row per case,
scene, ``mean`` or ``worst`` (with its ``place``), and method),
``artefacts.csv`` and ``report.json`` (everything, with the conventions). The opensr-test
metrics (Aybar et al. 2024, :mod:`s2sr.evaluation.opensr`) of every output, its consistency
with the Wald-degraded input and its correctness against the truth, are in the rows
(``osr_*``), in ``opensr.csv`` and in a section at the end of ``report.md``
(:mod:`s2sr.evaluation.opensr_report`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.errors import DataError, UsageError
from s2sr.evaluation.markdown import table as md_table
from s2sr.evaluation.opensr_report import native_section, panel_section, write_panel_csv
from s2sr.evaluation.panel import (
    BASELINES,
    LABELS,
    MAX_PANEL_PIXELS,
    MIN_PANEL_SIDE,
    WORST,
    artefact_rows,
    check_scales,
    panel_rows,
    scene_name,
)
from s2sr.evaluation.scenes import read_checked
from s2sr.evaluation.writer import staged_report
from s2sr.inference.modules import as_module
from s2sr.io.outputs import check_output_dir
from s2sr.losses.artefacts import ARTEFACT_THRESHOLD, LINE_THRESHOLD
from s2sr.losses.metrics import Conventions
from s2sr.models import get_spec
from s2sr.models.open import open_model

__all__ = ["evaluate_panel"]


def evaluate_panel(weights: Mapping[str, str | os.PathLike[str]],
                   scenes: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                   scales: Sequence[int] | None = None, overwrite: bool = False,
                   conv: Conventions | None = None, dn_offset: float | None = None,
                   device: str = "auto") -> Path:
    """Run the robustness panel and write its report folder (atomically).

    Args:
        weights: display name -> weights file; the models must take the same bands.
        scenes: real scenes playing the truth (read in the models' bands as reflectance;
            no nodata or NaN allowed, at most :data:`MAX_PANEL_PIXELS`).
        out: report folder.
        scales: scales to evaluate (default: the models' scales).
        overwrite: replace an existing, non-empty report folder.
        conv: metric conventions (default: data range 1, border crop = scale).
        dn_offset: DN offset of the scenes (None: detected; 0 for the shared test crops).
        device: where the models run.

    Returns:
        The path of ``report.md``.
    """
    if not weights:
        raise UsageError("give at least one model (--weights) to the panel")
    if not scenes:
        raise UsageError("give at least one scene (--scene) to the panel")
    inputs = [*weights.values(), *scenes]
    check_output_dir(out, overwrite, inputs)
    models = {name: as_module(open_model(path)) for name, path in weights.items()}
    specs = {name: get_spec(m) for name, m in models.items()}
    if len({s.bands for s in specs.values()}) > 1:
        raise UsageError("the models take different bands (" + "; ".join(
            f"{n}: {','.join(s.bands)}" for n, s in specs.items()) + "): run the panel for "
            "models with the same bands together, the others in another report")
    chosen = check_scales(models, scales)
    missing = sorted({s.scale for s in specs.values()} - set(chosen))
    if missing:
        raise UsageError(f"a model is x{missing[0]} but the panel scales are "
                         f"{', '.join(f'x{s}' for s in chosen)}: add x{missing[0]} or leave "
                         "that model out")
    bands = list(next(iter(specs.values())).bands)
    hr_scenes = _read_scenes(scenes, bands, dn_offset)
    rows = panel_rows(models, hr_scenes, scales=chosen, conv=conv, device=device)
    arts = artefact_rows(models, hr_scenes, device=device)
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        _write(tmp, rows, arts, list(models), bands, conv, hr_scenes, scenes)
    return final / "report.md"


def _read_scenes(paths: Sequence[str | os.PathLike[str]], bands: Sequence[str],
                 dn_offset: float | None) -> dict[str, np.ndarray]:
    scenes: dict[str, np.ndarray] = {}
    for path in paths:
        refl, meta = read_checked(path, bands, "scene", dn_offset=dn_offset,
                                  max_pixels=MAX_PANEL_PIXELS)
        if min(meta.width, meta.height) < MIN_PANEL_SIDE:
            raise DataError(f"scene {path} is {meta.width}x{meta.height} px, too small for "
                            f"the panel (at least {MIN_PANEL_SIDE} px a side): choose a "
                            "larger scene")
        name = scene_name(path)
        k = 2
        while name in scenes:
            name = f"{scene_name(path)} ({k})"
            k += 1
        scenes[name] = refl.astype(np.float32)
    return scenes


def _write(out: Path, rows: list[dict[str, Any]], arts: list[dict[str, Any]],
           models: list[str], bands: list[str], conv: Conventions | None,
           hr_scenes: Mapping[str, np.ndarray], paths: Sequence[str | os.PathLike[str]]
           ) -> None:
    c = conv or Conventions()
    methods = [*BASELINES, *models]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    _write_data(out, rows, arts, methods, bands, c, cases, paths)
    shapes = ", ".join(f"{n} ({h.shape[2]}x{h.shape[1]} px)" for n, h in hr_scenes.items())
    label = {m: LABELS.get(m, m) for m in methods}
    lines = ["# s2sr robustness panel", "",
             f"Truth: the real 10 m scenes {shapes}, bands {', '.join(bands)}, reflectance. "
             "Inputs made from them per case: `block mean` = block mean alone; `MTF m` = "
             "Gaussian + block mean with MTF m at the coarse Nyquist frequency.", "",
             "Conventions: " + c.describe().replace("border crop = scale (unresolved)",
                                                    "border crop = the case's scale") + ".", "",
             "## Summary: PSNR dB (gain over bicubic) / SSIM, mean over scenes", ""]
    means = {(r["case"], r["method"]): r for r in rows if r["scene"] == "mean"}
    lines += _summary_lines(rows, means, cases, methods, label)
    lines += _artefact_lines(arts)
    lines += _place_lines(rows, means, cases, methods, label, hr_scenes)
    lines += panel_section(rows, cases, list(hr_scenes), methods, label)
    lines += native_section(arts)
    write_panel_csv(out / "opensr.csv", rows)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _write_data(out: Path, rows: list[dict[str, Any]], arts: list[dict[str, Any]],
                methods: list[str], bands: list[str], c: Conventions, cases: list[str],
                paths: Sequence[str | os.PathLike[str]]) -> None:
    """``report.json`` (everything), ``report.csv`` and ``artefacts.csv``."""
    (out / "report.json").write_text(json.dumps({
        "conventions": {**c.as_dict(), "description": c.describe()},
        "bands": bands, "scenes": [str(p) for p in paths], "cases": cases,
        "methods": methods, "artefact_threshold": ARTEFACT_THRESHOLD,
        "rows": rows, "artefacts": arts}, indent=1))
    fields = ["case", "scale", "mtf", "scene", "method", "psnr", "ssim", "gain_psnr",
              "gain_ssim", "cons_mae", "cons_bias", "cons_sam",
              *[f"psnr_{b}" for b in bands], *[f"ssim_{b}" for b in bands], "place"]
    with open(out / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        for r in rows:
            row = {k: r[k] for k in fields[:12]}
            row["mtf"] = "block" if r["mtf"] is None else r["mtf"]
            row["place"] = r.get("place", r["scene"] if r["scene"] != "mean" else "")
            row.update({f"psnr_{b}": v for b, v in zip(bands, r["psnr_bands"], strict=True)})
            row.update({f"ssim_{b}": v for b, v in zip(bands, r["ssim_bands"], strict=True)})
            writer.writerow(row)
    with open(out / "artefacts.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["scene", "method", "scale", "score", "over",
                                         "line_x", "line_y", "lines_over"],
                                extrasaction="ignore")  # osr_*: in opensr.csv
        writer.writeheader()
        writer.writerows(arts)


def _summary_lines(rows: list[dict[str, Any]], means: Mapping[tuple[str, str], Any],
                   cases: list[str], methods: list[str], label: Mapping[str, str]
                   ) -> list[str]:
    """The summary table (means over scenes) and the worst-place table of ``report.md``."""
    columns = [label[m] for m in methods]
    lines: list[str] = []
    lines += md_table(["case"], columns, (([case], [_scores(means.get((case, m))) for m in methods])
                                       for case in cases))
    worst = {(r["case"], r["method"]): r for r in rows if r["scene"] == WORST}
    lines += ["", "## Worst place: gain over bicubic (dB) at the scene where each method "
              "gains least (the worst place decides)", ""]
    lines += md_table(["case"], columns, (
        ([case], ["—" if (cell := worst.get((case, m))) is None
                  else f"{cell['gain_psnr']:+.2f} ({cell['place']})" for m in methods])
        for case in cases))
    return lines


def _place_lines(rows: list[dict[str, Any]], means: Mapping[tuple[str, str], Any],
                 cases: list[str], methods: list[str], label: Mapping[str, str],
                 hr_scenes: Mapping[str, np.ndarray]) -> list[str]:
    """The consistency (means over scenes) and per-place sections of ``report.md``."""
    lines = ["", "## Consistency with the input (mean over scenes)", "",
             "Output degraded back as the input was made, against the input: mean absolute "
             "error and bias (reflectance), spectral angle (degrees).", "",
             "| case | method | MAE | bias | SAM (deg) |", "|---|---|---:|---:|---:|"]
    for case in cases:
        for m in methods:
            mean = means.get((case, m))
            if mean is not None:
                lines.append(f"| {case} | {label[m]} | {mean['cons_mae']:.5f} | "
                             f"{mean['cons_bias']:+.5f} | {mean['cons_sam']:.3f} |")
    lines += ["", "## Per place: PSNR dB (gain over bicubic) / SSIM", ""]
    columns = [label[m] for m in methods]
    per = {(r["case"], r["scene"], r["method"]): r for r in rows
           if r["scene"] not in ("mean", WORST)}
    lines += md_table(["case", "scene"], columns, (
        ([case, scene], [_scores(per.get((case, scene, m))) for m in methods])
        for case in cases for scene in hr_scenes))
    return lines


def _artefact_lines(arts: list[dict[str, Any]]) -> list[str]:
    """The artefact-score and Nyquist-line sections of ``report.md``."""
    lines = ["", f"## Artefact score on the undegraded scenes (threshold "
             f"{ARTEFACT_THRESHOLD:.2f})", "",
             "Power near the output's Nyquist frequency over the band just below "
             "(`s2sr.losses.artefacts`); real imagery stays below the threshold.", ""]
    art_methods = list(dict.fromkeys(r["method"] for r in arts))
    art_scenes = list(dict.fromkeys(r["scene"] for r in arts))
    table = {(r["scene"], r["method"]): r for r in arts}
    lines += md_table(["scene"], art_methods, (
        ([scene], [f"{(art := table[(scene, m)])['score']:.3f}"
                   + (" **over**" if art["over"] else "") for m in art_methods])
        for scene in art_scenes))
    line_methods = [m for m in art_methods if table[(art_scenes[0], m)]["line_x"] is not None]
    lines += ["", f"## Nyquist-line ratio on the undegraded scenes, x / y (threshold "
              f"{LINE_THRESHOLD:.2f})", "",
              "Power of (model - bicubic) on the output's Nyquist lines |fx| = 0.5 (x) and "
              "|fy| = 0.5 (y) over its mean power in the ring 0.30-0.40 cycles/px: a 2-pixel "
              "stripe pattern scores 1-4, a model adding real-like detail 0.02-0.3 "
              "(MODEL_CARD.md).", ""]
    lines += md_table(["scene"], line_methods, (
        ([scene], [f"{(art := table[(scene, m)])['line_x']:.3f} / {art['line_y']:.3f}"
                   + (" **over**" if art["lines_over"] else "") for m in line_methods])
        for scene in art_scenes))
    return lines


def _scores(row: Mapping[str, Any] | None) -> str:
    """``PSNR (gain over bicubic) / SSIM`` of a panel row, or a dash where there is none."""
    if row is None:
        return "—"
    return f"{row['psnr']:.2f} ({row['gain_psnr']:+.2f}) / {row['ssim']:.4f}"
