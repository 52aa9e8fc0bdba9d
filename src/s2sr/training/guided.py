"""Train a guided 20 m model (issue 22): ``python -m s2sr.training.guided CONFIG -o RUN``.

Wald protocol as DSen2: the native scenes of the training places
(:func:`s2sr.data.multires.native_scenes` with ``held_out=False``: the test places of
:mod:`s2sr.data.places` are never read), degraded on the fly with the 10 m models'
randomised degradations (:class:`s2sr.training.guided_data.GuidedPairs`); Adam with one
one-cycle (:func:`s2sr.training.schedule.one_cycle`), L1 loss, bf16 autocast on the CPU,
gradient clipping, under Lightning. Model selection on validation scenes of training places
only (``data.val``, left out of training): after every epoch the whole scenes are scored by
Wald at x``scale`` (block mean and MTF 0.30) against bicubic and the guided high-pass
baseline (:func:`s2sr.inference.baselines.guided_highpass`); the epoch with the best mean
gain over that baseline is kept as ``best.safetensors`` (``model.safetensors``: the last).
With ``max_line_ratio`` an epoch is kept only if its output on the native input of every
scene of the training places (training and validation, the 20 m bands at 20 m and the guide
at 10 m as a user runs them; centre crops of
:data:`~s2sr.data.multires.MAX_LINE_SIDE`) has a Nyquist-line ratio
(:func:`~s2sr.losses.artefacts.nyquist_line_ratio`, of the output minus bicubic, either
axis) at or below it: an artefact gate on the native scenes, as ``s2sr evaluate bands``
measures them. A time budget (``max_minutes``) stops training early; ``metrics.csv`` holds
every epoch.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from s2sr.core.errors import (
    DataError,
    S2SRError,
    TrainingDivergedError,
    UsageError,
    report_error,
)
from s2sr.core.files import atomic_path
from s2sr.data.multires import MAX_LINE_SIDE, NativeScene, centre_crop, native_scenes, wald
from s2sr.inference.baselines import guided_baseline, upsample
from s2sr.losses.artefacts import nyquist_line_ratio
from s2sr.losses.metrics import Conventions, psnr_bands
from s2sr.models import build_model, get_spec, load_model, save_model
from s2sr.models.guided import guide_of
from s2sr.training.guided_config import GuidedConfig, load_guided_config
from s2sr.training.guided_data import GuidedPairs
from s2sr.training.schedule import one_cycle
from s2sr.training.trainer import lightning_precision

logger = logging.getLogger(__name__)

#: The validation cases: Wald with a block mean and with MTF 0.30 (the issue's targets).
VAL_CASES: dict[str, float | None] = {"block": None, "mtf0.30": 0.30}


def split_scenes(scenes: list[NativeScene], val: tuple[str, ...]
                 ) -> tuple[list[NativeScene], list[NativeScene]]:
    """(training, validation) scenes: ``val`` names scenes (``oscd/beihai/imgs_1``) or
    places (``beihai``: every date); a name matching nothing is refused."""
    unknown = [v for v in val if not any(v in (s.name, s.place) for s in scenes)]
    if unknown:
        raise UsageError(f"data.val names {', '.join(unknown)}, which no training scene is "
                         "(a test place never is): use names such as oscd/beihai/imgs_1")
    vals = [s for s in scenes if s.name in val or s.place in val]
    names = {s.name for s in vals}
    return [s for s in scenes if s.name not in names], vals


@torch.no_grad()
def predict_guided(model: nn.Module, lr: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """The model's output ``(C, h*s, w*s)`` for one whole ``(lr, guide)`` pair (fp32)."""
    model.eval()
    out = model(torch.from_numpy(lr)[None].float(), torch.from_numpy(guide)[None].float())
    return out[0].float().numpy()


