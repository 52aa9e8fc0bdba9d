"""The network, its loss and its optimisation as a Lightning module: one one-cycle per stage
(progressive resizing, frozen parts, ``init_from``), mixed precision with the style loss's
Gram matrices in float32, divergence checks and validation against bicubic interpolation
(every rank scores its share; the records are gathered)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from s2sr.core.errors import (
    DataError,
    InputNotFoundError,
    TrainingDivergedError,
    UsageError,
    WeightsError,
)
from s2sr.inference.baselines import upsample
from s2sr.losses import VGG16_URL, PerceptualLoss, SRLoss
from s2sr.losses.metrics import Conventions, psnr, ssim
from s2sr.models import build_model, get_spec, load_model
from s2sr.models.edsr import ResBlock
from s2sr.models.registry import deepen
from s2sr.training.schedule import one_cycle
from s2sr.training.schema import PARTS, TrainConfig


def _rgb_index(cfg: TrainConfig) -> tuple[int, ...]:
    bands = list(cfg.model.bands)
    missing = [b for b in cfg.loss.rgb_bands if b not in bands]
    if missing:
        raise UsageError(f"loss.rgb_bands {missing} are not among model.bands {bands}")
    return tuple(bands.index(b) for b in cfg.loss.rgb_bands)


def vgg_source(cfg: TrainConfig) -> tuple[str, str]:
    """The VGG16 weights of the perceptual loss and where that choice came from: the
    config's ``loss.vgg_weights``, else ``$S2SR_VGG16_WEIGHTS``, else torchvision's URL."""
    if cfg.loss.vgg_weights:
        return cfg.loss.vgg_weights, f"loss.vgg_weights in {cfg.source or 'the config'}"
    env = os.environ.get("S2SR_VGG16_WEIGHTS")
    if env:
        return env, "from the environment variable S2SR_VGG16_WEIGHTS"
    return VGG16_URL, ("neither loss.vgg_weights nor S2SR_VGG16_WEIGHTS is set, so "
                       "torchvision's ImageNet weights are downloaded")


def build_loss(cfg: TrainConfig) -> SRLoss:
    """The configured loss (the VGG16 is loaded only when a feature/style term is on)."""
    perceptual = None
    if any(cfg.loss.feature.values()) or (cfg.loss.style_weight and any(
            cfg.loss.style.values())):
        source, origin = vgg_source(cfg)
        try:
            perceptual = PerceptualLoss(
                weights_source=source, feature_layers=cfg.loss.feature,
                style_layers=cfg.loss.style, style_weight=cfg.loss.style_weight,
                rgb_index=_rgb_index(cfg), rgb_scale=cfg.loss.rgb_scale)
        except (WeightsError, InputNotFoundError) as err:
            raise type(err)(f"the feature/style loss needs VGG16 weights ({origin}): "
                            f"{err}") from None
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
        depth = cfg.model.options.get("n_resblocks")
        model = parent if depth is None or depth == _depth(parent) else deepen(parent, depth)
    return model


def _depth(model: nn.Module) -> int:
    """Residual blocks in a network's body (0 for a network without them)."""
    return sum(isinstance(m, ResBlock) for m in getattr(model, "body", ()))


def set_frozen(model: nn.Module, parts: list[str]) -> None:
    """Freeze the named parts (head, body, upsample, tail); unfreeze the others."""
    for name in PARTS:
        module = getattr(model, name, None)
        if module is None:
            continue
        for param in module.parameters():
            param.requires_grad_(name not in parts)


#: Names of the loss terms summed over an epoch (the metrics row's columns).
TERMS = ("train_loss", "pixel", "feature", "style")
#: Validation scores of an epoch without validation patches.
NO_VALIDATION = {"val_psnr": math.nan, "val_ssim": math.nan, "val_psnr_bicubic": math.nan,
                 "val_ssim_bicubic": math.nan, "val_gain_min": math.nan}


def stage_of(cfg: TrainConfig, epoch: int) -> tuple[int, int]:
    """(stage, epoch within it) of a run's epoch counted over all stages."""
    for k, stage in enumerate(cfg.stages):
        if epoch < stage.epochs:
            return k, epoch
        epoch -= stage.epochs
    return len(cfg.stages) - 1, cfg.stages[-1].epochs


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter], lr: float
                   ) -> torch.optim.Optimizer:
    """Adam or AdamW; ``betas[0]`` is the top of the one-cycle's momentum range."""
    betas = (cfg.optimizer.betas[0], cfg.optimizer.betas[1])
    if cfg.optimizer.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas,
                                 weight_decay=cfg.optimizer.weight_decay)
    if cfg.optimizer.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=cfg.optimizer.weight_decay)
    raise UsageError(f"optimizer.name must be adam or adamw, got {cfg.optimizer.name!r}")


