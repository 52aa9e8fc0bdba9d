"""The training loop: stages of one-cycle training with progressive resizing, transfer
(``init_from``), frozen parts, validation PSNR/SSIM, checkpoints and resume.

A run folder receives ``config.yaml`` (the resolved experiment), ``metrics.csv`` (a row per
epoch), ``checkpoint.pt`` (resumable: weights, optimiser, schedule, position, best score),
``best.safetensors`` (best validation PSNR), ``model.safetensors`` (final weights, usable by
``s2sr predict``) and ``curves.png``.
"""

from __future__ import annotations

import contextlib
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
from s2sr.device import resolve_device
from s2sr.errors import (
    CheckpointError,
    DataError,
    InputNotFoundError,
    OutputExistsError,
    TrainingDivergedError,
    UsageError,
    WeightsError,
)
from s2sr.evaluation.metrics import Conventions, psnr, ssim
from s2sr.inference.baselines import upsample
from s2sr.io.outputs import (
    check_output_dir,
    exclusive_output,
    sweep_stale_temps,
    temp_path,
    terminate_raises,
)
from s2sr.losses import VGG16_URL, PerceptualLoss, SRLoss
from s2sr.models import build_model, get_spec, load_model, save_model
from s2sr.training import distributed as D
from s2sr.training.config import PARTS, TrainConfig, validate
from s2sr.training.schedule import one_cycle

log = logging.getLogger(__name__)

METRIC_FIELDS = ["stage", "epoch", "stage_epoch", "lr", "train_loss", "pixel", "feature",
                 "style", "val_psnr", "val_ssim", "val_psnr_bicubic", "val_ssim_bicubic",
                 "val_gain_min", "seconds", "data_seconds", "patches_per_s"]


@dataclass
class Position:
    """Where training stands: the next stage and epoch within it."""

    stage: int = 0
    epoch: int = 0
    global_epoch: int = 0
    best: float = -math.inf


#: Target patch of synthetic pairs when a stage names none, and for validation (input
#: 32 px at x2, 16 px at x4).
SYNTHETIC_TARGET = 64
_SOURCES: dict[str, list[Any]] = {}


def _synthetic_sources(cfg: TrainConfig, split: str) -> list[Any]:
    """The training or validation images (read once per process and experiment)."""
    from s2sr.training.sources import load_source

    syn = cfg.data.synthetic
    assert syn is not None
    specs = syn.train if split == cfg.data.train_split else syn.val
    key = repr((syn.root, cfg.model.bands, split, specs))
    if key not in _SOURCES:
        if len(_SOURCES) >= 2:  # one experiment at a time: keep memory to its images
            _SOURCES.clear()
        scene_log = logging.getLogger("s2sr.io.scene")
        level = scene_log.level
        scene_log.setLevel(logging.ERROR)  # "no CRS" says nothing about training texture
        try:
            _SOURCES[key] = [load_source(s, Path(syn.root), list(cfg.model.bands))
                             for s in specs]
        finally:
            scene_log.setLevel(level)
    return _SOURCES[key]


def _synthetic(cfg: TrainConfig, split: str, crop: int | None, augment: bool,
               seed: int | None) -> ConcatDataset[dict[str, Any]]:
    from s2sr.data.synthetic import SyntheticPairs, panel_degradations

    syn = cfg.data.synthetic
    assert syn is not None
    train = split == cfg.data.train_split
    if not train and syn.val_samples == 0:
        return ConcatDataset([_Empty()])
    sources = _synthetic_sources(cfg, split)
    if not sources:
        return ConcatDataset([_Empty()])
    if train:
        ds = SyntheticPairs(sources, cfg.model.scale, crop or SYNTHETIC_TARGET // cfg.model.scale,
                            syn.samples_per_epoch, degradations=syn.degradation.as_range(),
                            augment=augment, seed=cfg.seed if seed is None else seed)
    else:
        ds = SyntheticPairs(sources, cfg.model.scale, SYNTHETIC_TARGET // cfg.model.scale,
                            syn.val_samples, fixed=panel_degradations(), augment=False,
                            seed=12345)
    return ConcatDataset([ds])


class _Empty(torch.utils.data.Dataset[dict[str, Any]]):
    epoch = 0

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise IndexError(index)


def _datasets(cfg: TrainConfig, split: str, crop: int | None, augment: bool,
              seed: int | None) -> ConcatDataset[dict[str, Any]]:
    if cfg.data.synthetic is not None:
        return _synthetic(cfg, split, crop, augment, seed)
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


