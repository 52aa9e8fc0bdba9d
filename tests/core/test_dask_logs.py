"""The command line sends Dask's log records to s2sr's debug log for the whole process."""

from __future__ import annotations

import logging

import pytest

from s2sr.core.dask_logs import DASK_LOGGERS, dask_logs_to_debug


def test_a_late_dask_record_reaches_the_debug_log_not_stderr(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:],
              logging.getLogger(n).propagate) for n in DASK_LOGGERS]
    stderr = logging.StreamHandler()  # as distributed's own default handler and level
    level = logging.getLogger("distributed").level
    logging.getLogger("distributed").addHandler(stderr)
    logging.getLogger("distributed").setLevel(logging.INFO)
    try:
        dask_logs_to_debug()
        assert stderr not in logging.getLogger("distributed").handlers
        with caplog.at_level(logging.DEBUG, logger="s2sr"):
            logging.getLogger("distributed.batched").info("Batched Comm Closed <TCP>")
        assert "Batched Comm Closed" not in capsys.readouterr().err
        assert any("[distributed.batched] Batched Comm Closed" in r.getMessage()
                   for r in caplog.records)
    finally:
        logging.getLogger("distributed").setLevel(level)
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
