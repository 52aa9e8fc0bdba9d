"""``s2sr evaluate bands``: the 20 m panel, a Wald test of the six 20 m bands per place and band.

The truth is real: each held-out scene's native 20 m bands (B05 B06 B07 B8A B11 B12,
reflectance). For each factor ``f`` (2: the 10 m product, 20 m -> 10 m; 4: the 5 m product,
20 m -> 5 m) and each degradation of the 10 m panel (:data:`s2sr.evaluation.panel.PANEL_MTFS`:
the block mean alone, and a Gaussian + block mean with MTF 0.20, 0.30, 0.45, 0.60 at the
coarse Nyquist), :func:`s2sr.data.multires.wald` degrades every band by ``f``: the input is
the 20 m bands at ``20 f`` m, the guide the 10 m bands (B02 B03 B04 B08) at ``10 f`` m (on
the 20 m grid, honouring its offset), and each method brings the input back to the truth's
20 m grid:

- the 10 m panel's trivial baselines (:data:`s2sr.evaluation.panel.BASELINES`, each
  :func:`s2sr.inference.baselines.upsample` of the input by ``f``): ``bicubic``, ``lanczos``
  (Lanczos-3) and ``unsharp`` (bicubic, then :func:`~s2sr.inference.baselines.unsharp_mask`
  with sigma :func:`~s2sr.inference.baselines.unsharp_sigma` of ``f``);
- ``guided``: the guided high-pass baseline (:func:`s2sr.inference.baselines.guided_baseline`:
  :func:`~s2sr.inference.baselines.guided_highpass` with the guide at 2x the input's
  resolution; at ``f = 4`` its output, at 40 m, brought to 20 m by bicubic);
- every guided model of scale ``f`` (:mod:`s2sr.models.guided`), and at ``f = 4`` every x2
  model as the cascade (twice, the second pass guided by the shipped 10 m model's output:
  the 5 m product's default), run as ``s2sr predict --bands all`` runs it
  (:func:`run_guided`).

Scored per place, band and method with :class:`~s2sr.losses.metrics.Conventions` (data
range 1, border crop ``f`` truth pixels, the 10 m panel's conventions): PSNR and SSIM
(:func:`~s2sr.losses.metrics.psnr_bands`, :func:`~s2sr.losses.metrics.ssim_bands`), RMSE in
reflectance (``data_range * 10 ** (-PSNR / 20)``: the same cropped MSE), and the spectral
angle across the ten bands (:func:`~s2sr.losses.metrics.spectral_angle`, degrees, same crop):
output = the four 10 m bands at the truth's 20 m (the case's degradation of the 10 m bands by
2 onto the 20 m grid: the x2 guide) stacked with the six outputs; truth = the same four
stacked with the real 20 m bands. The four 10 m bands are equal in both, so the angle
measures the six bands' spectral error within the ten-band spectrum, the same way for every
method. Gains are over bicubic, over the guided baseline, over Lanczos and the unsharp mask,
and over the best trivial baseline of each band (the highest PSNR of bicubic, Lanczos and the
unsharp mask at that place and band), per band. Each method's worst place per case and band
(lowest gain over bicubic) is reported beside the mean: the worst place decides.

Separately (:func:`line_rows`), on the *native* scenes (no degradation: the 20 m bands at
20 m and the 10 m guide at 10 m, as a user runs them), the Nyquist-line ratio per axis of
each model's output minus bicubic (:func:`~s2sr.losses.artefacts.nyquist_line_ratio`),
against the 10 m models' bound :data:`~s2sr.losses.artefacts.LINE_THRESHOLD`.

Running it on ``../shared`` and writing the report is :mod:`s2sr.evaluation.panel20_report`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from s2sr.core.bands import BANDS_20M, TEN_BANDS
from s2sr.core.constants import SCALES
from s2sr.core.errors import DataError, UsageError, WeightsError
from s2sr.data.degrade import degrade
from s2sr.data.multires import MAX_LINE_SIDE, centre_crop
from s2sr.evaluation.panel import BASELINES, LABELS, PANEL_MTFS, WORST, Case, panel_cases
from s2sr.inference.baselines import guided_baseline, guided_highpass, upsample
from s2sr.inference.multires_predict import super_resolve_bands
from s2sr.losses.artefacts import LINE_THRESHOLD, nyquist_line_ratio
from s2sr.losses.metrics import Conventions, psnr_bands, spectral_angle, ssim_bands
from s2sr.models import get_spec, load_model, pretrained_path

__all__ = ["BASELINES20", "LABELS20", "LINE_REFERENCES", "MARGINS", "SWIR",
           "Triple", "band_scores", "baseline_outputs", "line_rows", "panel20_cases",
           "panel20_rows",
           "run_guided", "runs_at", "sam10", "scene_rows", "summary_rows"]

#: Short-wave infrared: reported on its own row.
SWIR: tuple[str, ...] = ("B11", "B12")
#: Baselines, in column order (the 10 m panel's trivial ones, then the guided high-pass),
#: and display names.
BASELINES20: tuple[str, ...] = (*BASELINES, "guided")
LABELS20: dict[str, str] = {**LABELS, "guided": "guided high-pass"}
#: Row key prefix -> the baseline a margin is over (``{key}_bands``, ``{key}_psnr``);
#: ``vs_trivial`` is over the best of :data:`~s2sr.evaluation.panel.BASELINES` per band.
MARGINS: dict[str, str] = {"gain": "bicubic", "vs_lanczos": "lanczos",
                           "vs_unsharp": "unsharp", "vs_guided": "guided"}

#: One Wald case of a scene: ``(lr, guide, truth)`` as :func:`s2sr.data.multires.wald` makes.
Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def panel20_cases(factors: Sequence[int] = SCALES,
                  mtfs: Sequence[float | None] = PANEL_MTFS) -> list[Case]:
    """The cases (the 10 m panel's degradations) per factor, in report order.

    The factors are the models' scales (:data:`~s2sr.core.constants.SCALES`): 2 (20 m ->
    10 m, the 10 m product) and 4 (20 m -> 5 m, the 5 m product); ``mtfs`` a subset of
    :data:`~s2sr.evaluation.panel.PANEL_MTFS` (all by default).
    """
    bad = [f for f in factors if f not in SCALES]
    if bad or not factors:
        raise UsageError(f"20 m panel factor {bad[0] if bad else 'list'} is not 2 or 4: use "
                         "factors 2 and/or 4")
    bad_mtfs = [m for m in mtfs if m not in PANEL_MTFS]
    if bad_mtfs or not mtfs:
        raise UsageError(f"20 m panel degradation {bad_mtfs[0] if bad_mtfs else 'list'} is "
                         f"not one of the panel's: use None (block mean) or "
                         f"{', '.join(str(m) for m in PANEL_MTFS if m)}")
    return [c for c in panel_cases(factors) if c.mtf in mtfs]


@functools.lru_cache(maxsize=1)
def _model_10m() -> nn.Module:
    """The shipped x2 model of the 10 m bands: the 5 m product's other half."""
    return load_model(pretrained_path(2))


