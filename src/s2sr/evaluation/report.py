"""``s2sr evaluate``: PSNR/SSIM of models against bicubic and Lanczos, in the layout of the
study's Table 2, with comparison figures and consistency checks.

A report folder receives ``report.md`` (rows: methods, i.e. the baselines, each model and
each model with ``--consistency`` back-projection; columns: pair kinds, PSNR and SSIM),
``report.csv`` (one row per method and kind, with per-band values and consistency),
``report.json`` (the same, plus one row per patch and the conventions) and
``figures/*.png`` (Figure-5 layout: best, median and worst patch by gain over bicubic).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2sr.data.dataset import PairDataset
from s2sr.errors import BandError, DataError, UsageError
from s2sr.evaluation.consistency import back_project, consistency
from s2sr.evaluation.figures import comparison_figure
from s2sr.evaluation.metrics import Conventions, psnr_bands, ssim_bands
from s2sr.inference.baselines import upsample
from s2sr.io.scene import open_scene
from s2sr.models import get_spec, load_model

BASELINES = ("bicubic", "lanczos")
CONSISTENCY_ITERATIONS = 3


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
        out.mkdir(parents=True, exist_ok=True)

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
        (self.out / "report.json").write_text(json.dumps({
            "conventions": {**self.conv.as_dict(), "description": self.conv.describe()},
            "note": self.note, "bands": self.bands, "summary": summary,
            "patches": self.rows, "figures": self.figures}, indent=1))
        with open(self.out / "report.csv", "w", newline="") as handle:
            fields = ["method", "kind", "patches", "psnr", "ssim",
                      *[f"psnr_{b}" for b in self.bands], *[f"ssim_{b}" for b in self.bands],
                      "cons_mae", "cons_bias", "cons_sam"]
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            for s in summary:
                row = {k: s[k] for k in ("method", "kind", "patches", "psnr", "ssim",
                                         "cons_mae", "cons_bias", "cons_sam")}
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
        if self.figures:
            lines += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in self.figures]
        path = self.out / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path


def _caption(name: str, s: dict[str, Any] | None) -> str:
    return name if s is None else f"{name}\n{s['psnr']:.2f} dB / {s['ssim']:.4f}"


def evaluate_models(
    weights: Mapping[str, str | os.PathLike[str]], datasets: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str], *, kinds: Sequence[str] | None = None, split: str = "test",
    conv: Conventions | None = None, note: str = "", with_consistency: bool = True,
    figures: bool = True,
) -> Path:
    """Evaluate models and the baselines on the accepted patches of datasets.

    Args:
        weights: display name -> weights file.
        datasets: folders made by ``s2sr pairs``.
        out: report folder.
        kinds: pair kinds to evaluate (default: every kind present), one column each.
        split: which split to use.
        conv: metric conventions (default: data range 1, border crop = scale).
        note: a paragraph for the report (e.g. what the data stand for).
        with_consistency: also evaluate each model with back-projection.
        figures: write best/median/worst comparison figures.

    Returns:
        The path of ``report.md``.
    """
    models = {name: load_model(path) for name, path in weights.items()}
    sets: list[PairDataset] = []
    for root in datasets:
        ds = PairDataset(root, split=split, kind=list(kinds) if kinds else None)
        if len(ds):
            sets.append(ds)
    if not sets:
        raise DataError(f"no accepted '{split}' patches of kind {kinds} in "
                        f"{', '.join(map(str, datasets))}: check --split and --kinds")
    first = sets[0][0]
    bands = list(get_spec(next(iter(models.values()))).bands) if models else [
        f"band{k}" for k in range(first["lr"].shape[0])]
    out_dir = Path(out)
    report = _Report(out_dir, conv or Conventions(), bands, note)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for ds in sets:
        pairs = ds.store.pairs
        for i in range(len(ds)):
            item = ds[i]
            have = list(pairs[item["pair_id"]].get("bands", bands))
            if models:  # evaluate on the models' bands, picked from the pair's
                missing = [b for b in bands if b not in have]
                if missing:
                    raise BandError(f"dataset {ds.store.root} lacks {', '.join(missing)} "
                                    f"needed by the models ({', '.join(bands)})")
                idx = [have.index(b) for b in bands]
                item = {**item, "lr": item["lr"][idx], "hr": item["hr"][idx]}
            by_kind.setdefault(item["kind"], []).append(item)
    for kind, items in sorted(by_kind.items()):
        scale = items[0]["hr"].shape[-1] // items[0]["lr"].shape[-1]
        c = (conv or Conventions()).resolve(scale) if (conv is None or conv.crop is None) \
            else conv
        report.conv = c
        preds: dict[str, list[np.ndarray]] = {}
        for item in items:
            lr, hr = item["lr"].numpy(), item["hr"].numpy()
            for method in BASELINES:
                pred = upsample(lr, scale, method)
                report.add(method, kind, item["patch_id"], _scores(pred, hr, lr, scale, c))
                preds.setdefault(method, []).append(pred)
            for name, model in models.items():
                spec = get_spec(model)
                if spec.scale != scale or list(spec.bands) != bands:
                    continue  # another scale or band set: not comparable on these rows
                variants = [(name, False)] + ([(f"{name} +consistency", True)]
                                              if with_consistency else [])
                for label, consistent in variants:
                    pred = _predict(model, lr, consistent)
                    report.add(label, kind, item["patch_id"], _scores(pred, hr, lr, scale, c))
                    if not consistent:
                        preds.setdefault(label, []).append(pred)
        if figures:
            _figures(report, kind, items, preds, list(models), bands)
    return report.write()


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


def _read_all(path: str | os.PathLike[str], bands: Sequence[str]) -> tuple[np.ndarray, Any]:
    with open_scene(path, bands=bands) as scene:
        return scene.read_all(), scene.meta


def evaluate_scene(weights: str | os.PathLike[str], lr: str | os.PathLike[str],
                   hr: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   conv: Conventions | None = None, with_consistency: bool = True) -> Path:
    """Evaluate a model and the baselines on a co-registered scene pair (whole rasters)."""
    from s2sr.inference.predict import super_resolve

    model = load_model(weights)
    spec = get_spec(model)
    lr_refl, _ = _read_all(lr, spec.bands)
    hr_refl, _ = _read_all(hr, spec.bands)
    s = spec.scale
    if hr_refl.shape[1:] != (lr_refl.shape[1] * s, lr_refl.shape[2] * s):
        raise UsageError(
            f"{hr} is {hr_refl.shape[2]}x{hr_refl.shape[1]} px but {lr} x{s} is "
            f"{lr_refl.shape[2] * s}x{lr_refl.shape[1] * s}: the size ratio must equal the "
            f"model's scale ({s}); crop or resample the reference")
    c = (conv or Conventions()).resolve(s) if (conv is None or conv.crop is None) else conv
    report = _Report(Path(out), c, spec.bands, f"Scene pair: {lr} -> {hr}.")
    kind = "scene"
    preds = {}
    for method in BASELINES:
        preds[method] = upsample(lr_refl, s, method)
        report.add(method, kind, "scene", _scores(preds[method], hr_refl, lr_refl, s, c))
    name = Path(weights).stem
    sr = super_resolve(lr_refl, model)
    preds[name] = sr
    report.add(name, kind, "scene", _scores(sr, hr_refl, lr_refl, s, c))
    if with_consistency:
        t = torch.from_numpy
        cons = back_project(t(sr)[None], t(lr_refl)[None], s, CONSISTENCY_ITERATIONS)[0].numpy()
        report.add(f"{name} +consistency", kind, "scene", _scores(cons, hr_refl, lr_refl, s, c))
    item = {"lr": torch.from_numpy(lr_refl), "hr": torch.from_numpy(hr_refl),
            "patch_id": "scene", "kind": kind}
    _figures(report, kind, [item], {k: [v] for k, v in preds.items()}, [name],
             list(spec.bands))
    return report.write()


def evaluate_consistency(output: str | os.PathLike[str], lr: str | os.PathLike[str],
                         out: str | os.PathLike[str]) -> Path:
    """Consistency of any ``s2sr predict`` output with its input (no reference needed)."""
    with open_scene(output) as scene:
        bands = scene.meta.bands
    sr, _ = _read_all(output, bands)
    try:
        lr_refl, _ = _read_all(lr, bands)
    except BandError as err:
        raise BandError(f"{err} (the output has {', '.join(bands)})") from None
    ratio = sr.shape[1] / lr_refl.shape[1]
    if ratio not in (2, 4) or sr.shape[2] != lr_refl.shape[2] * ratio:
        raise UsageError(f"{output} ({sr.shape[2]}x{sr.shape[1]}) is not 2 or 4 times {lr} "
                         f"({lr_refl.shape[2]}x{lr_refl.shape[1]}): pass the input it was "
                         "made from")
    result = consistency(sr, lr_refl, int(ratio))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "consistency.json").write_text(json.dumps(
        {"output": str(output), "input": str(lr), "scale": int(ratio), "bands": list(bands),
         **result}, indent=1))
    lines = ["# s2sr consistency check", "", f"Output `{output}` degraded back x{int(ratio)} "
             f"(Gaussian MTF 0.3 + block mean) vs input `{lr}`.", "",
             "| band | MAE | bias |", "|---|---:|---:|"]
    for b, m, bias in zip(bands, result["mae"], result["bias"], strict=True):  # type: ignore[call-overload]
        lines.append(f"| {b} | {m:.5f} | {bias:+.5f} |")
    lines += ["", f"Mean spectral angle: {result['sam']:.3f} degrees."]
    path = out_dir / "consistency.md"
    path.write_text("\n".join(lines) + "\n")
    return path
