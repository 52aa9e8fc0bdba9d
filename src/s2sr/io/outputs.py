"""One policy for everything s2sr writes: refusal rules, temporary names, clean-up on signals.

Every command that writes (predict, evaluate, train, demo, pairs, export...) uses these:

* :func:`check_output_file` / :func:`check_output_dir`: an existing output is refused
  without ``overwrite``; a file where a folder is wanted (and the reverse), a missing
  parent folder, or an output that is one of the inputs are refused with or without it.
* :func:`temp_path`: a hidden temporary name beside the final one, unique per call (process
  id *and* a random token), so two writers in one process never share it; the final name
  appears only by ``os.replace`` once complete.
* :func:`sweep_stale_temps`: removes the temporaries of processes that no longer run
  (left by ``kill -9`` or a power cut), so they never pile up.
* :func:`exclusive_output`: an advisory lock file next to an output, so two concurrent runs
  writing the same output (without ``--overwrite``) cannot both succeed.
* :func:`sweep_stale_locks`: removes lock files nobody holds (their writer was killed).
* :func:`write_atomic`: a small file (a report, a record) written by temporary and
  rename, the temporary removed on every failure (a full disk leaves nothing).
* :func:`terminate_raises`: turns SIGTERM (``timeout``, job schedulers) into the same
  clean-up path as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

from s2sr.core.errors import (
    DiskFullError,
    OutputBusyError,
    OutputExistsError,
    UsageError,
)
from s2sr.io.output_paths import check_creatable

#: Marker in every temporary name s2sr makes: ``.{name}.s2sr-{pid}-{token}.tmp{suffix}``.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.s2sr-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.tmp")






def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_not_input(path: Path, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output that is one of ``inputs`` or lies inside an input folder.

    Raises:
        UsageError: naming the input.
    """
    for source in inputs:
        if source is None:
            continue
        src = Path(source)
        if _same_file(path, src):
            raise UsageError(
                f"output {path} is the input {src}: writing it would destroy the input; "
                "choose another output name"
            )
        # an output written inside an input folder (per-band folder, SAFE product)
        with contextlib.suppress(OSError):
            if src.is_dir() and path.resolve().is_relative_to(src.resolve()):
                raise UsageError(
                    f"output {path} lies inside the input folder {src}: choose an output "
                    "outside it"
                )


def check_utf8_name(path: Path) -> Path:
    """``path``, refused when its name holds bytes that are not UTF-8 (GDAL and the JSON
    records need UTF-8 names)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"output name {path} is not valid UTF-8: choose a UTF-8 name") from None
    return path


def check_output_file(
    path: str | os.PathLike[str], overwrite: bool,
    inputs: Iterable[str | os.PathLike[str] | None] = (), *, create_parent: bool = False,
) -> Path:
    """Refuse an output *file* that cannot or may not be written.

    Args:
        path: the file to write.
        overwrite: allow replacing an existing file.
        inputs: the command's inputs; the output may be none of them (or inside one).
        create_parent: a missing parent folder is made when the file is written
            (:func:`s2sr.io.output_paths.make_parents`; checked here that it can be);
            otherwise it is refused.

    Returns:
        ``path`` as a :class:`Path`.
    """
    p = check_utf8_name(Path(path))
    if p.is_dir():
        raise UsageError(f"output {p} is a folder: give a file name such as out.tif")
    check_not_input(p, inputs)
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(f"output {p} exists: pass --overwrite to replace it")
    parent = p.parent
    if not parent.exists() and create_parent:
        check_creatable(parent)
        return p
    if not parent.exists():
        raise UsageError(f"output folder {parent} does not exist: create it first")
    if not parent.is_dir():
        raise UsageError(f"output folder {parent} is a file, not a folder: choose another "
                         "output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {parent} is not writable: choose another output path")
    return p


def check_output_dir(
    path: str | os.PathLike[str], overwrite: bool,
    inputs: Iterable[str | os.PathLike[str] | None] = (), *, allow_existing_empty: bool = True,
) -> Path:
    """Refuse an output *folder* (a report, a run) that cannot or may not be written.

    A non-empty existing folder needs ``overwrite``; an existing file of that name is
    refused either way. The parent folder is created by the caller when the work begins.

    Returns:
        ``path`` as a :class:`Path`.
    """
    p = check_utf8_name(Path(path))
    if p.exists() and not p.is_dir():
        raise UsageError(f"output {p} is a file, not a folder: give a folder name, or "
                         "remove the file")
    check_not_input(p, inputs)
    if p.is_dir() and not overwrite and (not allow_existing_empty or any(p.iterdir())):
        raise OutputExistsError(f"output folder {p} exists and is not empty: pass --overwrite "
                                "to replace what it holds, or choose a new folder")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"output folder {parent} is a file, not a folder: choose another "
                         "output path")
    return p


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of s2sr's temporaries (:func:`temp_path`)."""
    return bool(_TEMP_RE.match(name))


