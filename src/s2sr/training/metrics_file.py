"""``metrics.csv`` of a run: one row per epoch, rewritten atomically, truncated on resume to
the rows its checkpoint covers (a crash between a row and its checkpoint must not duplicate
the row)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from s2sr.core.files import atomic_path

log = logging.getLogger(__name__)

METRIC_FIELDS = ["stage", "epoch", "stage_epoch", "lr", "train_loss", "pixel", "feature",
                 "style", "val_psnr", "val_ssim", "val_psnr_bicubic", "val_ssim_bicubic",
                 "val_gain_min", "seconds", "data_seconds", "patches_per_s"]


class MetricsFile:
    """The metrics file of a run folder and the number of rows it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def rewrite(self, rows: list[list[str]]) -> None:
        """Write the header and ``rows`` (atomically)."""
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(METRIC_FIELDS)
            writer.writerows(rows)
        self.rows = len(rows)

    def truncate(self, rows: int) -> None:
        """Keep the first ``rows`` complete rows (those the checkpoint covers)."""
        kept: list[list[str]] = []
        if self.path.is_file():
            with open(self.path, newline="", errors="replace") as handle:
                lines = list(csv.reader(handle))
            kept = [r for r in lines[1:] if len(r) == len(METRIC_FIELDS)][:rows]
        if len(kept) < rows:
            log.warning("metrics.csv has %d complete rows, the checkpoint covers %d: the "
                        "missing epochs' rows are lost", len(kept), rows)
        self.rewrite(kept)

    def append(self, row: dict[str, Any]) -> None:
        """Add an epoch's row (floats with 6 significant digits)."""
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.rows += 1
