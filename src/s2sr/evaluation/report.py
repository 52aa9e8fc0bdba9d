"""``s2sr evaluate``: PSNR/SSIM of models against bicubic, Lanczos and an unsharp mask, in
the layout of the study's Table 2, with comparison figures, consistency checks and artefact
scores (the robustness panel is :mod:`s2sr.evaluation.panel`).

A report folder receives ``report.md`` (rows: methods, i.e. the baselines, each model and
each model with ``--consistency`` back-projection; columns: pair kinds, PSNR and SSIM),
``report.csv`` (one row per method and kind, with per-band values, consistency and the
method's artefact score), the artefact score (:mod:`s2sr.evaluation.artefacts`) of each
method's outputs as one number per method (the mean over outputs of at least
``MIN_SIDE`` px) against :data:`~s2sr.evaluation.artefacts.ARTEFACT_THRESHOLD`,
``report.json`` (the same, plus one row per patch and the conventions) and
``figures/*.png`` (Figure-5 layout: best, median and worst patch by gain over bicubic).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2sr.data.dataset import PairDataset
from s2sr.errors import BandError, DataError, UsageError
from s2sr.evaluation.artefacts import ARTEFACT_THRESHOLD, MIN_SIDE, artefact_score
from s2sr.evaluation.consistency import back_project, consistency
from s2sr.evaluation.figures import comparison_figure
from s2sr.evaluation.metrics import Conventions, psnr_bands, ssim_bands
from s2sr.inference.baselines import upsample
from s2sr.io.nodata import valid_mask
from s2sr.io.outputs import (
    check_output_dir,
    exclusive_output,
    sweep_stale_temps,
    temp_path,
    terminate_raises,
)
from s2sr.io.scene import GeoMeta, open_scene
from s2sr.models import get_spec, load_model

log = logging.getLogger(__name__)

BASELINES = ("bicubic", "lanczos", "unsharp")
CONSISTENCY_ITERATIONS = 3
#: Largest scene the scene and consistency forms read whole (output pixels per band).
MAX_SCENE_PIXELS = 10_000 * 10_000


@contextlib.contextmanager
def staged_report(out: str | os.PathLike[str], overwrite: bool,
                  inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` only when the block succeeds.

    The output policy of :func:`s2sr.io.outputs.check_output_dir` applies (an existing
    non-empty folder needs ``overwrite``; a file, or a folder inside an input, is refused).
    On any failure, Ctrl-C or SIGTERM the temporary folder is removed and ``out`` is left as
    it was; with ``overwrite`` the old report is replaced in one rename.
    """
    final = check_output_dir(out, overwrite, inputs)
    parent = final.parent
    if not parent.exists():
        parent.mkdir(parents=True)
    sweep_stale_temps(parent, final.name)
    with terminate_raises(), exclusive_output(final):
        check_output_dir(final, overwrite, inputs)  # again, now that the output is ours
        tmp = temp_path(final)
        tmp.mkdir()
        try:
            yield tmp
            old = None
            if final.is_dir():
                old = temp_path(final)
                os.replace(final, old)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _predict(model: nn.Module, lr: np.ndarray, consistent: bool) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))[None]
        y = model(x)
        if consistent:
            y = back_project(y, x, get_spec(model).scale, CONSISTENCY_ITERATIONS)
        return y[0].float().numpy()


def _scores(pred: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int,
            conv: Conventions) -> dict[str, Any]:
    pb, sb = psnr_bands(pred, hr, conv), ssim_bands(pred, hr, conv)
    cons = consistency(pred, lr, scale)
    return {"psnr": float(np.mean(pb)), "ssim": float(np.mean(sb)),
            "psnr_bands": [float(v) for v in pb], "ssim_bands": [float(v) for v in sb],
            "cons_mae": cons["mae_mean"], "cons_bias": cons["bias_mean"],
            "cons_sam": cons["sam"]}


