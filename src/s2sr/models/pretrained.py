"""The models shipped inside the package (``s2sr/weights/*.safetensors``).

Four EDSR models for Sentinel-2, trained with ``make models`` (see MODEL_CARD.md):

==================  =====================  =====
file                bands                  scale
==================  =====================  =====
s2sr_x2             B02, B03, B04, B08     2
s2sr_x4             B02, B03, B04, B08     4
s2sr_rgb_x2         B02, B03, B04          2
s2sr_rgb_x4         B02, B03, B04          4
==================  =====================  =====
"""

from __future__ import annotations

from pathlib import Path

from s2sr.core.constants import SCALES
from s2sr.core.errors import UsageError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def pretrained_path(scale: int = 2, rgb: bool = False) -> Path:
    """Path of the shipped model for ``scale`` (2 or 4), 4-band or RGB-only."""
    if scale not in SCALES:
        raise UsageError(f"shipped models exist for scale 2 and 4, not {scale}")
    path = WEIGHTS_DIR / f"s2sr_{'rgb_' if rgb else ''}x{scale}.safetensors"
    if not path.exists():
        raise UsageError(f"the shipped model {path.name} is missing from this installation: "
                         "reinstall s2sr or pass --weights")
    return path


def list_pretrained() -> list[str]:
    """Names of the shipped models present in this installation."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("s2sr_*.safetensors"))
