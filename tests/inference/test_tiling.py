"""Tile layout and blending weights (pure functions)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from s2sr.core.errors import UsageError
from s2sr.inference.tiling import TileLayout, blend, raised_cosine, tile_weights


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "scale"),
    [(100, 70, 64, 32, 2), (64, 64, 64, 32, 2), (300, 17, 96, 16, 4), (5, 3, 64, 32, 2),
     (129, 257, 64, 0, 2), (70, 70, 48, 32, 2)],
)
def test_weights_are_a_partition_of_unity(height: int, width: int, tile: int, overlap: int,
                                          scale: int) -> None:
    lay = TileLayout.from_tile(height, width, tile, overlap, scale)
    total = np.zeros((height * scale, width * scale), np.float64)
    for i, j in itertools.product(range(lay.rows), range(lay.cols)):
        r0, r1, c0, c1 = lay.extent(i, j)
        w = tile_weights(lay, i, j)
        assert w.shape == ((r1 - r0) * scale, (c1 - c0) * scale)
        assert (w >= 0).all() and (w <= 1).all()
        total[r0 * scale:r1 * scale, c0 * scale:c1 * scale] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_raised_cosine_is_smooth_and_complementary() -> None:
    r = raised_cosine(32)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-6)
    assert (np.diff(r) > 0).all()
    assert r[0] < 0.01 and r[-1] > 0.99


def test_tile_fits_layout() -> None:
    lay = TileLayout.from_tile(1000, 1000, 544, 32, 2)
    assert (lay.stride, lay.ramp, lay.halo, lay.tile) == (512, 16, 8, 544)
    assert lay.rows == 2 and lay.origin(1, 1) == (504, 504)


def test_bad_tile_overlap_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="too small"):
        TileLayout.from_tile(100, 100, 40, 32, 2)
    for overlap in (31, 2, 6, 30, -4):
        with pytest.raises(UsageError, match="multiple of 4"):
            TileLayout.from_tile(100, 100, 64, overlap, 2)


@pytest.mark.parametrize("overlap", [0, 4, 8, 12, 32, 36])
def test_tile_size_is_what_was_asked_and_overlap_gives_context(overlap: int) -> None:
    lay = TileLayout.from_tile(500, 500, 96, overlap, 2)
    assert lay.tile == 96
    assert lay.ramp + 2 * lay.halo == overlap
    assert lay.halo > 0 or overlap == 0


def test_blending_is_independent_of_tile_order() -> None:
    lay = TileLayout.from_tile(150, 130, 64, 32, 2)
    rng = np.random.default_rng(0)
    preds = {(i, j): rng.normal(size=(3, lay.tile * 2, lay.tile * 2)).astype(np.float32)
             for i in range(lay.rows) for j in range(lay.cols)}
    reference = blend(lay, preds)
    keys = list(preds)
    for seed in range(3):
        random.Random(seed).shuffle(keys)
        np.testing.assert_allclose(blend(lay, preds, order=keys), reference, atol=1e-5)


def test_blend_of_identical_constant_tiles_is_that_constant() -> None:
    lay = TileLayout.from_tile(90, 110, 48, 16, 4)
    preds = {(i, j): np.full((2, lay.tile * 4, lay.tile * 4), 7.0, np.float32)
             for i in range(lay.rows) for j in range(lay.cols)}
    np.testing.assert_allclose(blend(lay, preds), 7.0, atol=1e-5)
