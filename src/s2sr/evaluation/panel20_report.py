"""``s2sr evaluate bands``: run the 20 m panel (:mod:`s2sr.evaluation.panel20`) on the
held-out multi-resolution scenes and write its report folder.

The report folder (written atomically, like every ``s2sr evaluate`` report) receives
``report.md`` (definitions; summary per case with red-edge and SWIR on their own rows; the
targets of issue 22 per model; the check "model >= unsharp mask at every held-out place,
every band" with each model's worst margins over every baseline; per place and band
tables; the Nyquist-line ratios on the native scenes), ``report.csv`` (one row per case,
scene, ``mean`` or ``worst``, and method, with PSNR, SSIM and RMSE per band and the margins
over the baselines), ``lines.csv`` and ``report.json`` (everything, with the conventions,
the definitions and the check per model).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.core.constants import SCALES
from s2sr.core.errors import DataError, UsageError
from s2sr.data.multires import NativeScene, native_scenes, wald
from s2sr.evaluation.panel import WORST
from s2sr.evaluation.panel20 import (
    BASELINES20,
    Triple,
    line_rows,
    panel20_rows,
    runs_at,
)
from s2sr.evaluation.panel20_tables import CHECK, DEFINITION, markdown, unsharp_check
from s2sr.evaluation.writer import staged_report
from s2sr.inference.modules import as_module
from s2sr.io.outputs import check_output_dir
from s2sr.losses.artefacts import LINE_THRESHOLD
from s2sr.losses.metrics import Conventions
from s2sr.models import get_spec
from s2sr.models.guided import guide_of
from s2sr.models.open import open_model

__all__ = ["check_guided", "evaluate_bands"]


def check_guided(name: str, model: nn.Module) -> None:
    """Refuse a model the 20 m panel cannot run: not guided, other bands, scale not 2 or 4.

    Raises:
        UsageError: one line naming the model and the fix.
    """
    spec = get_spec(model)
    guide = guide_of(model)
    if guide is None:
        raise UsageError(f"--weights-20m {name}: model {spec.name} (bands {','.join(spec.bands)}) "
                         "is not a guided 20 m model: give s2sr_20m_x2/x4 weights (score 10 m "
                         "models with s2sr evaluate panel)")
    if tuple(spec.bands) != BANDS_20M or tuple(guide[0]) != DEFAULT_BANDS or guide[1] != 2:
        raise UsageError(f"--weights-20m {name}: bands {','.join(spec.bands)} guided by "
                         f"{','.join(guide[0])} (guide scale {guide[1]}); the 20 m panel "
                         f"scores {','.join(BANDS_20M)} guided by {','.join(DEFAULT_BANDS)} at "
                         "guide scale 2: give a model of those bands")
    if spec.scale not in SCALES:
        raise UsageError(f"--weights-20m {name}: scale x{spec.scale}; the 20 m panel runs x2 "
                         "and x4 models only")


def _open(name: str, path: str | os.PathLike[str]) -> nn.Module:
    """A guided model from a weights file or a shipped model's name, checked."""
    opened = open_model(path)
    if opened.kind != "safetensors":
        raise UsageError(f"--weights-20m {name}: {path} is an export ({opened.kind}); the 20 m "
                         "panel runs guided models from their .safetensors weights: give "
                         "those")
    model = as_module(opened)
    check_guided(name, model)
    return model


def _scenes(shared: Path, held_out: bool | None) -> list[NativeScene]:
    scenes = native_scenes(shared, held_out=held_out)
    if not scenes:
        which = "held-out" if held_out else "native"
        raise DataError(f"no {which} scene with native 10 m and 20 m bands under {shared}: "
                        "pass --shared DIR, the folder holding sentinel2/")
    return scenes


