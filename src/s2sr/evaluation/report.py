"""``s2sr evaluate``: PSNR/SSIM of models against bicubic, Lanczos and an unsharp mask, in
the layout of the study's Table 2, with comparison figures, consistency checks and artefact
scores (the robustness panel is :mod:`s2sr.evaluation.panel`).

A report folder receives ``report.md`` (rows: methods, i.e. the baselines, each model and
each model with ``--consistency`` back-projection; columns: pair kinds, PSNR and SSIM),
``report.csv`` (one row per method and kind, with per-band values, consistency and the
method's artefact score), the artefact score (:mod:`s2sr.losses.artefacts`) of each
method's outputs as one number per method (the mean over outputs of at least
``MIN_SIDE`` px) against :data:`~s2sr.losses.artefacts.ARTEFACT_THRESHOLD`,
``report.json`` (the same, plus one row per patch and the conventions) and
``figures/*.png`` (Figure-5 layout: best, median and worst patch by gain over bicubic).

The parts: :mod:`s2sr.evaluation.scoring` (what can be evaluated together, the scores),
:mod:`s2sr.evaluation.writer` (the report folder, its tables and figures) and
:mod:`s2sr.evaluation.scenes` (whole scenes read and checked); this module runs the three
forms of ``s2sr evaluate`` (its dataset, scene and consistency subcommands).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2sr.core.constants import SCALES
from s2sr.core.errors import BandError, UsageError
from s2sr.data.dataset import PairDataset
from s2sr.data.degrade_torch import back_project
from s2sr.evaluation.consistency import consistency
from s2sr.evaluation.opensr_report import metric_lines, scene_metrics
from s2sr.evaluation.scenes import check_grids, read_checked
from s2sr.evaluation.scoring import (
    BASELINES,
    CONSISTENCY_ITERATIONS,
    check_crop,
    plan,
    predict_patch,
    scale_of,
    scores,
)
from s2sr.evaluation.writer import ReportWriter, staged_report, write_figures
from s2sr.inference.baselines import upsample
from s2sr.inference.modules import as_module
from s2sr.inference.predict import super_resolve
from s2sr.io.outputs import check_output_dir
from s2sr.io.scene import open_scene
from s2sr.losses.metrics import Conventions
from s2sr.models import get_spec
from s2sr.models.open import open_model

__all__ = ["evaluate_consistency", "evaluate_models", "evaluate_scene"]

log = logging.getLogger(__name__)


def evaluate_models(
    weights: Mapping[str, str | os.PathLike[str]], datasets: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str], *, kinds: Sequence[str] | None = None, split: str = "test",
    conv: Conventions | None = None, note: str = "", with_consistency: bool = True,
    figures: bool = True, overwrite: bool = False,
) -> Path:
    """Evaluate models and the baselines on the accepted patches of datasets.

    Every model must have at least one pair kind of its scale among the evaluated kinds,
    and every evaluated kind a model of its scale; the models must share their bands and
    the pairs must hold them. Anything else is refused rather than left out of the report.

    Args:
        weights: display name -> weights file.
        datasets: folders made by ``s2sr pairs``.
        out: report folder (written atomically: it appears complete or not at all).
        kinds: pair kinds to evaluate (default: every kind present), one column each.
        split: which split to use.
        conv: metric conventions (default: data range 1, border crop = scale).
        note: a paragraph for the report (e.g. what the data stand for).
        with_consistency: also evaluate each model with back-projection.
        figures: write best/median/worst comparison figures.
        overwrite: replace an existing non-empty report folder.

    Returns:
        The path of ``report.md``.
    """
    if not weights:
        raise UsageError("give at least one model to evaluate")
    if kinds is not None and not list(kinds):
        raise UsageError("kinds is empty: give at least one pair kind, or None for all")
    inputs = [*datasets, *weights.values()]
    check_output_dir(out, overwrite, inputs)
    sets = [PairDataset(root, split=split, kind=list(kinds) if kinds else None)
            for root in datasets]
    models = {name: as_module(open_model(path)) for name, path in weights.items()}
    chosen, bands = plan(models, sets, datasets, kinds, split)
    check_crop(conv, {(int(r["hr_size"]), scale_of(r)) for ds in sets for r in ds.rows
                      if r["kind"] in chosen})
    for ds, root in zip(sets, datasets, strict=True):
        if not any(r["kind"] in chosen for r in ds.rows):
            log.warning("%s has no accepted '%s' pairs of kind %s: it adds nothing to the "
                        "report", root, split, ", ".join(chosen))
    by_kind = _items_by_kind(sets, chosen, bands)
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        report = ReportWriter(tmp, conv or Conventions(), bands, note)
        for kind, items in sorted(by_kind.items()):
            scale = chosen[kind]
            report.conv = (conv or Conventions()).resolve(scale) \
                if (conv is None or conv.crop is None) else conv
            mine = {n: m for n, m in models.items() if get_spec(m).scale == scale}
            preds = _score_kind(report, kind, items, scale, mine, with_consistency)
            if figures:
                write_figures(report, kind, items, preds, list(mine), bands)
        report.write()
    return final / "report.md"


def _items_by_kind(sets: Sequence[PairDataset], chosen: Mapping[str, int],
                   bands: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The chosen kinds' patches, each cut to ``bands`` (in the models' order)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for ds in sets:
        pairs = ds.store.pairs
        for i, row in enumerate(ds.rows):
            if row["kind"] not in chosen:
                continue
            item = ds[i]
            have = list(pairs[item["pair_id"]].get("bands", bands))
            idx = [have.index(b) for b in bands]  # _plan checked every pair has them
            item = {**item, "lr": item["lr"][idx], "hr": item["hr"][idx]}
            by_kind.setdefault(item["kind"], []).append(item)
    return by_kind


def _score_kind(report: ReportWriter, kind: str, items: list[dict[str, Any]], scale: int,
                mine: Mapping[str, torch.nn.Module], with_consistency: bool
                ) -> dict[str, list[np.ndarray]]:
    """Score the baselines and the models of ``scale`` on one kind's patches (with
    ``report.conv``); returns each method's outputs, for the figures."""
    c = report.conv
    preds: dict[str, list[np.ndarray]] = {}
    for item in items:
        lr, hr = item["lr"].numpy(), item["hr"].numpy()
        for method in BASELINES:
            pred = upsample(lr, scale, method)
            report.add(method, kind, item["patch_id"], scores(pred, hr, lr, scale, c))
            report.add_artefact(method, pred)
            preds.setdefault(method, []).append(pred)
        for name, model in mine.items():
            variants = [(name, False)] + ([(f"{name} +consistency", True)]
                                          if with_consistency else [])
            for label, consistent in variants:
                pred = predict_patch(model, lr, consistent)
                report.add(label, kind, item["patch_id"], scores(pred, hr, lr, scale, c))
                if not consistent:
                    preds.setdefault(label, []).append(pred)
                    report.add_artefact(label, pred)
    return preds


