"""s2sr: super-resolution of Sentinel-2 10 m bands to 5 m and 2.5 m."""

from __future__ import annotations

from typing import Any

from s2sr.core.version import __version__

__all__ = ["__version__", "predict", "predict_many", "super_resolve", "super_resolve_xarray"]


def __getattr__(name: str) -> Any:
    # Lazy: importing s2sr (e.g. for the CLI's --help) should not import torch.
    if name in ("predict", "super_resolve"):
        from s2sr import inference

        return getattr(inference, name)
    if name in ("predict_many", "super_resolve_xarray"):
        from s2sr import batch

        return getattr(batch, name)
    raise AttributeError(f"module 's2sr' has no attribute {name!r}")
