"""The command line sends Dask's log records to s2sr's debug log for the whole process."""

from __future__ import annotations

import logging
import subprocess
import sys

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


# Each in a fresh interpreter: the first import of distributed is what is tested.
FIRST_IMPORT = {
    # a run with --workers: distributed was first imported inside the routing's block,
    # where its own stderr handler then printed a closing comm's record (ERROR passes the
    # cluster's silence_logs)
    "dask_client": "from s2sr.batch.cluster import dask_client\n"
                   "with dask_client(1, None):\n"
                   "    logging.getLogger('distributed.batched').error('LATE')\n",
    # the command line routes before anything heavy is imported; the import undid it
    "command line": "from s2sr.core.dask_logs import dask_logs_to_debug\n"
                    "dask_logs_to_debug()\n"
                    "from s2sr.batch.cluster import _distributed\n"
                    "_distributed()\n"
                    "logging.getLogger('distributed.batched').warning('LATE')\n",
}


@pytest.mark.parametrize("case", sorted(FIRST_IMPORT))
def test_importing_distributed_does_not_put_its_stderr_handler_back(case: str) -> None:
    pytest.importorskip("distributed")
    script = "import logging, sys\n" + FIRST_IMPORT[case] + "print('ok', file=sys.stderr)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == ["ok"], proc.stderr
