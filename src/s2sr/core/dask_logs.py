"""Where Dask's log records go (stdlib only: the command line sets this before anything
heavy is imported)."""

from __future__ import annotations

import logging

log = logging.getLogger("s2sr.batch.cluster")

#: Loggers of Dask and the libraries under it (quietened by s2sr.batch.cluster.quiet_dask).
DASK_LOGGERS = ("distributed", "dask", "tornado", "bokeh", "asyncio")


class ToDebug(logging.Handler):
    """Sends each record to s2sr's debug log, named by its logger."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("[%s] %s", record.name, record.getMessage())


#: Whether :func:`dask_logs_to_debug` was called (the process is the command line's).
_routed = False


def dask_logs_to_debug() -> None:
    """For the rest of the process, Dask's log records go to s2sr's debug log (the command
    line owns its process: a local cluster's event loop can still log a closing comm, such
    as a "Batched Comm Closed" traceback after SIGTERM, once the block of
    :func:`s2sr.batch.cluster.quiet_dask` has put the loggers back)."""
    global _routed
    _routed = True
    handler = ToDebug()
    for name in DASK_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False


def route_again() -> None:
    """Called once ``distributed`` is imported: its import installs its own stderr handler
    on its loggers, undoing :func:`dask_logs_to_debug` if that ran before."""
    if _routed:
        dask_logs_to_debug()
