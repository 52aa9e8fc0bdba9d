"""Many scene pairs into one dataset: ``s2sr pairs build --pairs pairs.csv``.

Each row of the CSV (columns ``lr``, ``hr``, and optionally ``site``, ``split``,
``lr_date``, ``hr_date`` or ``dates`` as ``LR/HR``) is one pair. Each pair is aligned and
cut by :func:`s2sr.data.pair_builder.prepare_pair` (in this process, or as a task on a Dask
cluster), which leaves its arrays as temporaries in the dataset; this process alone
commits them (:func:`s2sr.data.pair_builder.commit_prepared`: the arrays renamed and the
manifest rewritten under the dataset's lock), one pair at a time as they finish. A pair
that fails is reported and the others go on; a pair whose worker died is computed again.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from s2sr.batch.cluster import dask_client
from s2sr.batch.many import SceneResult
from s2sr.core.errors import InputNotFoundError, S2SRError, UsageError
from s2sr.data.manifest import MAX_LABEL, check_text
from s2sr.data.options import BuildOptions
from s2sr.data.pair_builder import PreparedPair, commit_prepared, prepare_pair
from s2sr.data.store import PairStore
from s2sr.io.base import short_error

log = logging.getLogger(__name__)

MAX_CSV_BYTES: Final[int] = 4 * 1024 * 1024
MAX_PAIRS: Final[int] = 100_000
SPLITS: Final[tuple[str, ...]] = ("train", "val", "test")


@dataclass(frozen=True)
class PairRow:
    """One row of the pairs CSV (paths resolved against the CSV's folder)."""

    lr: str
    hr: str
    options: BuildOptions


def read_pairs_csv(path: str | os.PathLike[str], base: BuildOptions) -> list[PairRow]:
    """The pairs of a CSV, each with ``base`` options and its own site, split and dates.

    Raises:
        InputNotFoundError: no such file. UsageError: missing columns, a bad split, site
            (not one line of text, over 100 characters) or date pair, too large.
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"pairs CSV {p} does not exist: check the path")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise UsageError(f"pairs CSV {p} is larger than {MAX_CSV_BYTES} bytes: split it")
    with open(p, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "lr" not in columns or "hr" not in columns:
            raise UsageError(f"pairs CSV {p} needs the columns lr and hr (and optionally "
                             f"site, split, lr_date, hr_date or dates); it has "
                             f"{', '.join(columns) or 'none'}")
        rows = []
        for n, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("lr") or not row.get("hr"):
                raise UsageError(f"{p} line {n}: lr and hr must both be given")
            opts = base
            if row.get("site"):
                check_text(row["site"], f"{p} line {n}: the site", MAX_LABEL)
                opts = replace(opts, site=row["site"])
            if row.get("split"):
                if row["split"] not in SPLITS:
                    raise UsageError(f"{p} line {n}: split {row['split'][:20]!r} is not one "
                                     f"of {', '.join(SPLITS)}")
                opts = replace(opts, split=row["split"])
            lr_date, hr_date = row.get("lr_date") or None, row.get("hr_date") or None
            if row.get("dates"):
                parts = row["dates"].split("/")
                if len(parts) != 2:
                    raise UsageError(f"{p} line {n}: dates {row['dates'][:40]!r} is not "
                                     "LR_DATE/HR_DATE, e.g. 2020-06-01/2020-06-10")
                lr_date, hr_date = parts[0].strip() or None, parts[1].strip() or None
            opts = replace(opts, lr_date=lr_date or opts.lr_date,
                           hr_date=hr_date or opts.hr_date)
            rows.append(PairRow(_resolve(row["lr"], p), _resolve(row["hr"], p), opts))
            if len(rows) > MAX_PAIRS:
                raise UsageError(f"pairs CSV {p} holds more than {MAX_PAIRS} pairs: split it")
    if not rows:
        raise UsageError(f"pairs CSV {p} holds no pair")
    return rows


def _resolve(entry: str, csv_path: Path) -> str:
    return entry if os.path.isabs(entry) else str(csv_path.parent / entry)


def _prepare(row: PairRow, dataset: str) -> PreparedPair:
    return prepare_pair(row.lr, row.hr, dataset, row.options)


def build_pairs(pairs_csv: str | os.PathLike[str], dataset: str | os.PathLike[str],
                opts: BuildOptions | None = None, *, workers: int | None = None,
                scheduler: str | None = None, client: Any = None,
                progress: bool = False) -> list[SceneResult]:
    """Build every pair of ``pairs_csv`` into ``dataset`` (created if absent).

    Args:
        pairs_csv: the CSV (see the module's text). dataset: the dataset folder.
        opts: options shared by the pairs (each row sets its site, split and dates).
        workers, scheduler, client: the Dask cluster, as :func:`s2sr.batch.predict_many`'s.
        progress: a bar over the pairs.

    Returns:
        One result per pair, in the CSV's order (``done`` or ``failed`` with its reason).
    """
    rows = read_pairs_csv(pairs_csv, opts or BuildOptions())
    store = PairStore(dataset, create=True)
    results: dict[int, SceneResult] = {}
    start = time.perf_counter()
    with dask_client(workers, scheduler, client) as dask, \
            tqdm(total=len(rows), unit="pair", disable=not progress, desc="s2sr pairs") as bar:
        prepared = _prepared_here(rows, str(dataset)) if dask is None else \
            _prepared_on_dask(dask, rows, str(dataset), start)
        for k, pair, t0 in prepared:
            results[k] = _commit(store, str(dataset), rows[k], pair, t0)
            bar.update(1)
    if not store.pairs:
        store.abandon()  # nothing was added: no empty dataset left behind
    return [results[k] for k in range(len(rows))]


#: A pair prepared (or its failure): its index in the CSV, and when its work started.
_Prepared = tuple[int, PreparedPair | Exception, float]


def _prepared_here(rows: list[PairRow], dataset: str) -> Iterator[_Prepared]:
    """Prepare the pairs one by one in this process (each committed before the next)."""
    for k, row in enumerate(rows):
        t0 = time.perf_counter()
        try:
            prepared: PreparedPair | Exception = _prepare(row, dataset)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            prepared = err
        yield k, prepared, t0


def _prepared_on_dask(dask: Any, rows: list[PairRow], dataset: str, start: float
                      ) -> Iterator[_Prepared]:
    """Prepare the pairs as tasks on the cluster, in the order they finish."""
    from distributed import as_completed  # optional dependency (s2sr[dask])

    futures = {dask.submit(_prepare, row, dataset, pure=False): k
               for k, row in enumerate(rows)}
    for future in as_completed(list(futures)):
        k = futures[future]
        try:
            prepared: PreparedPair | Exception = future.result()
        except Exception as err:
            prepared = err
        future.release()
        yield k, prepared, start


def _commit(store: PairStore, dataset: str, row: PairRow, prepared: PreparedPair | Exception,
            start: float) -> SceneResult:
    """Commit one prepared pair into ``store``; a failure (its own or the commit's) is
    the pair's result, not an error."""
    res = SceneResult(f"{row.lr} + {row.hr}", dataset, "failed", worker=f"pid {os.getpid()}")
    try:
        if isinstance(prepared, Exception):
            raise prepared
        info = commit_prepared(store, prepared)
        res.status, res.reason = "done", f"{sum(info['by_status'].values())} patches"
    except S2SRError as err:
        res.reason = short_error(err)
    except Exception as err:
        res.reason = f"{type(err).__name__}: {short_error(err)}"
    res.seconds = round(time.perf_counter() - start, 3)
    if res.status == "failed":
        log.warning("pair %s failed: %s", res.input, res.reason)
    return res
