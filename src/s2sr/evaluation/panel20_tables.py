"""The Markdown of the 20 m panel's report (:mod:`s2sr.evaluation.panel20_report`).

Summary per case (each method's mean over places and its worst place; the red-edge bands,
SWIR and the spectral angle on their own rows), the targets of issue 22 per model, the check
"model >= unsharp mask at every held-out place, every band" (:func:`unsharp_check`) with each
model's worst band margin per place over every baseline (:func:`place_margins`), per place
and band tables (PSNR (gain over bicubic) / SSIM / RMSE), and the Nyquist-line ratios of the
models on the native scenes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from s2sr.core.bands import BANDS_20M
from s2sr.data.multires import MAX_LINE_SIDE
from s2sr.evaluation.markdown import table as md_table
from s2sr.evaluation.panel import WORST
from s2sr.evaluation.panel20 import BASELINES20, LABELS20, SWIR
from s2sr.losses.artefacts import LINE_THRESHOLD
from s2sr.losses.metrics import Conventions

__all__ = ["CHECK", "DEFINITION", "markdown", "place_margins", "targets", "unsharp_check"]

DEFINITION = (
    "Wald protocol (as DSen2, Lanaras et al. 2018): every band degraded by the factor f "
    "(`s2sr.data.multires.wald`): input = the 20 m bands at 20f m, guide = the 10 m bands "
    "at 10f m on the 20 m grid (its offset honoured); truth = the real 20 m bands. "
    "Degradations: `block mean` = block mean alone; `MTF m` = Gaussian + block mean with MTF "
    "m at the coarse Nyquist. Methods: the trivial baselines of the 10 m panel (bicubic, "
    "Lanczos-3, unsharp mask = bicubic then `s2sr.inference.baselines.unsharp_mask` with "
    "sigma f/2 fine pixels, amount 0.6); guided high-pass (`s2sr.inference.baselines."
    "guided_highpass`, at x4 followed by bicubic x2); the guided models. RMSE in reflectance; "
    "SAM = mean spectral angle (degrees) of the ten-band stacks: the four 10 m bands at the "
    "truth's 20 m (the case's degradation by 2) stacked with the six outputs, against the same "
    "four stacked with the real 20 m bands.")
RED_EDGE = tuple(b for b in BANDS_20M if b not in SWIR)
#: The check of :func:`unsharp_check`, in words.
CHECK = "model >= unsharp mask at every held-out place, every band"
#: Margin keys of :func:`place_margins`, in column order, and their display names.
MARGIN_LABELS = {"vs_unsharp": "unsharp mask", "vs_trivial": "best trivial",
                 "vs_guided": "guided high-pass", "gain": "bicubic"}


def _group(row: Mapping[str, Any], bands: Sequence[str], key: str = "gain_bands") -> float:
    return float(np.mean([row[key][BANDS_20M.index(b)] for b in bands]))


def _places(rows: Sequence[Mapping[str, Any]], case: str, method: str
            ) -> list[Mapping[str, Any]]:
    return [r for r in rows if r["case"] == case and r["method"] == method
            and r["scene"] not in ("mean", WORST)]


def _summary_cell(rows: Sequence[Mapping[str, Any]], case: str, method: str,
                  what: str) -> str:
    """``mean / worst (place)`` over places of a group's gain, or of the SAM (worst = max)."""
    prow = _places(rows, case, method)
    if not prow:
        return "—"
    if what == "sam":
        vals = [float(r["sam"]) for r in prow]
        k = int(np.argmax(vals))
    else:
        bands = {"six": BANDS_20M, "red-edge": RED_EDGE, "swir": SWIR}[what]
        key = "psnr_bands" if method == "bicubic" else "gain_bands"
        vals = [_group(r, bands, key) for r in prow]
        k = int(np.argmin(vals))
        if method != "bicubic":
            return f"{np.mean(vals):+.2f} / {vals[k]:+.2f} ({prow[k]['scene']})"
    return f"{np.mean(vals):.2f} / {vals[k]:.2f} ({prow[k]['scene']})"


def _summary(rows: Sequence[Mapping[str, Any]], cases: Sequence[str],
             methods: Sequence[str], label: Mapping[str, str]) -> list[str]:
    what = {"six": "all six, dB", "red-edge": "red-edge B05 B06 B07 B8A, dB",
            "swir": "SWIR B11 B12, dB", "sam": "SAM ten bands, deg"}
    lines = ["## Summary: mean over places / worst place", "",
             "Bicubic: PSNR dB; the others: gain over bicubic in dB (mean of the group's "
             "bands). SAM: degrees (worst = highest).", ""]
    lines += md_table(["case", "bands"], [label[m] for m in methods], (
        ([case, text], [_summary_cell(rows, case, m, key) for m in methods])
        for case in cases for key, text in what.items()))
    return lines


