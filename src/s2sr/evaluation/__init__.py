"""Evaluation of models and outputs: the reports of ``s2sr evaluate`` (:mod:`.report`,
:mod:`.panel_report`), their scoring, figures, artefact scores and opensr-test metrics.

The image-quality metrics (PSNR, SSIM, spectral angle, :class:`Conventions`) are
:mod:`s2sr.losses.metrics`, shared with training's validation.
"""
