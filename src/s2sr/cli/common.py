"""Shared pieces of the command line: error handling and logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from s2sr.core.errors import S2SRError, command_line_words
from s2sr.core.files import is_disk_full
from s2sr.core.safe_text import printable
from s2sr.core.signals import exit_code, stop_name, terminate_raises

F = TypeVar("F", bound=Callable[..., Any])


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"s2sr: {record.levelname.lower()}: {printable(record.getMessage())}"


def setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("s2sr")
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if quiet else logging.WARNING)
    root.propagate = False
    # rasterio logs GDAL's raw messages (e.g. "_tiffWriteProc: No space left on device")
    # that Python would print as stray lines; s2sr turns every failure into one line.
    gdal = logging.getLogger("rasterio")
    gdal.handlers[:] = [logging.NullHandler()]
    gdal.propagate = False


def handle_errors(func: F) -> F:
    """Turn s2sr and raster errors into a one-line message and the right exit code.

    SIGTERM (``timeout``, job schedulers) is turned into the same clean-up path as Ctrl-C
    while the command runs: temporaries are removed, exit code 143 (130 for Ctrl-C).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # here, not at the top: rasterio (and s2sr.io, whose package imports it) would
        # slow down ``s2sr --help``
        from rasterio._err import CPLE_BaseError
        from rasterio.errors import RasterioError

        try:
            with terminate_raises(), command_line_words():
                return func(*args, **kwargs)
        except S2SRError as err:
            with command_line_words():  # the fix in the command line's words
                click.echo(f"s2sr: error: {err}", err=True)
            sys.exit(err.exit_code)
        except (RasterioError, CPLE_BaseError, OSError) as err:
            if isinstance(err, OSError) and not is_disk_full(err):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if isinstance(err, OSError) and err.strerror:
                first = err.strerror
            if is_disk_full(err):
                click.echo(f"s2sr: error: the disk is full ({first}): free some space or "
                           "write to another disk", err=True)
            else:
                click.echo(f"s2sr: error: raster I/O failed ({first}): check the files",
                           err=True)
            sys.exit(1)
        except MemoryError:
            click.echo("s2sr: error: out of memory: use a smaller --tile / --batch-size or a "
                       "machine with more memory", err=True)
            sys.exit(1)
        except KeyboardInterrupt as err:
            what = stop_name(err)
            left = getattr(err, "leftovers", None)  # what a clean-up could not remove
            if left:
                names = ", ".join(str(p) for p in left[:3]) + (" ..." if len(left) > 3 else "")
                click.echo(f"s2sr: stopped by {what}; {len(left)} temporary file(s) could not "
                           f"be removed ({names}): delete them, or run again to sweep them",
                           err=True)
            else:
                click.echo(f"s2sr: stopped by {what}; no partial output was left", err=True)
            sys.exit(exit_code(err))

    return wrapper  # type: ignore[return-value]
