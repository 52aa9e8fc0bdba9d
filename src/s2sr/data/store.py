"""The paired dataset on disk.

Layout of a dataset folder::

    manifest.json    format version, one entry per scene pair, one row per patch
    manifest.csv     the patch rows again, for spreadsheets and pandas (derived)
    decisions.json   manual decisions: patch id -> {status, note, time}; never rebuilt
    arrays/          <pair>-<token>_lr.npy / _hr.npy: int16 reflectance x 10000,
                     (N, C, p, p) and (N, C, p*s, p*s), memory-mappable

Every update writes new array files under a fresh token, then replaces ``manifest.json``
atomically, then deletes arrays no longer referenced: an interrupted run leaves the
previous, valid dataset. Re-adding a scene pair replaces its rows (no duplicates). A
person's decision overrides the automatic status and survives rebuilding because patch ids
are deterministic (pair id + window offsets).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.data.validation import Thresholds, validate
from s2sr.errors import DataError, InputNotFoundError, UsageError

FORMAT = "s2sr-pairs"
FORMAT_VERSION = 1
STATUSES = ("auto-accepted", "auto-rejected", "accepted", "rejected")
DN_SCALE = 10000.0


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def effective_status(row: dict[str, Any], decisions: dict[str, dict[str, Any]]) -> tuple[
        str, str]:
    """(status, reason) of a patch: a person's decision wins over the automatic one."""
    decision = decisions.get(row["patch_id"])
    if decision:
        return decision["status"], decision.get("note", "") or "manual"
    return row["auto_status"], row["auto_reason"]


def patch_rows(pair_id: str, origins: list[tuple[int, int]], stats: dict[str, list[float]],
               thresholds: Thresholds, *, common: dict[str, Any], patch: int, scale: int,
               lr_offset: tuple[int, int] = (0, 0)) -> list[dict[str, Any]]:
    """Validate a pair's patches and make their manifest rows.

    Args:
        pair_id: the pair's id (patch ids are ``pair_id:row:col``).
        origins: ``(row, col)`` of each patch on the input grid of the pair's window.
        stats: per-patch statistics (see :func:`s2sr.data.validation.validate`).
        thresholds: validation thresholds.
        common: fields shared by every row (kind, site, split, scenes, CRS, transforms).
        patch: input patch size. scale: target pixels per input pixel.
        lr_offset: ``(row, col)`` of the window in the input scene.
    """
    arrays = {key: np.asarray(v, dtype=float) for key, v in stats.items()}
    reasons = validate(arrays, thresholds)
    rows = []
    for k, ((r, c), reason) in enumerate(zip(origins, reasons, strict=True)):
        rows.append({
            "patch_id": f"{pair_id}:{r}:{c}", "pair_id": pair_id, "index": k, **common,
            "lr_row": lr_offset[0] + r, "lr_col": lr_offset[1] + c, "lr_size": patch,
            "hr_row": r * scale, "hr_col": c * scale, "hr_size": patch * scale,
            **{key: _num(arrays[key][k]) for key in arrays},
            "auto_status": "auto-rejected" if reason else "auto-accepted",
            "auto_reason": reason,
        })
    return rows


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


