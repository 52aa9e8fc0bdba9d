"""Runs an experiment into a run folder, on PyTorch Lightning.

A run folder receives ``config.yaml`` (the resolved experiment), ``metrics.csv`` (a row per
epoch), ``checkpoint.pt`` (Lightning's resumable state: weights, optimiser, schedule, loop and
data position, best score, random states), ``best.safetensors`` (best validation score),
``model.safetensors`` (final weights, usable by ``s2sr predict``) and ``curves.png``.

Underneath: :class:`~s2sr.training.module.SRModule` (network, loss, one-cycle stages) and
:class:`~s2sr.training.data.SRDataModule` (the stage's patches per epoch), one
``lightning.Trainer`` over all stages with mixed precision, gradient clipping, DDP (gloo on
CPU, NCCL on GPU; ``devices`` or ``torchrun``) and a progress bar. A stop (Ctrl-C, SIGTERM)
finishes the current batch, saves a checkpoint and exits; ``resume=True`` continues there.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.utilities.exceptions import SIGTERMException

from s2sr.core.checks import check_choice, check_epoch_scale
from s2sr.core.errors import (
    CheckpointError,
    DataError,
    UsageError,
)
from s2sr.core.files import exclusive_output
from s2sr.core.signals import on_stop_signals, stop_exception, terminate_raises
from s2sr.models import save_model
from s2sr.models.device import cpu_bf16_supported, resolve_device
from s2sr.training.checkpoint import (
    RESUME_KEYS,
    SafeCheckpointIO,
    fingerprint,
    load_checkpoint,
    restore_rng,
)
from s2sr.training.config import PRECISIONS, validate
from s2sr.training.data import SRDataModule, check_datasets, datasets
from s2sr.training.metrics_file import MetricsFile
from s2sr.training.module import SRModule, build_loss, build_network, stage_of
from s2sr.training.run_folder import make_parents, prepare_run_dir, undo
from s2sr.training.schema import TrainConfig

log = logging.getLogger(__name__)

def lightning_precision(precision: str, device_type: str, native_bf16: bool | None = None
                        ) -> tuple[str | None, list[Any]]:
    """Lightning's ``precision`` argument and plugins for a configured precision.

    fp16 keeps its loss scaling on every device: on the CPU (where Lightning would switch
    to bf16 on its own) through an explicit :class:`MixedPrecision` plugin with a
    gradient scaler; bf16 needs no scaler; fp32 runs without autocast. bf16 on a CPU
    without native bf16 arithmetic (``native_bf16``, default
    :func:`~s2sr.models.device.cpu_bf16_supported`: AVX512-BF16 or AMX) runs at fp32, with
    a warning: PyTorch would emulate it (a guided model's epoch took 1.7 min at fp32 and
    did not finish in 30 min at bf16 on an AVX2 machine).
    """
    name = PRECISIONS[check_choice("precision", precision, PRECISIONS)]
    if name == "16-mixed":
        return None, [MixedPrecision("16-mixed", device_type)]
    if name == "bf16-mixed" and device_type == "cpu" \
            and not (cpu_bf16_supported() if native_bf16 is None else native_bf16):
        log.warning("precision bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16 "
                    "or AMX) and PyTorch would emulate it, many times slower; training at "
                    "fp32 instead (set precision: fp32 to silence this; results differ from "
                    "a bf16 run's in the last bits)")
        return "32-true", []
    return name, []


def distributed_layout(devices: int, num_nodes: int) -> tuple[int, int]:
    """(devices per node, nodes): the config's, or torchrun's when it launched us."""
    world = int(os.environ.get("WORLD_SIZE", "0") or 0)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if world > 1 and local >= 1 and world % local == 0:
        return local, world // local
    return devices, num_nodes


class Trainer:
    """Runs an experiment into a run folder.

    Args:
        cfg: the validated experiment.
        run_dir: output folder.
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: progress bar (default: when stderr is a terminal).
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike[str], *,
                 resume: bool = False, progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.device = resolve_device(cfg.device)
        self.devices, self.num_nodes = distributed_layout(cfg.devices, cfg.num_nodes)
        self.world = self.devices * self.num_nodes
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
        self.main = rank == 0
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.main
        #: whether this run has written a checkpoint (the folder is then resumable)
        self.checkpointed = False
        #: metric rows in metrics.csv (kept equal to the checkpoint's on resume)
        self.metrics = MetricsFile(self.run_dir / "metrics.csv")
        self.best = -math.inf
        #: the Lightning module of the last run (its ``lr_history``, ``model``...)
        self.module: SRModule | None = None
        #: the signal that stopped the run (SIGINT or SIGTERM), if any
        self.stopped_by: int | None = None

    @property
    def lr_history(self) -> list[tuple[int, float]]:
        """(stage, learning rate) of every optimisation step of this process."""
        return self.module.lr_history if self.module is not None else []

    # -- resume -------------------------------------------------------------------------
    def _resume_state(self, module: SRModule) -> dict[str, Any]:
        """Load and check the checkpoint; restore the best score and the metrics rows."""
        path = self.run_dir / "checkpoint.pt"
        ckpt = load_checkpoint(path)
        own = module.state_dict()
        saved = ckpt["state_dict"]
        wrong = sorted(set(own) ^ set(saved)) or [k for k in own
                                                  if own[k].shape != saved[k].shape]
        if wrong:
            raise CheckpointError(
                f"checkpoint {path} does not fit this experiment's model "
                f"({self.cfg.model.name} x{self.cfg.model.scale}; {wrong[0]} differs): resume "
                "with the config that started the run, or start a new run in another folder")
        recorded = ckpt["s2sr"].get("config")
        if isinstance(recorded, dict):
            now = fingerprint(self.cfg)
            differ = [k for k in RESUME_KEYS if recorded.get(k) != now[k]]
            if differ:
                raise CheckpointError(
                    f"checkpoint {path} was made with another experiment ({', '.join(differ)} "
                    "differ): resume with the config (and --epoch-scale) that started the "
                    "run, or start a new run in another folder")
        total = sum(s.epochs for s in self.cfg.stages)
        if ckpt["epoch"] > total or ckpt["s2sr_epoch"]["stage"] >= len(self.cfg.stages):
            raise CheckpointError(f"checkpoint {path} is at epoch {ckpt['epoch']} of stage "
                                  f"{ckpt['s2sr_epoch']['stage']}, the config has {total} "
                                  f"epochs in {len(self.cfg.stages)} stages: resume with the "
                                  "config that started the run")
        self.best = float(ckpt["s2sr"]["best"])
        if self.main:
            self.metrics.truncate(int(ckpt["s2sr"]["rows"]))
        self.checkpointed = True
        return ckpt

    # -- run ----------------------------------------------------------------------------
    def run(self) -> Path:
        """Train every stage; returns the path of ``model.safetensors``.

        A run that fails or is interrupted (Ctrl-C, SIGTERM) before its first checkpoint
        leaves the run folder as it found it; after that, the folder resumes with
        ``resume=True``.
        """
        with terminate_raises():
            if not self.main:
                return self._train()
            check_datasets(self.cfg)
            created: list[Path] = []
            done = False
            try:
                created += make_parents(self.run_dir)
                with exclusive_output(self.run_dir.absolute()):
                    prepare_run_dir(self.run_dir, self.cfg, self.resume, self.metrics,
                                    created)
                    final = self._train()
                done = True
                return final
            finally:
                if not done and not self.checkpointed:
                    undo(created)

    def _steps(self, data: SRDataModule) -> Any:
        def steps(stage: int) -> int:
            return len(data.train_set(stage)) // data.batch_size(stage)
        return steps

    def _check_stages(self, data: SRDataModule) -> None:
        for k, _stage in enumerate(self.cfg.stages):
            batch = data.batch_size(k)
            if batch % self.world:
                raise UsageError(f"batch size {batch} does not split over {self.world} "
                                 "processes: use a multiple")
        n, batch = len(data.train_set(0)), data.batch_size(0)
        if n < batch:
            raise DataError(f"stage 0: {n} training patches, fewer than one batch of {batch}: "
                            "lower batch_size or add data")

    def _train(self) -> Path:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        probe = datasets(cfg, cfg.data.train_split, None, False, None)
        if len(probe) == 0:
            raise DataError(f"no accepted '{cfg.data.train_split}' patches in "
                            f"{', '.join(cfg.data.datasets)} (kind {cfg.data.kind}): build "
                            "them with s2sr pairs or fix data.kind/data.train_split")
        data = SRDataModule(cfg, lambda epoch: stage_of(cfg, epoch))
        if len(data.val_set) == 0:
            log.warning("no '%s' patches: validation PSNR/SSIM will be empty",
                        cfg.data.val_split)
        self._check_stages(data)
        # channels-last: oneDNN's fast convolution path (with bf16 autocast on CPUs that
        # have AVX512-BF16/AMX, about 3.5x faster than fp32; see benchmarks/README.md)
        model = build_network(cfg, probe).to(
            memory_format=torch.channels_last)  # type: ignore[call-overload]
        module = SRModule(cfg, model, build_loss(cfg), self._steps(data))
        self.module = module
        ckpt_path: Path | None = None
        if self.resume and (self.run_dir / "checkpoint.pt").is_file():
            ckpt = self._resume_state(module)
            if self.main or self.world == 1:
                restore_rng(ckpt["s2sr"])
            ckpt_path = self.run_dir / "checkpoint.pt"
        trainer = self._lightning(data)
        module.train()
        with self._graceful(trainer), contextlib.suppress(SIGTERMException):
            try:  # a stop raises SIGTERMException once its checkpoint is saved
                trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
            except SystemExit as err:
                # Lightning turns a KeyboardInterrupt that escaped (a second Ctrl-C) into
                # exit(1): give it back to the CLI, which names the checkpoint to resume
                if isinstance(err, SIGTERMException) or not isinstance(err.__context__,
                                                                      KeyboardInterrupt):
                    raise
                raise KeyboardInterrupt from None
        if self.stopped_by is not None and not trainer.fit_loop.done:
            raise stop_exception(self.stopped_by)
        final = self.run_dir / "model.safetensors"
        if trainer.is_global_zero:
            save_model(module.model, final)
            from s2sr.training.curves import plot_curves

            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png")
        _leave_process_group()
        return final

    def _lightning(self, data: SRDataModule) -> pl.Trainer:
        cfg = self.cfg
        precision, plugins = lightning_precision(cfg.precision, self.device.type)
        strategy: Any = "auto"
        if self.world > 1:
            from lightning.pytorch.strategies import DDPStrategy

            strategy = DDPStrategy(process_group_backend="nccl" if self.device.type == "cuda"
                                   else "gloo")
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        # the perceptual loss's VGG16 is frozen in eval mode on purpose
        warnings.filterwarnings("ignore", r".*module\(s\) in eval mode at the start of training.*")
        kwargs: dict[str, Any] = {"precision": precision} if precision else {}
        return pl.Trainer(
            accelerator="gpu" if self.device.type == "cuda" else "cpu",
            devices=self.devices, num_nodes=self.num_nodes, strategy=strategy,
            plugins=[SafeCheckpointIO(), *plugins], **kwargs,
            max_epochs=sum(s.epochs for s in cfg.stages),
            gradient_clip_val=cfg.optimizer.clip_grad_norm,
            gradient_clip_algorithm="norm" if cfg.optimizer.clip_grad_norm else None,
            callbacks=[_RunFolder(self)], logger=False, enable_checkpointing=False,
            enable_progress_bar=self.progress, enable_model_summary=False,
            num_sanity_val_steps=0, reload_dataloaders_every_n_epochs=1,
            use_distributed_sampler=False, deterministic=False,
            limit_val_batches=1.0 if len(data.val_set) else 0,
            default_root_dir=str(self.run_dir))

    @contextlib.contextmanager
    def _graceful(self, trainer: pl.Trainer) -> Iterator[None]:
        """Ctrl-C and SIGTERM stop after the current batch (a checkpoint is saved there,
        see :class:`_RunFolder`); a second one stops at once."""
        def stop(signum: int, frame: Any) -> None:
            if self.stopped_by is not None:
                raise KeyboardInterrupt
            self.stopped_by = signum
            trainer._signal_connector.received_sigterm = True  # Lightning's stop flag

        with on_stop_signals(stop):
            yield

    def save_checkpoint(self, trainer: pl.Trainer) -> None:
        """Save ``checkpoint.pt`` (every rank takes part; rank 0 writes)."""
        trainer.save_checkpoint(self.run_dir / "checkpoint.pt")
        self.checkpointed = True


