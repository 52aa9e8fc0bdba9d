"""s2sr.core.files and s2sr.core.signals: every write through a temporary that never outlives
a failure, and the writers that used to leave theirs behind.

Each failure here is a real one (a rename onto a folder, a profile rasterio refuses, a
header numpy refuses, a temporary folder gone, a lock held by another process, a real
SIGTERM), and each test of a writer failed before it used :mod:`s2sr.core.files`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from affine import Affine
from rasterio.crs import CRS

from s2sr.core.errors import OutputBusyError, OutputExistsError
from s2sr.core.files import (
    atomic_folder,
    atomic_path,
    exclusive_output,
    leftovers,
    lock_path,
    publish,
    replace_all,
    temporary,
    write_atomic,
)
from s2sr.core.signals import (
    Terminated,
    exit_code,
    on_stop_signals,
    stop_exception,
    stop_name,
    terminate_raises,
)
from s2sr.data.arrays import NpyWriter
from s2sr.evaluation.writer import staged_report
from s2sr.io.base import GeoMeta
from s2sr.io.writer import RasterWriter


def _blocked(path: Path) -> Path:
    """A non-empty folder at ``path``: renaming a file onto it fails."""
    (path / "keep").mkdir(parents=True)
    return path


# -- the helpers -----------------------------------------------------------------------

def test_atomic_path_writes_whole_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "a.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:  # the writer fails mid-way
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert out.read_text() == "old" and leftovers(tmp_path) == []
    with atomic_path(out, ".tif") as tmp:
        assert tmp.name.endswith(".tif") and tmp.parent == tmp_path
        tmp.write_text("new")
    assert out.read_text() == "new" and leftovers(tmp_path) == []


@pytest.mark.parametrize("data", ["text é", b"\x00bytes"])
def test_write_atomic_leaves_nothing_when_the_rename_fails(tmp_path: Path,
                                                          data: str | bytes) -> None:
    target = _blocked(tmp_path / "x")
    with pytest.raises(OSError):
        write_atomic(target, data)
    assert leftovers(tmp_path) == [] and target.is_dir()
    write_atomic(tmp_path / "y", data)
    got = (tmp_path / "y").read_bytes()
    assert got == (data.encode() if isinstance(data, str) else data)


def test_temporary_is_kept_on_success_and_replace_all_cleans_up(tmp_path: Path) -> None:
    with temporary(tmp_path / "a") as a:
        a.write_text("a")
    with temporary(tmp_path / "b") as b:
        b.write_text("b")
    assert a.exists() and b.exists() and len(leftovers(tmp_path)) == 2
    with pytest.raises(OSError):  # the first renames, the second is refused
        replace_all([(a, tmp_path / "a"), (b, _blocked(tmp_path / "b"))])
    assert (tmp_path / "a").read_text() == "a" and leftovers(tmp_path) == []


def test_publish_never_replaces_without_overwrite(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with temporary(final) as tmp:
        tmp.write_text("first")
    publish(tmp, final, overwrite=False)
    assert final.read_text() == "first" and leftovers(tmp_path) == []
    with temporary(final) as tmp:
        tmp.write_text("second")
    with pytest.raises(OutputExistsError, match="was created by another run"):
        publish(tmp, final, overwrite=False)
    publish(tmp, final, overwrite=True)
    assert final.read_text() == "second" and leftovers(tmp_path) == []


def test_atomic_folder_replaces_an_old_folder_or_keeps_it(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with atomic_folder(out) as tmp:
        (tmp / "a").write_text("1")
    with atomic_folder(out) as tmp:
        (tmp / "a").write_text("2")
    assert (out / "a").read_text() == "2" and leftovers(tmp_path) == []
    # the new folder vanishes before its rename: the old one must come back
    with pytest.raises(FileNotFoundError), atomic_folder(out) as tmp:
        shutil.rmtree(tmp)
    assert (out / "a").read_text() == "2" and leftovers(tmp_path) == []


_HOLD = """
import sys, time
from s2sr.core.files import exclusive_output
with exclusive_output(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_busy_output_keeps_its_holders_lock(tmp_path: Path) -> None:
    """The refused writer used to delete the lock file of the one that holds it, so a
    third writer got a fresh lock and wrote the same output at the same time."""
    out = tmp_path / "out.tif"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(OutputBusyError, match="being written by another s2sr run"), \
                exclusive_output(out):
            pass
        assert lock_path(out).exists()  # still the holder's
        with pytest.raises(OutputBusyError), exclusive_output(out):
            pass
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0 and leftovers(tmp_path) == []
    with exclusive_output(out):  # free again
        assert lock_path(out).exists()


# -- the writers that left their temporary behind ----------------------------------------

def _meta(bands: int, gains: int) -> GeoMeta:
    return GeoMeta(crs=CRS.from_epsg(32633), transform=Affine(10, 0, 500000, 0, -10, 4e6),
                   width=32, height=32, dtype="uint16", nodata=0,
                   bands=tuple(f"B0{i + 2}" for i in range(bands)),
                   gains=(1e-4,) * gains, offsets=(0.0,) * gains, source="test")


def test_raster_writer_refused_by_rasterio_leaves_nothing(tmp_path: Path) -> None:
    """rasterio (not GDAL) refuses one scale per band short: the writer must still remove
    its temporary GeoTIFF (it kept it, open, before)."""
    out = tmp_path / "out.tif"
    with pytest.raises(ValueError, match="One scale for each band"):
        RasterWriter(out, _meta(bands=4, gains=3), write_scales=True)
    assert leftovers(tmp_path) == [] and not out.exists()


def test_npy_writer_refused_header_leaves_nothing(tmp_path: Path) -> None:
    """numpy refuses a header over 64 KiB after the temporary was opened: it stayed."""
    with pytest.raises(ValueError, match=r"[Hh]eader"):
        NpyWriter(tmp_path / "x_lr.npy", (1,) * 30000)
    assert leftovers(tmp_path) == []


def test_report_folder_kept_when_the_new_one_cannot_be_renamed(tmp_path: Path) -> None:
    """The old report was moved aside before the new one's rename: when that rename
    failed, the report was gone and its copy left under a hidden temporary name."""
    out = tmp_path / "report"
    with staged_report(out, overwrite=False) as tmp:
        (tmp / "report.md").write_text("first")
    with pytest.raises(FileNotFoundError), staged_report(out, overwrite=True) as tmp:
        shutil.rmtree(tmp)
    assert (out / "report.md").read_text() == "first"
    assert leftovers(tmp_path) == []


# -- signals ---------------------------------------------------------------------------

def test_sigterm_unwinds_like_ctrl_c_inside_terminate_raises(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "a.txt"
    with pytest.raises(Terminated) as caught, terminate_raises(), atomic_path(out) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as kill returns
        tmp.write_text("never")
    assert isinstance(caught.value, KeyboardInterrupt)
    assert not out.exists() and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before
    assert (stop_name(caught.value), exit_code(caught.value)) == ("SIGTERM", 143)
    assert (stop_name(KeyboardInterrupt()), exit_code(KeyboardInterrupt())) == ("Ctrl-C", 130)


def test_on_stop_signals_calls_its_handler_then_restores() -> None:
    seen: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with on_stop_signals(lambda signum, _frame: seen.append(signum)):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before
    assert isinstance(stop_exception(signal.SIGTERM), Terminated)
    assert type(stop_exception(signal.SIGINT)) is KeyboardInterrupt