def runs_at(model: nn.Module, factor: int) -> bool:
    """Whether a guided model gives the ``factor`` product: its own scale, or x4 by the
    cascade of a x2 model."""
    scale = get_spec(model).scale
    return scale == factor or (scale, factor) == (2, 4)


def run_guided(model: nn.Module, lr: np.ndarray, guide: np.ndarray,
               device: str = "auto", factor: int | None = None) -> np.ndarray:
    """A guided model's six bands ``(6, h * f, w * f)`` float32 as a user gets them.

    Run by :func:`s2sr.inference.multires_predict.super_resolve_bands` (the engine of
    ``s2sr predict --bands all``: tiles with the context, negative reflectance written as
    0); at ``factor`` 4 (default: the model's scale) with the shipped x2 model for the 10 m
    bands, whose output is not scored (a x2 model then runs twice: the cascade).
    """
    factor = get_spec(model).scale if factor is None else factor
    if not runs_at(model, factor):
        raise UsageError(f"a x{get_spec(model).scale} guided model does not give the x{factor} "
                         "product: score it at its scale")
    hr_model = _model_10m() if factor == 4 else None
    ten = super_resolve_bands(np.ascontiguousarray(guide, dtype=np.float32),
                              np.ascontiguousarray(lr, dtype=np.float32), model,
                              model_10m=hr_model, device=device)
    return np.asarray(ten[[TEN_BANDS.index(b) for b in BANDS_20M]], dtype=np.float32)


