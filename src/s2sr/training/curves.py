"""Training curves from ``metrics.csv`` (PNG)."""

from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from s2sr.core.files import atomic_path


def plot_curves(metrics: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Loss terms and validation PSNR (model vs bicubic) per epoch, stages shaded."""
    with open(metrics) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "", "nan") else float("nan")
                for r in rows]

    epochs = col("epoch")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in ("train_loss", "pixel", "feature", "style"):
        values = col(name)
        if any(v > 0 for v in values):
            ax1.plot(epochs, values, label=name, marker=".")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(epochs, col("val_psnr"), label="model", marker=".")
    ax2.plot(epochs, col("val_psnr_bicubic"), label="bicubic", linestyle="--")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation PSNR (dB, reflectance)")
    ax2.legend()
    stages = col("stage")
    for k in sorted(set(stages)):
        xs = [e for e, s in zip(epochs, stages, strict=True) if s == k]
        if k % 2:
            for ax in (ax1, ax2):
                ax.axvspan(min(xs) - 0.5, max(xs) + 0.5, color="0.92", zorder=0)
    fig.tight_layout()
    with atomic_path(out, os.path.splitext(out)[1]) as tmp:  # the suffix names the format
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
