"""PairStore.abandon: a build that adds nothing removes the dataset it created, and only that.

The builds themselves (``s2sr pairs build`` / ``degrade`` refusing a pair) are checked in
test_pairs.py and test_wald.py; here the store's own rules, including the lock file that
an abandoning build deletes while another process waits on it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from s2sr.core.files import temp_path
from s2sr.data.store import LOCK_NAME, PairStore


def _pair(store: PairStore, pid: str = "p") -> None:
    info = {"kind": "k", "site": "s", "split": "train", "scale": 2, "patch": 4,
            "bands": ["B02"], "lr_array": f"{pid}_lr.npy", "hr_array": f"{pid}_hr.npy",
            "shift_px": [0.0, 0.0], "time_gap_days": None}
    store.commit_pair(pid, info, [])


def test_abandon_removes_what_it_made_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "mine.txt").write_text("x")
    store = PairStore(tmp_path / "keep" / "a" / "b", create=True)
    assert store.created and (tmp_path / "keep" / "a" / "b" / "manifest.json").exists()
    assert store.abandon()
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["mine.txt"]
    assert not store.abandon()  # once only


def test_abandon_keeps_a_dataset_it_did_not_create(tmp_path: Path) -> None:
    PairStore(tmp_path / "ds", create=True)
    again = PairStore(tmp_path / "ds", create=True)
    assert not again.created and not again.abandon()
    assert (tmp_path / "ds" / "manifest.json").exists()


def test_abandon_keeps_a_dataset_another_build_uses(tmp_path: Path) -> None:
    store = PairStore(tmp_path / "ds", create=True)
    other = PairStore(tmp_path / "ds", create=True)
    _pair(other)  # another build added a pair meanwhile
    assert not store.abandon()
    assert list(PairStore(tmp_path / "ds").pairs) == ["p"]

    store = PairStore(tmp_path / "ds2", create=True)
    live = temp_path(tmp_path / "ds2" / "arrays" / "x_lr.npy")  # a live build's temporary
    live.write_bytes(b"")
    assert not store.abandon()
    assert live.exists() and (tmp_path / "ds2" / "manifest.json").exists()
    live.unlink()
    assert store.abandon() and not (tmp_path / "ds2").exists()


def test_waiter_on_an_abandoned_lock_file_locks_the_new_one(tmp_path: Path) -> None:
    """A process waiting for the lock while its holder deletes the lock file (abandon) must
    not run on the deleted file: it would hold a lock no one else sees."""
    store = PairStore(tmp_path / "ds", create=True)
    lock = tmp_path / "ds" / LOCK_NAME
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    seen: list[bool] = []

    def waiter() -> None:
        with store.locked():
            seen.append(lock.exists())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    assert not seen  # still waiting
    lock.unlink()  # what abandon does while it holds the lock
    os.close(fd)
    thread.join(10)
    assert seen == [True]


def test_build_after_abandon_recreates_the_dataset(tmp_path: Path) -> None:
    first = PairStore(tmp_path / "ds", create=True)
    second = PairStore(tmp_path / "ds", create=True)
    assert first.abandon() and not (tmp_path / "ds").exists()
    _pair(second)  # the other build commits into the folder its creator abandoned
    assert list(PairStore(tmp_path / "ds").pairs) == ["p"]