class _Report:
    """Accumulates per-patch rows and writes the files."""

    def __init__(self, out: Path, conv: Conventions, bands: Sequence[str], note: str) -> None:
        self.out, self.conv, self.bands, self.note = out, conv, list(bands), note
        self.rows: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.methods: list[str] = []  # in the order first seen: baselines, then models
        self.artefacts: dict[str, list[float]] = {}  # method -> score of each output

    def add_artefact(self, method: str, output: np.ndarray) -> None:
        """Score one output for periodic artefacts (outputs under MIN_SIDE px are skipped)."""
        if min(output.shape[-2:]) >= MIN_SIDE:
            self.artefacts.setdefault(method, []).append(artefact_score(output))

    def artefact_means(self) -> dict[str, float]:
        """One artefact score per method: the mean over its scored outputs."""
        return {m: float(np.mean(v)) for m, v in self.artefacts.items()}

    def add(self, method: str, kind: str, patch_id: str, scores: dict[str, Any]) -> None:
        if method not in self.methods:
            self.methods.append(method)
        self.rows.append({"method": method, "kind": kind, "patch_id": patch_id, **scores})

    def summary(self) -> list[dict[str, Any]]:
        out = []
        keys = sorted({(r["method"], r["kind"]) for r in self.rows},
                      key=lambda k: (self._order(k[0]), k[1]))
        for method, kind in keys:
            rows = [r for r in self.rows if r["method"] == method and r["kind"] == kind]
            agg: dict[str, Any] = {"method": method, "kind": kind, "patches": len(rows)}
            for name in ("psnr", "ssim", "cons_mae", "cons_bias", "cons_sam"):
                agg[name] = float(np.mean([r[name] for r in rows]))
            for name in ("psnr_bands", "ssim_bands"):
                agg[name] = np.mean([r[name] for r in rows], axis=0).tolist()
            out.append(agg)
        return out

    def _order(self, method: str) -> int:
        return self.methods.index(method)

    def write(self) -> Path:
        summary = self.summary()
        kinds = sorted({s["kind"] for s in summary})
        methods = list(dict.fromkeys(s["method"] for s in summary))
        table = {(s["method"], s["kind"]): s for s in summary}
        arts = self.artefact_means()
        (self.out / "report.json").write_text(json.dumps({
            "conventions": {**self.conv.as_dict(), "description": self.conv.describe()},
            "note": self.note, "bands": self.bands, "summary": summary,
            "artefacts": arts, "artefact_threshold": ARTEFACT_THRESHOLD,
            "patches": self.rows, "figures": self.figures}, indent=1))
        with open(self.out / "report.csv", "w", newline="") as handle:
            fields = ["method", "kind", "patches", "psnr", "ssim",
                      *[f"psnr_{b}" for b in self.bands], *[f"ssim_{b}" for b in self.bands],
                      "cons_mae", "cons_bias", "cons_sam", "artefact"]
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            for s in summary:
                row = {k: s[k] for k in ("method", "kind", "patches", "psnr", "ssim",
                                         "cons_mae", "cons_bias", "cons_sam")}
                row["artefact"] = arts.get(s["method"], "")
                row.update({f"psnr_{b}": v for b, v in zip(self.bands, s["psnr_bands"],
                                                           strict=True)})
                row.update({f"ssim_{b}": v for b, v in zip(self.bands, s["ssim_bands"],
                                                           strict=True)})
                writer.writerow(row)
        lines = ["# s2sr evaluation", ""]
        if self.note:
            lines += [self.note, ""]
        lines += [f"Conventions: {self.conv.describe()}.", "",
                  "## PSNR (dB) / SSIM (Table 2 layout)", "",
                  "| method | " + " | ".join(f"{k} PSNR | {k} SSIM" for k in kinds) + " |",
                  "|---|" + "---:|---:|" * len(kinds)]
        best = {k: max(table[(m, k)]["psnr"] for m in methods if (m, k) in table)
                for k in kinds}
        for m in methods:
            cells = []
            for k in kinds:
                cell = table.get((m, k))
                if cell is None:
                    cells += ["", ""]
                    continue
                p = f"{cell['psnr']:.2f}"
                cells += [f"**{p}**" if cell["psnr"] == best[k] else p, f"{cell['ssim']:.4f}"]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "## Gain over bicubic (dB PSNR / SSIM)", "",
                  "| method | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
        for m in methods:
            cells = []
            for k in kinds:
                got, b = table.get((m, k)), table.get(("bicubic", k))
                cells.append(f"{got['psnr'] - b['psnr']:+.2f} / {got['ssim'] - b['ssim']:+.4f}"
                             if got and b else "")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "## Consistency with the input", "",
                  "Output degraded back to the input grid (Gaussian MTF 0.3 + block mean) vs "
                  "the input: mean absolute error and bias (reflectance), spectral angle "
                  "(degrees). `+consistency` rows apply iterative back-projection "
                  f"({CONSISTENCY_ITERATIONS} iterations) to the model output.", "",
                  "| method | kind | MAE | bias | SAM (deg) |", "|---|---|---:|---:|---:|"]
        for s in summary:
            lines.append(f"| {s['method']} | {s['kind']} | {s['cons_mae']:.5f} | "
                         f"{s['cons_bias']:+.5f} | {s['cons_sam']:.3f} |")
        lines += ["", "## Per band", "", "| method | kind | " + " | ".join(
            f"{b} PSNR" for b in self.bands) + " | " + " | ".join(
            f"{b} SSIM" for b in self.bands) + " |",
            "|---|---|" + "---:|" * (2 * len(self.bands))]
        for s in summary:
            lines.append(f"| {s['method']} | {s['kind']} | " + " | ".join(
                f"{v:.2f}" for v in s["psnr_bands"]) + " | " + " | ".join(
                f"{v:.4f}" for v in s["ssim_bands"]) + " |")
        if arts:
            lines += ["", "## Artefact score", "",
                      "Power near the output's Nyquist frequency over the band just below, "
                      "mean over the outputs (`s2sr.evaluation.artefacts`); real imagery "
                      f"stays below the threshold {ARTEFACT_THRESHOLD:.2f}.", "",
                      "| method | artefact score | |", "|---|---:|---|"]
            for m, v in arts.items():
                verdict = "**over the threshold**" if v > ARTEFACT_THRESHOLD else "below"
                lines.append(f"| {m} | {v:.3f} | {verdict} |")
        if self.figures:
            lines += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in self.figures]
        path = self.out / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path


