"""A real local Dask cluster for the tests: 2 worker processes, 1 thread each, loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def local_client() -> Iterator[Any]:
    """A ``distributed.Client`` of a fresh local cluster (skips without ``distributed``),
    closed with its cluster on exit."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=50)
    dask = distributed.Client(cluster)
    try:
        yield dask
    finally:
        dask.close()
        cluster.close()
