"""File safety: every file s2sr writes appears complete under its final name, or not at all.

The mechanics every writer uses (the output *policy*, what may be written where, is
:mod:`s2sr.io.outputs`):

* :func:`temp_path`: a hidden temporary name beside the final one, unique per call (process
  id and a random token); :func:`temporary`: one the block fills, removed if it fails;
* :func:`atomic_path` / :func:`write_atomic` / :func:`atomic_folder`: a file or folder
  written through a temporary and renamed into place once complete; the temporary never
  outlives a failure (a full disk, an exception, Ctrl-C);
* :func:`publish` (never replacing a file unless asked), :func:`replace_all` (several
  finished temporaries; those not renamed are removed);
* :func:`sweep_stale_temps` / :func:`sweep_stale_locks`: what killed processes left;
* :func:`exclusive_output`: a lock file beside an output, so two concurrent runs writing
  the same output cannot both succeed;
* :func:`make_parents` / :func:`remove_made`: missing output folders made, and taken away
  again on failure; :func:`normal_permissions`: the umask's permissions on what s2sr wrote;
* :func:`is_disk_full` / :func:`disk_full_error`: a full disk recognised and reported once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from s2sr.core.errors import DiskFullError, OutputBusyError, OutputExistsError

#: Marker in every temporary name s2sr makes: ``.{name}.s2sr-{pid}-{token}.tmp{suffix}``.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.s2sr-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\.tmp")
_LOCK_SUFFIX = ".s2sr.lock"


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


def remove_quietly(path: str | os.PathLike[str]) -> None:
    """Remove a temporary file or folder if it exists; never raises (a clean-up path)."""
    p = Path(path)
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def temporary(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary beside ``path`` for the block to fill; removed if the block fails.

    On success it is left for the caller to rename (:func:`replace_all`, or its own rule).
    """
    tmp = temp_path(path, suffix)
    try:
        yield tmp
    except BaseException:
        remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Write ``path`` through a temporary: the block writes the yielded path, which is
    renamed to ``path`` when the block ends; on any failure (of the block or the rename)
    the temporary is removed and ``path`` is left as it was."""
    with temporary(path, suffix) as tmp:
        yield tmp
        os.replace(tmp, path)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write a small file (UTF-8 text, or bytes) by temporary and rename."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a folder under a temporary name and rename it to ``path`` when the block ends.

    An existing folder at ``path`` is replaced: it is renamed aside, the new one renamed in,
    then the old one removed; if the second rename fails the old folder is put back. On any
    failure the temporary folder is removed and ``path`` is left as it was.
    """
    final = Path(path)
    with temporary(final) as tmp:
        tmp.mkdir()
        yield tmp
        old = None
        if final.is_dir():
            old = temp_path(final)
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None:
                os.replace(old, final)
            raise
    if old is not None:
        remove_quietly(old)


def publish(tmp: Path, final: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``final``; without ``overwrite`` never replace a file
    (create-if-absent by a hard link: two runs cannot both write one output).

    Raises:
        OutputExistsError: without ``overwrite``, ``final`` appeared meanwhile (``tmp`` is
            left for the caller to remove).
    """
    if overwrite:
        os.replace(tmp, final)
        return
    taken = OutputExistsError(f"output {final} was created by another run while this one "
                              "worked: pass --overwrite to replace it")
    try:  # create-if-absent: fails when the name appeared meanwhile
        os.link(tmp, final)
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links: check, then rename
        if final.exists():
            raise taken from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def replace_all(staged: Iterable[tuple[Path, Path]]) -> None:
    """Rename finished temporaries ``(temporary, final)`` to their final names (a rename
    needs no space); on a failure the temporaries not yet renamed are removed."""
    pairs = list(staged)
    try:
        for tmp, final in pairs:
            os.replace(tmp, final)
    finally:
        for tmp, _ in pairs:
            remove_quietly(tmp)


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
        remove_quietly(entry)
        if not (entry.exists() or entry.is_symlink()):
            removed.append(entry)
    return removed


_LOCAL_LOCK = threading.Lock()
_HELD: set[str] = set()


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file :func:`exclusive_output` holds while ``path`` is written."""
    p = Path(path)
    return p.with_name(f".{p.name}{_LOCK_SUFFIX}")


def _busy(path: Path, who: str) -> OutputBusyError:
    return OutputBusyError(f"output {path} is being written by another s2sr {who}: wait for "
                           "it, or choose another output name")


def _lock(lock: Path, path: Path) -> int:
    """An open descriptor holding the lock file ``lock`` (the one at that path now)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _busy(path, "run") from None
            raise
        # the lock file may have been removed (by its holder, or as stale) between the
        # open and the lock: then this lock guards nothing; take the new file's
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def exclusive_output(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an advisory lock on ``path`` for the time of a write.

    A second run (in this or another process) asking for the same output while the first
    still writes gets :class:`OutputBusyError` instead of racing it.
    """
    p = Path(path)
    lock = lock_path(p)
    with _LOCAL_LOCK:
        key = str(p.resolve())
        if key in _HELD:
            raise _busy(p, "call")
        _HELD.add(key)
    fd = -1
    try:
        fd = _lock(lock, p)
        yield
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
        with _LOCAL_LOCK:
            _HELD.discard(key)


def sweep_stale_locks(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the lock files in ``folder`` that no process holds (their writer was killed).

    A lock is removed only while this call holds it, and :func:`exclusive_output` checks
    after locking that its file is still the one at the path, so a writer never loses a
    lock to this sweep.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = [e for e in Path(folder).iterdir()
                   if e.name.startswith(".") and e.name.endswith(_LOCK_SUFFIX)]
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
                                                    e.name.endswith(_LOCK_SUFFIX)))
    except OSError:
        return []


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


def make_parents(path: str | os.PathLike[str]) -> list[Path]:
    """Make the missing folders above the output file ``path``.

    Returns:
        The folders made, outermost first: :func:`remove_made` takes them away again if
        the write fails, so that a failed command leaves nothing.
    """
    missing: list[Path] = []
    folder = Path(path).parent
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for f in reversed(missing):
            f.mkdir()
            made.append(f)
    except BaseException:
        remove_made(made)
        raise
    return made


def remove_made(folders: Iterable[Path]) -> None:
    """Remove folders :func:`make_parents` made, innermost first, if they are empty."""
    for f in reversed(list(folders)):
        with contextlib.suppress(OSError):
            f.rmdir()


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _LOCAL_LOCK:  # read by setting it: the stricter 0o077 for that instant
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def normal_permissions(path: str | os.PathLike[str]) -> None:
    """Give a file s2sr wrote the permissions of any new file here (0o666 less the umask).

    Some writers (safetensors) create their files 0o600, readable by their owner alone; a
    weights file, like every other output, is meant to be shared as the umask allows.
    """
    os.chmod(path, 0o666 & ~_umask())
