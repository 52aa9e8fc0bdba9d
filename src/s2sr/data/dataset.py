"""``PairDataset``: a PyTorch Dataset over a paired dataset folder.

Items are dictionaries with ``lr`` ``(C, h, w)`` and ``hr`` ``(C, h*s, w*s)`` float32
reflectance tensors plus ``patch_id``, ``pair_id``, ``kind``, ``site`` and ``split``, and,
as torchgeo samples, their georeferencing: ``crs`` (``"EPSG:n"`` or WKT) and
``lr_transform`` / ``hr_transform``, six floats ``(a, b, c, d, e, f)`` (``affine.Affine``
order) of the returned ``lr`` / ``hr`` pixel (0, 0), random crops included (a random
rotation or flip is not: the transforms are those of the un-augmented crop). All of it
batches with the default ``collate``. Arrays are memory-mapped, so opening a large dataset
is instant; their headers are checked against the manifest when the dataset is opened.

``guided=True`` reads the pairs made with the 20 m bands (``s2sr pairs degrade --bands
all``, :mod:`s2sr.data.wald20`): ``lr`` and ``hr`` are then the 20 m bands' input and
target and ``guide`` the 10 m bands' input (twice as fine as ``lr``), with its
``guide_transform``; pairs without 20 m bands are left out.
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
        guided: items of the 20 m bands with their 10 m guide (see the module); ``crop``
            is then in pixels of the 20 m bands' input.
    """

    def __init__(self, root: str | os.PathLike[str], *, split: str | Sequence[str] | None = None,
                 status: str | Sequence[str] | None = ACCEPTED,
                 site: str | Sequence[str] | None = None, kind: str | Sequence[str] | None = None,
                 crop: int | None = None, augment: bool = False,
                 generator: torch.Generator | None = None, seed: int | None = None,
                 bands: Sequence[str] | None = None, guided: bool = False) -> None:
        self.store = PairStore(root)
        if guided and bands is not None:
            raise UsageError("bands= picks among one group's bands: leave it out with "
                             "guided=True (the 20 m bands and their 10 m guide)")
        self.guided = guided
        wanted = {"split": _as_set(split), "status": _as_set(status), "site": _as_set(site),
                  "kind": _as_set(kind)}
        self.rows = [r for r in self.store.rows()
                     if all(v is None or r[k] in v for k, v in wanted.items())
                     and not (guided and not self.store.pairs[r["pair_id"]].get("groups"))]
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
        self._arrays: dict[str, tuple[np.ndarray, ...]] = {}
        # check every used pair's array files now (shape, dtype), not in a loader worker;
        # the maps are opened again lazily in each process
        for pid in sorted({r["pair_id"] for r in self.rows}):
            side = self._pair(pid)[0].shape[-1]
            if crop is not None and crop > side:
                raise UsageError(f"crop {crop} is larger than the {side} px patches")
        self._arrays.clear()

    def __len__(self) -> int:
        return len(self.rows)

    def _pair(self, pair_id: str) -> tuple[np.ndarray, ...]:
        """``(lr, hr)``, or guided ``(lr, hr, guide)``, memory-mapped."""
        if pair_id not in self._arrays:
            if self.guided:
                (_, guide, _), (_, lr, hr), *_ = self.store.groups(pair_id)
                self._arrays[pair_id] = (lr, hr, guide)
            else:
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
        # lr, hr (and guided: the guide), each some whole factor finer than lr
        arrays = [from_scaled(np.asarray(a[row["index"]])) for a in self._pair(row["pair_id"])]
        pick = self._band_index.get(row["pair_id"])
        if pick is not None:
            arrays = [a[pick] for a in arrays]
        side = arrays[0].shape[-1]
        factors = [a.shape[-1] // side for a in arrays]
        y = x = 0
        if self.crop is not None and self.crop < side:
            y = self._randint(arrays[0].shape[-2] - self.crop + 1, gen)
            x = self._randint(side - self.crop + 1, gen)
            c = self.crop
            arrays = [a[:, y * f:(y + c) * f, x * f:(x + c) * f]
                      for a, f in zip(arrays, factors, strict=True)]
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        if self.augment:
            k = self._randint(4, gen)
            flip = self._randint(2, gen)
            tensors = [torch.rot90(t, k, (1, 2)) for t in tensors]
            if flip:
                tensors = [t.flip(2) for t in tensors]
            tensors = [t.contiguous() for t in tensors]
        item: dict[str, Any] = {"lr": tensors[0], "hr": tensors[1], "patch_id": row["patch_id"],
                "pair_id": row["pair_id"], "kind": row["kind"], "site": row["site"],
                "split": row["split"], "crs": row["crs"]}
        item.update(_transforms(row, x, y, factors))
        if self.guided:
            item["guide"] = tensors[2]
        return item


def _transforms(row: dict[str, Any], x: int, y: int, factors: list[int]
                ) -> dict[str, tuple[float, ...]]:
    """The returned arrays' transforms: a row's are the 10 m bands'; a guided item's
    ``lr``/``hr`` are ``factors[2]`` times coarser than them and its guide is their input."""
    lr, hr, s = Affine(*row["lr_transform"]), Affine(*row["hr_transform"]), factors[1]
    out = {}
    if len(factors) > 2:
        g = factors[2]
        out["guide_transform"] = tuple(lr * Affine.translation(x * g, y * g))[:6]
        lr, hr = lr * Affine.scale(g), hr * Affine.scale(g)
    out["lr_transform"] = tuple(lr * Affine.translation(x, y))[:6]
    out["hr_transform"] = tuple(hr * Affine.translation(x * s, y * s))[:6]
    return out
