"""The report folder of ``s2sr evaluate``: staged atomically, its tables and its figures.

:class:`ReportWriter` accumulates one row per method, pair kind and patch and writes
``report.json``, ``report.csv`` and ``report.md`` (Table 2 layout, gains over bicubic,
consistency, per band, artefact scores); :func:`write_figures` draws the best, median and
worst patch of each model (Figure-5 layout); :func:`staged_report` makes the folder
appear complete or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.files import atomic_folder, exclusive_output, sweep_stale_temps
from s2sr.core.safe_text import printable
from s2sr.core.signals import terminate_raises
from s2sr.evaluation.figures import (
    MIN_CONTRAST,
    Panel,
    comparison_figure,
    contrast,
    pick_patches,
)
from s2sr.evaluation.opensr_report import metric_lines, scene_metrics
from s2sr.evaluation.scoring import CONSISTENCY_ITERATIONS
from s2sr.inference.baselines import upsample
from s2sr.io.outputs import check_output_dir
from s2sr.losses.artefacts import ARTEFACT_THRESHOLD, MIN_SIDE, artefact_score
from s2sr.losses.metrics import Conventions


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
        with atomic_folder(final) as tmp:
            yield tmp


class ReportWriter:
    """Accumulates per-patch rows and writes the files."""

    def __init__(self, out: Path, conv: Conventions, bands: Sequence[str], note: str) -> None:
        self.out, self.conv, self.bands, self.note = out, conv, list(bands), note
        self.rows: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.methods: list[str] = []  # in the order first seen: baselines, then models
        self.artefacts: dict[str, list[float]] = {}  # method -> score of each output
        self.opensr: dict[str, dict[str, Any] | None] = {}  # method -> opensr-test metrics

    def add_artefact(self, method: str, output: np.ndarray) -> None:
        """Score one output for periodic artefacts (outputs under MIN_SIDE px are skipped)."""
        if min(output.shape[-2:]) >= MIN_SIDE:
            self.artefacts.setdefault(method, []).append(artefact_score(output))

    def add_opensr(self, method: str, lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> None:
        """The opensr-test metrics (:mod:`s2sr.evaluation.opensr`) of one whole-scene output
        (None above :data:`~s2sr.evaluation.opensr_report.MAX_PIXELS`)."""
        self.opensr[method] = scene_metrics(lr, sr, hr)

    def artefact_means(self) -> dict[str, float]:
        """One artefact score per method: the mean over its scored outputs."""
        return {m: float(np.mean(v)) for m, v in self.artefacts.items()}

    def add(self, method: str, kind: str, patch_id: str, scores: dict[str, Any]) -> None:
        """One patch's scores (see :func:`s2sr.evaluation.scoring.scores`) for a method."""
        if method not in self.methods:
            self.methods.append(method)
        self.rows.append({"method": method, "kind": kind, "patch_id": patch_id, **scores})

    def summary(self) -> list[dict[str, Any]]:
        """One row per method and kind: patch count, mean scores, per-band means."""
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
        """Write ``report.json``, ``report.csv`` and ``report.md``; returns the last."""
        summary = self.summary()
        arts = self.artefact_means()
        self._write_data(summary, arts)
        kinds = sorted({s["kind"] for s in summary})
        lines = ["# s2sr evaluation", ""]
        if self.note:
            lines += [self.note, ""]
        lines += [f"Conventions: {self.conv.describe()}.", "",
                  "## PSNR (dB) / SSIM (Table 2 layout)", "",
                  "| method | " + " | ".join(f"{k} PSNR | {k} SSIM" for k in kinds) + " |",
                  "|---|" + "---:|---:|" * len(kinds)]
        lines += self._score_lines(summary, kinds)
        lines += self._detail_lines(summary, arts)
        if self.figures:
            lines += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in self.figures]
        if self.opensr:
            lines += metric_lines(self.opensr)
        path = self.out / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _write_data(self, summary: list[dict[str, Any]], arts: dict[str, float]) -> None:
        """``report.json`` (everything) and ``report.csv`` (one row per method and kind)."""
        (self.out / "report.json").write_text(json.dumps({
            "conventions": {**self.conv.as_dict(), "description": self.conv.describe()},
            "note": self.note, "bands": self.bands, "summary": summary,
            "artefacts": arts, "artefact_threshold": ARTEFACT_THRESHOLD,
            "patches": self.rows, "figures": self.figures,
            **({"opensr": self.opensr} if self.opensr else {})}, indent=1))
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

    def _score_lines(self, summary: list[dict[str, Any]], kinds: list[str]) -> list[str]:
        """The rows of the PSNR/SSIM table (best PSNR in bold) and the gain-over-bicubic
        table."""
        methods = list(dict.fromkeys(s["method"] for s in summary))
        table = {(s["method"], s["kind"]): s for s in summary}
        lines: list[str] = []
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
        return lines

    def _detail_lines(self, summary: list[dict[str, Any]], arts: dict[str, float]
                      ) -> list[str]:
        """The consistency, per-band and artefact-score sections."""
        lines: list[str] = []
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
                      "mean over the outputs (`s2sr.losses.artefacts`); real imagery "
                      f"stays below the threshold {ARTEFACT_THRESHOLD:.2f}.", "",
                      "| method | artefact score | |", "|---|---:|---|"]
            for m, v in arts.items():
                verdict = "**over the threshold**" if v > ARTEFACT_THRESHOLD else "below"
                lines.append(f"| {m} | {v:.3f} | {verdict} |")
        return lines

