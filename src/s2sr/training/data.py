"""Training data: the configured pairs datasets or synthetic pairs, and the Lightning data
module that serves one stage's patches per epoch in a resumable, rank-sliced order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from s2sr.core.errors import InputNotFoundError
from s2sr.data.dataset import PairDataset
from s2sr.data.synthetic import SyntheticPairs, panel_degradations
from s2sr.io.base import SCENE_LOGGER
from s2sr.training.schema import TrainConfig
from s2sr.training.sources import load_source

#: Target patch of synthetic pairs when a stage names none, and for validation (input
#: 32 px at x2, 16 px at x4).
SYNTHETIC_TARGET = 64
_SOURCES: dict[str, list[Any]] = {}


def _synthetic_sources(cfg: TrainConfig, split: str) -> list[Any]:
    """The training or validation images (read once per process and experiment)."""
    syn = cfg.data.synthetic
    assert syn is not None
    specs = syn.train if split == cfg.data.train_split else syn.val
    key = repr((syn.root, cfg.model.bands, split, specs))
    if key not in _SOURCES:
        if len(_SOURCES) >= 2:  # one experiment at a time: keep memory to its images
            _SOURCES.clear()
        scene_log = logging.getLogger(SCENE_LOGGER)
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


def datasets(cfg: TrainConfig, split: str, crop: int | None, augment: bool,
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


def check_datasets(cfg: TrainConfig) -> None:
    """Refuse dataset folders that are not s2sr pairs datasets, naming the fix."""
    for root in cfg.data.datasets:
        if not (Path(root) / "manifest.json").is_file():
            raise InputNotFoundError(
                f"data.datasets entry {root} is not an s2sr pairs dataset (no manifest.json): "
                "build the stand-in datasets with `s2sr table1 --prepare-only -o DIR` and "
                "train with `--data-root DIR/data`, or point data.datasets at a folder made "
                "by s2sr pairs build / s2sr pairs degrade")




class EpochBatches:
    """The global batches of one epoch in a seeded order, and this rank's slice of each.

    Every rank draws the same permutation, so a global batch is the same whichever number
    of processes trains (each takes ``batch // world`` of it), and the order is a function
    of ``seed`` alone: a resumed run sees the batches it would have seen. ``skip`` leaves out
    the batches an interrupted epoch already trained (its length stays the whole epoch's).
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.skip = 0

    def __len__(self) -> int:
        return self.n // self.batch  # the last partial batch is dropped

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed))
        per_rank = self.batch // self.world
        for start in range(self.skip * self.batch, len(self) * self.batch, self.batch):
            chunk = order[start:start + self.batch].tolist()
            yield chunk[self.rank * per_rank:(self.rank + 1) * per_rank]


class ResumableLoader(DataLoader[dict[str, Any]]):
    """A training loader whose position Lightning saves in its checkpoints (a run stopped
    mid-epoch resumes at the next batch, not at the epoch's start)."""

    def __init__(self, dataset: ConcatDataset[dict[str, Any]], batches: EpochBatches,
                 epoch: int, done: Callable[[], int], workers: int) -> None:
        super().__init__(dataset, batch_sampler=batches, num_workers=workers)
        self.epoch = epoch
        self._batches = batches
        self._done = done

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": int(self._done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        done = state.get("batches_done")
        if state.get("epoch") == self.epoch and isinstance(done, int) and \
                0 <= done <= len(self._batches):
            self._batches.skip = done


def val_indices(cfg: TrainConfig, n: int) -> list[int]:
    """The validation items scored (``data.max_val_patches`` spread over the set)."""
    limit = cfg.data.max_val_patches
    if limit is None or n <= limit:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, limit).astype(int)]


class SRDataModule(pl.LightningDataModule):
    """Serves the stage of each epoch: its patch size (progressive resizing), its batch
    and a fresh seeded order, sliced over the ranks; validation items sharded over the
    ranks (every rank validates its share; the scores are gathered)."""

    def __init__(self, cfg: TrainConfig, stage_of: Callable[[int], tuple[int, int]]) -> None:
        super().__init__()
        self.cfg = cfg
        self.stage_of = stage_of
        self._train: dict[int, ConcatDataset[dict[str, Any]]] = {}
        self.val_set = datasets(cfg, cfg.data.val_split, None, False, None)

    def train_set(self, stage: int) -> ConcatDataset[dict[str, Any]]:
        """The training patches of a stage (cropped to its ``patch``)."""
        if stage not in self._train:
            self._train = {stage: datasets(self.cfg, self.cfg.data.train_split,
                                           self.cfg.stages[stage].patch, self.cfg.data.augment,
                                           self.cfg.seed)}
        return self._train[stage]

    def batch_size(self, stage: int) -> int:
        return self.cfg.stages[stage].batch_size or self.cfg.batch_size

    def train_dataloader(self) -> ResumableLoader:
        trainer = self.trainer
        assert trainer is not None
        epoch = trainer.current_epoch
        stage, stage_epoch = self.stage_of(epoch)
        ds = self.train_set(stage)
        _set_epoch(ds, stage_epoch + 1000 * stage)
        batches = EpochBatches(len(ds), self.batch_size(stage),
                               self.cfg.seed * 7919 + stage * 131 + stage_epoch,
                               trainer.global_rank, trainer.world_size)
        loop = trainer.fit_loop.epoch_loop
        return ResumableLoader(ds, batches, epoch, lambda: loop.batch_progress.current.completed,
                               self.cfg.data.workers)

    def val_dataloader(self) -> DataLoader[dict[str, Any]]:
        trainer = self.trainer
        assert trainer is not None
        shard = val_indices(self.cfg, len(self.val_set))[trainer.global_rank::trainer.world_size]
        return DataLoader(torch.utils.data.Subset(self.val_set, shard), batch_size=None,
                          num_workers=0)