def targets(rows: Sequence[Mapping[str, Any]], model: str) -> list[tuple[str, float, bool]]:
    """Issue 22's targets for one model: ``(target, worst measured value, met)``.

    x2 (every case, every place): the six bands' mean >= guided + 1.5 dB; every band
    >= bicubic + 1 dB and >= guided; B11 and B12 each >= bicubic + 2 dB at MTF 0.30. x4 at
    MTF 0.30 (every place): every band >= bicubic + 3 dB; SAM <= bicubic's.
    """
    out: list[tuple[str, float, bool]] = []
    cases = list(dict.fromkeys(r["case"] for r in rows if r["method"] == model))
    for case in cases:
        prow = _places(rows, case, model)
        bic = {r["scene"]: r for r in _places(rows, case, "bicubic")}
        if case.startswith("x2"):
            checks = [("six-band mean >= guided + 1.5 dB",
                       min(r["vs_guided_psnr"] for r in prow) - 1.5),
                      ("every band >= bicubic + 1 dB",
                       min(min(r["gain_bands"]) for r in prow) - 1.0),
                      ("every band >= guided", min(min(r["vs_guided_bands"]) for r in prow))]
            if case.endswith("MTF 0.30"):
                checks.append(("B11 and B12 each >= bicubic + 2 dB", min(
                    min(r["gain_bands"][BANDS_20M.index(b)] for b in SWIR) for r in prow) - 2))
        elif case.endswith("MTF 0.30"):
            checks = [("every band >= bicubic + 3 dB",
                       min(min(r["gain_bands"]) for r in prow) - 3.0),
                      ("SAM <= bicubic's", min(bic[r["scene"]]["sam"] - r["sam"]
                                               for r in prow))]
        else:
            continue
        out += [(f"{case}: {text}", margin, margin >= 0) for text, margin in checks]
    return out


def _lowest(prow: Sequence[Mapping[str, Any]], key: str) -> tuple[float, str, int]:
    """``(margin, place, band index)`` of the lowest ``{key}_bands`` over the places."""
    return min(((float(v), str(r["scene"]), b) for r in prow
                for b, v in enumerate(r[f"{key}_bands"])), key=lambda t: t[0])


def unsharp_check(rows: Sequence[Mapping[str, Any]], model: str) -> list[dict[str, Any]]:
    """Per case, a model's worst margin (dB) over the unsharp mask and over the best
    trivial baseline (bicubic, Lanczos, unsharp mask: the highest of the three per place and
    band), each over every place and band, named by place and band; ``holds``: the margin
    over the unsharp mask is >= 0 everywhere (:data:`CHECK`).

    Returns:
        Dicts with ``case``, ``unsharp`` and ``trivial`` (each ``{"margin", "place",
        "band"}``; ``trivial`` adds ``baseline``: which one was best there) and ``holds``;
        empty where the rows hold no margin over the unsharp mask.
    """
    out: list[dict[str, Any]] = []
    for case in dict.fromkeys(r["case"] for r in rows if r["method"] == model):
        prow = _places(rows, case, model)
        if not prow or "vs_unsharp_bands" not in prow[0]:
            continue
        m, place, b = _lowest(prow, "vs_unsharp")
        tm, tplace, tb = _lowest(prow, "vs_trivial")
        best = next(r for r in prow if r["scene"] == tplace)["trivial_best"][tb]
        out.append({"case": case, "holds": m >= 0,
                    "unsharp": {"margin": m, "place": place, "band": BANDS_20M[b]},
                    "trivial": {"margin": tm, "place": tplace, "band": BANDS_20M[tb],
                                "baseline": best}})
    return out


def place_margins(rows: Sequence[Mapping[str, Any]], case: str, model: str
                  ) -> list[tuple[str, dict[str, tuple[float, str]]]]:
    """Per place, a model's worst band margin (dB, band) over each of :data:`MARGIN_LABELS`."""
    return [(str(r["scene"]), {k: (float(min(r[f"{k}_bands"])), BANDS_20M[int(np.argmin(
        r[f"{k}_bands"]))]) for k in MARGIN_LABELS if f"{k}_bands" in r})
        for r in _places(rows, case, model)]