def _caption(name: str, s: dict[str, Any] | None) -> str:
    return name if s is None else f"{name}\n{s['psnr']:.2f} dB / {s['ssim']:.4f}"


def _scale_of(row: Mapping[str, Any]) -> int:
    return int(row["hr_size"]) // max(1, int(row["lr_size"]))


def _plan(models: Mapping[str, nn.Module], sets: Sequence[PairDataset],
          datasets: Sequence[str | os.PathLike[str]], kinds: Sequence[str] | None,
          split: str) -> tuple[dict[str, int], list[str]]:
    """Check that every model and every pair kind can be evaluated; raise otherwise.

    Returns:
        The scale of each evaluated kind and the models' common bands.
    """
    where = ", ".join(map(str, datasets))
    # every kind of the split (accepted patches), whatever --kinds says
    present: dict[str, int] = {}
    bands_of: dict[str, set[str]] = {}  # kind -> bands every pair of that kind has
    for ds in sets:
        pairs = ds.store.pairs
        for row in ds.store.rows():
            if row["split"] != split or row["status"] not in ("accepted", "auto-accepted"):
                continue
            present.setdefault(row["kind"], _scale_of(row))
            have = set(pairs.get(row["pair_id"], {}).get("bands", []))
            bands_of[row["kind"]] = bands_of.get(row["kind"], have) & have
    if not present:
        raise DataError(f"no accepted '{split}' patches in {where}: check --split (or accept "
                        "patches with s2sr pairs review)")

    def listing(names: Iterable[str]) -> str:
        return ", ".join(f"{k} (x{present[k]})" for k in sorted(names))

    if kinds is not None:
        absent = [k for k in kinds if k not in present]
        if absent:
            raise UsageError(f"--kinds {', '.join(absent)}: not among the accepted '{split}' "
                             f"pairs of {where}, which are {listing(present)}: fix --kinds")
    chosen = {k: present[k] for k in (kinds if kinds is not None else sorted(present))}
    specs = {name: get_spec(m) for name, m in models.items()}
    band_sets = {tuple(s.bands) for s in specs.values()}
    if len(band_sets) > 1:
        raise UsageError("the models take different bands (" + "; ".join(
            f"{n}: {','.join(s.bands)}" for n, s in specs.items()) + "): evaluate models with "
            "the same bands together, the others in another report")
    bands = list(next(iter(band_sets)))
    for name, spec in specs.items():
        mine = [k for k, s in chosen.items() if s == spec.scale]
        if mine:
            continue
        fitting = [k for k, s in present.items() if s == spec.scale]
        if kinds is not None and fitting:
            raise UsageError(f"model {name} is x{spec.scale} but --kinds selects only "
                             f"{listing(chosen)}: add a x{spec.scale} kind to --kinds "
                             f"({', '.join(sorted(fitting))})")
        raise UsageError(f"model {name} is x{spec.scale} but the '{split}' pairs of {where} "
                         f"are {listing(present)}, so no --kinds selection fits: evaluate it on "
                         f"a dataset of x{spec.scale} pairs, or leave it out")
    scales = {s.scale for s in specs.values()}
    for kind, s in chosen.items():
        if s not in scales:
            others = sorted(k for k, v in chosen.items() if v in scales)
            raise UsageError(f"pair kind {kind} is x{s} but no model is (" + ", ".join(
                f"{n}: x{sp.scale}" for n, sp in specs.items()) + "): leave it out with "
                f"--kinds {','.join(others)}, or add a x{s} model")
        missing = [b for b in bands if b not in bands_of.get(kind, set())]
        if missing:
            raise BandError(f"the {kind} pairs of {where} lack {', '.join(missing)} (they "
                            f"have {', '.join(sorted(bands_of.get(kind, set()))) or 'none'}) "
                            f"needed by the models ({', '.join(bands)}): evaluate models on "
                            "bands the dataset has, or leave the kind out with --kinds")
    return chosen, bands


