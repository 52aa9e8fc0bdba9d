"""The patch cutter shared by ``s2sr pairs build`` and ``s2sr pairs degrade``.

Both cut a pair's patches the same way: fresh array files in the dataset (temporaries
until the commit), each patch's input and target written as int16 reflectance x 10000
with its statistics and origin, the arrays flushed, then the manifest rows
(:func:`~s2sr.data.manifest.patch_rows`) and the pair's commit under the dataset's lock.
On any failure the pair's temporaries are removed. What differs is where the patches come
from (two co-registered scenes, :mod:`s2sr.data.pair_builder`; one scene degraded,
:mod:`s2sr.data.wald`): each hands the cutter an iterator of :class:`Patch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from affine import Affine

from s2sr.core.constants import PATCH_STATS
from s2sr.core.dn import to_int16_dn
from s2sr.data.arrays import NpyWriter
from s2sr.data.manifest import patch_rows
from s2sr.data.store import PairStore
from s2sr.data.validation import Thresholds


class Patch(NamedTuple):
    """One patch of a pair.

    Attributes:
        origin: ``(row, col)`` of the input patch on the input grid.
        lr: the input ``(C, p, p)``, reflectance.
        hr: the target ``(C, p * scale, p * scale)``, reflectance.
        stats: a value for each of :data:`~s2sr.core.constants.PATCH_STATS`.
        groups: ``(lr, hr)`` of each further band group (:mod:`s2sr.data.bandgroups`),
            in the cutter's ``groups`` order.
    """

    origin: tuple[int, int]
    lr: np.ndarray
    hr: np.ndarray
    stats: Mapping[str, float]
    groups: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


class PatchCutter:
    """Cuts one pair's ``n`` patches into new array files of a dataset, then commits them.

    Args:
        store: the dataset.
        pair_id: the pair's id (its array files are named after it).
        n: the number of patches the pair has.
        bands: bands per patch.
        patch: input patch side (pixels); the target's is ``patch * scale``.
        scale: target pixels per input pixel.
        groups: ``(bands, patch)`` of each further band group, written to array files
            of their own (``group_files``).
    """

    def __init__(self, store: PairStore, pair_id: str, n: int, bands: int, patch: int,
                 scale: int, groups: Sequence[tuple[int, int]] = ()) -> None:
        self.store, self.pair_id, self.patch, self.scale = store, pair_id, patch, scale
        self.lr_file, self.hr_file, self._lr, self._hr = store.new_arrays(
            pair_id, n, bands, patch, patch * scale)
        self._groups: list[tuple[NpyWriter, NpyWriter]] = []
        self.group_files: list[tuple[Path, Path]] = []
        try:
            for c, p in groups:
                lr_file, hr_file, lr_w, hr_w = store.new_arrays(pair_id, n, c, p, p * scale)
                self._groups.append((lr_w, hr_w))
                self.group_files.append((lr_file, hr_file))
        except BaseException:
            self.discard()
            raise
        self.stats: dict[str, list[float]] = {k: [] for k in PATCH_STATS}
        self.origins: list[tuple[int, int]] = []

    def cut(self, patches: Iterable[Patch]) -> None:
        """Write every patch of ``patches`` (in order) and flush the arrays. Whatever
        ``patches`` raises (a refusal once all are seen, an interrupt) removes the arrays.
        """
        try:
            for k, item in enumerate(patches):
                for key in PATCH_STATS:
                    self.stats[key].append(item.stats[key])
                self._lr[k] = to_int16_dn(item.lr)
                self._hr[k] = to_int16_dn(item.hr)
                for (lr_w, hr_w), (lr, hr) in zip(self._groups, item.groups, strict=True):
                    lr_w[k], hr_w[k] = to_int16_dn(lr), to_int16_dn(hr)
                self.origins.append(item.origin)
            for w in self._writers():
                w.flush()
        except BaseException:
            self.discard()
            raise

    def rows(self, thresholds: Thresholds, lr_grid: Affine, hr_grid: Affine,
             common: dict[str, Any], lr_offset: tuple[int, int] = (0, 0)
             ) -> list[dict[str, Any]]:
        """The manifest rows of the patches cut (see :func:`patch_rows`)."""
        return patch_rows(self.pair_id, self.origins, self.stats, thresholds,
                          patch=self.patch, scale=self.scale, lr_grid=lr_grid,
                          hr_grid=hr_grid, lr_offset=lr_offset, common=common)

    def temporaries(self) -> tuple[tuple[str, str], ...]:
        """The array files as ``(final path, temporary path)``, for a later commit."""
        return tuple((str(w.path), str(w.tmp)) for w in self._writers())

    def commit(self, info: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Commit the pair (its arrays renamed, the manifest rewritten, under the lock).

        Returns:
            The pair's summary as in ``s2sr pairs info --json``.
        """
        try:
            self.store.commit_pair(self.pair_id, info, rows, self._writers())
        except BaseException:
            self.discard()
            raise
        return self.store.summary()["pairs"][self.pair_id]

    def _writers(self) -> list[NpyWriter]:
        return [self._lr, self._hr, *(w for pair in self._groups for w in pair)]

    def discard(self) -> None:
        """Remove the pair's temporary array files."""
        for w in self._writers():
            w.discard()