def wald_scores(model: nn.Module, scenes: list[NativeScene], scale: int
                ) -> dict[str, np.ndarray]:
    """PSNR per band ``(scenes, cases, 6)`` of ``model``, bicubic and the guided baseline
    on the Wald pairs of ``scenes`` (keys ``model``, ``bicubic``, ``guided``)."""
    conv = Conventions().resolve(scale)
    out: dict[str, list[list[np.ndarray]]] = {"model": [], "bicubic": [], "guided": []}
    for scene in scenes:
        rows: dict[str, list[np.ndarray]] = {k: [] for k in out}
        for mtf in VAL_CASES.values():
            lr, guide, truth = wald(scene, scale, mtf)
            rows["model"].append(psnr_bands(predict_guided(model, lr, guide), truth, conv))
            rows["bicubic"].append(psnr_bands(upsample(lr, scale), truth, conv))
            rows["guided"].append(psnr_bands(guided_baseline(lr, guide, scale), truth, conv))
        for k in out:
            out[k].append(rows[k])
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


#: A native scene of the artefact gate: its name, 20 m bands and guide (centre crops).
GateScene = tuple[str, np.ndarray, np.ndarray]


def gate_scenes(scenes: list[NativeScene]) -> list[GateScene]:
    """The artefact gate's scenes: the centre crop of each native scene."""
    return [(s.name, *centre_crop(s.lr20, s.hr10, MAX_LINE_SIDE)) for s in scenes]


def line_ratios(model: nn.Module, scenes: list[GateScene]) -> dict[str, float]:
    """The Nyquist-line ratio (the larger axis) of ``model``'s output minus bicubic on each
    native scene, the output's negative reflectance written as 0 as ``s2sr predict`` does."""
    scale = get_spec(model).scale
    found: dict[str, float] = {}
    for name, lr, guide in scenes:
        out = np.maximum(predict_guided(model, lr, guide), 0.0)
        if not np.isfinite(out).all():
            return {**found, name: math.inf}
        found[name] = max(nyquist_line_ratio(out, upsample(lr, scale, "bicubic")))
    return found


class GuidedModule(pl.LightningModule):
    """L1 training of a guided model with validation and the time budget of ``cfg``."""

    def __init__(self, cfg: GuidedConfig, model: nn.Module, val: list[NativeScene],
                 run_dir: Path, steps_per_epoch: int, gate: list[GateScene] | None = None
                 ) -> None:
        super().__init__()
        self.cfg, self.model, self.val, self.run_dir = cfg, model, val, run_dir
        self.gate = gate or []
        #: the epoch with the lowest largest line ratio: (ratio, epoch, scene)
        self.lowest_line: tuple[float, int, str] = (math.inf, 0, "")
        self.steps_per_epoch = steps_per_epoch
        self.best = -math.inf
        self.t0 = time.perf_counter()
        self.losses: list[float] = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, betas=(0.95, 0.999))
        sched = one_cycle(opt, self.cfg.lr, self.steps_per_epoch * self.cfg.epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self.model(batch["lr"], batch["guide"])
        loss = F.l1_loss(pred.float(), batch["hr"])
        if not bool(torch.isfinite(loss)):
            raise TrainingDivergedError(
                f"training diverged: the loss became NaN/inf at epoch {self.current_epoch + 1}"
                f" batch {batch_idx + 1}: lower lr (now {self.cfg.lr:g}) or use fp32")
        self.losses.append(float(loss.detach()))
        return loss

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, GuidedPairs):
            dataset.epoch = self.current_epoch
        self.losses = []

    def on_train_epoch_end(self) -> None:
        minutes = (time.perf_counter() - self.t0) / 60.0
        row: dict[str, Any] = {"epoch": self.current_epoch + 1, "minutes": round(minutes, 2),
                               "train_l1": float(np.mean(self.losses)) if self.losses else math.nan}
        if self.val:
            scores = wald_scores(self.model, self.val, self.cfg.scale)
            self.model.train()
            for case_i, case in enumerate(VAL_CASES):
                for ref in ("bicubic", "guided"):
                    gain = scores["model"][:, case_i] - scores[ref][:, case_i]
                    row[f"{case}_gain_{ref}"] = round(float(gain.mean()), 3)
                    row[f"{case}_gain_{ref}_worst_band"] = round(float(gain.mean(0).min()), 3)
            selection = float((scores["model"] - scores["guided"]).mean())
        else:
            selection = -float(row["train_l1"])
        row["selection"] = round(selection, 4)
        kept = True
        if self.gate:
            ratios = line_ratios(self.model, self.gate)
            self.model.train()
            worst = max(ratios, key=lambda k: ratios[k])
            row["line_max"], row["line_scene"] = round(ratios[worst], 4), worst
            kept = ratios[worst] <= float(self.cfg.max_line_ratio or math.inf)
            self.lowest_line = min(self.lowest_line,
                                   (ratios[worst], self.current_epoch + 1, worst))
        save_model(self.model, self.run_dir / "model.safetensors")
        if kept and selection > self.best:
            self.best = selection
            save_model(self.model, self.run_dir / "best.safetensors")
            row["best"] = 1
        _append_row(self.run_dir / "metrics.csv", row)
        logger.info("epoch %s: %s", row["epoch"], row)
        if minutes > self.cfg.max_minutes * (self.current_epoch + 2) / (self.current_epoch + 1):
            self.trainer.should_stop = True  # another epoch would overrun the budget


