"""Signals: SIGTERM and Ctrl-C (SIGINT) end s2sr by one clean path.

``timeout``, a job scheduler or Ctrl-C stopping a command run the same clean-up: every
writer removes its temporaries on the way out (:mod:`s2sr.core.files`), checkpoints are
saved, and the command exits 143 (SIGTERM) or 130 (Ctrl-C) with one line saying so.

* :func:`terminate_raises`: within the block, SIGTERM raises :class:`Terminated`, a
  ``KeyboardInterrupt``, so it unwinds like Ctrl-C;
* :func:`on_stop_signals`: a handler of its own for both (training stops after the
  current batch); :func:`stop_exception` is what such a stop raises in the end;
* :func:`exit_code` / :func:`stop_name`: how the command line reports an interruption.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

#: The signals that stop a command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call ``handler(signum, frame)``; the previous
    handlers come back when it ends (main thread only, as Python's signals)."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    try:
        for s in previous:
            signal.signal(s, handler)
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def stop_exception(signum: int) -> KeyboardInterrupt:
    """What a stop by ``signum`` raises: :class:`Terminated` for SIGTERM, else Ctrl-C's."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def stop_name(err: BaseException) -> str:
    """``"SIGTERM"`` or ``"Ctrl-C"``: what stopped the command, for its message."""
    return "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"


def exit_code(err: BaseException) -> int:
    """The exit status of a command stopped by ``err``: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(err, Terminated) else 130
