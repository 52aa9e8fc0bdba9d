"""Error classes of s2sr.

Every error a user can cause derives from :class:`S2SRError`; each subclass also inherits
the closest standard exception so callers can catch either. ``exit_code`` is what the
command line returns: 2 for usage errors (bad arguments, missing paths, refused
overwrite) and 1 for data errors (the files exist but cannot be used).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from s2sr.core.safe_text import printable


class S2SRError(Exception):
    """Root of all s2sr errors. Messages name the problem and the fix in one line.

    The text is made safe to echo (:func:`s2sr.core.safe_text.printable`): a hostile file name
    or tag quoted in it cannot send terminal escapes or forge a second line.
    """

    exit_code: int = 1

    def __str__(self) -> str:
        return printable(super().__str__())


class UsageError(S2SRError, ValueError):
    """An argument or option is invalid."""

    exit_code = 2


class InputNotFoundError(S2SRError, FileNotFoundError):
    """A named input path does not exist."""

    exit_code = 2


#: Set to "1" while a command of the command line runs (:func:`command_line_words`; the
#: worker processes it starts inherit it): messages then name its options (``--overwrite``)
#: rather than the Python API's arguments (``overwrite=True``).
COMMAND_LINE_ENV = "S2SR_COMMAND_LINE"


@contextlib.contextmanager
def command_line_words() -> Iterator[None]:
    """Within the block, errors name the fix in the command line's words."""
    before = os.environ.get(COMMAND_LINE_ENV)
    os.environ[COMMAND_LINE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(COMMAND_LINE_ENV, None)
        else:
            os.environ[COMMAND_LINE_ENV] = before


class OutputExistsError(S2SRError, FileExistsError):
    """The output exists and ``overwrite`` was not given.

    Messages are written with the command line's ``--overwrite``; from the Python API the
    text says ``overwrite=True`` instead, the argument to pass (see
    :data:`COMMAND_LINE_ENV`).
    """

    exit_code = 2

    def __str__(self) -> str:
        text = super().__str__()
        if os.environ.get(COMMAND_LINE_ENV) == "1":
            return text.replace("overwrite=True", "--overwrite")
        return text.replace("--overwrite", "overwrite=True")


class RasterReadError(S2SRError, OSError):
    """A raster could not be opened or read (unreadable, corrupt or truncated)."""


class BandError(S2SRError, ValueError):
    """Bands are missing, unnamed, or do not match what the model expects."""


class DataError(S2SRError, ValueError):
    """Pixel data cannot be used: unsupported dtype, NaN/inf, nothing valid."""


class UnsafeArchiveError(S2SRError, ValueError):
    """An archive holds entries that would escape its folder."""


class WeightsError(S2SRError, ValueError):
    """A weights file is corrupt, incomplete or not an s2sr weights file."""


class CheckpointError(S2SRError, ValueError):
    """A training checkpoint is truncated, corrupt, hostile or from another experiment."""


class TrainingDivergedError(S2SRError, FloatingPointError):
    """Training produced a NaN or infinite loss or weights (learning rate, precision...)."""


class GridMismatchError(BandError):
    """A band exists but lies on another grid (size, transform or CRS) than the others."""


class UnsafeInputError(S2SRError, ValueError):
    """An input file is not what its name says, or would make GDAL read other files or the
    network (e.g. a VRT disguised as a ``.jp2`` band)."""


class OutputBusyError(S2SRError, FileExistsError):
    """Another s2sr run is writing the same output right now."""

    exit_code = 2


class DiskFullError(S2SRError, OSError):
    """The disk (or quota) ran out while writing an output."""


class SpecError(UsageError):
    """A model option, band list or scale is out of bounds.

    ``key`` names the offending field (``"n_feats"``, ``"bands"``, ``"scale"``...) and
    ``detail`` says what is allowed and what was given, so that callers can phrase the
    message for their context (a config option or a weights file header key).
    """

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        what = "model" if key in ("name", "bands", "scale") else "model option"
        super().__init__(f"{what} {key} {detail}")


class StacError(DataError):
    """A STAC document s2sr cannot or will not use."""


def report_error(err: S2SRError) -> int:
    """Print ``err`` as one line on stderr, in the command line's words (a module's
    ``main``: ``--overwrite``, not ``overwrite=True``); its exit code (2 for usage errors,
    a refused overwrite among them, else 1)."""
    with command_line_words():
        print(f"error: {err}", file=sys.stderr)
    return err.exit_code
