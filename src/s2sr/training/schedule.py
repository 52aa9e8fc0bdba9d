"""Learning-rate schedule: one one-cycle (Smith 2018) per stage."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import OneCycleLR

#: How far the one-cycle lowers the momentum (Adam's beta1) at the top of the learning rate.
MOMENTUM_DIP = 0.10


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int,
              pct_start: float = 0.3, momentum: float = 0.95) -> OneCycleLR:
    """Warm up from ``max_lr / 25`` to ``max_lr`` over ``pct_start`` of the steps, then
    anneal (cosine) to ``max_lr / 25e4``; momentum (Adam's beta1, ``optimizer.betas[0]``)
    cycles ``momentum -> momentum - 0.1 -> momentum`` (0.95 -> 0.85 -> 0.95 by default, as
    in fastai's ``fit_one_cycle`` that the study used)."""
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 2),
                      pct_start=pct_start, div_factor=25.0, final_div_factor=1e4,
                      base_momentum=momentum - MOMENTUM_DIP, max_momentum=momentum,
                      anneal_strategy="cos")