def _check_lines(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[str]:
    lines = ["", f"## Check: {CHECK}", "",
             "Worst margin in dB over every held-out place and band (PSNR of the model minus "
             "that of the baseline), named by place and band. Best trivial = the highest of "
             "bicubic, Lanczos and the unsharp mask at that place and band.", ""]
    checks = {m: unsharp_check(rows, m) for m in models}
    lines += md_table(["model", "case"], ["vs unsharp mask", "vs best trivial", "holds"], (
        ([m, c["case"]], [f"{c['unsharp']['margin']:+.2f} ({c['unsharp']['place']} "
                          f"{c['unsharp']['band']})",
                          f"{c['trivial']['margin']:+.2f} ({c['trivial']['place']} "
                          f"{c['trivial']['band']}, {c['trivial']['baseline']})",
                          "yes" if c["holds"] else "**no**"])
        for m in models for c in checks[m]))
    for m in models:
        if checks[m]:
            ok = all(c["holds"] for c in checks[m])
            lines += ["", f"{m}: {CHECK}: " + ("**holds**" if ok else "**fails** (" + ", ".join(
                c["case"] for c in checks[m] if not c["holds"]) + ")")]
    lines += ["", "### Worst band margin per place (dB, band)", ""]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    lines += md_table(["model", "case", "place"], [f"vs {v}" for v in MARGIN_LABELS.values()], (
        ([m, case, place], [f"{got[k][0]:+.2f} ({got[k][1]})" if k in got else "—"
                            for k in MARGIN_LABELS])
        for m in models for case in cases for place, got in place_margins(rows, case, m)))
    return lines


def _target_lines(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[str]:
    lines = ["", "## Targets of issue 22 (at every held-out place: the worst place decides)",
             "", "Margin = the worst place's value minus the target (dB; degrees for SAM).",
             ""]
    lines += md_table(["model", "target"], ["worst margin", "met"], (
        ([m, text], [f"{margin:+.2f}", "yes" if ok else "**no**"])
        for m in models for text, margin, ok in targets(rows, m)))
    return lines


def _place_lines(rows: Sequence[Mapping[str, Any]], cases: Sequence[str],
                 methods: Sequence[str], label: Mapping[str, str]) -> list[str]:
    lines = ["", "## Per place and band: PSNR dB (gain over bicubic) / SSIM / RMSE", "",
             "`worst`: per band, the place where the method gains least over bicubic "
             "(named after the numbers); SAM of the place of lowest mean gain.", ""]
    for case in cases:
        lines += ["", f"### {case}", ""]
        crows = [r for r in rows if r["case"] == case and r["scene"] != "mean"]
        order = {m: k for k, m in enumerate(methods)}
        crows.sort(key=lambda r: (r["scene"] == WORST, 0 if r["scene"] != WORST
                                  else order.get(r["method"], 99)))  # stable: by place
        lines += md_table(["place", "method"], [*BANDS_20M, "SAM (deg)"], (
            ([r["scene"], label[r["method"]]], [*(_band_cell(r, b) for b in range(6)),
                                                f"{r['sam']:.3f}"]) for r in crows))
    return lines


def _band_cell(r: Mapping[str, Any], b: int) -> str:
    cell = (f"{r['psnr_bands'][b]:.2f} ({r['gain_bands'][b]:+.2f}) / "
            f"{r['ssim_bands'][b]:.4f} / {r['rmse_bands'][b]:.4f}")
    return cell + (f" ({r['places'][b]})" if r["scene"] == WORST else "")


def _line_lines(lines_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    methods = list(dict.fromkeys(r["method"] for r in lines_rows))
    scenes = list(dict.fromkeys(r["scene"] for r in lines_rows))
    table = {(r["scene"], r["method"]): r for r in lines_rows}
    out = ["", f"## Nyquist-line ratio on the native scenes, x / y (threshold "
           f"{LINE_THRESHOLD:.2f})", "",
           "The 20 m bands of every native multi-resolution scene sharpened as a user runs "
           f"the model (input at 20 m, guide at 10 m; centre crop of {MAX_LINE_SIDE} 20 m px "
           "at most): "
           "power of (output - bicubic) on the output's Nyquist lines over its power in the "
           "ring 0.30-0.40 cycles/px (`s2sr.losses.artefacts`), against the 10 m models' "
           "bound. References (x2): `guided` = the guided high-pass baseline of the native "
           "scene (detail of the real 10 m bands); `truth` = the real 20 m bands minus "
           "bicubic of their Wald x2 input (MTF 0.30): real detail at the 20 m grid.", ""]
    if not lines_rows:
        return [*out, "No native scene."]
    out += md_table(["scene"], methods, (
        ([s], ["—" if (r := table.get((s, m))) is None else
               f"{r['line_x']:.3f} / {r['line_y']:.3f}" + (" **over**" if r["over"] else "")
               for m in methods]) for s in scenes))
    return out


def markdown(rows: Sequence[Mapping[str, Any]], lines_rows: Sequence[Mapping[str, Any]],
             methods: Sequence[str], places: Mapping[str, str],
             conv: Conventions | None) -> list[str]:
    """The lines of ``report.md``; ``places``: scene name -> a few words on it (size,
    offset, invalid pixels)."""
    c = conv or Conventions()
    label = {m: LABELS20.get(m, m) for m in methods}
    cases = list(dict.fromkeys(r["case"] for r in rows))
    out = ["# s2sr 20 m panel", "", f"Bands {' '.join(BANDS_20M)}, reflectance. The held-out "
           "scenes (`s2sr.data.multires.native_scenes(held_out=True)`):", "",
           *(f"- {n}: {text}" for n, text in places.items()), "", DEFINITION, "",
           "Conventions: " + c.describe().replace("border crop = scale (unresolved)",
                                                  "border crop = the factor") + ".", ""]
    out += _summary(rows, cases, methods, label)
    models = [m for m in methods if m not in BASELINES20]
    if models:
        out += _target_lines(rows, models)
        out += _check_lines(rows, models)
    out += _place_lines(rows, cases, methods, label)
    out += _line_lines(lines_rows)
    return out
