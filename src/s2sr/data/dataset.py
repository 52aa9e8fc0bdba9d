"""``PairDataset``: a PyTorch Dataset over a paired dataset folder.

Items are dictionaries with ``lr`` ``(C, h, w)`` and ``hr`` ``(C, h*s, w*s)`` float32
reflectance tensors plus ``patch_id``, ``pair_id``, ``kind``, ``site`` and ``split``, and,
as torchgeo samples, their georeferencing: ``crs`` (``"EPSG:n"`` or WKT) and
``lr_transform`` / ``hr_transform``, six floats ``(a, b, c, d, e, f)`` (``affine.Affine``
order) of the returned ``lr`` / ``hr`` pixel (0, 0), random crops included (a random
rotation or flip is not: the transforms are those of the un-augmented crop). All of it
batches with the default ``collate``. Arrays are memory-mapped, so opening a large dataset
is instant; their headers are checked against the manifest when the dataset is opened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from s2sr.core.dn import from_scaled
from s2sr.core.errors import UsageError
from s2sr.data.store import PairStore

ACCEPTED = ("auto-accepted", "accepted")


def _as_set(value: str | Sequence[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


class PairDataset(Dataset[dict[str, Any]]):
    """Paired patches, filtered, with random crops and dihedral augmentation.

    Args:
        root: dataset folder made by ``s2sr pairs``.
        split: keep these splits (``"train"``, ``["val", "test"]``; ``None``: all).
        status: keep these statuses (default: accepted and auto-accepted).
        site: keep these sites. kind: keep these pair kinds (e.g. ``"SE20>SE10"``).
        crop: random crop of the input to ``crop x crop`` pixels (the target is cropped
            to match); ``None`` keeps whole patches (progressive resizing sets this).
        augment: random flips and 90-degree rotations.
        generator: random source for crops and augmentation (repeatable runs).
        bands: return only these bands, in this order, picked by name from each pair's
            bands (e.g. ``("B02", "B03", "B04")`` for an RGB model); ``None``: all.
        seed: when set, each item draws its crop and augmentation from a generator seeded
            by ``(seed, epoch, index)`` instead: the same item gets the same crop whichever
            process loads it (data-parallel training) and after a resume. Set ``epoch``
            before each epoch.
    """

    def __init__(self, root: str | os.PathLike[str], *, split: str | Sequence[str] | None = None,
                 status: str | Sequence[str] | None = ACCEPTED,
                 site: str | Sequence[str] | None = None, kind: str | Sequence[str] | None = None,
                 crop: int | None = None, augment: bool = False,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 bands: Sequence[str] | None = None) -> None:
        self.store = PairStore(root)
        wanted = {"split": _as_set(split), "status": _as_set(status), "site": _as_set(site),
                  "kind": _as_set(kind)}
        self.rows = [r for r in self.store.rows()
                     if all(v is None or r[k] in v for k, v in wanted.items())]
        self.crop = crop
        self.augment = augment
        self.generator = generator
        self.seed = seed
        self.epoch = 0
        self._band_index: dict[str, list[int] | None] = {}
        for pid, info in self.store.pairs.items():
            have = list(info.get("bands", []))
            if bands is None:
                self._band_index[pid] = None
                continue
            missing = [b for b in bands if b not in have]
            if missing and any(r["pair_id"] == pid for r in self.rows):
                raise UsageError(f"pair {pid} in {root} lacks band(s) {', '.join(missing)}")
            self._band_index[pid] = [have.index(b) for b in bands if b in have]
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for row in self.rows:
            if crop is not None and crop > row["lr_size"]:
                raise UsageError(f"crop {crop} is larger than the {row['lr_size']} px patches")
        # check every used pair's array files now (shape, dtype), not in a loader worker;
        # the maps are opened again lazily in each process
        for pid in sorted({r["pair_id"] for r in self.rows}):
            self.store.arrays(pid)

    def __len__(self) -> int:
        return len(self.rows)

    def _pair(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        if pair_id not in self._arrays:
            self._arrays[pair_id] = self.store.arrays(pair_id)
        return self._arrays[pair_id]

    def _randint(self, high: int, gen: torch.Generator | None) -> int:
        return int(torch.randint(high, (1,), generator=gen).item())

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        gen = self.generator
        if self.seed is not None:
            gen = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**63))
        lr_all, hr_all = self._pair(row["pair_id"])
        lr = from_scaled(np.asarray(lr_all[row["index"]]))
        hr = from_scaled(np.asarray(hr_all[row["index"]]))
        pick = self._band_index.get(row["pair_id"])
        if pick is not None:
            lr, hr = lr[pick], hr[pick]
        scale = hr.shape[-1] // lr.shape[-1]
        y = x = 0
        if self.crop is not None and self.crop < lr.shape[-1]:
            y = self._randint(lr.shape[-2] - self.crop + 1, gen)
            x = self._randint(lr.shape[-1] - self.crop + 1, gen)
            lr = lr[:, y:y + self.crop, x:x + self.crop]
            hr = hr[:, y * scale:(y + self.crop) * scale, x * scale:(x + self.crop) * scale]
        lr_t, hr_t = torch.from_numpy(np.ascontiguousarray(lr)), torch.from_numpy(
            np.ascontiguousarray(hr))
        if self.augment:
            k = self._randint(4, gen)
            flip = self._randint(2, gen)
            lr_t, hr_t = torch.rot90(lr_t, k, (1, 2)), torch.rot90(hr_t, k, (1, 2))
            if flip:
                lr_t, hr_t = lr_t.flip(2), hr_t.flip(2)
            lr_t, hr_t = lr_t.contiguous(), hr_t.contiguous()
        lr_tf = Affine(*row["lr_transform"]) * Affine.translation(x, y)
        hr_tf = Affine(*row["hr_transform"]) * Affine.translation(x * scale, y * scale)
        return {"lr": lr_t, "hr": hr_t, "patch_id": row["patch_id"], "pair_id": row["pair_id"],
                "kind": row["kind"], "site": row["site"], "split": row["split"],
                "crs": row["crs"], "lr_transform": tuple(lr_tf)[:6],
                "hr_transform": tuple(hr_tf)[:6]}