class SRModule(pl.LightningModule):
    """Trains ``model`` with ``loss`` through the stages of ``cfg``.

    ``steps(stage)`` is the number of optimisation steps per epoch of a stage (the
    one-cycle's length). ``stage`` is the stage the optimiser is built for; it moves on at
    the first epoch of the next stage (fresh optimiser and one-cycle, new frozen parts).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, loss: SRLoss,
                 steps: Any, stage: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.loss = loss
        self.steps = steps
        self.stage = stage
        self.conv = Conventions(crop=cfg.model.scale)
        #: (stage, learning rate) of every optimisation step of this process
        self.lr_history: list[tuple[int, float]] = []
        self.sums = dict.fromkeys(TERMS, 0.0)
        self.batches = 0
        self.seconds = 0.0
        self.data_seconds = 0.0
        self.patches = 0
        self.val_scores: dict[str, float] = dict(NO_VALIDATION)
        self._records: list[tuple[str, float, float, float, float]] = []
        self._restored_partial = False
        self._t_batch = self._epoch_t0 = time.perf_counter()

    # -- optimisation -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _freeze(self) -> None:
        """Freeze the stage's parts. With one process, ``requires_grad`` is switched off
        (no gradient computed); data-parallel runs keep every gradient (DDP registers its
        hooks once) and leave the frozen parts out of the optimiser instead."""
        freeze = self.cfg.stages[self.stage].freeze
        if self.trainer.world_size == 1:
            set_frozen(self.model, freeze)
        else:
            set_frozen(self.model, [])

    def _trainable(self) -> list[nn.Parameter]:
        freeze = self.cfg.stages[self.stage].freeze
        frozen = {id(p) for name in freeze if (part := getattr(self.model, name, None))
                  is not None for p in part.parameters()}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in frozen]

    def configure_optimizers(self) -> Any:
        self._freeze()
        stage = self.cfg.stages[self.stage]
        opt = make_optimizer(self.cfg, self._trainable(), stage.lr)
        sched = one_cycle(opt, stage.lr, self.steps(self.stage) * stage.epochs, stage.pct_start,
                          momentum=self.cfg.optimizer.betas[0])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        stage, _ = stage_of(self.cfg, self.current_epoch)
        if stage != self.stage:  # the next stage: its own optimiser and one-cycle
            self.stage = stage
            self.trainer.strategy.setup_optimizers(self.trainer)
        self.model.train()
        if self._restored_partial:  # resumed mid-epoch: the sums so far came with it
            self._restored_partial = False
        else:
            self.sums = dict.fromkeys(TERMS, 0.0)
            self.batches = self.patches = 0
            self.seconds = self.data_seconds = 0.0
        self._epoch_t0 = time.perf_counter() - self.seconds
        self._t_batch = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.data_seconds += time.perf_counter() - self._t_batch
        lr_b = batch["lr"].contiguous(memory_format=torch.channels_last)
        hr_b = batch["hr"]
        pred = self.model(lr_b)
        total, terms = self.loss(pred.float(), hr_b)
        values = torch.stack([total.detach().float(),
                              *(terms[n].detach().float() for n in TERMS[1:])])
        values = self.trainer.strategy.reduce(values, reduce_op="mean")
        step_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
        if not bool(torch.isfinite(values[0])):
            self._diverged(batch_idx, step_lr, lr_b, hr_b, "the loss")
        self.lr_history.append((self.stage, step_lr))
        for name, v in zip(TERMS, values.tolist(), strict=True):
            self.sums[name] += v
        self.batches += 1
        self.patches += lr_b.shape[0] * self.trainer.world_size
        self.log("loss", values[0], prog_bar=True, logger=False, sync_dist=False)
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.seconds = time.perf_counter() - self._epoch_t0
        self._t_batch = time.perf_counter()

    def epoch_row(self) -> dict[str, Any]:
        """The epoch's metrics row (without stage/epoch columns)."""
        n = max(self.batches, 1)
        return {**{k: v / n for k, v in self.sums.items()},
                "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
                **self.val_scores, "seconds": self.seconds, "data_seconds": self.data_seconds,
                "patches_per_s": self.patches / max(self.seconds, 1e-9)}

    def check_weights(self) -> None:
        """Refuse to go on (and to validate or checkpoint) with non-finite weights."""
        for param in self.model.parameters():
            if not bool(torch.isfinite(param).all()):
                lr = self.lr_history[-1][1] if self.lr_history else float("nan")
                self._diverged(None, lr, None, None, "the weights")

    def _diverged(self, step: int | None, lr: float, lr_b: torch.Tensor | None,
                  hr_b: torch.Tensor | None, what: str) -> None:
        """Raise the divergence error, saying what is known about it."""
        stage, epoch = stage_of(self.cfg, self.current_epoch)
        data = ""
        if lr_b is not None and hr_b is not None:
            if not (bool(torch.isfinite(lr_b).all()) and bool(torch.isfinite(hr_b).all())):
                raise DataError(
                    f"stage {stage} epoch {epoch + 1}: the training patches hold NaN or "
                    "infinite values: rebuild the dataset with s2sr pairs (it drops them)")
            data = " although this batch's input and target patches are finite"
        precision = (f"; precision {self.cfg.precision} can overflow: try precision: fp32"
                     if self.cfg.precision not in ("fp32", "32-true") else "")
        clip = ("" if self.cfg.optimizer.clip_grad_norm else
                ", or set optimizer.clip_grad_norm (e.g. 1.0)")
        raise TrainingDivergedError(
            f"training diverged: {what} became NaN/inf at stage {stage} epoch {epoch + 1} "
            f"({'' if step is None else f'batch {step + 1}, '}learning rate {lr:.3g}; "
            f"stages[{stage}].lr is {self.cfg.stages[stage].lr:g}){data}: "
            f"lower stages[{stage}].lr{clip}{precision}")

    # -- validation ---------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._records = []

    def validation_step(self, item: dict[str, Any], batch_idx: int) -> None:
        lr, hr = item["lr"], item["hr"].cpu().numpy()
        pred = self.model(lr[None]).float()[0].cpu().numpy()
        bic = upsample(lr.cpu().numpy(), self.cfg.model.scale)
        self._records.append((str(item.get("degradation", "all")),
                              psnr(pred, hr, self.conv), ssim(pred, hr, self.conv),
                              psnr(bic, hr, self.conv), ssim(bic, hr, self.conv)))

    def on_validation_epoch_end(self) -> None:
        records = self._records
        if self.trainer.world_size > 1:  # every rank scored its share: gather them all
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        self.val_scores = score(records)

    # -- checkpoints --------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["s2sr_epoch"] = {
            "stage": self.stage, "sums": [self.sums[k] for k in TERMS],
            "batches": self.batches, "patches": self.patches, "seconds": self.seconds,
            "data_seconds": self.data_seconds}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        part = checkpoint["s2sr_epoch"]
        self.stage = int(part["stage"])
        self.sums = dict(zip(TERMS, (float(v) for v in part["sums"]), strict=True))
        self.batches, self.patches = int(part["batches"]), int(part["patches"])
        self.seconds, self.data_seconds = float(part["seconds"]), float(part["data_seconds"])
        self._restored_partial = True  # a resume mid-epoch goes on with these sums
        self._t_batch = time.perf_counter()
        self._epoch_t0 = self._t_batch - self.seconds


def score(records: list[tuple[str, float, float, float, float]]) -> dict[str, float]:
    """Mean PSNR/SSIM of the model and of bicubic interpolation, and the worst
    degradation's mean gain over bicubic (synthetic validation cycles through the panel's
    cases: a model must help on every plausible input)."""
    if not records:
        return dict(NO_VALIDATION)
    arr = np.array([r[1:] for r in records], dtype=np.float64)
    out = {"val_psnr": float(arr[:, 0].mean()), "val_ssim": float(arr[:, 1].mean()),
           "val_psnr_bicubic": float(arr[:, 2].mean()),
           "val_ssim_bicubic": float(arr[:, 3].mean())}
    gains: dict[str, list[float]] = {}
    for label, p, _s, pb, _sb in records:
        gains.setdefault(label, []).append(p - pb)
    out["val_gain_min"] = float(min(np.mean(v) for v in gains.values()))
    return out
