"""Image-quality metrics (PSNR, SSIM, spectral angle) with explicit, stated conventions."""

from s2sr.evaluation.metrics import (
    SSIM_K1,
    SSIM_K2,
    Conventions,
    crop_border,
    evaluate_pair,
    psnr,
    psnr_bands,
    spectral_angle,
    ssim,
    ssim_bands,
)

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "Conventions",
    "crop_border",
    "evaluate_pair",
    "psnr",
    "psnr_bands",
    "spectral_angle",
    "ssim",
    "ssim_bands",
]
