"""The run folder of a training run (:mod:`s2sr.training.trainer`): its missing parents
made, checked and started (``config.yaml``, ``metrics.csv``), and undone when the run fails
or is stopped before its first checkpoint."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import yaml

from s2sr.core.errors import OutputExistsError, UsageError
from s2sr.core.files import sweep_stale_temps
from s2sr.io.outputs import check_output_dir
from s2sr.training.metrics_file import MetricsFile
from s2sr.training.schema import TrainConfig

log = logging.getLogger(__name__)

#: Files a run writes before its first checkpoint; a folder holding only these (and
#: stale temporaries) is what a run killed before its first checkpoint leaves.
EARLY_FILES = frozenset({"config.yaml", "metrics.csv", "best.safetensors"})


def make_parents(run_dir: Path) -> list[Path]:
    """Create the run folder's missing parents; returns them (deepest last)."""
    missing: list[Path] = []
    parent = run_dir.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    missing.reverse()
    for folder in missing:
        folder.mkdir()
    return missing


def leftovers_only(run_dir: Path) -> bool:
    """Whether the run folder holds only what a run stopped before its first checkpoint
    leaves (config.yaml, metrics.csv, best.safetensors)."""
    names = {p.name for p in run_dir.iterdir()}
    return bool(names) and names <= EARLY_FILES


def prepare_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, metrics: MetricsFile,
                    created: list[Path]) -> None:
    """Check the run folder and start it; appends what it creates to ``created``."""
    check_output_dir(run_dir, overwrite=True,
                     inputs=[*cfg.data.datasets, cfg.init_from])
    if run_dir.is_dir():
        for stale in sweep_stale_temps(run_dir):
            log.warning("removed %s, left by an earlier run that was killed", stale.name)
    ckpt = run_dir / "checkpoint.pt"
    if resume and ckpt.is_file():
        return
    if run_dir.is_dir() and leftovers_only(run_dir):
        log.warning("run folder %s holds only files of a run stopped before its first "
                    "checkpoint: starting it again", run_dir)
        for name in EARLY_FILES:
            (run_dir / name).unlink(missing_ok=True)
    elif resume:
        raise UsageError(f"--resume given but {ckpt} does not exist: start without "
                         "--resume")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise OutputExistsError(f"run folder {run_dir} is not empty: choose a new "
                                "one or pass --resume")
    if not run_dir.exists():
        created.append(run_dir)
        run_dir.mkdir()
    config = run_dir / "config.yaml"
    created.append(config)
    config.write_text(yaml.safe_dump(cfg.as_dict(), sort_keys=False))
    created.append(run_dir / "metrics.csv")
    metrics.rewrite([])
    created.append(run_dir / "best.safetensors")


def undo(created: list[Path]) -> None:
    """Remove what a run that failed before its first checkpoint created."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                for stale in sweep_stale_temps(path):
                    log.debug("removed %s", stale)
                for entry in path.iterdir():  # this process's own temporaries
                    if entry.name.startswith(".") and f".s2sr-{os.getpid()}-" in \
                            entry.name:
                        entry.unlink()
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
