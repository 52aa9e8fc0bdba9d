"""Losses for super-resolution training: pixel, VGG16 perceptual/style, and their sum.

Only the RGB bands reach the VGG16 terms; NIR and other bands are only in the pixel loss
(see :mod:`s2sr.losses.perceptual`; the VGG16 trunk and its weights: :mod:`s2sr.losses.vgg`).
The image-quality metrics that training and evaluation score with (PSNR, SSIM) are
:mod:`s2sr.losses.metrics`.
"""

from __future__ import annotations

from s2sr.losses.combined import SRLoss
from s2sr.losses.perceptual import PerceptualLoss
from s2sr.losses.pixel import PixelLoss
from s2sr.losses.vgg import VGG16_URL, VGG16Features, load_vgg16_state, reflectance_to_vgg

__all__ = [
    "VGG16_URL",
    "PerceptualLoss",
    "PixelLoss",
    "SRLoss",
    "VGG16Features",
    "load_vgg16_state",
    "reflectance_to_vgg",
]