def _run_named(name: str, model: nn.Module, lr: np.ndarray, guide: np.ndarray,
               device: str, factor: int | None = None) -> np.ndarray:
    """:func:`run_guided`, its refusal of a broken model naming the model."""
    try:
        return run_guided(model, lr, guide, device, factor)
    except WeightsError as err:
        raise WeightsError(f"{name}: {err}") from None


def band_scores(pred: np.ndarray, truth: np.ndarray, conv: Conventions) -> dict[str, Any]:
    """PSNR (dB), SSIM and RMSE (reflectance) per band of ``pred`` against ``truth``.

    RMSE is ``data_range * 10 ** (-PSNR / 20)``, the root of the same cropped MSE (0 where
    the band is exact, PSNR inf).
    """
    pb, sb = psnr_bands(pred, truth, conv), ssim_bands(pred, truth, conv)
    rb = conv.data_range * np.power(10.0, -pb / 20.0)
    return {"psnr_bands": [float(v) for v in pb], "ssim_bands": [float(v) for v in sb],
            "rmse_bands": [float(v) for v in rb], "psnr": float(np.mean(pb)),
            "ssim": float(np.mean(sb)), "rmse": float(np.sqrt(np.mean(rb ** 2)))}


def sam10(pred: np.ndarray, truth: np.ndarray, guide10: np.ndarray, crop: int) -> float:
    """Spectral angle (degrees) of the ten-band stacks ``guide10 + pred`` vs ``guide10 + truth``.

    ``guide10`` ``(4, H, W)``: the 10 m bands at the truth's grid, the same in both stacks.
    """
    return spectral_angle(np.concatenate([guide10, pred]), np.concatenate([guide10, truth]),
                          crop=crop)


def baseline_outputs(lr: np.ndarray, guide: np.ndarray, factor: int) -> dict[str, np.ndarray]:
    """The baselines' outputs of one Wald case, in :data:`BASELINES20` order: the 10 m
    panel's trivial ones (:func:`~s2sr.inference.baselines.upsample` by ``factor``, as
    :mod:`s2sr.evaluation.panel` makes them) and the guided high-pass."""
    preds = {m: upsample(lr, factor, m) for m in BASELINES}
    preds["guided"] = guided_baseline(lr, guide, factor)
    return preds


def _outputs(models: Mapping[str, nn.Module], triple: Triple, factor: int,
             device: str) -> dict[str, np.ndarray]:
    lr, guide, _ = triple
    preds = baseline_outputs(lr, guide, factor)
    preds.update({n: _run_named(n, m, lr, guide, device, factor) for n, m in models.items()})
    return preds


def _check_finite(method: str, out: np.ndarray, where: str) -> None:
    """Refuse an output holding NaN or inf, naming the method (a broken model) and where."""
    if not np.isfinite(out).all():
        raise DataError(f"{method} gave NaN or inf in {where}: check its weights (a diverged "
                        "training?) and leave it out of the panel")


def scene_rows(case: Case, scene: str, preds: Mapping[str, np.ndarray], truth: np.ndarray,
               guide10: np.ndarray, conv: Conventions) -> list[dict[str, Any]]:
    """One row per method (bicubic, guided, models) of one case on one scene."""
    crop = conv.crop if conv.crop is not None else case.scale
    rows: list[dict[str, Any]] = []
    for method, pred in preds.items():
        if pred.shape != truth.shape:
            raise UsageError(f"{method} gave {pred.shape} for a {truth.shape} truth in "
                             f"{case.label} on {scene}: a x{case.scale} method must output "
                             "the truth's grid")
        _check_finite(method, pred, f"{case.label} on {scene}")
        row: dict[str, Any] = {"case": case.label, "factor": case.scale, "mtf": case.mtf,
                               "scene": scene, "method": method,
                               **band_scores(pred, truth, conv),
                               "sam": sam10(pred, truth, guide10[:, :truth.shape[1],
                                                                 :truth.shape[2]], crop)}
        rows.append(row)
    _margins(rows)
    return rows


