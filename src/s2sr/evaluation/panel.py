"""``s2sr evaluate --panel``: a robustness panel of degradations on held-out real scenes.

Each real 10 m scene plays the truth (HR = the scene itself, reflectance). For each scale
of the models (x2, x4) the panel makes the low-resolution input from it in five ways
(:data:`PANEL_MTFS`): the block mean alone (:func:`s2sr.data.degrade.block_mean`), and a
Gaussian + block mean with MTF 0.2, 0.3, 0.45 and 0.6 at the coarse Nyquist frequency
(:func:`s2sr.data.degrade.degrade`; MTF 0.6 is below the block mean's own 0.707 at x2 and
0.653 at x4). Methods: bicubic, Lanczos, the unsharp mask (see
:func:`s2sr.inference.baselines.upsample`) and every model of that scale, run as a user
runs it (:func:`s2sr.super_resolve`). Scored: PSNR/SSIM per case and scene (and their
means over scenes) with :class:`~s2sr.evaluation.metrics.Conventions` (data range 1,
border crop = scale), the gain over bicubic, and the consistency of each output with its
input (the output degraded back the same way as the input was made, against the input:
:func:`s2sr.evaluation.consistency.consistency`).

Separately, on the *undegraded* 10 m scene (what users feed the models): the artefact
score (:mod:`s2sr.evaluation.artefacts`) of each model's output next to bicubic's at the
same scale and the threshold, and the Nyquist-line ratio per axis of each model's output
minus bicubic (:func:`~s2sr.evaluation.artefacts.nyquist_line_ratio`: the 2-pixel stripe
pattern of a pixel-shuffle head) against :data:`~s2sr.evaluation.artefacts.LINE_THRESHOLD`.

Per place: by default the scenes are the test places (:mod:`s2sr.evaluation.places`,
held out of training and model selection), and the report gives every place's numbers
with the unsharp mask beside every row, and each method's *worst place* per case (the
scene where it gains least over bicubic): the worst place decides, not the mean.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from s2sr.core.errors import DataError, InputNotFoundError, UsageError
from s2sr.data.degrade import block_mean, degrade
from s2sr.evaluation.artefacts import (
    ARTEFACT_THRESHOLD,
    LINE_THRESHOLD,
    artefact_score,
    nyquist_line_ratio,
)
from s2sr.evaluation.consistency import consistency
from s2sr.evaluation.markdown import table as md_table
from s2sr.evaluation.metrics import Conventions, psnr_bands, ssim_bands
from s2sr.evaluation.opensr_report import (
    mean_metrics,
    native_metrics,
    native_section,
    panel_metrics,
    panel_section,
    write_panel_csv,
)
from s2sr.evaluation.places import TEST_PLACES
from s2sr.evaluation.scenes import read_checked
from s2sr.evaluation.writer import staged_report
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import super_resolve
from s2sr.io.outputs import check_output_dir
from s2sr.models import get_spec, load_model

__all__ = ["BASELINES", "PANEL_MTFS", "WORST", "Case", "artefact_rows", "default_scenes",
           "evaluate_panel", "panel_cases", "panel_rows", "scene_name"]

#: Baselines of the panel, in column order (display names in :data:`LABELS`).
BASELINES = ("bicubic", "lanczos", "unsharp")
LABELS = {"bicubic": "bicubic", "lanczos": "Lanczos", "unsharp": "unsharp mask"}
#: The panel's degradations: ``None`` = block mean alone, else the Nyquist MTF.
PANEL_MTFS: tuple[float | None, ...] = (None, 0.2, 0.3, 0.45, 0.6)
#: The ``scene`` of the rows holding each method's worst place (lowest gain over bicubic).
WORST = "worst"
#: Largest scene the panel reads (pixels per band; every case runs every model on it).
MAX_PANEL_PIXELS = 2048 * 2048
#: Smallest scene side (px): x4 leaves 8 input pixels, and the crop and SSIM window fit.
MIN_PANEL_SIDE = 32


@dataclass(frozen=True)
class Case:
    """One degradation of the panel: ``mtf`` None is the block mean alone."""

    scale: int
    mtf: float | None

    @property
    def label(self) -> str:
        """``x2 block mean`` or ``x2 MTF 0.30``."""
        return f"x{self.scale} " + ("block mean" if self.mtf is None else f"MTF {self.mtf:.2f}")

    def make_input(self, hr: np.ndarray) -> np.ndarray:
        """The low-resolution input ``(C, H / scale, W / scale)`` made from the truth."""
        if self.mtf is None:
            return block_mean(hr, self.scale)
        return degrade(hr, self.scale, self.mtf)


def panel_cases(scales: Sequence[int]) -> list[Case]:
    """The cases for ``scales``, in report order (by scale, block mean first)."""
    return [Case(s, m) for s in sorted(set(scales)) for m in PANEL_MTFS]


def default_scenes(shared: str | os.PathLike[str]) -> list[Path]:
    """The test places' scenes under ``shared`` (``../shared/data``): see
    :data:`s2sr.evaluation.places.TEST_PLACES` (held out of training and selection).

    Raises:
        InputNotFoundError: when they are not there (one line, naming ``--shared``).
    """
    scenes = [Path(shared) / place.path for place in TEST_PLACES]
    missing = [str(p) for p in scenes if not p.exists()]
    if missing:
        raise InputNotFoundError(f"the test places are not under {shared} (missing "
                                 f"{missing[0]}): pass --shared DIR or give --scene files")
    return scenes


def scene_name(path: str | os.PathLike[str]) -> str:
    """A scene's name in the report: the file or folder name, with the city for OSCD's
    per-date folders (``milano/imgs_1``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name.startswith("imgs_") else p.name


def _conv(conv: Conventions | None, scale: int) -> Conventions:
    c = conv or Conventions()
    return c.resolve(scale) if c.crop is None else c


def _run(model: nn.Module, lr: np.ndarray, device: str, precision: str = "fp32",
         backend: str = "torch") -> np.ndarray:
    return np.asarray(super_resolve(np.ascontiguousarray(lr, dtype=np.float32), model,
                                    device=device, precision=precision, backend=backend),
                      dtype=np.float32)


def _scales(models: Mapping[str, nn.Module], scales: Sequence[int] | None) -> list[int]:
    have = sorted({get_spec(m).scale for m in models.values()})
    if scales is None:
        return have
    chosen = sorted(set(scales))
    if not chosen:
        raise UsageError("scales is empty: give 2, 4 or both, or None for the models' scales")
    bad = [s for s in chosen if s not in (2, 4)]
    if bad:
        raise UsageError(f"panel scale {bad[0]} is not 2 or 4: use scales 2 and/or 4")
    return chosen


def panel_rows(models: Mapping[str, nn.Module], hr_scenes: Mapping[str, np.ndarray], *,
               scales: Sequence[int] | None = None, conv: Conventions | None = None,
               device: str = "auto", precision: str = "fp32", backend: str = "torch"
               ) -> list[dict[str, Any]]:
    """The panel's numbers: one row per case, scene and method, then the means over scenes.

    Args:
        models: display name -> model (from :func:`s2sr.models.load_model`); each runs on
            the cases of its scale.
        hr_scenes: scene name -> truth ``(C, H, W)`` reflectance in the models' bands.
        scales: the scales to evaluate (default: the models' scales).
        conv: metric conventions (default: data range 1, border crop = scale).
        device: where the models run (``auto``, ``cpu``, ``cuda``).
        precision: their arithmetic (``fp32`` by default on every device; ``bf16``,
            ``fp16`` or ``int8`` to measure reduced precision, see
            :func:`s2sr.super_resolve`). backend: what runs them (``torch`` by default).

    Returns:
        Dicts with ``case``, ``scale``, ``mtf`` (None: block mean), ``scene`` (``mean`` for
        the means over scenes; ``worst`` for each method's scene of lowest gain over
        bicubic, named in ``place``, with that scene's numbers), ``method``, ``psnr``,
        ``ssim``, ``psnr_bands``, ``ssim_bands``,
        ``gain_psnr``, ``gain_ssim`` (over bicubic, same case and scene), ``cons_mae``,
        ``cons_bias`` and ``cons_sam`` (the output degraded back as the input was made).
    """
    if not hr_scenes:
        raise UsageError("give at least one scene to the panel")
    rows: list[dict[str, Any]] = []
    for case in panel_cases(_scales(models, scales)):
        c = _conv(conv, case.scale)
        mine = {n: m for n, m in models.items() if get_spec(m).scale == case.scale}
        case_rows: list[dict[str, Any]] = []
        for scene, hr_full in hr_scenes.items():
            s = case.scale
            hr = hr_full[:, :hr_full.shape[1] // s * s, :hr_full.shape[2] // s * s]
            lr = case.make_input(hr)
            preds = {m: upsample(lr, s, m) for m in BASELINES}
            preds.update({n: _run(m, lr, device, precision, backend)
                          for n, m in mine.items()})
            base: dict[str, float] = {}
            for method, pred in preds.items():
                pb, sb = psnr_bands(pred, hr, c), ssim_bands(pred, hr, c)
                cons = consistency(pred, lr, s, case.mtf)
                row: dict[str, Any] = {"case": case.label, "scale": s, "mtf": case.mtf,
                                       "scene": scene,
                                       "method": method, "psnr": float(np.mean(pb)),
                                       "ssim": float(np.mean(sb)),
                                       "psnr_bands": [float(v) for v in pb],
                                       "ssim_bands": [float(v) for v in sb],
                                       "cons_mae": cons["mae_mean"],
                                       "cons_bias": cons["bias_mean"], "cons_sam": cons["sam"]}
                row.update(panel_metrics(lr, pred, hr))
                if method == "bicubic":
                    base = {"psnr": row["psnr"], "ssim": row["ssim"]}
                row["gain_psnr"] = row["psnr"] - base["psnr"]
                row["gain_ssim"] = row["ssim"] - base["ssim"]
                case_rows.append(row)
        rows += case_rows
        for method in dict.fromkeys(r["method"] for r in case_rows):
            mrows = [r for r in case_rows if r["method"] == method]
            mean: dict[str, Any] = {"case": case.label, "scale": case.scale, "mtf": case.mtf,
                                    "scene": "mean", "method": method}
            for key in ("psnr", "ssim", "gain_psnr", "gain_ssim", "cons_mae", "cons_bias",
                        "cons_sam"):
                mean[key] = float(np.mean([r[key] for r in mrows]))
            for key in ("psnr_bands", "ssim_bands"):
                mean[key] = np.mean([r[key] for r in mrows], axis=0).tolist()
            mean.update(mean_metrics(mrows))
            rows.append(mean)
        for method in dict.fromkeys(r["method"] for r in case_rows):
            mrows = [r for r in case_rows if r["method"] == method]
            rows.append({**min(mrows, key=lambda r: r["gain_psnr"]), "scene": WORST,
                         "place": min(mrows, key=lambda r: r["gain_psnr"])["scene"]})
    return rows


def artefact_rows(models: Mapping[str, nn.Module], hr_scenes: Mapping[str, np.ndarray], *,
                  device: str = "auto", precision: str = "fp32", backend: str = "torch"
                  ) -> list[dict[str, Any]]:
    """The artefact score of each model's output on each undegraded scene, with bicubic's
    (the models run at ``precision`` on ``backend``, as in :func:`panel_rows`).

    Returns:
        Dicts with ``scene`` (``max`` for the highest over scenes), ``method`` (a model's
        name, or ``bicubic x2`` / ``bicubic x4`` for the scales of the models), ``scale``,
        ``score`` and ``over`` (score above :data:`ARTEFACT_THRESHOLD`); for the models
        also ``line_x`` and ``line_y`` (Nyquist-line ratios of the output minus bicubic)
        and ``lines_over`` (either above :data:`LINE_THRESHOLD`); None for bicubic.
    """
    rows: list[dict[str, Any]] = []
    scales = sorted({get_spec(m).scale for m in models.values()})
    for scene, hr in hr_scenes.items():
        bicubic = {s: upsample(hr, s, "bicubic") for s in scales}
        for s in scales:
            score = artefact_score(bicubic[s])
            rows.append({"scene": scene, "method": f"bicubic x{s}", "scale": s,
                         "score": score, "over": score > ARTEFACT_THRESHOLD,
                         "line_x": None, "line_y": None, "lines_over": None,
                         **native_metrics(hr, bicubic[s])})
        for name, model in models.items():
            out = _run(model, hr, device, precision, backend)
            score = artefact_score(out)
            lx, ly = nyquist_line_ratio(out, bicubic[get_spec(model).scale])
            rows.append({"scene": scene, "method": name, "scale": get_spec(model).scale,
                         "score": score, "over": score > ARTEFACT_THRESHOLD,
                         "line_x": lx, "line_y": ly, "lines_over": max(lx, ly) > LINE_THRESHOLD,
                         **native_metrics(hr, out)})
    for method in list(dict.fromkeys(r["method"] for r in rows)):
        mrows = [r for r in rows if r["method"] == method]
        score = max(r["score"] for r in mrows)
        top: dict[str, Any] = {"scene": "max", "method": method, "scale": mrows[0]["scale"],
                               "score": score, "over": score > ARTEFACT_THRESHOLD,
                               "line_x": None, "line_y": None, "lines_over": None}
        if mrows[0]["line_x"] is not None:
            top["line_x"] = max(r["line_x"] for r in mrows)
            top["line_y"] = max(r["line_y"] for r in mrows)
            top["lines_over"] = max(top["line_x"], top["line_y"]) > LINE_THRESHOLD
        rows.append(top)
    return rows


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
    models = {name: load_model(path) for name, path in weights.items()}
    specs = {name: get_spec(m) for name, m in models.items()}
    if len({s.bands for s in specs.values()}) > 1:
        raise UsageError("the models take different bands (" + "; ".join(
            f"{n}: {','.join(s.bands)}" for n, s in specs.items()) + "): run the panel for "
            "models with the same bands together, the others in another report")
    chosen = _scales(models, scales)
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


def _write(out: Path, rows: list[dict[str, Any]], arts: list[dict[str, Any]],
           models: list[str], bands: list[str], conv: Conventions | None,
           hr_scenes: Mapping[str, np.ndarray], paths: Sequence[str | os.PathLike[str]]
           ) -> None:
    c = conv or Conventions()
    methods = [*BASELINES, *models]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    means = {(r["case"], r["method"]): r for r in rows if r["scene"] == "mean"}
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
    shapes = ", ".join(f"{n} ({h.shape[2]}x{h.shape[1]} px)" for n, h in hr_scenes.items())
    label = {m: LABELS.get(m, m) for m in methods}
    lines = ["# s2sr robustness panel", "",
             f"Truth: the real 10 m scenes {shapes}, bands {', '.join(bands)}, reflectance. "
             "Inputs made from them per case: `block mean` = block mean alone; `MTF m` = "
             "Gaussian + block mean with MTF m at the coarse Nyquist frequency.", "",
             "Conventions: " + c.describe().replace("border crop = scale (unresolved)",
                                                    "border crop = the case's scale") + ".", "",
             "## Summary: PSNR dB (gain over bicubic) / SSIM, mean over scenes", ""]
    columns = [label[m] for m in methods]
    lines += md_table(["case"], columns, (([case], [_scores(means.get((case, m))) for m in methods])
                                       for case in cases))
    worst = {(r["case"], r["method"]): r for r in rows if r["scene"] == WORST}
    lines += ["", "## Worst place: gain over bicubic (dB) at the scene where each method "
              "gains least (the worst place decides)", ""]
    lines += md_table(["case"], columns, (
        ([case], ["—" if (cell := worst.get((case, m))) is None
                  else f"{cell['gain_psnr']:+.2f} ({cell['place']})" for m in methods])
        for case in cases))
    lines += ["", f"## Artefact score on the undegraded scenes (threshold "
              f"{ARTEFACT_THRESHOLD:.2f})", "",
              "Power near the output's Nyquist frequency over the band just below "
              "(`s2sr.evaluation.artefacts`); real imagery stays below the threshold.", ""]
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
    lines += ["", "## Consistency with the input (mean over scenes)", "",
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
    per = {(r["case"], r["scene"], r["method"]): r for r in rows
           if r["scene"] not in ("mean", WORST)}
    lines += md_table(["case", "scene"], columns, (
        ([case, scene], [_scores(per.get((case, scene, m))) for m in methods])
        for case in cases for scene in hr_scenes))
    lines += panel_section(rows, cases, list(hr_scenes), methods, label)
    lines += native_section(arts)
    write_panel_csv(out / "opensr.csv", rows)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _scores(row: Mapping[str, Any] | None) -> str:
    """``PSNR (gain over bicubic) / SSIM`` of a panel row, or a dash where there is none."""
    if row is None:
        return "—"
    return f"{row['psnr']:.2f} ({row['gain_psnr']:+.2f}) / {row['ssim']:.4f}"
