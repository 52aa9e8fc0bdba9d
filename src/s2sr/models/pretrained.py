"""The models shipped inside the package (``s2sr/weights/*.safetensors``).

Four EDSR models for Sentinel-2 and a guided model of the 20 m bands (issue 22), trained
with ``make models`` (see MODEL_CARD.md):

==================  ===================================  =====  ==========================
file                bands                                scale  guide
==================  ===================================  =====  ==========================
s2sr_x2             B02, B03, B04, B08                   2
s2sr_x4             B02, B03, B04, B08                   4
s2sr_rgb_x2         B02, B03, B04                        2
s2sr_rgb_x4         B02, B03, B04                        4
s2sr_20m_x2         B05, B06, B07, B8A, B11, B12 (20 m)  2      B02 B03 B04 B08 at 10 m
==================  ===================================  =====  ==========================

The guided model (:mod:`s2sr.models.guided`) takes the 20 m bands at 20 m and the 10 m
bands at 10 m and returns the 20 m bands at 10 m; the 5 m product runs it twice (the
cascade, :mod:`s2sr.inference.multires_engine`): no x4 20 m model ships.
"""

from __future__ import annotations

from pathlib import Path

from s2sr.core.constants import SCALES
from s2sr.core.errors import UsageError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def _shipped(stem: str, scale: int, what: str, fix: str) -> Path:
    """The weights file ``stem.safetensors`` of a shipped model, or a UsageError."""
    if scale not in SCALES:
        raise UsageError(f"shipped {what}models exist for scale 2 and 4, not {scale}")
    path = WEIGHTS_DIR / f"{stem}.safetensors"
    if not path.exists():
        raise UsageError(f"the shipped model {path.name} is missing from this installation: "
                         f"reinstall s2sr or pass {fix}")
    return path


def pretrained_path(scale: int = 2, rgb: bool = False) -> Path:
    """Path of the shipped model for ``scale`` (2 or 4), 4-band or RGB-only."""
    return _shipped(f"s2sr_{'rgb_' if rgb else ''}x{scale}", scale, "", "--weights")


def list_pretrained() -> list[str]:
    """Names of the shipped models present in this installation."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("s2sr_*.safetensors"))


def pretrained_20m_path(scale: int = 2) -> Path:
    """Path of the shipped guided model of the 20 m bands, ``s2sr_20m_x2`` (``scale`` 2:
    to 10 m; the 5 m product runs it twice, so no x4 one ships)."""
    if scale != 2:
        raise UsageError(f"no shipped x{scale} 20 m model: the 5 m product runs s2sr_20m_x2 "
                         "twice (--resolution 5); pass a x4 guided model's file yourself")
    return _shipped("s2sr_20m_x2", scale, "20 m ", "the 20 m model's weights file")
