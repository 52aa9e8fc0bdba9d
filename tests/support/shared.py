"""Paths to the real data in ``../shared`` and the marker that skips a test without it."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared`` beside the checkout: the real imagery and weights (CI has it, a plain
#: clone does not).
SHARED_ROOT = Path(__file__).resolve().parents[3] / "shared"
SHARED = SHARED_ROOT / "data"
SENTINEL2 = SHARED / "sentinel2"


def needs_shared(path: Path, what: str = "the real imagery") -> pytest.MarkDecorator:
    """Skip unless ``path`` (under ``../shared``) exists, with a reason that says the truth.

    Args:
        path: the file or folder the test reads.
        what: what it is, in a few words.
    """
    shown = f"../shared/{path.relative_to(SHARED_ROOT).as_posix()}"
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"needs {shown} ({what}; CI has ../shared, a plain clone does not)",
    )


requires_shared = needs_shared(SENTINEL2, "the real Sentinel-2 imagery")