def _check_crop(conv: Conventions | None, sizes: Iterable[tuple[int, int]]) -> None:
    """Refuse a border crop (given or the default) that leaves too little of a patch."""
    c = conv or Conventions()
    for hr_size, scale in sizes:
        crop = c.crop if c.crop is not None else scale
        if hr_size - 2 * crop < c.ssim_window:
            raise UsageError(f"--crop {crop} leaves {max(0, hr_size - 2 * crop)} px of the "
                             f"{hr_size} px target patches, less than the {c.ssim_window} px "
                             f"SSIM window: use --crop {max(0, (hr_size - c.ssim_window) // 2)}"
                             " or less")


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
    models = {name: load_model(path) for name, path in weights.items()}
    chosen, bands = _plan(models, sets, datasets, kinds, split)
    _check_crop(conv, {(int(r["hr_size"]), _scale_of(r)) for ds in sets for r in ds.rows
                       if r["kind"] in chosen})
    for ds, root in zip(sets, datasets, strict=True):
        if not any(r["kind"] in chosen for r in ds.rows):
            log.warning("%s has no accepted '%s' pairs of kind %s: it adds nothing to the "
                        "report", root, split, ", ".join(chosen))
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
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        report = _Report(tmp, conv or Conventions(), bands, note)
        for kind, items in sorted(by_kind.items()):
            scale = chosen[kind]
            c = (conv or Conventions()).resolve(scale) if (conv is None or conv.crop is None) \
                else conv
            report.conv = c
            preds: dict[str, list[np.ndarray]] = {}
            mine = {n: m for n, m in models.items() if get_spec(m).scale == scale}
            for item in items:
                lr, hr = item["lr"].numpy(), item["hr"].numpy()
                for method in BASELINES:
                    pred = upsample(lr, scale, method)
                    report.add(method, kind, item["patch_id"], _scores(pred, hr, lr, scale, c))
                    report.add_artefact(method, pred)
                    preds.setdefault(method, []).append(pred)
                for name, model in mine.items():
                    variants = [(name, False)] + ([(f"{name} +consistency", True)]
                                                  if with_consistency else [])
                    for label, consistent in variants:
                        pred = _predict(model, lr, consistent)
                        report.add(label, kind, item["patch_id"],
                                   _scores(pred, hr, lr, scale, c))
                        if not consistent:
                            preds.setdefault(label, []).append(pred)
                            report.add_artefact(label, pred)
            if figures:
                _figures(report, kind, items, preds, list(mine), bands)
        report.write()
    return final / "report.md"


