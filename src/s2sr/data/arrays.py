"""The patch arrays of a paired dataset: int16 ``.npy`` files, written item by item and
memory-mapped when read (:mod:`s2sr.data.store` names, publishes and deletes them)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from s2sr.core.errors import DataError
from s2sr.core.files import remove_quietly, replace_all, temp_path


class NpyWriter:
    """Writes an int16 ``.npy`` file of known shape item by item, in order.

    The data goes to a hidden temporary beside ``path`` (see
    :func:`s2sr.core.files.temp_path`); :meth:`PairStore.commit_pair` renames it to
    ``path`` under the dataset lock. Unlike a memory map, written data does not stay
    resident, so building a dataset from whole scenes keeps a flat memory profile.
    ``writer[k] = patch`` requires ``k`` to be the next index.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.tmp = temp_path(path)
        self.shape = shape
        self.next = 0
        self._handle = open(self.tmp, "wb")  # noqa: SIM115 - closed in flush()/discard()
        try:
            np.lib.format.write_array_header_1_0(
                self._handle, {"descr": np.dtype(np.int16).str, "fortran_order": False,
                               "shape": shape})
        except BaseException:
            self.discard()
            raise

    def __setitem__(self, index: int, value: np.ndarray) -> None:
        if index != self.next:
            raise IndexError(f"items must be written in order: expected {self.next}")
        self._handle.write(np.ascontiguousarray(value, dtype=np.int16).tobytes())
        self.next += 1

    def flush(self) -> None:
        """Close the file; it must hold exactly ``shape[0]`` items."""
        self._handle.close()
        if self.next != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.next} of {self.shape[0]} items")

    def publish(self) -> None:
        """Give the complete file its final name (call under the dataset lock)."""
        replace_all([(self.tmp, self.path)])

    def discard(self) -> None:
        """Close and delete the temporary (on failure). Never raises for the file: on a
        full disk closing fails too (the buffer cannot be flushed), yet it is deleted."""
        with contextlib.suppress(OSError):
            self._handle.close()
        remove_quietly(self.tmp)


def load_patch_array(path: Path, shape: tuple[int, int, int, int], pair_id: str
                     ) -> np.ndarray:
    """A memory-mapped int16 patch array ``(N, C, side, side)``, checked before use.

    Args:
        path: the ``.npy`` file.
        shape: the shape the manifest gives.
        pair_id: the pair it belongs to (for the message).

    Raises:
        DataError: the file is missing, not a plain ``.npy`` or not int16 of ``shape``.
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"array {path} of pair {pair_id} is missing: rebuild that "
                        "pair (s2sr pairs build/degrade again)") from None
    except (OSError, ValueError, EOFError) as err:
        first = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
        raise DataError(f"array {path} of pair {pair_id} is corrupt ({first}): "
                        "rebuild that pair") from None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int16 or arr.shape != shape:
        got = getattr(arr, "shape", "?")
        raise DataError(
            f"array {path} of pair {pair_id} is {getattr(arr, 'dtype', '?')} {got}, but the "
            f"manifest says int16 {shape}: rebuild that pair")
    return arr
