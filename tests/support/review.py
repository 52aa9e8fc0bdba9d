"""Datasets built for the review tests through the real degrade path, and their manifest
read without s2sr (the fixtures are in tests/review/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.data import DegradeOptions, degrade_scene
from support.rasters import texture, write_geotiff


def manifest_rows(dataset: Path) -> list[dict[str, Any]]:
    """The patch rows of ``manifest.json``, read without s2sr."""
    return json.loads((dataset / "manifest.json").read_text())["patches"]


def degrade_into(root: Path, dataset: Path, k: int, site: str, split: str) -> None:
    """Add the Wald pairs of synthetic scene ``k`` to ``dataset`` (the real build path)."""
    dn = np.rint(texture((96, 96), seed=40 + k) * 10000).astype(np.uint16)
    scene = write_geotiff(root / f"scene{k}.tif", dn)
    degrade_scene(scene, dataset, DegradeOptions(patch=12, split=split, site=site))


def rebuild(dataset: Path) -> None:
    """Build the ``built`` fixture's pair of site north again from its scene (the same
    pair id: its rows and arrays are replaced)."""
    pairs = json.loads((dataset / "manifest.json").read_text())["pairs"]
    scene = next(info["lr_scene"] for info in pairs.values() if info["site"] == "north")
    degrade_scene(Path(scene), dataset, DegradeOptions(patch=12, split="train", site="north"))