def evaluate_scene(weights: str | os.PathLike[str], lr: str | os.PathLike[str],
                   hr: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   conv: Conventions | None = None, with_consistency: bool = True,
                   name: str | None = None, figures: bool = True,
                   overwrite: bool = False) -> Path:
    """Evaluate a model and the baselines on a co-registered scene pair (whole rasters).

    ``hr`` must cover the same area as ``lr`` (same CRS and bounds) with ``scale`` times
    the pixels; both must be free of NaN and nodata. The report folder is written
    atomically (see :func:`evaluate_models`).
    """
    inputs = [weights, lr, hr]
    check_output_dir(out, overwrite, inputs)
    model = as_module(open_model(weights))
    spec = get_spec(model)
    s = spec.scale
    with open_scene(lr, bands=spec.bands) as a, open_scene(hr, bands=spec.bands) as b:
        check_grids(a.meta, b.meta, s, lr, hr, "crop or resample the reference")
    lr_refl, _ = read_checked(lr, spec.bands, "input")
    hr_refl, _ = read_checked(hr, spec.bands, "reference")
    c = (conv or Conventions()).resolve(s) if (conv is None or conv.crop is None) else conv
    check_crop(c, [(min(hr_refl.shape[1:]), s)])
    name = name or Path(weights).stem
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        report = ReportWriter(tmp, c, spec.bands, f"Scene pair: {lr} -> {hr}.")
        kind = "scene"
        preds = {}
        for method in BASELINES:
            preds[method] = upsample(lr_refl, s, method)
            report.add(method, kind, "scene", scores(preds[method], hr_refl, lr_refl, s, c))
            report.add_artefact(method, preds[method])
            report.add_opensr(method, lr_refl, preds[method], hr_refl)
        sr = super_resolve(lr_refl, model)
        preds[name] = sr
        report.add(name, kind, "scene", scores(sr, hr_refl, lr_refl, s, c))
        report.add_artefact(name, sr)
        report.add_opensr(name, lr_refl, sr, hr_refl)
        if with_consistency:
            t = torch.from_numpy
            cons = back_project(t(sr)[None], t(lr_refl)[None], s,
                                CONSISTENCY_ITERATIONS)[0].numpy()
            report.add(f"{name} +consistency", kind, "scene",
                       scores(cons, hr_refl, lr_refl, s, c))
            report.add_opensr(f"{name} +consistency", lr_refl, cons, hr_refl)
        if figures:
            item = {"lr": torch.from_numpy(lr_refl), "hr": torch.from_numpy(hr_refl),
                    "patch_id": "scene", "kind": kind,
                    "label": f"scene {Path(lr).name} -> reference {Path(hr).name}"}
            write_figures(report, kind, [item], {k: [v] for k, v in preds.items()}, [name],
                          list(spec.bands))
        report.write()
    return final / "report.md"


