"""Scoring for ``s2sr evaluate``: what can be evaluated together, and each output's scores.

:func:`plan` refuses model and pair-kind combinations that would leave a model or a kind
out of the report; :func:`scores` gives an output's PSNR/SSIM (per band and mean) and its
consistency with the input; :func:`predict_patch` runs a model on one patch, optionally
with back-projection.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from s2sr.core.errors import BandError, DataError, UsageError
from s2sr.data.dataset import PairDataset
from s2sr.data.degrade_torch import back_project
from s2sr.evaluation.consistency import consistency
from s2sr.losses.metrics import Conventions, psnr_bands, ssim_bands
from s2sr.models import ModelSpec, get_spec

BASELINES = ("bicubic", "lanczos", "unsharp")
CONSISTENCY_ITERATIONS = 3


def predict_patch(model: nn.Module, lr: np.ndarray, consistent: bool) -> np.ndarray:
    """The model's output ``(C, H*s, W*s)`` for one input patch ``(C, H, W)`` (reflectance),
    with ``consistent``: after back-projection onto the input."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))[None]
        y = model(x)
        if consistent:
            y = back_project(y, x, get_spec(model).scale, CONSISTENCY_ITERATIONS)
        return y[0].float().numpy()


def scores(pred: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int,
           conv: Conventions) -> dict[str, Any]:
    """PSNR/SSIM of ``pred`` against ``hr`` (mean and per band) and the consistency of
    ``pred`` with its input ``lr`` (MAE, bias, spectral angle), all ``(C, H, W)``."""
    pb, sb = psnr_bands(pred, hr, conv), ssim_bands(pred, hr, conv)
    cons = consistency(pred, lr, scale)
    return {"psnr": float(np.mean(pb)), "ssim": float(np.mean(sb)),
            "psnr_bands": [float(v) for v in pb], "ssim_bands": [float(v) for v in sb],
            "cons_mae": cons["mae_mean"], "cons_bias": cons["bias_mean"],
            "cons_sam": cons["sam"]}


def scale_of(row: Mapping[str, Any]) -> int:
    """The scale of a manifest patch row (target size over input size)."""
    return int(row["hr_size"]) // max(1, int(row["lr_size"]))


def plan(models: Mapping[str, nn.Module], sets: Sequence[PairDataset],
         datasets: Sequence[str | os.PathLike[str]], kinds: Sequence[str] | None,
         split: str) -> tuple[dict[str, int], list[str]]:
    """Check that every model and every pair kind can be evaluated; raise otherwise.

    Returns:
        The scale of each evaluated kind and the models' common bands.
    """
    where = ", ".join(map(str, datasets))
    present, bands_of = _present_kinds(sets, split, where)

    def listing(names: Iterable[str]) -> str:
        return _listing(present, names)

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
    _check_kinds(chosen, specs, bands, bands_of, where)
    return chosen, bands


def _listing(present: Mapping[str, int], names: Iterable[str]) -> str:
    return ", ".join(f"{k} (x{present[k]})" for k in sorted(names))


def _present_kinds(sets: Sequence[PairDataset], split: str, where: str
                   ) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Every pair kind of ``split`` (accepted patches) with its scale, whatever --kinds
    says, and the bands every pair of each kind has.

    Raises:
        DataError: the split has no accepted patch.
    """
    present: dict[str, int] = {}
    bands_of: dict[str, set[str]] = {}  # kind -> bands every pair of that kind has
    for ds in sets:
        pairs = ds.store.pairs
        for row in ds.store.rows():
            if row["split"] != split or row["status"] not in ("accepted", "auto-accepted"):
                continue
            present.setdefault(row["kind"], scale_of(row))
            have = set(pairs.get(row["pair_id"], {}).get("bands", []))
            bands_of[row["kind"]] = bands_of.get(row["kind"], have) & have
    if not present:
        raise DataError(f"no accepted '{split}' patches in {where}: check --split (or accept "
                        "patches with s2sr pairs review)")
    return present, bands_of


def _check_kinds(chosen: Mapping[str, int], specs: Mapping[str, ModelSpec], bands: list[str],
                 bands_of: Mapping[str, set[str]], where: str) -> None:
    """Every chosen kind has a model of its scale and the models' bands.

    Raises:
        UsageError: a kind without a model of its scale. BandError: a kind lacking bands.
    """
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


def check_crop(conv: Conventions | None, sizes: Iterable[tuple[int, int]]) -> None:
    """Refuse a border crop (given or the default) that leaves too little of a patch."""
    c = conv or Conventions()
    for hr_size, scale in sizes:
        crop = c.crop if c.crop is not None else scale
        if hr_size - 2 * crop < c.ssim_window:
            raise UsageError(f"--crop {crop} leaves {max(0, hr_size - 2 * crop)} px of the "
                             f"{hr_size} px target patches, less than the {c.ssim_window} px "
                             f"SSIM window: use --crop {max(0, (hr_size - c.ssim_window) // 2)}"
                             " or less")
