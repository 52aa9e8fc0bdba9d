"""The study's Table 1 experiments on stand-in data, in dependency order, then Table 2.

``s2sr table1 -o RUNS --epoch-scale 0.01`` builds the stand-in datasets (see
:mod:`s2sr.training.standins`) under ``RUNS/data``, trains the nine configurations of
``configs/table1`` into ``RUNS/<experiment>`` (1.1 before 1.2 and 1.3, ...), skipping
finished runs and resuming interrupted ones, then writes the Table 2 report with
``s2sr evaluate`` into ``RUNS/report``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from s2sr.errors import InputNotFoundError
from s2sr.training.config import load_config
from s2sr.training.standins import prepare
from s2sr.training.trainer import train

log = logging.getLogger(__name__)

#: Parents before children.
ORDER = ("1.1", "2.1", "3.1", "4.1", "1.2", "1.3", "1.4", "2.2", "3.2")
#: Test columns of Table 2: the degraded reference and the real (here simulated) pair.
TEST_KINDS = ("RE10>RE5", "SE10>RE5")


def default_configs() -> Path:
    """``configs/table1`` of the source tree (next to ``src/``)."""
    return Path(__file__).resolve().parents[3] / "configs" / "table1"


def run_table1(out: Path, *, shared: Path, configs: Path | None = None,
               epoch_scale: float = 1.0, only: list[str] | None = None,
               prepare_only: bool = False, progress: bool = False) -> Path | None:
    """Prepare data, train the experiments in order and write the report."""
    configs = configs or default_configs()
    if not configs.is_dir():
        raise InputNotFoundError(f"{configs} not found: pass --configs configs/table1")
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
    from s2sr.evaluation.report import evaluate_models

    return evaluate_models(
        dict(sorted(weights.items())), [data["re_wald"], data["se_re"]], out / "report",
        kinds=list(TEST_KINDS),
        split="test",
        note=("Stand-in data, not the study's: no RapidEye imagery exists here. RE10>RE5 is "
              "real WorldView-2 imagery degraded as if its pixels were 5 m; SE10>RE5 pairs "
              "are simulated from real Sentinel-2 crops (shifted, re-gained, re-blurred "
              "references). Epochs scaled by " f"{epoch_scale:g}."),
    )


def vgg_default(shared: Path) -> None:
    """Point the VGG16 feature loss at ../shared/weights when no other source is set."""
    local = shared.parent / "weights" / "vgg16_hed_features.pth"
    if local.exists():
        os.environ.setdefault("S2SR_VGG16_WEIGHTS", str(local))