def _margins(rows: Sequence[dict[str, Any]]) -> None:
    """Add each row's margins in dB over the baselines present (:data:`MARGINS`) and over
    the best trivial baseline per band (``vs_trivial_*``, ``trivial_best``: its name)."""
    ref = {r["method"]: np.asarray(r["psnr_bands"]) for r in rows}
    bases = {k: ref[b] for k, b in MARGINS.items() if b in ref}
    trivial = [m for m in BASELINES if m in ref]
    names: list[str] = []
    if trivial:
        stack = np.stack([ref[m] for m in trivial])
        bases["vs_trivial"] = stack.max(axis=0)
        names = [trivial[int(k)] for k in stack.argmax(axis=0)]
    for row in rows:
        own = np.asarray(row["psnr_bands"])
        if trivial:
            row["trivial_best"] = names
        for key, base in bases.items():
            row[f"{key}_bands"] = [float(v) for v in own - base]
            row[f"{key}_psnr"] = float(np.mean(own - base))
        row["gain_swir"] = float(np.mean([row["gain_bands"][BANDS_20M.index(b)] for b in SWIR]))


def summary_rows(case_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each method's mean over the scenes of one case, then its worst place per band.

    The ``worst`` row holds, per band, the scene where the method gains least over bicubic
    in that band (``places``, one per band) and that scene's numbers for the band; its
    ``place`` is the scene of lowest mean gain, whose ``sam`` and mean margins
    (``gain_psnr``, ``vs_guided_psnr``...) it carries.
    """
    rows: list[dict[str, Any]] = []
    methods = list(dict.fromkeys(r["method"] for r in case_rows))
    first = case_rows[0] if case_rows else {}
    per_band = [k for k in first if k.endswith("_bands")]
    scalars = ["psnr", "ssim", "rmse", "sam", "gain_swir",
               *(k for k in first if k.endswith("_psnr"))]
    for method in methods:
        mrows = [r for r in case_rows if r["method"] == method]
        mean: dict[str, Any] = {k: mrows[0][k] for k in ("case", "factor", "mtf")}
        mean.update(scene="mean", method=method)
        for key in scalars:
            mean[key] = float(np.mean([r[key] for r in mrows]))
        for key in per_band:
            mean[key] = np.mean([r[key] for r in mrows], axis=0).tolist()
        rows.append(mean)
    for method in methods:
        mrows = [r for r in case_rows if r["method"] == method]
        low = min(mrows, key=lambda r: r["gain_psnr"])
        worst: dict[str, Any] = {**low, "scene": WORST, "place": low["scene"]}
        picks = [mrows[int(np.argmin([r["gain_bands"][b] for r in mrows]))]
                 for b in range(len(BANDS_20M))]
        worst["places"] = [r["scene"] for r in picks]
        for key in [*per_band, *(["trivial_best"] if "trivial_best" in low else [])]:
            worst[key] = [r[key][b] for b, r in enumerate(picks)]
        worst["gain_swir"] = min(r["gain_swir"] for r in mrows)
        rows.append(worst)
    return rows


def panel20_rows(models: Mapping[str, nn.Module], scenes: Sequence[str],
                 make: Callable[[str, int, float | None], Triple], *,
                 factors: Sequence[int] = SCALES,
                 mtfs: Sequence[float | None] = PANEL_MTFS, conv: Conventions | None = None,
                 device: str = "auto") -> list[dict[str, Any]]:
    """The 20 m panel's numbers: one row per case, scene and method, then means and worst.

    Args:
        models: display name -> guided model; each runs on the cases of its scale (a x2
            model on the x4 cases too, as the cascade: :func:`runs_at`).
        scenes: the scene names, in report order.
        make: ``make(scene, factor, mtf) -> (lr, guide, truth)`` (the Wald case: bound to
            :func:`s2sr.data.multires.wald` by the report).
        factors: the Wald factors (default 2 and 4).
        mtfs: the degradations (default: all of the 10 m panel's).
        conv: metric conventions (default: data range 1, border crop = the factor).
        device: where the models run.

    Returns:
        Dicts with ``case``, ``factor``, ``mtf``, ``scene`` (a scene, ``mean`` or
        ``worst``), ``method``, ``psnr_bands``, ``ssim_bands``, ``rmse_bands`` (the six
        bands), ``psnr``, ``ssim``, ``rmse`` (over the six), ``sam`` (ten bands, degrees),
        ``gain_bands``/``gain_psnr`` (over bicubic), ``vs_guided_bands``/``vs_guided_psnr``
        (over the guided baseline), ``gain_swir``; worst rows add ``place`` and ``places``.
    """
    if not scenes:
        raise UsageError("give at least one scene to the 20 m panel")
    rows: list[dict[str, Any]] = []
    for case in panel20_cases(factors, mtfs):
        c = (conv or Conventions()).resolve(case.scale)
        mine = {n: m for n, m in models.items() if runs_at(m, case.scale)}
        case_rows: list[dict[str, Any]] = []
        for scene in scenes:
            triple = make(scene, case.scale, case.mtf)
            guide10 = triple[1] if case.scale == 2 else make(scene, 2, case.mtf)[1]
            preds = _outputs(mine, triple, case.scale, device)
            case_rows += scene_rows(case, scene, preds, triple[2], guide10, c)
        rows += case_rows + summary_rows(case_rows)
    return rows


#: The reference rows of :func:`line_rows`: the guided baseline on the native scene, and
#: real detail (the 20 m truth minus bicubic of its Wald x2 input, MTF 0.30).
LINE_REFERENCES: tuple[str, ...] = ("guided", "truth")


def _line(name: str, scene: str, scale: int, out: np.ndarray, ref: np.ndarray
          ) -> dict[str, Any]:
    _check_finite(name, out, f"the native scene {scene}")
    lx, ly = nyquist_line_ratio(out, ref)
    return {"scene": scene, "method": name, "scale": scale, "line_x": lx, "line_y": ly,
            "over": max(lx, ly) > LINE_THRESHOLD}


def line_rows(models: Mapping[str, nn.Module], scenes: Mapping[str, tuple[np.ndarray,
                                                                         np.ndarray]], *,
              device: str = "auto") -> list[dict[str, Any]]:
    """Nyquist-line ratio per axis of each model's output minus bicubic on native scenes.

    Beside the models, two references at x2 (:data:`LINE_REFERENCES`): ``guided``, the
    guided high-pass baseline of the native scene minus bicubic (detail injected from the
    real 10 m bands), and ``truth``, the real 20 m bands minus bicubic of their Wald x2
    input (Gaussian MTF 0.30 + block mean): what real detail scores at this grid.

    Args:
        models: display name -> guided model.
        scenes: name -> ``(lr20, hr10)``: the native 20 m bands ``(6, h, w)`` and the 10 m
            guide ``(4, 2h, 2w)`` (reflectance); scenes larger than
            :data:`~s2sr.data.multires.MAX_LINE_SIDE` are scored on their centre crop.
        device: where the models run.

    Returns:
        Dicts with ``scene`` (``max`` for the highest over scenes), ``method`` (a model or
        a reference), ``scale``, ``line_x``, ``line_y`` and ``over`` (either above
        :data:`LINE_THRESHOLD`).
    """
    rows: list[dict[str, Any]] = []
    for scene, (lr20, hr10) in scenes.items():
        lr, guide = centre_crop(lr20, hr10, MAX_LINE_SIDE)
        rows.append(_line("guided", scene, 2, guided_highpass(lr, guide, 2),
                          upsample(lr, 2, "bicubic")))
        low = degrade(lr, 2, 0.30)
        rows.append(_line("truth", scene, 2, lr[:, :2 * low.shape[1], :2 * low.shape[2]],
                          upsample(low, 2, "bicubic")))
        for name, model in models.items():
            s = get_spec(model).scale
            rows.append(_line(name, scene, s, _run_named(name, model, lr, guide, device),
                              upsample(lr, s, "bicubic")))
    for name in [*LINE_REFERENCES, *models]:
        mrows = [r for r in rows if r["method"] == name]
        if mrows:
            lx, ly = max(r["line_x"] for r in mrows), max(r["line_y"] for r in mrows)
            rows.append({"scene": "max", "method": name, "scale": mrows[0]["scale"],
                         "line_x": lx, "line_y": ly, "over": max(lx, ly) > LINE_THRESHOLD})
    return rows