def _leave_process_group() -> None:
    """Under torchrun, wait until rank 0 has written the weights, then close the process
    group on every rank before the interpreter exits: a rank that left early with its gloo
    pairs still open could abort (SIGABRT) at exit while rank 0 was still writing."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _RunFolder(pl.Callback):
    """Writes the run folder: a metrics row, the best weights and the checkpoint at the end
    of every epoch; a checkpoint when a stop interrupts an epoch."""

    def __init__(self, owner: Trainer) -> None:
        self.owner = owner

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        assert isinstance(module, SRModule)
        owner, cfg = self.owner, self.owner.cfg
        module.check_weights()
        stage, stage_epoch = stage_of(cfg, trainer.current_epoch)
        row = {"stage": stage, "epoch": trainer.current_epoch + 1,
               "stage_epoch": stage_epoch + 1, **module.epoch_row()}
        # best weights: by validation PSNR, or, on synthetic pairs, by the worst panel
        # case's gain over bicubic (never selected on one degradation)
        key = "val_gain_min" if cfg.data.synthetic is not None else "val_psnr"
        score = float(row.get(key, math.nan))
        improved = not math.isnan(score) and score > owner.best
        if improved:
            owner.best = score
        if trainer.is_global_zero:
            owner.metrics.append(row)
            if improved:
                save_model(module.model, owner.run_dir / "best.safetensors")
        module.sums = dict.fromkeys(module.sums, 0.0)
        module.batches = module.patches = 0
        module.seconds = module.data_seconds = 0.0
        owner.save_checkpoint(trainer)

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.owner.stopped_by is not None:
            self.owner.save_checkpoint(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        owner = self.owner
        checkpoint["s2sr"] = {"best": owner.best, "rows": owner.metrics.rows,
                              "config": fingerprint(owner.cfg),
                              "rng": torch.get_rng_state()}
        if trainer.validating:  # a stop during validation: its scores are not kept
            _restart_validation(checkpoint)
        if torch.cuda.is_available() and owner.device.type == "cuda":
            checkpoint["s2sr"]["cuda_rng"] = torch.cuda.get_rng_state_all()


def _restart_validation(checkpoint: dict[str, Any]) -> None:
    """Make a checkpoint saved during validation redo the whole validation on resume.

    Lightning's loops would otherwise take the epoch's validation as done (the training
    batches all are) and the epoch's row would get no scores. The validation loop's
    progress is set to "first batch started, none finished": Lightning's own state for a
    run stopped mid-evaluation, which resumes by running the validation again from its
    first batch (the epoch's scores are computed from scratch; the stopped run wrote no
    row for it).
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    progress = loop.get("epoch_loop.val_loop.batch_progress")
    if not isinstance(progress, dict):
        return
    first = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    progress["total"] = dict(first)
    progress["current"] = dict(first)
    progress["is_last_batch"] = False


def train(cfg: TrainConfig, run_dir: str | os.PathLike[str], *, resume: bool = False,
          epoch_scale: float = 1.0, progress: bool | None = None) -> Path:
    """Run an experiment (see :class:`Trainer`); ``epoch_scale`` shrinks every stage."""
    check_epoch_scale(epoch_scale)
    if epoch_scale != 1.0:
        cfg = validate(cfg.scaled(epoch_scale))
    return Trainer(cfg, run_dir, resume=resume, progress=progress).run()
