"""The study's Table 2 report of the Table 1 runs (``s2sr table1``, see
:mod:`s2sr.training.table1`) on their stand-in data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from s2sr.evaluation.report import evaluate_models

#: Test columns of Table 2: the degraded reference and the real (here simulated) pair.
TEST_KINDS = ("RE10>RE5", "SE10>RE5")


def table2_report(weights: Mapping[str, Path], datasets: Sequence[Path], out: Path, *,
                  epoch_scale: float) -> Path:
    """Write the Table 2 report of trained Table 1 experiments into ``out`` (rebuilt from
    the runs on every call); returns its ``report.md``.

    Args:
        weights: experiment name -> its ``model.safetensors``.
        datasets: the stand-in test datasets (``RUNS/data/re_wald``, ``RUNS/data/se_re``).
        out: the report folder.
        epoch_scale: what the runs' epochs were scaled by (said in the report's note).
    """
    return evaluate_models(
        dict(weights), list(datasets), out,
        kinds=list(TEST_KINDS),
        split="test",
        overwrite=True,  # the report is rebuilt from the runs on every call
        note=("Stand-in data, not the study's: no RapidEye imagery exists here. RE10>RE5 is "
              "real WorldView-2 imagery degraded as if its pixels were 5 m; SE10>RE5 pairs "
              "are simulated from real Sentinel-2 crops (shifted, re-gained, re-blurred "
              "references). Epochs scaled by " f"{epoch_scale:g}."),
    )