def temp_path(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """A hidden temporary name beside ``path``, unique to this call.

    Args:
        path: the final path.
        suffix: appended after ``.tmp`` (e.g. ``".tif"`` so GDAL picks the driver).
    """
    p = Path(path)
    return p.with_name(f".{p.name}.s2sr-{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Delete s2sr temporaries in ``folder`` whose process is gone.

    Args:
        folder: where to look (not recursive).
        name: only temporaries of this final file name; ``None`` for all.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        if int(match["pid"]) == os.getpid() or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                import shutil

                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


@contextlib.contextmanager
def exclusive_output(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an advisory lock on ``path`` for the time of a write.

    A second run (in this or another process) asking for the same output while the first
    still writes gets :class:`OutputBusyError` instead of racing it.
    """
    import fcntl

    p = Path(path)
    lock = lock_path(p)
    with _LOCAL_LOCK:
        key = str(p.resolve())
        if key in _HELD:
            raise OutputBusyError(f"output {p} is being written by another s2sr call: wait "
                                  "for it, or choose another output name")
        _HELD.add(key)
    fd = -1
    try:
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise OutputBusyError(f"output {p} is being written by another s2sr run: "
                                          "wait for it, or choose another output name"
                                          ) from None
                raise
            # the lock file may have been removed (by its holder, or as stale) between the
            # open and the lock: then this lock guards nothing; take the new file's
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = -1
        yield
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
        with _LOCAL_LOCK:
            _HELD.discard(key)


_LOCAL_LOCK = threading.Lock()
_HELD: set[str] = set()


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file :func:`exclusive_output` holds while ``path`` is written."""
    p = Path(path)
    return p.with_name(f".{p.name}.s2sr.lock")


def sweep_stale_locks(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the lock files in ``folder`` that no process holds (their writer was killed).

    A lock is removed only while this call holds it, and :func:`exclusive_output` checks
    after locking that its file is still the one at the path, so a writer never loses a
    lock to this sweep.

    Returns:
        The paths removed.
    """
    import fcntl

    removed: list[Path] = []
    try:
        entries = [e for e in Path(folder).iterdir()
                   if e.name.startswith(".") and e.name.endswith(".s2sr.lock")]
    except OSError:
        return removed
    for entry in entries:
        if entry.is_symlink() or not entry.is_file():
            continue
        try:
            fd = os.open(entry, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(entry)):
                os.unlink(entry)
                removed.append(entry)
        except OSError:
            pass  # held by a live writer, or gone already
        finally:
            os.close(fd)
    return removed


def leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """s2sr temporaries and lock files in ``folder`` (what an interrupted write can leave)."""
    try:
        return sorted(e for e in Path(folder).iterdir()
                      if _TEMP_RE.match(e.name) or (e.name.startswith(".") and
                                                    e.name.endswith(".s2sr.lock")))
    except OSError:
        return []


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write a small file by temporary and rename; the temporary never outlives a failure
    (a full disk, an interruption)."""
    p = Path(path)
    tmp = temp_path(p)
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def is_disk_full(err: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``err`` (an ``OSError`` or a GDAL/rasterio error) means no space is left.

    GDAL often reports a full disk as a generic "write failed" whose cause is an earlier
    error, so the exception's chain is searched, and, given ``folder``, a write error with
    (almost) no free space left on that folder's file system counts as well.
    """
    seen: set[int] = set()
    item: BaseException | None = err
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(item).lower()
        if any(key in text for key in ("no space left", "disk full", "quota exceeded",
                                       "free disk space available is")):
            return True
        item = item.__cause__ or item.__context__
    if folder is not None:
        try:
            st = os.statvfs(folder)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < (1 << 20)
    return False


def disk_full_error(path: str | os.PathLike[str]) -> DiskFullError:
    """The one message for a full disk while writing ``path``."""
    folder = Path(path).parent
    return DiskFullError(f"the disk holding {folder} is full while writing {Path(path).name}: "
                         "free some space or write to another disk; nothing was left behind")


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives inside :func:`terminate_raises`."""


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``).

    So ``timeout`` or a job scheduler stopping s2sr runs the same clean-up as Ctrl-C:
    temporaries removed, checkpoints saved. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
