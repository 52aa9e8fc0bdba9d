"""Any opened model as a PyTorch module, for code that calls models directly.

Evaluation runs a model on patches by calling it (``model(x)``) and reads its spec with
:func:`~s2sr.models.get_spec`. A weights file or a TorchScript export opens as a PyTorch
model already (:func:`~s2sr.models.open.open_model`); an ONNX export becomes an
:class:`OnnxModule`, which runs it on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import torch
from torch import nn

from s2sr.inference.backends import OnnxRuntimeBackend, default_threads
from s2sr.models.exported import OnnxModel
from s2sr.models.open import OpenModel


class OnnxModule(nn.Module):
    """An exported ONNX model (``(B, C, h, w)`` -> ``(B, C, h*s, w*s)`` reflectance) run
    by ONNX Runtime on the CPU, called as a PyTorch module.

    Attributes:
        spec: the model's spec (as :func:`~s2sr.models.get_spec` reads it).
        onnx: the checked export (what :func:`~s2sr.inference.plan.make_backend` runs on
            ONNX Runtime directly).
    """

    def __init__(self, model: OnnxModel, threads: int | None = None) -> None:
        super().__init__()
        self.spec = model.spec
        self.onnx = model
        self._session = OnnxRuntimeBackend(model.data, len(model.spec.bands), model.spec.scale,
                                           threads or default_threads())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output, on ``x``'s device."""
        return self._session(x.detach().float().cpu().contiguous()).to(x.device)


def as_module(model: OpenModel, threads: int | None = None) -> nn.Module:
    """The PyTorch model of a weights file or TorchScript export; an :class:`OnnxModule`
    for an ONNX export (``threads``: its intra-op threads, default one per core)."""
    network = model.network
    return network if isinstance(network, nn.Module) else OnnxModule(network, threads)