def _append_row(path: Path, row: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    if path.exists():
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def build_guided(cfg: GuidedConfig) -> nn.Module:
    """The configured model, fresh or from ``init_from`` (same architecture)."""
    model = build_model(cfg.model, bands=cfg.bands, scale=cfg.scale,
                        guide_bands=cfg.guide_bands, **cfg.options)
    if cfg.init_from:
        parent = load_model(cfg.init_from)
        a, b = get_spec(parent), get_spec(model)
        shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (parent, model)]
        if ((a.name, a.bands, a.scale, guide_of(parent)) != (b.name, b.bands, b.scale,
                                                            guide_of(model))
                or shapes[0] != shapes[1]):
            raise UsageError(f"init_from {cfg.init_from} is not the configured architecture "
                             f"({cfg.model} x{cfg.scale}): train it from scratch")
        model = parent
    return model


def _make_run_folder(run: Path) -> None:
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot make the run folder {run} ({err.strerror or err}): give -o a "
                         "new folder's path") from None


def train_guided(cfg: GuidedConfig, run_dir: str | Path) -> Path:
    """Train ``cfg`` into ``run_dir`` (created); the path of the selected weights."""
    run = Path(run_dir)
    torch.manual_seed(cfg.seed)
    scenes = native_scenes(cfg.root, held_out=False)
    if any(s.held_out for s in scenes):  # native_scenes never gives one; checked anyway
        raise UsageError("a test place reached the training scenes")
    train, val = split_scenes(scenes, cfg.val)
    data = GuidedPairs(train, cfg.scale, cfg.patch, cfg.samples_per_epoch,
                       degradations=cfg.degradation, seed=cfg.seed)
    logger.info("training on %d scenes (%s), validating on %s", len(data.scenes),
                ", ".join(s.name for s in data.scenes), ", ".join(s.name for s in val))
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=False, num_workers=0,
                        drop_last=True)
    gate = None if cfg.max_line_ratio is None else gate_scenes([*train, *val])
    model = build_guided(cfg).train()
    _make_run_folder(run)  # after every check of the data and weights: none left empty
    module = GuidedModule(cfg, model, val, run, len(loader), gate)
    precision: Any = lightning_precision(cfg.precision, "cpu")[0]  # fp32 or bf16 here
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=cfg.epochs, precision=precision,
        gradient_clip_val=cfg.clip_grad_norm or None, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(run))
    trainer.fit(module, loader)
    best = run / "best.safetensors"
    if best.exists():
        return best
    if gate:
        ratio, epoch, scene = module.lowest_line
        raise DataError(f"no epoch kept the Nyquist-line ratio at or below "
                        f"{cfg.max_line_ratio:g} on every native scene (lowest: {ratio:.3f}, "
                        f"epoch {epoch}, on {scene}; see {run / 'metrics.csv'}): nothing "
                        "selected; change the recipe (lr, epochs, degradations) or the bound")
    return run / "model.safetensors"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``CONFIG -o RUN [--data-root DIR]``; exit 2 on usage errors, 1 on data
    errors, with a one-line message."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="run folder")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the shared data folder (default: data.root of the config)")
    parser.add_argument("--init-from", default=None,
                        help="start from these weights (default: init_from of the config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        cfg = load_guided_config(args.config, data_root=args.data_root)
        if args.init_from is not None:
            cfg = dataclasses.replace(cfg, init_from=args.init_from)
        path = train_guided(cfg, args.output)
    except S2SRError as err:
        return report_error(err)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
