"""Shared pieces of the command line: error handling and logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"s2sr: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("s2sr")
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if quiet else logging.WARNING)
    root.propagate = False


def handle_errors(func: F) -> F:
    """Turn s2sr and raster errors into a one-line message and the right exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rasterio.errors import RasterioError

        from s2sr.errors import S2SRError

        try:
            return func(*args, **kwargs)
        except S2SRError as err:
            click.echo(f"s2sr: error: {err}", err=True)
            sys.exit(err.exit_code)
        except RasterioError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            click.echo(f"s2sr: error: raster I/O failed ({first}): check the files", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("s2sr: interrupted; nothing was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