def evaluate_consistency(output: str | os.PathLike[str], lr: str | os.PathLike[str],
                         out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Consistency of any ``s2sr predict`` output with its input (no reference needed).

    Draws no figures. The report folder is written atomically (see :func:`evaluate_models`).
    """
    inputs = [output, lr]
    check_output_dir(out, overwrite, inputs)
    with open_scene(output) as scene:
        bands = scene.meta.bands
        sr_meta = scene.meta
    try:
        with open_scene(lr, bands=bands) as scene:
            lr_meta = scene.meta
    except BandError as err:
        raise BandError(f"{err} (the output has {', '.join(bands)})") from None
    ratio = sr_meta.height / lr_meta.height
    if ratio not in SCALES or sr_meta.width != lr_meta.width * ratio:
        raise UsageError(f"{output} ({sr_meta.width}x{sr_meta.height}) is not 2 or 4 times "
                         f"{lr} ({lr_meta.width}x{lr_meta.height}): pass the input it was "
                         "made from")
    scale = int(ratio)
    check_grids(lr_meta, sr_meta, scale, lr, output, "pass the input it was made from")
    sr, _ = read_checked(output, bands, "output")
    lr_refl, _ = read_checked(lr, bands, "input")
    result = consistency(sr, lr_refl, scale)
    osr = scene_metrics(lr_refl, sr, None)
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        (tmp / "consistency.json").write_text(json.dumps(
            {"output": str(output), "input": str(lr), "scale": scale, "bands": list(bands),
             **result, "opensr": osr}, indent=1))
        lines = ["# s2sr consistency check", "", f"Output `{output}` degraded back x{scale} "
                 f"(Gaussian MTF 0.3 + block mean) vs input `{lr}`.", "",
                 "| band | MAE | bias |", "|---|---:|---:|"]
        for b, m, bias in zip(bands, result["mae"], result["bias"], strict=True):  # type: ignore[call-overload]
            lines.append(f"| {b} | {m:.5f} | {bias:+.5f} |")
        lines += ["", f"Mean spectral angle: {result['sam']:.3f} degrees."]
        lines += metric_lines({"output": osr}, correctness=False)
        (tmp / "consistency.md").write_text("\n".join(lines) + "\n")
    return final / "consistency.md"
