"""The review page's view of a dataset: filtering, sorting, paging, counts and histograms.

A :class:`Catalog` wraps one :class:`~s2sr.data.store.PairStore` (the same store and the
same :meth:`~s2sr.data.store.PairStore.decide` as ``s2sr pairs decide``) and keeps the
patch rows as columns (numpy arrays), so that a filter, a sort and a page over tens of
thousands of patches cost milliseconds. It notices when the dataset changes on disk (a
rebuild, or ``s2sr pairs decide`` in a terminal) by the files' modification times and
re-reads it before answering.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.constants import PATCH_STATS
from s2sr.core.errors import UsageError
from s2sr.data.manifest import effective_status
from s2sr.data.store import PairStore
from s2sr.data.validation import Thresholds

#: Statistic -> the :class:`Thresholds` field that bounds it (and on which side).
THRESHOLD_OF = {"nodata": ("max_nodata", "max"), "cloud": ("max_cloud", "max"),
                "corr": ("min_corr", "min"), "ssim": ("min_ssim", "min"),
                "shift": ("max_shift", "max"), "residual": ("max_residual", "max")}
#: Columns one can filter by exact value.
CATEGORIES = ("site", "split", "kind", "status", "reason", "pair_id")
#: Fields a page row carries (the rest of a manifest row is in the detail view).
PAGE_FIELDS = ("patch_id", "pair_id", "site", "split", "kind", "status", "reason",
               "auto_status", "auto_reason", "note", *PATCH_STATS)
MAX_PAGE = 500
HIST_BINS = 30


@dataclass
class Query:
    """What a page asks for.

    Attributes:
        equals: column -> allowed values (any of them), columns from :data:`CATEGORIES`.
        ranges: statistic -> ``(low, high)`` inclusive, either may be ``None``.
        sort: a statistic, ``"patch_id"`` or ``""`` (manifest order).
        descending: sort order.
        offset: first row of the page. limit: rows per page (at most :data:`MAX_PAGE`).
    """

    equals: dict[str, set[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    sort: str = ""
    descending: bool = False
    offset: int = 0
    limit: int = 48

    def __post_init__(self) -> None:
        bad = [k for k in self.equals if k not in CATEGORIES] + \
              [k for k in self.ranges if k not in PATCH_STATS]
        if bad:
            raise UsageError(f"unknown filter(s) {sorted(bad)}: use {list(CATEGORIES)} or "
                             f"ranges of {list(PATCH_STATS)}")
        if self.sort not in ("", "patch_id", *PATCH_STATS):
            raise UsageError(f"cannot sort by {self.sort!r}: use patch_id or one of "
                             f"{list(PATCH_STATS)}")
        if self.offset < 0 or not 1 <= self.limit <= MAX_PAGE:
            raise UsageError(f"page offset {self.offset} / limit {self.limit}: the offset "
                             f"must be >= 0 and the limit 1-{MAX_PAGE}")


def _signature(path: Path) -> tuple[int, int, int] | None:
    """A file's identity and state: inode (every atomic replace makes a new file),
    modification time and size."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Catalog:
    """A dataset as the review page sees it; thread-safe.

    Args:
        root: the dataset folder (made by ``s2sr pairs build`` or ``degrade``).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._load()

    # --- loading ----------------------------------------------------------------------

    def _load(self) -> None:
        self.store = PairStore(self.root)
        self._manifest_sig = _signature(self.store.manifest_path)
        self._raw = self.store.data["patches"]
        self.index = {r["patch_id"]: k for k, r in enumerate(self._raw)}
        n = len(self._raw)
        self.stats = {s: np.array([_float(r.get(s)) for r in self._raw], dtype=float)
                      for s in PATCH_STATS}
        self._cols: dict[str, np.ndarray] = {
            col: np.array([r[col] for r in self._raw], dtype=object)
            for col in ("patch_id", "site", "split", "kind", "pair_id")}
        for col in ("status", "reason", "note"):
            self._cols[col] = np.empty(n, dtype=object)
        self._edges = {s: _edges(self.stats[s]) for s in PATCH_STATS}
        self._apply_decisions()

    def _apply_decisions(self) -> None:
        decisions = self.store.decisions
        for k, row in enumerate(self._raw):
            self._set_status(k, row, decisions)
        self._decisions_sig = _signature(self.store.decisions_path)

    def _set_status(self, k: int, row: dict[str, Any],
                    decisions: dict[str, dict[str, Any]]) -> None:
        status, reason = effective_status(row, decisions)
        self._cols["status"][k] = status
        self._cols["reason"][k] = reason
        self._cols["note"][k] = decisions.get(row["patch_id"], {}).get("note", "")

    def refresh(self) -> None:
        """Re-read the dataset if its manifest or decisions changed on disk."""
        with self._lock:
            if _signature(self.store.manifest_path) != self._manifest_sig:
                self._load()
            elif _signature(self.store.decisions_path) != self._decisions_sig:
                self.store = PairStore(self.root)
                self._manifest_sig = _signature(self.store.manifest_path)
                if self.store.data["patches"] != self._raw:  # rebuilt meanwhile
                    self._load()
                else:
                    self._apply_decisions()

    def version(self) -> str:
        """A short tag of the dataset's state on disk (manifest and decisions): it
        changes whenever either file is replaced; two ``stat`` calls, nothing read."""
        parts = [_signature(self.store.manifest_path), _signature(self.store.decisions_path)]
        text = ";".join("-" if sig is None else "-".join(map(str, sig)) for sig in parts)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    # --- questions --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._raw)

    def row(self, patch_id: str) -> dict[str, Any]:
        """The manifest row of a patch with its effective status, reason and note.

        Raises:
            KeyError: no such patch in the manifest.
        """
        with self._lock:
            k = self.index[patch_id]
            return {**self._raw[k], **{c: self._cols[c][k] for c in ("status", "reason",
                                                                     "note")}}

    def pair(self, pair_id: str) -> dict[str, Any]:
        """The manifest entry of a scene pair."""
        return dict(self.store.data["pairs"][pair_id])

    def thresholds(self) -> dict[str, list[float]]:
        """Statistic -> the distinct automatic thresholds of the dataset's pairs."""
        out: dict[str, set[float]] = {s: set() for s in PATCH_STATS}
        for info in self.store.data["pairs"].values():
            t = Thresholds.from_dict(info.get("thresholds", {})).as_dict()
            for stat, (name, _) in THRESHOLD_OF.items():
                out[stat].add(float(t[name]))
        return {s: sorted(v) for s, v in out.items()}

    def _mask(self, q: Query) -> np.ndarray:
        mask = np.ones(len(self._raw), dtype=bool)
        for col, values in q.equals.items():
            if values:
                mask &= np.isin(self._column(col), list(values))
        for stat, (lo, hi) in q.ranges.items():
            v = self.stats[stat]
            if lo is not None:
                mask &= v >= lo
            if hi is not None:
                mask &= v <= hi
        return mask

    def _column(self, col: str) -> np.ndarray:
        return self._cols[col]

    def page(self, q: Query) -> dict[str, Any]:
        """One page of rows, the counts and the histograms of the filtered patches."""
        self.refresh()
        with self._lock:
            mask = self._mask(q)
            selected = np.flatnonzero(mask)
            if q.sort in PATCH_STATS:
                keys = self.stats[q.sort][selected]
                # NaN (no value) last in either order; ties in manifest order
                order = np.lexsort((selected, -keys if q.descending else keys,
                                    np.isnan(keys)))
                selected = selected[order]
            elif q.sort == "patch_id":
                selected = selected[np.argsort(self._cols["patch_id"][selected],
                                               kind="stable")]
                if q.descending:
                    selected = selected[::-1]
            elif q.descending:
                selected = selected[::-1]
            chosen = selected[q.offset:q.offset + q.limit]
            rows = [{f: _json_value(self._field(k, f)) for f in PAGE_FIELDS} for k in chosen]
            return {
                "version": self.version(),
                "total": len(self._raw), "matched": int(mask.sum()),
                "offset": q.offset, "limit": q.limit, "rows": rows,
                "counts": {c: dict(Counter(self._column(c)[mask].tolist()))
                           for c in ("site", "split", "kind", "status", "reason")},
                "histograms": {s: self._histogram(s, mask) for s in PATCH_STATS},
            }

    def _field(self, k: int, name: str) -> Any:
        if name in ("status", "reason", "note"):
            return self._cols[name][k]
        return self._raw[k].get(name)

    def _histogram(self, stat: str, mask: np.ndarray) -> dict[str, Any]:
        edges = self._edges[stat]
        v = self.stats[stat][mask]
        counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
        return {"edges": [float(e) for e in edges], "counts": counts.tolist(),
                "missing": int((~np.isfinite(v)).sum())}

    def options(self) -> dict[str, Any]:
        """The values each category takes over the whole dataset, and the thresholds."""
        self.refresh()
        with self._lock:
            return {
                "dataset": str(self.root), "patches": len(self._raw),
                "values": {c: sorted({str(v) for v in self._column(c).tolist()})
                           for c in ("site", "split", "kind", "reason", "pair_id")},
                "statuses": ["auto-accepted", "auto-rejected", "accepted", "rejected"],
                "stats": list(PATCH_STATS), "thresholds": self.thresholds(),
                "has_nir": any("B08" in info["bands"]
                               for info in self.store.data["pairs"].values()),
                "threshold_side": {s: side for s, (_, side) in THRESHOLD_OF.items()},
            }

    # --- decisions --------------------------------------------------------------------

    def decide(self, patch_id: str, status: str, note: str = "") -> dict[str, Any]:
        """Record a person's decision through the store (``auto`` clears it).

        The store takes its lock, re-reads ``decisions.json``, adds this one and replaces
        the file atomically, so that decisions from two tabs or processes all survive.

        Raises:
            KeyError: no such patch. UsageError: a bad status.
        """
        if patch_id not in self.index:
            raise KeyError(patch_id)
        with self._lock:
            self.store.decide(patch_id, status, note)
            # store.decide re-read the manifest and decisions under its lock
            if self.store.data["patches"] != self._raw:
                self._load()
            else:
                self._apply_decisions()
            self._manifest_sig = _signature(self.store.manifest_path)
            return self.row(patch_id)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _edges(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.linspace(0.0, 1.0, HIST_BINS + 1)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, HIST_BINS + 1)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
