"""Datasets and a running review server for the review tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from s2sr.review.server import ReviewServer
from support.generated import generate_dataset
from support.review import degrade_into


@pytest.fixture(scope="session")
def _generated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review_gen") / "ds"
    generate_dataset(root, 600, patch=8, pairs=6, seed=1)
    return root


@pytest.fixture
def generated(_generated_template: Path, tmp_path: Path) -> Path:
    """A generated dataset of 600 patches in 6 pairs (5 sites, 3 splits), fresh per test."""
    root = tmp_path / "ds"
    shutil.copytree(_generated_template, root)
    return root


@pytest.fixture(scope="session")
def _built_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review_built")
    degrade_into(root, root / "ds", 0, "north", "train")
    degrade_into(root, root / "ds", 1, "south", "val")
    return root


@pytest.fixture
def built(_built_template: Path, tmp_path: Path) -> Path:
    """A dataset made by ``s2sr pairs degrade`` from two scenes (sites north/train and
    south/val, 16 patches each; scenes beside it), fresh per test."""
    shutil.copytree(_built_template, tmp_path / "b")
    return tmp_path / "b" / "ds"


@pytest.fixture
def server(generated: Path) -> Iterator[ReviewServer]:
    """A review server on a real socket over the generated dataset."""
    with ReviewServer(generated) as srv:
        yield srv
