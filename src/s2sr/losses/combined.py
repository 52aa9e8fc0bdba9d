"""Training loss of the super-resolution models: pixel loss plus optional VGG16 terms."""

from __future__ import annotations

from torch import Tensor, nn

from s2sr.losses.perceptual import PerceptualLoss
from s2sr.losses.pixel import PixelLoss


class SRLoss(nn.Module):
    """``total = pixel_weight * pixel + feature + style``.

    The pixel term covers every band (NIR included); the feature and style terms come from
    ``perceptual`` (RGB bands only, already weighted by its layer and style weights).

    Args:
        pixel_weight: factor on the pixel loss.
        pixel_kind: ``"l1"``, ``"mse"`` or ``"charbonnier"`` (see :class:`PixelLoss`).
        perceptual: the VGG16 terms, or ``None`` for a pixel-only loss.

    Raises:
        UsageError: unknown ``pixel_kind``.
    """

    def __init__(
        self,
        pixel_weight: float = 1.0,
        pixel_kind: str = "l1",
        perceptual: PerceptualLoss | None = None,
    ) -> None:
        super().__init__()
        self.pixel_weight = float(pixel_weight)
        self.pixel = PixelLoss(loss_weight=1.0, reduction="mean", kind=pixel_kind)
        self.perceptual = perceptual

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the total loss and its terms.

        Args:
            pred: ``(B, C, H, W)`` predicted reflectance.
            target: ``(B, C, H, W)`` reference reflectance.

        Returns:
            ``(total, terms)``: ``total`` is the scalar to backpropagate; ``terms`` maps
            ``"pixel"`` (unweighted pixel loss), ``"feature"`` and ``"style"`` (as added to the
            total; zero without ``perceptual``) to detached scalar tensors for logging.
        """
        pixel = self.pixel(pred, target)
        if self.perceptual is not None:
            feature, style = self.perceptual(pred, target)
        else:
            feature, style = pred.new_zeros(()), pred.new_zeros(())
        total = self.pixel_weight * pixel + feature + style
        terms = {"pixel": pixel.detach(), "feature": feature.detach(), "style": style.detach()}
        return total, terms

    def extra_repr(self) -> str:
        """One-line summary for ``repr``."""
        return f"pixel_weight={self.pixel_weight}"
