"""The Dask cluster a run of many scenes uses (optional dependency: ``s2sr[dask]``).

``workers=N`` starts a local ``distributed`` cluster of N worker *processes* with one
thread each (the network's own threads do the parallel work inside a process; one Python
thread per worker keeps GIL-bound reading and writing from competing); ``scheduler`` joins
an existing cluster. Tasks that were running on a worker that dies are run again on
another by the scheduler (up to ``distributed.scheduler.allowed-failures`` times).

Dask's own log lines and warnings (ports in use, workers restarting, semaphores a killed
worker leaked) are kept from the user's terminal: :func:`quiet_dask` sends them to s2sr's
debug log; what matters (a lost worker, a failed scene) s2sr says itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from s2sr.core.dask_logs import DASK_LOGGERS, ToDebug, route_again
from s2sr.core.errors import UsageError

log = logging.getLogger(__name__)

_INSTALL = "pip install 's2sr[dask]'"
#: Why local workers fail to start, most often, and the fix.
MAIN_GUARD_HINT = (
    "a script that calls predict_many(..., workers=N) runs again in every worker process "
    "it starts: put the call under 'if __name__ == \"__main__\":' (see the README)")


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once per process) with its shutdown
    warnings off: a worker killed mid-task leaves semaphores that the tracker removes at
    exit with a "leaked semaphore" line on stderr, which says nothing to a user."""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    if getattr(tracker, "_fd", None) is not None:
        return
    option = "ignore:resource_tracker:UserWarning"
    sys.warnoptions.append(option)
    try:
        tracker.ensure_running()
    except Exception:  # no tracker (an unusual platform): nothing to quieten
        log.debug("resource tracker not started", exc_info=True)
    finally:
        sys.warnoptions.remove(option)


@contextlib.contextmanager
def quiet_dask() -> Iterator[None]:
    """Within the block, Dask's log records and warnings go to s2sr's debug log
    (:func:`dask_client` runs its block in one, entered once ``distributed`` is imported)."""
    saved = []
    handler = ToDebug()
    for name in DASK_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [handler]
        logger.propagate = False
    _quiet_resource_tracker()
    previous = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if any(f"/{name}/" in filename.replace("\\", "/") for name in DASK_LOGGERS):
            log.debug("[warning] %s: %s (%s:%d)", category.__name__, message, filename, lineno)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate


#: Level of the ``distributed`` loggers in the local worker processes (the user's own
#: ``DASK_LOGGING__DISTRIBUTED`` wins). ``silence_logs`` quietens only the nanny's logger
#: there, so a worker stopped by SIGTERM printed its INFO "Batched Comm Closed" traceback.
WORKER_LOG_LEVEL = "critical"


@contextlib.contextmanager
def _quiet_workers() -> Iterator[None]:
    """While the local cluster is made, its nannies spawn (and respawn) every worker process
    with the ``distributed`` loggers at :data:`WORKER_LOG_LEVEL`: a worker configures its
    logging from the environment when it imports ``distributed``, before any config the
    nanny sends it, so the level travels in ``distributed.nanny.pre-spawn-environ``."""
    import dask

    key = "DASK_LOGGING__DISTRIBUTED"
    saved = os.environ.get(key)
    level = WORKER_LOG_LEVEL if saved is None else saved
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": level}):
            yield
    finally:  # the nanny sets it in this process's environment too: put it back
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--workers and --scheduler need Dask distributed: {_INSTALL}"
                         ) from None
    route_again()  # its import put its own stderr handler on its loggers
    return distributed


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None, client: Any = None
                ) -> Iterator[Any]:
    """A ``distributed.Client`` for the run, or ``None`` to run in this process; within
    the block Dask's log records and warnings go to s2sr's debug log (:func:`quiet_dask`).

    ``distributed`` is imported before the routing: its import installs its own stderr
    handler on its loggers, which would undo the routing for the rest of the block, where
    a closing comm still logs (a "Batched Comm Closed" traceback after SIGTERM, once the
    cluster's ``silence_logs`` is undone).

    Args:
        workers: start a local cluster of this many processes (1 thread each).
        scheduler: connect to the scheduler at this address instead.
        client: use this client as it is (neither started nor closed here).

    Yields:
        The client, or ``None`` when none of the three is given.
    """
    if client is not None or (workers is None and scheduler is None):
        with quiet_dask():
            yield client
        return
    if workers is not None and scheduler is not None:
        raise UsageError("--workers starts a local cluster and --scheduler joins one: give "
                         "one of them")
    distributed = _distributed()
    with quiet_dask():
        if scheduler is not None:
            try:
                dask = distributed.Client(scheduler, timeout="30s")
            except (OSError, TimeoutError, ValueError) as err:
                raise UsageError(f"cannot reach the Dask scheduler at {scheduler} ({err}): "
                                 "check the address (tcp://host:8786) and that it runs"
                                 ) from None
            try:
                _announce(dask)
                yield dask
            finally:
                dask.close()
            return
        assert workers is not None
        with _local_cluster(distributed, workers) as cluster:
            dask = distributed.Client(cluster)
            try:
                _announce(dask)
                yield dask
            finally:
                dask.close()


@contextlib.contextmanager
def _local_cluster(distributed: Any, workers: int) -> Iterator[Any]:
    """A local cluster of ``workers`` processes, its workers' logs quietened."""
    dashboard = ":0" if importlib.util.find_spec("bokeh") is not None else None
    with _quiet_workers():
        try:
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=dashboard, silence_logs=logging.ERROR)
        except (RuntimeError, OSError, TimeoutError) as err:
            log.debug("LocalCluster failed to start", exc_info=True)
            raise UsageError(f"the Dask worker processes failed to start ({err}): most "
                             f"often {MAIN_GUARD_HINT}") from None
        try:
            yield cluster
        finally:
            cluster.close()


def _announce(dask: Any) -> None:
    link = getattr(dask, "dashboard_link", None)
    workers = len(dask.scheduler_info().get("workers", {}))
    if link and importlib.util.find_spec("bokeh") is not None:
        log.warning("Dask: %d worker(s), dashboard at %s", workers, link)
    else:
        log.info("Dask: %d worker(s) at %s", workers, dask.scheduler.address)
