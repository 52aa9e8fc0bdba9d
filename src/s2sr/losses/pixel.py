"""Pixel-space reconstruction loss (L1, MSE or Charbonnier) over all bands, NIR included."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2sr.core.errors import DataError, UsageError

KINDS = ("l1", "mse", "charbonnier")
REDUCTIONS = ("mean", "sum", "none")


class PixelLoss(nn.Module):
    """Weighted pixel loss between a prediction and its target.

    Args:
        loss_weight: factor applied to the reduced loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (element-wise, same shape as the input).
        kind: ``"l1"``, ``"mse"`` or ``"charbonnier"`` (``sqrt(d**2 + eps)``, a smooth L1).
        eps: the Charbonnier constant; unused by the other kinds.

    Raises:
        UsageError: unknown ``kind`` or ``reduction``.
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        reduction: str = "mean",
        kind: str = "l1",
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise UsageError(f"unknown pixel loss {kind!r}: use one of {', '.join(KINDS)}")
        if reduction not in REDUCTIONS:
            raise UsageError(f"unknown reduction {reduction!r}: use one of {', '.join(REDUCTIONS)}")
        self.loss_weight = float(loss_weight)
        self.reduction = reduction
        self.kind = kind
        self.eps = float(eps)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Compute the weighted loss.

        Args:
            pred: ``(B, C, H, W)`` prediction (any shape, as long as it equals the target's).
            target: ``(B, C, H, W)`` reference.

        Returns:
            A scalar (``"mean"``/``"sum"``) or a ``(B, C, H, W)`` tensor (``"none"``).

        Raises:
            DataError: the shapes differ.
        """
        if pred.shape != target.shape:
            raise DataError(
                f"prediction shape {tuple(pred.shape)} differs from target shape "
                f"{tuple(target.shape)}: crop or resample them to the same size"
            )
        diff = pred - target
        if self.kind == "l1":
            loss = diff.abs()
        elif self.kind == "mse":
            loss = diff * diff
        else:
            loss = torch.sqrt(diff * diff + self.eps)
        if self.reduction == "mean":
            loss = loss.mean()
        elif self.reduction == "sum":
            loss = loss.sum()
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        """One-line summary for ``repr``."""
        return f"kind={self.kind!r}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"