class NpyWriter:
    """Writes an int16 ``.npy`` file of known shape item by item, in order.

    Unlike a memory map, written data does not stay resident, so building a dataset
    from whole scenes keeps a flat memory profile. ``writer[k] = patch`` requires
    ``k`` to be the next index.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.shape = shape
        self.next = 0
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in flush()/close()
        np.lib.format.write_array_header_1_0(
            self._handle, {"descr": np.dtype(np.int16).str, "fortran_order": False,
                           "shape": shape})

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

    def discard(self) -> None:
        """Close and delete the file (on failure)."""
        self._handle.close()
        self.path.unlink(missing_ok=True)


class PairStore:
    """A dataset folder of paired patches.

    Args:
        root: the dataset folder.
        create: create it when absent (otherwise a missing dataset is an error).
    """

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.decisions_path = self.root / "decisions.json"
        if not self.manifest_path.exists():
            if not create:
                raise InputNotFoundError(
                    f"{self.root} is not an s2sr pairs dataset (no manifest.json): build one "
                    "with s2sr pairs build or s2sr pairs degrade"
                )
            if self.root.exists() and any(self.root.iterdir()):
                raise UsageError(f"{self.root} exists and is not an s2sr dataset: choose an "
                                 "empty or new folder")
            (self.root / "arrays").mkdir(parents=True, exist_ok=True)
            self._write({"format": FORMAT, "format_version": FORMAT_VERSION, "pairs": {},
                         "patches": []})
        self.data = self._read()
        self.decisions: dict[str, dict[str, Any]] = (
            json.loads(self.decisions_path.read_text()) if self.decisions_path.exists() else {})

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except ValueError as err:
            raise DataError(f"{self.manifest_path} is corrupt ({err}): rebuild the dataset"
                            ) from None
        if data.get("format") != FORMAT:
            raise DataError(f"{self.manifest_path} is not an s2sr pairs manifest")
        return dict(data)

    def _write(self, data: dict[str, Any]) -> None:
        _atomic_write(self.manifest_path, json.dumps(data, indent=1, default=float))

    @property
    def pairs(self) -> dict[str, dict[str, Any]]:
        """Scene pairs by id."""
        return dict(self.data["pairs"])

    def rows(self) -> list[dict[str, Any]]:
        """Patch rows with their effective ``status`` and ``reason``."""
        out = []
        for row in self.data["patches"]:
            status, reason = effective_status(row, self.decisions)
            out.append({**row, "status": status, "reason": reason})
        return out

    def new_arrays(self, pair_id: str, n: int, bands: int, lr_size: int, hr_size: int
                   ) -> tuple[Path, Path, NpyWriter, NpyWriter]:
        """Fresh array files for a pair (not yet referenced), written patch by patch."""
        token = secrets.token_hex(4)
        lr_path = self.root / "arrays" / f"{pair_id}-{token}_lr.npy"
        hr_path = self.root / "arrays" / f"{pair_id}-{token}_hr.npy"
        return (lr_path, hr_path, NpyWriter(lr_path, (n, bands, lr_size, lr_size)),
                NpyWriter(hr_path, (n, bands, hr_size, hr_size)))

    def commit_pair(self, pair_id: str, info: dict[str, Any], rows: list[dict[str, Any]]
                    ) -> None:
        """Replace pair ``pair_id`` (info and rows) atomically; drop unreferenced arrays."""
        data = self._read()
        data["pairs"][pair_id] = info
        data["patches"] = [r for r in data["patches"] if r["pair_id"] != pair_id] + rows
        self._write(data)
        self.data = data
        self._export_csv()
        self.cleanup()

    def cleanup(self) -> None:
        """Delete array files no pair references (left by interrupted runs)."""
        used = {info[k] for info in self.data["pairs"].values() for k in ("lr_array",
                                                                           "hr_array")}
        for path in (self.root / "arrays").glob("*.npy"):
            if path.name not in used:
                path.unlink(missing_ok=True)

    def _export_csv(self) -> None:
        rows = self.rows()
        tmp = self.root / f".manifest.csv.{os.getpid()}.tmp"
        with open(tmp, "w", newline="") as handle:
            if rows:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.root / "manifest.csv")

    def decide(self, patch_id: str, status: str, note: str = "") -> None:
        """Record a person's decision (``accepted``/``rejected``; ``auto`` clears it)."""
        if not any(r["patch_id"] == patch_id for r in self.data["patches"]):
            raise UsageError(f"no patch {patch_id!r} in {self.root}")
        if status == "auto":
            self.decisions.pop(patch_id, None)
        elif status in ("accepted", "rejected"):
            self.decisions[patch_id] = {"status": status, "note": note,
                                        "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        else:
            raise UsageError(f"decision must be accepted, rejected or auto, got {status!r}")
        _atomic_write(self.decisions_path, json.dumps(self.decisions, indent=1))
        self._export_csv()

    def summary(self) -> dict[str, Any]:
        """Counts per site, split, kind, status and reason, and per pair details."""
        rows = self.rows()
        per_pair: dict[str, dict[str, Any]] = {}
        for pid, info in self.data["pairs"].items():
            mine = [r for r in rows if r["pair_id"] == pid]
            per_pair[pid] = {
                **{k: v for k, v in info.items() if k not in ("lr_array", "hr_array")},
                "patches": len(mine),
                "by_status": dict(Counter(r["status"] for r in mine)),
                "by_reason": dict(Counter(r["reason"] for r in mine if r["reason"])),
            }
        return {
            "dataset": str(self.root),
            "patches": len(rows),
            "by_site": dict(Counter(r["site"] for r in rows)),
            "by_split": dict(Counter(r["split"] for r in rows)),
            "by_kind": dict(Counter(r["kind"] for r in rows)),
            "by_status": dict(Counter(r["status"] for r in rows)),
            "by_reason": dict(Counter(r["reason"] for r in rows if r["reason"])),
            "pairs": per_pair,
        }

    def arrays(self, pair_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped ``(lr, hr)`` int16 arrays of a pair."""
        info = self.data["pairs"][pair_id]
        return (np.load(self.root / "arrays" / info["lr_array"], mmap_mode="r"),
                np.load(self.root / "arrays" / info["hr_array"], mmap_mode="r"))
