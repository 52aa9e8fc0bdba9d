"""``s2sr evaluate panel``: a robustness panel of degradations on held-out real scenes.

Each real 10 m scene plays the truth (HR = the scene itself, reflectance). For each scale
of the models (x2, x4) the panel makes the low-resolution input from it in five ways
(:data:`PANEL_MTFS`): the block mean alone (:func:`s2sr.data.degrade.block_mean`), and a
Gaussian + block mean with MTF 0.2, 0.3, 0.45 and 0.6 at the coarse Nyquist frequency
(:func:`s2sr.data.degrade.degrade`; MTF 0.6 is below the block mean's own 0.707 at x2 and
0.653 at x4). Methods: bicubic, Lanczos, the unsharp mask (see
:func:`s2sr.inference.baselines.upsample`) and every model of that scale, run as a user
runs it (:func:`s2sr.super_resolve`). Scored: PSNR/SSIM per case and scene (and their
means over scenes) with :class:`~s2sr.losses.metrics.Conventions` (data range 1,
border crop = scale), the gain over bicubic, and the consistency of each output with its
input (the output degraded back the same way as the input was made, against the input:
:func:`s2sr.evaluation.consistency.consistency`).

Separately, on the *undegraded* 10 m scene (what users feed the models): the artefact
score (:mod:`s2sr.losses.artefacts`) of each model's output next to bicubic's at the
same scale and the threshold, and the Nyquist-line ratio per axis of each model's output
minus bicubic (:func:`~s2sr.losses.artefacts.nyquist_line_ratio`: the 2-pixel stripe
pattern of a pixel-shuffle head) against :data:`~s2sr.losses.artefacts.LINE_THRESHOLD`.

Per place: by default the scenes are the test places (:mod:`s2sr.data.places`,
held out of training and model selection), and the report gives every place's numbers
with the unsharp mask beside every row, and each method's *worst place* per case (the
scene where it gains least over bicubic): the worst place decides, not the mean.

Running the panel on scene files and writing its report folder is
:mod:`s2sr.evaluation.panel_report`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from s2sr.core.constants import SCALES
from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.data.degrade import block_mean, degrade
from s2sr.data.places import TEST_PLACES
from s2sr.evaluation.consistency import consistency
from s2sr.evaluation.opensr_report import (
    mean_metrics,
    native_metrics,
    panel_metrics,
)
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import super_resolve
from s2sr.losses.artefacts import (
    ARTEFACT_THRESHOLD,
    LINE_THRESHOLD,
    artefact_score,
    nyquist_line_ratio,
)
from s2sr.losses.metrics import Conventions, psnr_bands, ssim_bands
from s2sr.models import get_spec

__all__ = ["BASELINES", "LABELS", "MAX_PANEL_PIXELS", "MIN_PANEL_SIDE", "PANEL_MTFS", "WORST",
           "Case", "artefact_rows", "check_scales", "default_scenes", "panel_cases",
           "panel_rows", "scene_name"]

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
    :data:`s2sr.data.places.TEST_PLACES` (held out of training and selection).

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


def check_scales(models: Mapping[str, nn.Module], scales: Sequence[int] | None) -> list[int]:
    """The panel's scales: ``scales`` checked (2 and/or 4), or the models' scales if None."""
    have = sorted({get_spec(m).scale for m in models.values()})
    if scales is None:
        return have
    chosen = sorted(set(scales))
    if not chosen:
        raise UsageError("scales is empty: give 2, 4 or both, or None for the models' scales")
    bad = [s for s in chosen if s not in SCALES]
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
    for case in panel_cases(check_scales(models, scales)):
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
            case_rows += _scene_rows(case, scene, preds, lr, hr, c)
        rows += case_rows
        rows += _summary_rows(case, case_rows)
    return rows


def _scene_rows(case: Case, scene: str, preds: Mapping[str, np.ndarray], lr: np.ndarray,
                hr: np.ndarray, conv: Conventions) -> list[dict[str, Any]]:
    """One row per method (bicubic first) of one case on one scene."""
    rows: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for method, pred in preds.items():
        pb, sb = psnr_bands(pred, hr, conv), ssim_bands(pred, hr, conv)
        cons = consistency(pred, lr, case.scale, case.mtf)
        row: dict[str, Any] = {"case": case.label, "scale": case.scale, "mtf": case.mtf,
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
        rows.append(row)
    return rows


def _summary_rows(case: Case, case_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method's mean over the scenes of one case, then each method's worst place."""
    rows: list[dict[str, Any]] = []
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
