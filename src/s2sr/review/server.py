"""Serving the review page with uvicorn on the loopback address."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from s2sr.core.errors import UsageError
from s2sr.review.app import create_app
from s2sr.review.catalog import Catalog
from s2sr.review.security import new_token
from s2sr.review.thumbs import Thumbnails

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  #: the only address the server binds to


class ReviewServer:
    """The review page of one dataset, on ``127.0.0.1``.

    Args:
        dataset: the dataset folder.
        port: the port (0: a free one).
        disk_cache: folder for rendered images (``None``: memory only).

    Raises:
        UsageError: the port is taken or not allowed.
    """

    def __init__(self, dataset: str | os.PathLike[str], port: int = 0,
                 disk_cache: Path | None = None) -> None:
        self.catalog = Catalog(dataset)
        self.thumbs = Thumbnails(self.catalog, disk=disk_cache)
        self.token = new_token()
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only when the
        # protocol is given; without it every keep-alive response waits ~40 ms (Nagle)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self.socket.bind((HOST, port))
        except OSError as err:
            self.socket.close()
            raise UsageError(f"cannot listen on {HOST}:{port} ({err.strerror}): choose "
                             "another --port, or 0 for a free one") from None
        self.socket.listen(128)
        self.port = int(self.socket.getsockname()[1])
        self.app = create_app(self.catalog, self.thumbs, self.token, self.port)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address with this run's token."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM (in the main thread), then close."""
        try:
            self.server.run(sockets=[self.socket])
        except KeyboardInterrupt:  # uvicorn re-raises the signal after a clean shutdown
            pass
        finally:
            self.socket.close()

    def start(self) -> ReviewServer:
        """Serve in a background thread (tests, scripts); returns once it listens."""
        self._thread = threading.Thread(target=self.run, name="s2sr-review", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the review server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
