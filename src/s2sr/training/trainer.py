"""The training loop: stages of one-cycle training with progressive resizing, transfer
(``init_from``), frozen parts, validation PSNR/SSIM, checkpoints and resume.

A run folder receives ``config.yaml`` (the resolved experiment), ``metrics.csv`` (a row per
epoch), ``checkpoint.pt`` (resumable: weights, optimiser, schedule, position, best score),
``best.safetensors`` (best validation PSNR), ``model.safetensors`` (final weights, usable by
``s2sr predict``) and ``curves.png``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from s2sr.data.dataset import PairDataset
from s2sr.errors import DataError, OutputExistsError, UsageError, WeightsError
from s2sr.evaluation.metrics import Conventions, psnr, ssim
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import resolve_device
from s2sr.losses import VGG16_URL, PerceptualLoss, SRLoss
from s2sr.models import build_model, get_spec, load_model, save_model
from s2sr.training import distributed as D
from s2sr.training.config import PARTS, TrainConfig
from s2sr.training.schedule import one_cycle

log = logging.getLogger(__name__)

METRIC_FIELDS = ["stage", "epoch", "stage_epoch", "lr", "train_loss", "pixel", "feature",
                 "style", "val_psnr", "val_ssim", "val_psnr_bicubic", "val_ssim_bicubic",
                 "seconds", "data_seconds", "patches_per_s"]


@dataclass
class Position:
    """Where training stands: the next stage and epoch within it."""

    stage: int = 0
    epoch: int = 0
    global_epoch: int = 0
    best: float = -math.inf


def _datasets(cfg: TrainConfig, split: str, crop: int | None, augment: bool,
              seed: int | None) -> ConcatDataset[dict[str, Any]]:
    parts = []
    for root in cfg.data.datasets:
        ds = PairDataset(root, split=split, kind=cfg.data.kind, site=cfg.data.site, crop=crop,
                         augment=augment, seed=seed, bands=cfg.model.bands)
        if len(ds):
            parts.append(ds)
    if not parts:
        return ConcatDataset([PairDataset(cfg.data.datasets[0], split="__none__")])
    return ConcatDataset(parts)


def _set_epoch(ds: ConcatDataset[dict[str, Any]], epoch: int) -> None:
    for part in ds.datasets:
        part.epoch = epoch  # type: ignore[attr-defined]


def _rgb_index(cfg: TrainConfig) -> tuple[int, ...]:
    bands = list(cfg.model.bands)
    missing = [b for b in cfg.loss.rgb_bands if b not in bands]
    if missing:
        raise UsageError(f"loss.rgb_bands {missing} are not among model.bands {bands}")
    return tuple(bands.index(b) for b in cfg.loss.rgb_bands)


def build_loss(cfg: TrainConfig) -> SRLoss:
    """The configured loss (the VGG16 is loaded only when a feature/style term is on)."""
    perceptual = None
    if any(cfg.loss.feature.values()) or (cfg.loss.style_weight and any(
            cfg.loss.style.values())):
        perceptual = PerceptualLoss(
            weights_source=(cfg.loss.vgg_weights or os.environ.get("S2SR_VGG16_WEIGHTS")
                            or VGG16_URL),
            feature_layers=cfg.loss.feature, style_layers=cfg.loss.style,
            style_weight=cfg.loss.style_weight, rgb_index=_rgb_index(cfg),
            rgb_scale=cfg.loss.rgb_scale)
    return SRLoss(pixel_weight=cfg.loss.pixel, pixel_kind=cfg.loss.pixel_kind,
                  perceptual=perceptual)


def _init_weights_path(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UsageError(f"init_from {source} has no weights ({path} missing): train the "
                         "parent experiment first")
    return path


def build_network(cfg: TrainConfig, train_set: ConcatDataset[dict[str, Any]]) -> nn.Module:
    """The model: fresh (normalised on the data when asked) or from ``init_from``."""
    options = dict(cfg.model.options)
    if cfg.init_from is None and cfg.data.norm_from_data and len(train_set):
        idx = np.linspace(0, len(train_set) - 1, min(len(train_set), 256)).astype(int)
        stack = torch.stack([train_set[int(i)]["lr"] for i in idx])
        options.setdefault("mean", stack.mean(dim=(0, 2, 3)).tolist())
        options.setdefault("std", stack.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    model = build_model(cfg.model.name, bands=cfg.model.bands, scale=cfg.model.scale, **options)
    if cfg.init_from:
        parent = load_model(_init_weights_path(cfg.init_from))
        pspec, spec = get_spec(parent), get_spec(model)
        if (pspec.name, pspec.bands, pspec.scale) != (spec.name, spec.bands, spec.scale):
            raise WeightsError(
                f"init_from {cfg.init_from} is a {pspec.name} x{pspec.scale} on "
                f"{','.join(pspec.bands)}, this experiment a {spec.name} x{spec.scale} on "
                f"{','.join(spec.bands)}: they must match")
        model = parent
    return model


def set_frozen(model: nn.Module, parts: list[str]) -> None:
    """Freeze the named parts (head, body, upsample, tail); unfreeze the others."""
    for name in PARTS:
        module = getattr(model, name, None)
        if module is None:
            continue
        for param in module.parameters():
            param.requires_grad_(name not in parts)


class Trainer:
    """Runs an experiment into a run folder.

    Args:
        cfg: the validated experiment.
        run_dir: output folder.
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: progress bars (default: when stderr is a terminal).
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike[str], *,
                 resume: bool = False, progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.device = resolve_device(cfg.device)
        self.dist = D.init(self.device.type)
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.progress = (sys.stderr.isatty() if progress is None else progress) and \
            self.dist.main
        self.conv = Conventions(crop=cfg.model.scale)
        #: (stage, learning rate) of every optimisation step of this process
        self.lr_history: list[tuple[int, float]] = []

    # -- files ---------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        if not self.dist.main:  # only the main process checks and writes the run folder
            return
        ckpt = self.run_dir / "checkpoint.pt"
        if self.resume:
            if not ckpt.exists():
                raise UsageError(f"--resume given but {ckpt} does not exist: start without "
                                 "--resume")
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise OutputExistsError(f"run folder {self.run_dir} is not empty: choose a new "
                                    "one or pass --resume")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.cfg.as_dict(),
                                                                 sort_keys=False))
        with open(self.run_dir / "metrics.csv", "w", newline="") as handle:
            csv.writer(handle).writerow(METRIC_FIELDS)

    def _write_row(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.csv", "a", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def _save_checkpoint(self, model: nn.Module, opt: torch.optim.Optimizer,
                         sched: Any, pos: Position) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "stage": pos.stage, "epoch": pos.epoch,
                 "global_epoch": pos.global_epoch, "best": pos.best,
                 "rng": torch.get_rng_state()}
        tmp = self.run_dir / f".checkpoint.pt.{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / "checkpoint.pt")

    # -- loop ----------------------------------------------------------------------------
    def _batches(self, n: int, batch: int, stage: int, epoch: int) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + stage * 131 + epoch)
        order = torch.randperm(n, generator=gen).tolist()
        per_rank = batch // self.dist.world
        for start in range(0, n - batch + 1, batch):  # drop the last partial batch
            chunk = order[start:start + batch]
            yield chunk[self.dist.rank * per_rank:(self.dist.rank + 1) * per_rank]

    def _autocast(self) -> Any:
        if self.cfg.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.no_grad()
    def validate(self, model: nn.Module, val_set: ConcatDataset[dict[str, Any]]
                 ) -> dict[str, float]:
        """Mean PSNR/SSIM (reflectance, data range 1, border crop = scale) of the model and
        of bicubic interpolation on the validation patches."""
        n = len(val_set)
        if n == 0:
            nan = float("nan")
            return {"val_psnr": nan, "val_ssim": nan, "val_psnr_bicubic": nan,
                    "val_ssim_bicubic": nan}
        limit = self.cfg.data.max_val_patches
        idx = range(n) if limit is None or n <= limit else np.linspace(0, n - 1, limit
                                                                       ).astype(int)
        model.eval()
        scores: dict[str, list[float]] = {"val_psnr": [], "val_ssim": [],
                                          "val_psnr_bicubic": [], "val_ssim_bicubic": []}
        for i in idx:
            item = val_set[int(i)]
            lr, hr = item["lr"], item["hr"].numpy()
            with self._autocast():
                pred = model(lr[None].to(self.device)).float()[0].cpu().numpy()
            bic = upsample(lr.numpy(), self.cfg.model.scale)
            scores["val_psnr"].append(psnr(pred, hr, self.conv))
            scores["val_ssim"].append(ssim(pred, hr, self.conv))
            scores["val_psnr_bicubic"].append(psnr(bic, hr, self.conv))
            scores["val_ssim_bicubic"].append(ssim(bic, hr, self.conv))
        return {k: float(np.mean(v)) for k, v in scores.items()}

    def run(self) -> Path:
        """Train every stage; returns the path of ``model.safetensors``."""
        cfg = self.cfg
        self._prepare_dir()
        D.barrier(self.dist)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        probe = _datasets(cfg, cfg.data.train_split, None, False, None)
        if len(probe) == 0:
            raise DataError(f"no accepted '{cfg.data.train_split}' patches in "
                            f"{', '.join(cfg.data.datasets)} (kind {cfg.data.kind}): build "
                            "them with s2sr pairs or fix data.kind/data.train_split")
        val_set = _datasets(cfg, cfg.data.val_split, None, False, None)
        if len(val_set) == 0:
            log.warning("no '%s' patches: validation PSNR/SSIM will be empty",
                        cfg.data.val_split)
        model = build_network(cfg, probe).to(self.device)
        loss_fn = build_loss(cfg).to(self.device)
        pos = Position()
        ckpt: dict[str, Any] | None = None
        if self.resume:
            ckpt = torch.load(self.run_dir / "checkpoint.pt", map_location=self.device,
                              weights_only=True)
            model.load_state_dict(ckpt["model"])
            pos = Position(ckpt["stage"], ckpt["epoch"], ckpt["global_epoch"], ckpt["best"])
        net: nn.Module = model
        if self.dist.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        while pos.stage < len(cfg.stages):
            self._run_stage(model, net, loss_fn, val_set, pos, ckpt)
            ckpt = None
            pos.stage, pos.epoch = pos.stage + 1, 0
        final = self.run_dir / "model.safetensors"
        if self.dist.main:
            save_model(model, final)
            from s2sr.training.curves import plot_curves

            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png")
        D.barrier(self.dist)
        D.shutdown(self.dist)
        return final

    def _run_stage(self, model: nn.Module, net: nn.Module, loss_fn: SRLoss,
                   val_set: ConcatDataset[dict[str, Any]], pos: Position,
                   ckpt: dict[str, Any] | None) -> None:
        cfg, k = self.cfg, pos.stage
        stage = cfg.stages[k]
        batch = stage.batch_size or cfg.batch_size
        if batch % self.dist.world:
            raise UsageError(f"batch size {batch} does not split over {self.dist.world} "
                             "processes: use a multiple")
        train_set = _datasets(cfg, cfg.data.train_split, stage.patch, cfg.data.augment,
                              cfg.seed)
        if len(train_set) < batch:
            raise DataError(f"stage {k}: {len(train_set)} training patches, fewer than one "
                            f"batch of {batch}: lower batch_size or add data")
        set_frozen(model, stage.freeze)
        params = [p for p in model.parameters() if p.requires_grad]
        betas = (cfg.optimizer.betas[0], cfg.optimizer.betas[1])
        opt: torch.optim.Optimizer
        if cfg.optimizer.name == "adamw":
            opt = torch.optim.AdamW(params, lr=stage.lr, betas=betas,
                                    weight_decay=cfg.optimizer.weight_decay)
        elif cfg.optimizer.name == "adam":
            opt = torch.optim.Adam(params, lr=stage.lr, betas=betas,
                                   weight_decay=cfg.optimizer.weight_decay)
        else:
            raise UsageError(f"optimizer.name must be adam or adamw, got {cfg.optimizer.name!r}")
        steps = len(train_set) // batch
        sched = one_cycle(opt, stage.lr, steps * stage.epochs, stage.pct_start)
        if ckpt is not None:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["rng"])
        for epoch in range(pos.epoch, stage.epochs):
            row = self._epoch(net, loss_fn, opt, sched, train_set, k, epoch, batch)
            pos.global_epoch += 1
            scores = self.validate(model, val_set) if self.dist.main else {}
            row.update({"stage": k, "epoch": pos.global_epoch, "stage_epoch": epoch + 1,
                        **scores})
            pos.epoch = epoch + 1
            if self.dist.main:
                self._write_row(row)
                if scores.get("val_psnr", -math.inf) > pos.best:
                    pos.best = scores["val_psnr"]
                    save_model(model, self.run_dir / "best.safetensors")
                self._save_checkpoint(model, opt, sched, pos)
            D.barrier(self.dist)

    def _epoch(self, net: nn.Module, loss_fn: SRLoss, opt: torch.optim.Optimizer,
               sched: Any, train_set: ConcatDataset[dict[str, Any]], stage: int, epoch: int,
               batch: int) -> dict[str, Any]:
        net.train()
        _set_epoch(train_set, epoch + 1000 * stage)
        sampler = list(self._batches(len(train_set), batch, stage, epoch))
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=self.cfg.data.workers)
        sums = {"train_loss": 0.0, "pixel": 0.0, "feature": 0.0, "style": 0.0}
        t0 = time.perf_counter()
        data_time = 0.0
        seen = 0
        bar = tqdm(total=len(sampler), disable=not self.progress, leave=False,
                   desc=f"stage {stage} epoch {epoch + 1}")
        t_data = time.perf_counter()
        for items in loader:
            data_time += time.perf_counter() - t_data
            lr_b = items["lr"].to(self.device, non_blocking=True)
            hr_b = items["hr"].to(self.device, non_blocking=True)
            with self._autocast():
                pred = net(lr_b)
                total, terms = loss_fn(pred.float(), hr_b)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if self.cfg.optimizer.clip_grad_norm:
                nn.utils.clip_grad_norm_(net.parameters(), self.cfg.optimizer.clip_grad_norm)
            opt.step()
            self.lr_history.append((stage, opt.param_groups[0]["lr"]))
            sched.step()
            values = torch.stack([total.detach(), *(terms[n].detach().float() for n in
                                                    ("pixel", "feature", "style"))])
            values = D.all_mean(values, self.dist)
            for name, v in zip(sums, values.tolist(), strict=True):
                sums[name] += v
            seen += lr_b.shape[0] * self.dist.world
            bar.update(1)
            bar.set_postfix(loss=f"{values[0].item():.4f}")
            t_data = time.perf_counter()
        bar.close()
        seconds = time.perf_counter() - t0
        n = max(len(sampler), 1)
        return {**{k: v / n for k, v in sums.items()}, "lr": opt.param_groups[0]["lr"],
                "seconds": seconds, "data_seconds": data_time,
                "patches_per_s": seen / max(seconds, 1e-9)}


def train(cfg: TrainConfig, run_dir: str | os.PathLike[str], *, resume: bool = False,
          epoch_scale: float = 1.0, progress: bool | None = None) -> Path:
    """Run an experiment (see :class:`Trainer`); ``epoch_scale`` shrinks every stage."""
    if epoch_scale <= 0:
        raise UsageError(f"--epoch-scale must be > 0, got {epoch_scale}")
    if epoch_scale != 1.0:
        cfg = cfg.scaled(epoch_scale)
    return Trainer(cfg, run_dir, resume=resume, progress=progress).run()
