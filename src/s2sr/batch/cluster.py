"""The Dask cluster a run of many scenes uses (optional dependency: ``s2sr[dask]``).

``workers=N`` starts a local ``distributed`` cluster of N worker *processes* with one
thread each (the network's own threads do the parallel work inside a process; one Python
thread per worker keeps GIL-bound reading and writing from competing); ``scheduler`` joins
an existing cluster. Tasks that were running on a worker that dies are run again on
another by the scheduler (up to ``distributed.scheduler.allowed-failures`` times).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

from s2sr.errors import UsageError

log = logging.getLogger(__name__)

_INSTALL = "pip install 's2sr[dask]'"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--workers and --scheduler need Dask distributed: {_INSTALL}"
                         ) from None
    return distributed


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None, client: Any = None
                ) -> Iterator[Any]:
    """A ``distributed.Client`` for the run, or ``None`` to run in this process.

    Args:
        workers: start a local cluster of this many processes (1 thread each).
        scheduler: connect to the scheduler at this address instead.
        client: use this client as it is (neither started nor closed here).

    Yields:
        The client, or ``None`` when none of the three is given.
    """
    if client is not None:
        yield client
        return
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise UsageError("--workers starts a local cluster and --scheduler joins one: give "
                         "one of them")
    distributed = _distributed()
    if scheduler is not None:
        try:
            dask = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as err:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler} ({err}): check "
                             "the address (tcp://host:8786) and that it runs") from None
        try:
            _announce(dask)
            yield dask
        finally:
            dask.close()
        return
    dashboard = ":0" if importlib.util.find_spec("bokeh") is not None else None
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=dashboard, silence_logs=logging.ERROR)
    try:
        dask = distributed.Client(cluster)
        try:
            _announce(dask)
            yield dask
        finally:
            dask.close()
    finally:
        cluster.close()


def _announce(dask: Any) -> None:
    link = getattr(dask, "dashboard_link", None)
    workers = len(dask.scheduler_info().get("workers", {}))
    if link and importlib.util.find_spec("bokeh") is not None:
        log.warning("Dask: %d worker(s), dashboard at %s", workers, link)
    else:
        log.info("Dask: %d worker(s) at %s", workers, dask.scheduler.address)
