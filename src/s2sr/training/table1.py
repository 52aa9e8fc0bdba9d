"""The study's Table 1 experiments on stand-in data, in dependency order, then Table 2.

``s2sr table1 -o RUNS --epoch-scale 0.01`` builds the stand-in datasets (see
:mod:`s2sr.training.standins`) under ``RUNS/data``, trains the nine configurations of
``configs/table1`` into ``RUNS/<experiment>`` (1.1 before 1.2 and 1.3, ...), skipping
finished runs and resuming interrupted ones. The Table 2 report of the runs is
:func:`s2sr.evaluation.table2.table2_report` (``s2sr table1`` writes it into
``RUNS/report``): training does not import evaluation, its sibling.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from s2sr.core.checks import check_epoch_scale
from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.io.outputs import check_output_dir
from s2sr.training.config import load_config
from s2sr.training.standins import prepare
from s2sr.training.trainer import train

log = logging.getLogger(__name__)

#: Parents before children.
ORDER = ("1.1", "2.1", "3.1", "4.1", "1.2", "1.3", "1.4", "2.2", "3.2")


@dataclass(frozen=True)
class Table1Runs:
    """What :func:`run_table1` made: each experiment's ``model.safetensors`` by name, the
    stand-in test datasets (the degraded reference, then the simulated pairs) and the
    epoch scale they were trained with."""

    weights: dict[str, Path]
    datasets: list[Path]
    epoch_scale: float


def default_configs() -> Path:
    """The nine Table 1 configs shipped inside the package (``s2sr/configs/table1``; the
    source tree's ``configs/table1`` links there)."""
    return Path(str(resources.files("s2sr").joinpath("configs", "table1")))


def check_only(only: list[str] | None) -> list[str] | None:
    """Refuse unknown or empty experiment ids (``--only``)."""
    if only is None:
        return None
    names = [name.strip() for name in only]
    unknown = [name for name in names if name not in ORDER]
    if unknown or not names:
        raise UsageError(f"--only: unknown experiment {', '.join(map(repr, unknown or ['']))}: "
                         f"the known ones are {', '.join(sorted(ORDER))}")
    return names


def check_configs(configs: Path, names: list[str] | None = None) -> Path:
    """Refuse a ``--configs`` folder that is missing, a file, or lacks an experiment."""
    if not configs.exists():
        raise InputNotFoundError(f"configs folder {configs} does not exist: pass --configs "
                                 "with the folder of the Table 1 YAML files (1.1.yaml ...), "
                                 "or leave it out to use the shipped ones")
    if not configs.is_dir():
        raise UsageError(f"--configs {configs} is a file, not a folder: pass the folder "
                         "holding 1.1.yaml ... 4.1.yaml")
    missing = [n for n in (names or ORDER) if not (configs / f"{n}.yaml").is_file()]
    if missing:
        raise InputNotFoundError(f"configs folder {configs} lacks "
                                 f"{', '.join(m + '.yaml' for m in missing)}: pass the folder "
                                 "of the Table 1 configs, or leave --configs out")
    return configs


def run_table1(out: Path, *, shared: Path, configs: Path | None = None,
               epoch_scale: float = 1.0, only: list[str] | None = None,
               prepare_only: bool = False, progress: bool = False) -> Table1Runs | None:
    """Prepare data and train the experiments in order (None with ``prepare_only``)."""
    only = check_only(only)
    check_epoch_scale(epoch_scale)
    check_output_dir(out, overwrite=True, inputs=[shared])
    configs = check_configs(configs or default_configs(), only)
    # every config is read and checked before hours of data preparation and training
    for name in only or ORDER:
        load_config(configs / f"{name}.yaml", data_root=out / "data", runs_root=out)
    data = prepare(out / "data", shared)
    if prepare_only:
        return None
    weights = {}
    for name in ORDER:
        if only and name not in only:
            continue
        run_dir = out / name
        final = run_dir / "model.safetensors"
        if not final.exists():
            cfg = load_config(configs / f"{name}.yaml", data_root=out / "data", runs_root=out)
            resume = (run_dir / "checkpoint.pt").exists()
            log.warning("training %s%s", name, " (resuming)" if resume else "")
            train(cfg, run_dir, resume=resume, epoch_scale=epoch_scale, progress=progress)
        weights[name] = final
    return Table1Runs(dict(sorted(weights.items())), [data["re_wald"], data["se_re"]],
                      epoch_scale)

def vgg_default(shared: Path) -> None:
    """Point the VGG16 feature loss at ../shared/weights when no other source is set."""
    local = shared.parent / "weights" / "vgg16_hed_features.pth"
    if local.exists():
        os.environ.setdefault("S2SR_VGG16_WEIGHTS", str(local))
