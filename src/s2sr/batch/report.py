"""The outcome of a run of many scenes: per-scene results, the summary a person reads, the
JSON run report (written under the output policy) and the workers a cluster lost."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from s2sr.batch.record import record_path
from s2sr.core.errors import UsageError
from s2sr.core.files import write_atomic
from s2sr.core.version import __version__
from s2sr.io.outputs import check_not_input, check_output_file

log = logging.getLogger(__name__)

#: Default name of the run report inside the output folder.
REPORT_NAME: Final[str] = "s2sr_run.json"

@dataclass
class SceneResult:
    """What became of one scene.

    Attributes:
        input: the scene as the user gave it. output: the output path.
        status: ``done``, ``skipped`` (complete from an earlier run) or ``failed``.
        reason: why it was skipped or failed (one line); for ``done``, why it was redone.
        seconds: time spent on it. megapixels: input pixels (width x height / 1e6).
        worker: the process that did it.
    """

    input: str
    output: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    megapixels: float = 0.0
    worker: str = ""


@dataclass
class RunReport:
    """The outcome of :func:`predict_many` (also written as JSON)."""

    scenes: list[SceneResult] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0
    scheduler: str = ""
    dashboard: str = ""
    report: str = ""
    lost_workers: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Scenes with ``status``."""
        return sum(1 for s in self.scenes if s.status == status)

    @property
    def failed(self) -> list[SceneResult]:
        """The scenes that failed."""
        return [s for s in self.scenes if s.status == "failed"]

    @property
    def megapixels_per_second(self) -> float:
        """Input megapixels of the scenes done, per second of the run's wall time."""
        done = sum(s.megapixels for s in self.scenes if s.status == "done")
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON run report."""
        return {
            "format": "s2sr-run-report", "s2sr_version": __version__,
            "scenes_total": len(self.scenes), "done": self.count("done"),
            "skipped": self.count("skipped"), "failed": self.count("failed"),
            "seconds": round(self.seconds, 3),
            "megapixels_per_second": round(self.megapixels_per_second, 4),
            "workers": self.workers, "scheduler": self.scheduler, "dashboard": self.dashboard,
            "lost_workers": self.lost_workers,
            "scenes": [asdict(s) for s in self.scenes],
        }

    def summary(self) -> str:
        """Lines for a person: counts, throughput, each failure with its reason."""
        done = sum(s.megapixels for s in self.scenes if s.status == "done")
        rate = f"{done:.3g} input megapixels done, {self.megapixels_per_second:.3g} per " \
            "second" if done > 0 else "no scene computed"
        lines = [f"{len(self.scenes)} scene(s): {self.count('done')} done, "
                 f"{self.count('skipped')} skipped (complete), {self.count('failed')} failed "
                 f"in {self.seconds:.1f} s ({rate})"]
        for lost in self.lost_workers:
            scenes = ", ".join(lost.get("scenes", [])) or "no scene"
            lines.append(f"  worker {lost.get('worker', '?')} was lost (killed, or out of "
                         f"memory) while holding {scenes}: the scheduler gave them to another "
                         "worker (a scene that keeps losing its worker fails)")
        lines += [f"  failed: {s.input}: {s.reason}" for s in self.failed]
        if self.report:
            lines.append(f"run report: {self.report}")
        return "\n".join(lines)


def check_report(path: Path, overwrite: bool, sources: Sequence[str], outputs: Sequence[Path],
                 *, default: bool) -> None:
    """Refuse a run report path the output policy forbids, before any work.

    The report is a ``.json`` file; never an input, an output or a completion record of the
    run; an existing file is replaced only with ``overwrite`` or when it is an earlier s2sr
    run report (a re-run updates it, as it redoes its own outputs).

    Raises:
        UsageError, OutputExistsError: naming the fix.
    """
    if path.suffix.lower() != ".json":
        raise UsageError(f"--report {path} must be a .json file: e.g. --report run.json")
    for target in outputs:
        for own in (target, record_path(target)):
            if path.absolute() == own.absolute():
                raise UsageError(f"--report {path} is the output {own} of this run: choose "
                                 "another report name")
    if default and not path.parent.exists():  # in the output folder, made next
        check_not_input(path, sources)
    else:
        check_output_file(path, overwrite or _is_report(path), sources)


def _is_report(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > (64 << 20):
            return False
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == "s2sr-run-report"


def write_report(path: Path, report: RunReport) -> None:
    try:
        write_atomic(path, json.dumps(report.to_dict(), indent=1))
    except OSError as err:
        log.warning("could not write the run report %s (%s)", path, err.strerror)
        report.report = ""


def lost_workers(client: Any, since: float, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The workers the scheduler lost unexpectedly since ``since`` (a time.time()), with
    the scenes they were running (from the scheduler's event log).

    Args:
        client: the ``distributed.Client``. since: when the run began.
        labels: task key prefix -> the scene it computes.
    """
    try:
        events = client.get_events("all")
    except Exception:  # an old or remote scheduler without the event log
        log.debug("no Dask event log:\n%s", traceback.format_exc())
        return []
    lost = []
    for stamp, msg in events:
        if stamp < since or not isinstance(msg, dict) or msg.get("action") != "remove-worker" \
                or msg.get("expected"):
            continue
        keys = [str(k) for k in msg.get("processing-tasks", ())]
        scenes = sorted({label for k in keys for prefix, label in labels.items()
                         if k.startswith(prefix)})
        lost.append({"worker": str(msg.get("worker", "?")), "scenes": scenes})
    return lost