def _figures(report: _Report, kind: str, items: list[dict[str, Any]],
             preds: dict[str, list[np.ndarray]], models: list[str], bands: list[str]) -> None:
    (report.out / "figures").mkdir(exist_ok=True)
    rows = {(r["method"], r["patch_id"]): r for r in report.rows if r["kind"] == kind}
    for name in models:
        if name not in preds:
            continue
        gains = [rows[(name, it["patch_id"])]["psnr"] - rows[("bicubic", it["patch_id"])]["psnr"]
                 for it in items]
        order = np.argsort(gains)
        picks = {"best": int(order[-1]), "median": int(order[len(order) // 2]),
                 "worst": int(order[0])}
        for which, k in picks.items():
            it = items[k]
            scale = it["hr"].shape[-1] // it["lr"].shape[-1]
            panels = [("input (nearest)", upsample(it["lr"].numpy(), scale, "nearest")),
                      (_caption("bicubic", rows[("bicubic", it["patch_id"])]),
                       preds["bicubic"][k]),
                      (_caption(name, rows[(name, it["patch_id"])]), preds[name][k]),
                      ("reference", it["hr"].numpy())]
            safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in
                           f"{name}_{kind}_{which}")
            path = report.out / "figures" / f"{safe}.png"
            comparison_figure(panels, bands, path, title=f"{name}, {kind}: {which} gain "
                              f"({gains[k]:+.2f} dB), patch {it['patch_id']}")
            report.figures.append(f"figures/{path.name}")


def _read_checked(path: str | os.PathLike[str], bands: Sequence[str] | None,
                  role: str, dn_offset: float | None = None,
                  max_pixels: int = MAX_SCENE_PIXELS) -> tuple[np.ndarray, GeoMeta]:
    """A whole scene as reflectance, refusing what would give wrong or NaN scores.

    Refused (one-line :class:`DataError`): a scene too large to hold in memory, NaN or inf
    pixels that are not the file's nodata, a scene with no valid pixel, and nodata pixels
    (every pixel is scored, so missing data would count as data).
    """
    from rasterio.windows import Window

    with open_scene(path, bands=bands, dn_offset=dn_offset) as scene:
        meta = scene.meta
        if meta.width * meta.height > max_pixels:
            raise DataError(f"{role} {path} is {meta.width}x{meta.height} px, more than the "
                            f"{max_pixels:,} px evaluate reads whole: crop it (e.g. "
                            "gdal_translate -srcwin) to the area to score")
        dn = scene.read(Window(0, 0, meta.width, meta.height))
        refl = scene.reflectance(dn)
    valid = valid_mask(dn, meta.nodata)
    if not valid.any():
        raise DataError(f"{role} {path} holds no valid pixel (every pixel is nodata "
                        f"{meta.nodata}): choose a scene with data")
    bad = ~np.isfinite(refl).all(axis=0) & valid
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{role} {path} has {int(bad.sum())} NaN/inf pixel(s), the first at "
                        f"row {r}, column {c}: fill them, or set the file's nodata value and "
                        "crop the nodata away")
    if not valid.all():
        frac = 100.0 * float((~valid).mean())
        raise DataError(f"{role} {path} has {int((~valid).sum())} nodata pixel(s) "
                        f"({frac:.1f} %): evaluate scores every pixel, so crop both rasters "
                        "to the area with data (e.g. gdal_translate -srcwin)")
    return refl, meta