def evaluate_bands(shared: str | os.PathLike[str], out: str | os.PathLike[str],
                   weights: Mapping[str, str | os.PathLike[str]] | None = None, *,
                   factors: Sequence[int] = SCALES, overwrite: bool = False,
                   conv: Conventions | None = None, device: str = "auto") -> Path:
    """Run the 20 m panel on the held-out places under ``shared`` and write the report.

    Args:
        shared: the shared data folder (``../shared/data``, holding ``sentinel2/``).
        out: report folder.
        weights: display name -> guided model weights (none: the baselines only).
        factors: the Wald factors (2 and/or 4).
        overwrite: replace an existing, non-empty report folder.
        conv: metric conventions (default: data range 1, border crop = the factor).
        device: where the models run.

    Returns:
        The path of ``report.md``.
    """
    weights = dict(weights or {})
    inputs = [*weights.values(), shared]
    check_output_dir(out, overwrite, inputs)
    models = {name: _open(name, path) for name, path in weights.items()}
    missing = sorted(get_spec(m).scale for m in models.values()
                     if not any(runs_at(m, f) for f in factors))
    if missing:
        raise UsageError(f"a model is x{missing[0]} but the panel factors are "
                         f"{', '.join(f'x{f}' for f in factors)}: add x{missing[0]}")
    tests = {s.name: s for s in _scenes(Path(shared), True)}

    def make(scene: str, factor: int, mtf: float | None) -> Triple:
        lr, guide, truth = wald(tests[scene], factor, mtf)
        return lr, guide, truth

    rows = panel20_rows(models, list(tests), make, factors=factors, conv=conv, device=device)
    lines = line_rows(models, {s.name: (s.lr20, s.hr10) for s in _scenes(Path(shared), None)},
                      device=device)
    final = Path(out)
    methods = [*BASELINES20, *models]
    with staged_report(final, overwrite, inputs) as tmp:
        _write_data(tmp, rows, lines, methods, list(tests), conv)
        places = {n: _describe(s) for n, s in tests.items()}
        (tmp / "report.md").write_text("\n".join(
            markdown(rows, lines, methods, places, conv)) + "\n")
    return final / "report.md"


def _describe(scene: NativeScene) -> str:
    """Size, grid offset and invalid pixels of a scene, for the report."""
    h, w = scene.lr20.shape[1:]
    bad = int((~scene.valid20).sum()) + int((~scene.valid10).sum())
    return (f"{w}x{h} px at 20 m, 20 m grid offset {scene.offset[0]:+.1f} {scene.offset[1]:+.1f} "
            f"10 m px" + (f", {bad} pixels of DN 0 (scored as they are)" if bad else ""))


def _write_data(out: Path, rows: list[dict[str, Any]], lines: list[dict[str, Any]],
                methods: list[str], scenes: list[str], conv: Conventions | None) -> None:
    """``report.json`` (everything), ``report.csv`` and ``lines.csv``."""
    c = conv or Conventions()
    (out / "report.json").write_text(json.dumps({
        "conventions": {**c.as_dict(), "description": c.describe()},
        "definition": DEFINITION, "bands": list(BANDS_20M), "guide_bands": list(DEFAULT_BANDS),
        "scenes": scenes, "cases": list(dict.fromkeys(r["case"] for r in rows)),
        "methods": methods, "line_threshold": LINE_THRESHOLD, "rows": rows,
        "check": {"text": CHECK, "models": {
            m: unsharp_check(rows, m) for m in methods if m not in BASELINES20}},
        "lines": lines}, indent=1))
    keys = ["case", "factor", "mtf", "scene", "method", "place", "psnr", "ssim", "rmse",
            "sam", "gain_psnr", "vs_lanczos_psnr", "vs_unsharp_psnr", "vs_trivial_psnr",
            "vs_guided_psnr", "gain_swir"]
    per_band = ("psnr", "ssim", "rmse", "gain", "vs_unsharp", "vs_trivial")
    fields = keys + [f"{m}_{b}" for m in per_band for b in BANDS_20M]
    with open(out / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        for r in rows:
            row = {k: r.get(k, "") for k in keys}
            row["mtf"] = "block" if r["mtf"] is None else r["mtf"]
            if r["scene"] not in ("mean", WORST):
                row["place"] = r["scene"]
            for m in per_band:
                row.update({f"{m}_{b}": v for b, v in zip(BANDS_20M, r[f"{m}_bands"],
                                                          strict=True)})
            writer.writerow(row)
    with open(out / "lines.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["scene", "method", "scale", "line_x", "line_y",
                                         "over"])
        writer.writeheader()
        writer.writerows(lines)
