"""The paired dataset on disk.

Layout of a dataset folder::

    manifest.json    format version, one entry per scene pair, one row per patch
    manifest.csv     the patch rows again, for spreadsheets and pandas (derived)
    decisions.json   manual decisions: patch id -> {status, note, time}; never rebuilt
    arrays/          <pair>-<token>_lr.npy / _hr.npy: int16 reflectance x 10000,
                     (N, C, p, p) and (N, C, p*s, p*s), memory-mappable
    .s2sr-pairs.lock the lock file that serialises updates between processes

Every update writes new array files under hidden temporary names (``temp_path``: process
id and token in the name) while the pair is built; then, holding an exclusive ``flock`` on
the lock file, renames them to their final names, re-reads and replaces ``manifest.json``
atomically together with ``manifest.csv`` (both written in full to temporaries first, then
renamed: :mod:`s2sr.data.storefiles`), and deletes final-named arrays that no pair
references. Temporaries of live
processes (a concurrent build) are never touched; those of dead processes (``kill -9``)
are swept by the next update. An interrupted run leaves the previous, valid dataset.
Re-adding a scene pair replaces its rows (no duplicates). A person's decision overrides
the automatic status and survives rebuilding because patch ids are deterministic (pair id
+ window offsets). A note must be one line of UTF-8 text of at most :data:`MAX_NOTE`
characters (checked before anything is written); text from elsewhere (paths, labels, and
notes written by older versions) is stored in a form every tool can read.

The manifest's format, its georeferencing and its validation are :mod:`s2sr.data.manifest`.
Everything read from the folder is validated on open, then array headers against the
manifest before use; a damaged file is one :class:`~s2sr.core.errors.DataError` naming it
and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.errors import DataError, InputNotFoundError, UsageError
from s2sr.core.files import sweep_stale_temps, write_atomic
from s2sr.data.arrays import NpyWriter, load_patch_array
from s2sr.data.bandgroups import BandGroup, array_names, group_arrays
from s2sr.data.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MAX_NOTE,
    check_text,
    clean_strings,
    clean_text,
    effective_rows,
    read_json,
    summarize,
    validate_decisions,
    validate_manifest,
)
from s2sr.data.storefiles import write_together

log = logging.getLogger(__name__)

LOCK_NAME = ".s2sr-pairs.lock"


def _manifest_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, default=float)


class PairStore:
    """A dataset folder of paired patches.

    Args:
        root: the dataset folder.
        create: create it when absent (otherwise a missing dataset is an error); an
            existing dataset is opened for adding pairs, and stale temporaries of dead
            processes in it are removed.
    """

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.decisions_path = self.root / "decisions.json"
        self.csv_path = self.root / "manifest.csv"
        #: this store made the dataset (its manifest); :meth:`abandon` may then remove it
        self.created = False
        #: folders this store made for it (the root and missing parents), outermost first
        self._made_dirs: list[Path] = []
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"dataset {self.root} is a file, not a folder: give a folder "
                             "name (new or an s2sr pairs dataset)")
        if create:
            if self.root.is_dir() and not self.manifest_path.exists():
                self._refuse_foreign()  # before the lock file is made in someone's folder
            try:
                with self._locked(make_root=True):
                    if not self.manifest_path.exists():
                        self.created = True
                        self._create()
                    sweep_stale_temps(self.root)
                    sweep_stale_temps(self.root / "arrays")
            except OSError:
                self._undo_create()  # e.g. a full disk: no half-made dataset is left
                raise
        elif not self.manifest_path.exists():
            raise InputNotFoundError(
                f"{self.root} is not an s2sr pairs dataset (no manifest.json): build one "
                "with s2sr pairs build or s2sr pairs degrade"
            )
        self.data = self._read()
        if create and self.data["format_version"] < FORMAT_VERSION:
            raise UsageError(f"{self.root} was made by an older s2sr (format version "
                             f"{self.data['format_version']}): build into a new folder")
        self.decisions = self._read_decisions()

    def _refuse_foreign(self) -> None:
        """Refuse a folder holding anything but a dataset being created (lock, arrays)."""
        others = [p.name for p in self.root.iterdir() if p.name not in (LOCK_NAME, "arrays")
                  and not p.name.startswith(".manifest.json.s2sr-")]
        if others or any(not p.name.startswith(".") for p in self._array_dir_entries()):
            raise UsageError(f"{self.root} exists and is not an s2sr dataset: choose an "
                             "empty or new folder")

    def _create(self) -> None:
        self._refuse_foreign()
        (self.root / "arrays").mkdir(exist_ok=True)
        self._write({"format": FORMAT, "format_version": FORMAT_VERSION, "pairs": {},
                     "patches": []})

    def _array_dir_entries(self) -> list[Path]:
        folder = self.root / "arrays"
        return list(folder.iterdir()) if folder.is_dir() else []

    def _make_root(self) -> None:
        """Create the folder (and missing parents), remembering which ones this store made."""
        missing = [d for d in (self.root, *self.root.parents) if not d.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in reversed(missing):  # outermost first
            if folder not in self._made_dirs:
                self._made_dirs.append(folder)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the dataset's exclusive lock (between processes) for a read-modify-write."""
        return self._locked()

    @contextlib.contextmanager
    def _locked(self, make_root: bool = False) -> Iterator[None]:
        """The lock; ``make_root``: (re)create the folder when it is missing.

        A build that abandons the dataset it created deletes the lock file while holding
        it: a process that was waiting then holds a lock on a deleted file, so it checks
        that the file it locked is still the lock file and otherwise starts again.
        """
        lock = self.root / LOCK_NAME
        while True:
            if make_root:
                self._make_root()
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                if make_root:
                    continue  # the folder was abandoned by its creator just now
                raise UsageError(f"cannot lock dataset {self.root}: the folder is gone "
                                 "(build the dataset again)") from None
            except OSError as err:
                raise UsageError(f"cannot lock dataset {self.root} ({err.strerror}): check "
                                 "that the folder is writable") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(lock)
                    current = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
                except FileNotFoundError:
                    current = False
                if current:
                    yield
                    return
            finally:
                os.close(fd)  # releases the lock

    def abandon(self) -> bool:
        """Remove the dataset this store created if nothing was added to it.

        Called when a build fails: it must not leave an empty dataset (manifest, lock,
        ``arrays/``) behind. Nothing happens unless this store created the dataset and,
        under the lock, it still holds no pair, no decision and no other process's
        temporaries; folders are removed only if this store made them and they are empty.
        A pre-existing dataset is never touched. Never raises (it runs while another error
        propagates): a failure to remove is logged.

        Returns:
            Whether the dataset was removed.
        """
        if not self.created:
            return False
        try:
            with self._locked():
                data = read_json(self.manifest_path, "") if self.manifest_path.exists() \
                    else {}
                if not isinstance(data, dict) or data.get("pairs"):
                    return False  # another process added a pair: the dataset is theirs too
                sweep_stale_temps(self.root)
                sweep_stale_temps(self.root / "arrays")
                ours = {"manifest.json", "manifest.csv", LOCK_NAME, "arrays"}
                if any(p.name not in ours for p in self.root.iterdir()) or \
                        self._array_dir_entries():
                    return False  # a concurrent build is writing into it
                self.manifest_path.unlink(missing_ok=True)
                (self.root / "manifest.csv").unlink(missing_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    (self.root / "arrays").rmdir()
                (self.root / LOCK_NAME).unlink()  # still held: waiters start again
        except (OSError, DataError) as err:
            log.warning("could not remove the unused dataset %s (%s): delete it by hand",
                        self.root, err)
            return False
        self.created = False
        self._remove_made_dirs()
        return True

    def _undo_create(self) -> None:
        """After a failed creation: remove the lock file, ``arrays/`` and the folders
        this store made, when nothing else is in them. Never raises."""
        if not self.created or self.manifest_path.exists():
            return
        with contextlib.suppress(OSError):
            (self.root / "arrays").rmdir()
        with contextlib.suppress(OSError):
            (self.root / LOCK_NAME).unlink()
        self.created = False
        self._remove_made_dirs()

    def _remove_made_dirs(self) -> None:
        for folder in reversed(self._made_dirs):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's files) or already gone

    def _read(self) -> dict[str, Any]:
        data = read_json(self.manifest_path, "rebuild the dataset (or restore the file)")
        return validate_manifest(data, self.manifest_path)

    def _read_decisions(self) -> dict[str, dict[str, Any]]:
        if not self.decisions_path.exists():
            return {}
        data = read_json(self.decisions_path, "fix it or delete it (the manual decisions "
                          "in it are then lost)")
        return validate_decisions(data, self.decisions_path)

    def _write(self, data: dict[str, Any]) -> None:
        write_atomic(self.manifest_path, _manifest_text(data))

    @property
    def pairs(self) -> dict[str, dict[str, Any]]:
        """Scene pairs by id."""
        return dict(self.data["pairs"])

    def rows(self) -> list[dict[str, Any]]:
        """Patch rows with their effective ``status`` and ``reason``."""
        return effective_rows(self.data, self.decisions)

    def new_arrays(self, pair_id: str, n: int, bands: int, lr_size: int, hr_size: int
                   ) -> tuple[Path, Path, NpyWriter, NpyWriter]:
        """Fresh array files for a pair (temporaries until :meth:`commit_pair`)."""
        if not (self.root / "arrays").is_dir():  # abandoned by its creator meanwhile
            self._make_root()
            (self.root / "arrays").mkdir(exist_ok=True)
        token = secrets.token_hex(4)
        lr_path = self.root / "arrays" / f"{pair_id}-{token}_lr.npy"
        hr_path = self.root / "arrays" / f"{pair_id}-{token}_hr.npy"
        lr_w = NpyWriter(lr_path, (n, bands, lr_size, lr_size))
        try:
            hr_w = NpyWriter(hr_path, (n, bands, hr_size, hr_size))
        except BaseException:
            lr_w.discard()
            raise
        return lr_path, hr_path, lr_w, hr_w

    def commit_pair(self, pair_id: str, info: dict[str, Any], rows: list[dict[str, Any]],
                    writers: Sequence[NpyWriter] = ()) -> None:
        """Replace pair ``pair_id`` (info and rows) atomically; drop unreferenced arrays.

        Under the dataset lock: publish ``writers``' files, re-read the manifest (another
        process may have added pairs since), write it back with this pair, clean up.
        """
        # paths and labels are kept as text any tool can read (a file name in Latin-1
        # bytes becomes \\xNN): manifest.csv and the review page must never fail on them
        pair_id, info, rows = clean_text(pair_id), clean_strings(info), clean_strings(rows)
        with self._locked(make_root=True):
            try:
                if not self.manifest_path.exists():  # abandoned by its creator meanwhile
                    self.created = True
                    self._create()
                for w in writers:
                    w.publish()
                data = self._read()
                data["pairs"][pair_id] = info
                data["patches"] = [r for r in data["patches"] if r["pair_id"] != pair_id
                                   ] + rows
                decisions = self._read_decisions()
                # both files complete on disk before either is renamed: a full disk
                # leaves the previous dataset (or, for a new one, nothing)
                write_together([(self.manifest_path, _manifest_text(data))], self.csv_path,
                               effective_rows(data, decisions))
            except BaseException:
                for w in writers:
                    w.discard()
                    if w.path.name not in {n for i in self.data["pairs"].values()
                                           for n in array_names(i)}:
                        w.path.unlink(missing_ok=True)
                raise
            self.data = data
            self.decisions = decisions
            self.cleanup()

    def cleanup(self) -> None:
        """Delete arrays no pair references and temporaries of dead processes.

        Only final-named arrays are candidates: a build in progress (this or another
        process) writes temporaries, which are renamed under the lock together with the
        manifest update. Call with the lock held (``commit_pair`` does).
        """
        used = {n for info in self.data["pairs"].values() for n in array_names(info)}
        for path in (self.root / "arrays").glob("*.npy"):
            if not path.name.startswith(".") and path.name not in used:
                path.unlink(missing_ok=True)
        sweep_stale_temps(self.root)
        sweep_stale_temps(self.root / "arrays")

    def decide(self, patch_id: str, status: str, note: str = "") -> None:
        """Record a person's decision (``accepted``/``rejected``; ``auto`` clears it).

        Raises:
            UsageError: a bad status, an unknown patch, or a note that is not one line of
                UTF-8 text of at most :data:`MAX_NOTE` characters (nothing is written).
        """
        if status not in ("accepted", "rejected", "auto"):
            raise UsageError(f"decision must be accepted, rejected or auto, got {status!r}")
        check_text(note, "the note", MAX_NOTE)
        with self.locked():
            self.data = self._read()
            self.decisions = self._read_decisions()
            if not any(r["patch_id"] == patch_id for r in self.data["patches"]):
                raise UsageError(f"no patch {clean_text(patch_id, 80)!r} in {self.root}: "
                                 f"list them in {self.csv_path} (column patch_id)")
            decisions = dict(self.decisions)
            if status == "auto":
                decisions.pop(patch_id, None)
            else:
                decisions[patch_id] = {"status": status, "note": note,
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            # both files complete before either is renamed (a full disk: no change)
            write_together([(self.decisions_path, json.dumps(decisions, indent=1))],
                           self.csv_path, effective_rows(self.data, decisions))
            self.decisions = decisions

    def summary(self) -> dict[str, Any]:
        """Counts per site, split, kind, status and reason, and per pair details."""
        return summarize(self.root, self.data["pairs"], self.rows())

    def arrays(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped ``(lr, hr)`` int16 arrays of a pair, checked against the manifest.

        Raises:
            DataError: a file is missing, not a plain ``.npy`` or not of the shape and
                dtype the manifest gives.
        """
        info = self.data["pairs"][pair_id]
        n = sum(1 for r in self.data["patches"] if r["pair_id"] == pair_id)
        c, p, s = len(info["bands"]), info["patch"], info["scale"]
        folder = self.root / "arrays"
        return (load_patch_array(folder / info["lr_array"], (n, c, p, p), pair_id),
                load_patch_array(folder / info["hr_array"], (n, c, p * s, p * s), pair_id))

    def groups(self, pair_id: str) -> list[tuple[BandGroup, np.ndarray, np.ndarray]]:
        """Each band group of a pair (its bands, their resolutions in metres at the input
        and the target, patch sides) with its memory-mapped ``(lr, hr)`` arrays, the
        pair's own bands (:meth:`arrays`) first; see :mod:`s2sr.data.bandgroups`."""
        n = sum(1 for r in self.data["patches"] if r["pair_id"] == pair_id)
        return group_arrays(self.root / "arrays", self.data["pairs"][pair_id], n, pair_id)