#: Files a run writes before its first checkpoint; a folder holding only these (and
#: stale temporaries) is what a run killed before its first checkpoint leaves.
_EARLY_FILES = frozenset({"config.yaml", "metrics.csv", "best.safetensors"})
#: The parts of the experiment a checkpoint must agree with to be resumed.
_RESUME_KEYS = ("seed", "precision", "batch_size", "model", "optimizer", "stages")


def _fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records of its experiment (compared on resume)."""
    plain = cfg.as_dict()
    return {k: plain[k] for k in _RESUME_KEYS}


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def check_datasets(cfg: TrainConfig) -> None:
    """Refuse dataset folders that are not s2sr pairs datasets, naming the fix."""
    for root in cfg.data.datasets:
        if not (Path(root) / "manifest.json").is_file():
            raise InputNotFoundError(
                f"data.datasets entry {root} is not an s2sr pairs dataset (no manifest.json): "
                "build the stand-in datasets with `s2sr table1 --prepare-only -o DIR` and "
                "train with `--data-root DIR/data`, or point data.datasets at a folder made "
                "by s2sr pairs build / s2sr pairs degrade")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read ``checkpoint.pt`` safely (no objects unpickled, tensors on the CPU) and check
    its structure.

    Raises:
        CheckpointError: unreadable, truncated, hostile or not an s2sr checkpoint.
    """
    fix = "start a new run in another folder (or without --resume after removing it)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or not an s2sr "
                              f"checkpoint ({type(err).__name__}: {_first_line(err)}): "
                              f"{fix}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not an s2sr "
                              f"checkpoint: {fix}")
    kinds: dict[str, type | tuple[type, ...]] = {
        "model": dict, "optimizer": dict, "scheduler": dict, "stage": int, "epoch": int,
        "global_epoch": int, "best": (float, int), "rng": torch.Tensor}
    for key, kind in kinds.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {path} has no valid {key!r} entry (got "
                                  f"{type(value).__name__}): it is not an s2sr checkpoint; "
                                  f"{fix}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor)
               for k, v in state["model"].items()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict of tensors: "
                              f"{fix}")
    for key in ("stage", "epoch", "global_epoch", "rows"):
        value = state.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**9:
            raise CheckpointError(f"checkpoint {path}: {key} {value!r} is out of range: {fix}")
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the CPU random state (from a CPU ByteTensor, whatever device the checkpoint
    was mapped to) and the CUDA states when the checkpoint has them and CUDA is here."""
    cpu = state.get("rng")
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.ndim != 1:
        raise CheckpointError("checkpoint's random state is not a byte tensor: it is not an "
                              "s2sr checkpoint; start a new run")
    try:
        torch.set_rng_state(cpu.detach().to("cpu").contiguous())
    except (RuntimeError, NotImplementedError) as err:
        raise CheckpointError(f"checkpoint's random state cannot be restored "
                              f"({_first_line(err)}): start a new run") from None
    cuda = state.get("cuda_rng")
    if cuda is None or not torch.cuda.is_available():
        return
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) and
                                             t.dtype == torch.uint8 for t in cuda):
        raise CheckpointError("checkpoint's CUDA random states are not byte tensors: start "
                              "a new run")
    if len(cuda) != torch.cuda.device_count():
        log.warning("checkpoint has %d CUDA random states, this machine %d GPUs: the resumed "
                    "run will not repeat the original one exactly", len(cuda),
                    torch.cuda.device_count())
        return
    torch.cuda.set_rng_state_all([t.detach().to("cpu").contiguous() for t in cuda])


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
        #: whether this run has written a checkpoint (the folder is then resumable)
        self.checkpointed = False
        #: metric rows in metrics.csv (kept equal to the checkpoint's on resume)
        self.rows = 0
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=cfg.precision == "fp16")

    # -- files ---------------------------------------------------------------------------
    def _make_parents(self) -> list[Path]:
        """Create the run folder's missing parents; returns them (deepest last)."""
        missing: list[Path] = []
        parent = self.run_dir.absolute().parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        missing.reverse()
        for folder in missing:
            folder.mkdir()
        return missing

    def _leftovers_only(self) -> bool:
        """Whether the run folder holds only what a run stopped before its first checkpoint
        leaves (config.yaml, metrics.csv, best.safetensors)."""
        names = {p.name for p in self.run_dir.iterdir()}
        return bool(names) and names <= _EARLY_FILES

    def _prepare_dir(self, created: list[Path]) -> None:
        """Check the run folder and start it; appends what it creates to ``created``."""
        check_output_dir(self.run_dir, overwrite=True,
                         inputs=[*self.cfg.data.datasets, self.cfg.init_from])
        if self.run_dir.is_dir():
            for stale in sweep_stale_temps(self.run_dir):
                log.warning("removed %s, left by an earlier run that was killed", stale.name)
        ckpt = self.run_dir / "checkpoint.pt"
        if self.resume and ckpt.is_file():
            return
        if self.run_dir.is_dir() and self._leftovers_only():
            log.warning("run folder %s holds only files of a run stopped before its first "
                        "checkpoint: starting it again", self.run_dir)
            for name in _EARLY_FILES:
                (self.run_dir / name).unlink(missing_ok=True)
        elif self.resume:
            raise UsageError(f"--resume given but {ckpt} does not exist: start without "
                             "--resume")
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise OutputExistsError(f"run folder {self.run_dir} is not empty: choose a new "
                                    "one or pass --resume")
        if not self.run_dir.exists():
            created.append(self.run_dir)
            self.run_dir.mkdir()
        config = self.run_dir / "config.yaml"
        created.append(config)
        config.write_text(yaml.safe_dump(self.cfg.as_dict(), sort_keys=False))
        created.append(self.run_dir / "metrics.csv")
        self._rewrite_metrics([])
        created.append(self.run_dir / "best.safetensors")

    def _rewrite_metrics(self, rows: list[list[str]]) -> None:
        """Write metrics.csv with its header and ``rows`` (atomically)."""
        final = self.run_dir / "metrics.csv"
        tmp = temp_path(final)
        try:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(METRIC_FIELDS)
                writer.writerows(rows)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self.rows = len(rows)

    def _truncate_metrics(self, rows: int) -> None:
        """Keep the first ``rows`` metric rows: those the checkpoint covers (a crash
        between writing a row and the checkpoint must not duplicate it on resume)."""
        path = self.run_dir / "metrics.csv"
        kept: list[list[str]] = []
        if path.is_file():
            with open(path, newline="", errors="replace") as handle:
                lines = list(csv.reader(handle))
            kept = [r for r in lines[1:] if len(r) == len(METRIC_FIELDS)][:rows]
        if len(kept) < rows:
            log.warning("metrics.csv has %d complete rows, the checkpoint covers %d: the "
                        "missing epochs' rows are lost", len(kept), rows)
        self._rewrite_metrics(kept)

    def _write_row(self, row: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.csv", "a", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.rows += 1

    def _save_checkpoint(self, model: nn.Module, opt: torch.optim.Optimizer,
                         sched: Any, pos: Position) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "stage": pos.stage, "epoch": pos.epoch,
                 "global_epoch": pos.global_epoch, "best": pos.best,
                 "rng": torch.get_rng_state(), "rows": self.rows,
                 "config": _fingerprint(self.cfg), "scaler": self.scaler.state_dict()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        final = self.run_dir / "checkpoint.pt"
        tmp = temp_path(final)
        try:
            torch.save(state, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self.checkpointed = True

    def _undo(self, created: list[Path]) -> None:
        """Remove what a run that failed before its first checkpoint created."""
        for path in reversed(created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    for stale in sweep_stale_temps(path):
                        log.debug("removed %s", stale)
                    for entry in path.iterdir():  # this process's own temporaries
                        if entry.name.startswith(".") and f".s2sr-{os.getpid()}-" in \
                                entry.name:
                            entry.unlink()
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)

    def _resume_state(self, model: nn.Module, pos: Position) -> dict[str, Any]:
        """Load and check the checkpoint, restore the model and the metrics rows."""
        path = self.run_dir / "checkpoint.pt"
        ckpt = load_checkpoint(path)
        recorded = ckpt.get("config")
        if isinstance(recorded, dict):
            now = _fingerprint(self.cfg)
            differ = [k for k in _RESUME_KEYS if recorded.get(k) != now[k]]
            if differ:
                raise CheckpointError(
                    f"checkpoint {path} was made with another experiment ({', '.join(differ)} "
                    "differ): resume with the config (and --epoch-scale) that started the "
                    "run, or start a new run in another folder")
        if not (ckpt["stage"] < len(self.cfg.stages) or (
                ckpt["stage"] == len(self.cfg.stages) and ckpt["epoch"] == 0)):
            raise CheckpointError(f"checkpoint {path} is at stage {ckpt['stage']}, the config "
                                  f"has {len(self.cfg.stages)}: resume with the config that "
                                  "started the run")
        try:
            model.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {path} does not fit this experiment's model "
                f"({self.cfg.model.name} x{self.cfg.model.scale}; {_first_line(err, 120)}): resume "
                f"with the config "
                "that started the run, or start a new run in another folder") from None
        pos.stage, pos.epoch = ckpt["stage"], ckpt["epoch"]
        pos.global_epoch, pos.best = ckpt["global_epoch"], float(ckpt["best"])
        if self.dist.main:
            self._truncate_metrics(int(ckpt.get("rows", ckpt["global_epoch"])))
        self.checkpointed = True
        return ckpt

    def _restore_optim(self, ckpt: dict[str, Any], opt: torch.optim.Optimizer,
                       sched: Any) -> None:
        path = self.run_dir / "checkpoint.pt"
        reference = sched.state_dict()
        saved = ckpt["scheduler"]
        if set(saved) != set(reference) or any(
                type(saved[k]) is not type(reference[k]) and not (
                    isinstance(saved[k], int | float) and isinstance(reference[k], int | float))
                for k in reference) or saved.get("total_steps") != reference.get("total_steps"):
            raise CheckpointError(f"checkpoint {path} holds another schedule (other stages, "
                                  "epochs or data): resume with the config and --epoch-scale "
                                  "that started the run")
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"checkpoint {path} holds an optimiser state that does not "
                                  f"fit this model ({_first_line(err, 120)}): resume with the "
                                  "config that started the run") from None
        sched.load_state_dict(saved)
        scaler = ckpt.get("scaler")
        if self.scaler.is_enabled() and isinstance(scaler, dict) and scaler:
            try:
                self.scaler.load_state_dict(scaler)
            except (RuntimeError, KeyError, TypeError) as err:
                raise CheckpointError(f"checkpoint {path}: bad gradient scaler state "
                                      f"({_first_line(err, 120)}): start a new run") from None
        restore_rng(ckpt)

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
                    "val_ssim_bicubic": nan, "val_gain_min": nan}
        limit = self.cfg.data.max_val_patches
        idx = range(n) if limit is None or n <= limit else np.linspace(0, n - 1, limit
                                                                       ).astype(int)
        model.eval()
        gains: dict[str, list[float]] = {}
        scores: dict[str, list[float]] = {"val_psnr": [], "val_ssim": [],
                                          "val_psnr_bicubic": [], "val_ssim_bicubic": []}
        for i in idx:
            item = val_set[int(i)]
            lr, hr = item["lr"], item["hr"].numpy()
            with self._autocast():
                pred = model(lr[None].to(self.device)).float()[0].cpu().numpy()
            bic = upsample(lr.numpy(), self.cfg.model.scale)
            scores["val_psnr"].append(psnr(pred, hr, self.conv))
            label = str(item.get("degradation", "all"))
            gains.setdefault(label, []).append(scores["val_psnr"][-1])
            scores["val_ssim"].append(ssim(pred, hr, self.conv))
            scores["val_psnr_bicubic"].append(psnr(bic, hr, self.conv))
            scores["val_ssim_bicubic"].append(ssim(bic, hr, self.conv))
            gains[label][-1] -= scores["val_psnr_bicubic"][-1]
        out = {k: float(np.mean(v)) for k, v in scores.items()}
        # the worst degradation's mean gain over bicubic (synthetic validation cycles
        # through the panel's cases): a model must help on every plausible input
        out["val_gain_min"] = float(min(np.mean(v) for v in gains.values()))
        return out

    def run(self) -> Path:
        """Train every stage; returns the path of ``model.safetensors``.

        A run that fails or is interrupted (Ctrl-C, SIGTERM) before its first checkpoint
        leaves the run folder as it found it; after that, the folder resumes with
        ``resume=True``.
        """
        with terminate_raises():
            if not self.dist.main:
                return self._train()
            check_datasets(self.cfg)
            created: list[Path] = []
            done = False
            try:
                created += self._make_parents()
                with exclusive_output(self.run_dir.absolute()):
                    self._prepare_dir(created)
                    final = self._train()
                done = True
                return final
            finally:
                if not done and not self.checkpointed:
                    self._undo(created)

    def _train(self) -> Path:
        cfg = self.cfg
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
        # channels-last: oneDNN's fast convolution path (with bf16 autocast on CPUs that
        # have AVX512-BF16/AMX, about 3.5x faster than fp32; see benchmarks/README.md)
        model = build_network(cfg, probe).to(self.device).to(
            memory_format=torch.channels_last)  # type: ignore[call-overload]
        loss_fn = build_loss(cfg).to(self.device)
        pos = Position()
        ckpt: dict[str, Any] | None = None
        if self.resume and (self.run_dir / "checkpoint.pt").is_file():
            ckpt = self._resume_state(model, pos)
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
        else:  # load_config refuses other names
            raise UsageError(f"optimizer.name must be adam or adamw, got {cfg.optimizer.name!r}")
        steps = len(train_set) // batch
        sched = one_cycle(opt, stage.lr, steps * stage.epochs, stage.pct_start)
        if ckpt is not None:
            self._restore_optim(ckpt, opt, sched)
        for epoch in range(pos.epoch, stage.epochs):
            row = self._epoch(net, loss_fn, opt, sched, train_set, k, epoch, batch)
            self._check_weights(model, k, epoch)
            pos.global_epoch += 1
            scores = self.validate(model, val_set) if self.dist.main else {}
            row.update({"stage": k, "epoch": pos.global_epoch, "stage_epoch": epoch + 1,
                        **scores})
            pos.epoch = epoch + 1
            if self.dist.main:
                self._write_row(row)
                # best weights: by validation PSNR, or, on synthetic pairs, by the worst
                # panel case's gain over bicubic (never selected on one degradation)
                key = "val_gain_min" if cfg.data.synthetic is not None else "val_psnr"
                score = scores.get(key, -math.inf)
                if not math.isnan(score) and score > pos.best:
                    pos.best = score
                    save_model(model, self.run_dir / "best.safetensors")
                self._save_checkpoint(model, opt, sched, pos)
            D.barrier(self.dist)

    def _diverged(self, stage: int, epoch: int, step: int | None, lr: float,
                  lr_b: torch.Tensor | None, hr_b: torch.Tensor | None, what: str) -> None:
        """Raise the divergence error, saying what is known about it."""
        data = ""
        if lr_b is not None and hr_b is not None:
            if not (bool(torch.isfinite(lr_b).all()) and bool(torch.isfinite(hr_b).all())):
                raise DataError(
                    f"stage {stage} epoch {epoch + 1}: the training patches hold NaN or "
                    "infinite values: rebuild the dataset with s2sr pairs (it drops them)")
            data = " although this batch's input and target patches are finite"
        precision = (f"; precision {self.cfg.precision} can overflow: try precision: fp32"
                     if self.cfg.precision != "fp32" else "")
        clip = ("" if self.cfg.optimizer.clip_grad_norm else
                ", or set optimizer.clip_grad_norm (e.g. 1.0)")
        raise TrainingDivergedError(
            f"training diverged: {what} became NaN/inf at stage {stage} epoch {epoch + 1} "
            f"({'' if step is None else f'batch {step + 1}, '}learning rate {lr:.3g}; "
            f"stages[{stage}].lr is {self.cfg.stages[stage].lr:g}){data}: "
            f"lower stages[{stage}].lr"
            f"{clip}{precision}")

    def _check_weights(self, model: nn.Module, stage: int, epoch: int) -> None:
        """Refuse to go on (and to validate or checkpoint) with non-finite weights."""
        for param in model.parameters():
            if not bool(torch.isfinite(param).all()):
                lr = self.lr_history[-1][1] if self.lr_history else float("nan")
                self._diverged(stage, epoch, None, lr, None, None, "the weights")

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
        for step, items in enumerate(loader):
            data_time += time.perf_counter() - t_data
            lr_b = items["lr"].to(self.device, non_blocking=True).contiguous(
                memory_format=torch.channels_last)
            hr_b = items["hr"].to(self.device, non_blocking=True)
            with self._autocast():
                pred = net(lr_b)
                total, terms = loss_fn(pred.float(), hr_b)
            values = torch.stack([total.detach().float(), *(terms[n].detach().float()
                                                            for n in ("pixel", "feature",
                                                                      "style"))])
            values = D.all_mean(values, self.dist)
            step_lr = opt.param_groups[0]["lr"]
            if not bool(torch.isfinite(values[0])):
                self._diverged(stage, epoch, step, step_lr, lr_b, hr_b, "the loss")
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if self.cfg.optimizer.clip_grad_norm:
                self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(net.parameters(), self.cfg.optimizer.clip_grad_norm)
            self.scaler.step(opt)
            self.scaler.update()
            self.lr_history.append((stage, step_lr))
            sched.step()
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
    if not (epoch_scale > 0 and math.isfinite(epoch_scale)) or epoch_scale > 1e4:
        raise UsageError(f"--epoch-scale must be a number in (0, 10000], got {epoch_scale}")
    if epoch_scale != 1.0:
        cfg = validate(cfg.scaled(epoch_scale))
    return Trainer(cfg, run_dir, resume=resume, progress=progress).run()