def scores_text(s: dict[str, Any] | None) -> str:
    """A figure panel's scores: PSNR / SSIM when scored, else ""."""
    return "" if s is None else f"{s['psnr']:.2f} dB / {s['ssim']:.4f}"


def _figure_caption(name: str, conv: Conventions, eligible: int, total: int) -> str:
    crop = conv.crop if conv.crop is not None else "the scale"
    text = (f"Columns: the input enlarged by nearest neighbour, bicubic, {name}, the "
            "reference. Every panel of a row shares one stretch: per channel, the 2nd to 98th "
            "percentile of all its panels together. After a method's name: PSNR (dB) / "
            f"SSIM against the reference, on reflectance (data range {conv.data_range:g}, border "
            f"crop {crop} px).")
    if total > 1:
        text += (f" Best, median and worst by PSNR gain over bicubic among the {eligible} of "
                 f"{total} patches whose reference spans at least {MIN_CONTRAST:g} "
                 "reflectance (2-98 %) in the shown channels"
                 + ("." if eligible else "; none does, so among all."))
    return text


def write_figures(report: ReportWriter, kind: str, items: list[dict[str, Any]],
                  preds: dict[str, list[np.ndarray]], models: list[str], bands: list[str]
                  ) -> None:
    """Best, median and worst patch of each model by PSNR gain over bicubic, one PNG each
    under ``figures/`` (``preds``: method -> outputs in the order of ``items``; an item's
    optional ``label`` replaces "patch ID" under the title).

    Only patches with content are candidates (:func:`~s2sr.evaluation.figures.pick_patches`:
    a reference spanning at least ``MIN_CONTRAST`` reflectance); a patch that is two of
    the three (few patches) is drawn once, its file named after both.
    """
    (report.out / "figures").mkdir(exist_ok=True)
    rows = {(r["method"], r["patch_id"]): r for r in report.rows if r["kind"] == kind}
    contrasts = [contrast(it["hr"].numpy(), bands) for it in items]
    for name in models:
        if name not in preds:
            continue
        gains = [rows[(name, it["patch_id"])]["psnr"] - rows[("bicubic", it["patch_id"])]["psnr"]
                 for it in items]
        picks, eligible = pick_patches(gains, contrasts)
        chosen: dict[int, list[str]] = {}
        for pick, k in picks.items():
            chosen.setdefault(k, []).append(pick)
        for k, which in chosen.items():
            it = items[k]
            scale = it["hr"].shape[-1] // it["lr"].shape[-1]
            bic, mine = rows[("bicubic", it["patch_id"])], rows[(name, it["patch_id"])]
            panels = [Panel("input (nearest)", upsample(it["lr"].numpy(), scale, "nearest")),
                      Panel("bicubic", preds["bicubic"][k], scores_text(bic)),
                      Panel(name, preds[name][k], scores_text(mine)),
                      Panel("reference", it["hr"].numpy())]
            label = "-".join(which) if len(items) > 1 else ""
            safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in
                           f"{name}_{kind}" + (f"_{label}" if label else ""))
            path = report.out / "figures" / f"{safe}.png"
            what = f"{' and '.join(which)} gain" if len(items) > 1 else "gain"
            comparison_figure(
                panels, bands, path,
                title=f"{name} on {kind}: {what} over bicubic {gains[k]:+.2f} dB",
                subtitle=it.get("label", f"patch {it['patch_id']}"),
                caption=_figure_caption(name, report.conv, eligible, len(items)),
                text={"s2sr:patch": printable(str(it["patch_id"])), "s2sr:pick": label})
            report.figures.append(f"figures/{path.name}")