def _check_grids(lr: GeoMeta, hr: GeoMeta, scale: int, lr_path: str | os.PathLike[str],
                 hr_path: str | os.PathLike[str], fix: str) -> None:
    """Refuse a pair that is not the same area on grids ``scale`` times apart."""
    if hr.width * hr.height > MAX_SCENE_PIXELS:
        raise DataError(f"{hr_path} is {hr.width}x{hr.height} px, more than the "
                        f"{MAX_SCENE_PIXELS:,} px evaluate reads whole: crop both rasters "
                        "(e.g. gdal_translate -srcwin) to the area to score")
    if (hr.width, hr.height) != (lr.width * scale, lr.height * scale):
        raise UsageError(
            f"{hr_path} is {hr.width}x{hr.height} px but {lr_path} x{scale} is "
            f"{lr.width * scale}x{lr.height * scale}: the size ratio must equal the "
            f"scale ({scale}); {fix}")
    if (lr.crs is None) != (hr.crs is None) or (lr.crs is not None and lr.crs != hr.crs):
        raise UsageError(f"{lr_path} ({lr.crs or 'no CRS'}) and {hr_path} "
                         f"({hr.crs or 'no CRS'}) are in different coordinate systems: "
                         "reproject one onto the other's grid")
    if lr.crs is None:
        return  # pixel grids without georeferencing: the size ratio is all we can check
    tol = 0.5 * min(hr.res)
    if any(abs(a - b) > tol for a, b in zip(lr.bounds, hr.bounds, strict=True)):
        lb = ", ".join(f"{v:.1f}" for v in lr.bounds)
        hb = ", ".join(f"{v:.1f}" for v in hr.bounds)
        raise UsageError(f"{lr_path} covers ({lb}) but {hr_path} covers ({hb}): the two must "
                         "cover the same area; crop both to their overlap")


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
    from s2sr.inference.predict import super_resolve

    inputs = [weights, lr, hr]
    check_output_dir(out, overwrite, inputs)
    model = load_model(weights)
    spec = get_spec(model)
    s = spec.scale
    with open_scene(lr, bands=spec.bands) as a, open_scene(hr, bands=spec.bands) as b:
        _check_grids(a.meta, b.meta, s, lr, hr, "crop or resample the reference")
    lr_refl, _ = _read_checked(lr, spec.bands, "input")
    hr_refl, _ = _read_checked(hr, spec.bands, "reference")
    c = (conv or Conventions()).resolve(s) if (conv is None or conv.crop is None) else conv
    _check_crop(c, [(min(hr_refl.shape[1:]), s)])
    name = name or Path(weights).stem
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        report = _Report(tmp, c, spec.bands, f"Scene pair: {lr} -> {hr}.")
        kind = "scene"
        preds = {}
        for method in BASELINES:
            preds[method] = upsample(lr_refl, s, method)
            report.add(method, kind, "scene", _scores(preds[method], hr_refl, lr_refl, s, c))
            report.add_artefact(method, preds[method])
        sr = super_resolve(lr_refl, model)
        preds[name] = sr
        report.add(name, kind, "scene", _scores(sr, hr_refl, lr_refl, s, c))
        report.add_artefact(name, sr)
        if with_consistency:
            t = torch.from_numpy
            cons = back_project(t(sr)[None], t(lr_refl)[None], s,
                                CONSISTENCY_ITERATIONS)[0].numpy()
            report.add(f"{name} +consistency", kind, "scene",
                       _scores(cons, hr_refl, lr_refl, s, c))
        if figures:
            item = {"lr": torch.from_numpy(lr_refl), "hr": torch.from_numpy(hr_refl),
                    "patch_id": "scene", "kind": kind}
            _figures(report, kind, [item], {k: [v] for k, v in preds.items()}, [name],
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
    if ratio not in (2, 4) or sr_meta.width != lr_meta.width * ratio:
        raise UsageError(f"{output} ({sr_meta.width}x{sr_meta.height}) is not 2 or 4 times "
                         f"{lr} ({lr_meta.width}x{lr_meta.height}): pass the input it was "
                         "made from")
    scale = int(ratio)
    _check_grids(lr_meta, sr_meta, scale, lr, output, "pass the input it was made from")
    sr, _ = _read_checked(output, bands, "output")
    lr_refl, _ = _read_checked(lr, bands, "input")
    result = consistency(sr, lr_refl, scale)
    final = Path(out)
    with staged_report(final, overwrite, inputs) as tmp:
        (tmp / "consistency.json").write_text(json.dumps(
            {"output": str(output), "input": str(lr), "scale": scale, "bands": list(bands),
             **result}, indent=1))
        lines = ["# s2sr consistency check", "", f"Output `{output}` degraded back x{scale} "
                 f"(Gaussian MTF 0.3 + block mean) vs input `{lr}`.", "",
                 "| band | MAE | bias |", "|---|---:|---:|"]
        for b, m, bias in zip(bands, result["mae"], result["bias"], strict=True):  # type: ignore[call-overload]
            lines.append(f"| {b} | {m:.5f} | {bias:+.5f} |")
        lines += ["", f"Mean spectral angle: {result['sam']:.3f} degrees."]
        (tmp / "consistency.md").write_text("\n".join(lines) + "\n")
    return final / "consistency.md"
