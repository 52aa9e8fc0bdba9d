"""The cloud/shadow test finds the visible and NIR bands by name, whatever the band order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from s2sr.core.bands import DEFAULT_BANDS, nir_index, visible_indices
from s2sr.data import BuildOptions, DegradeOptions, PairStore, degrade_scene
from s2sr.data.masks import band_cloud_mask, brightness_mask
from s2sr.data.overlap import ScenePair
from s2sr.data.simulate import Perturbation, make_pair
from support.rasters import texture, write_geotiff

NIR_FIRST = ("B08", "B02", "B03", "B04")
#: Order of ``NIR_FIRST`` in terms of ``DEFAULT_BANDS`` positions.
PERM = [DEFAULT_BANDS.index(b) for b in NIR_FIRST]
#: A shadow the NIR gives away: dark NIR, visible mean just under the 0.04 threshold with a
#: red of 0.05. Read with the NIR at index 3 (the red here) it would not be a shadow.
SHADOW = np.array([0.03, 0.03, 0.05, 0.02], np.float32)  # B02, B03, B04, B08


def _with_shadow(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    refl = texture(shape, seed=11)
    refl[:, rows, cols] = SHADOW[:, None, None]
    return refl


def test_band_positions_by_name() -> None:
    assert nir_index(DEFAULT_BANDS) == 3 and visible_indices(DEFAULT_BANDS) == (0, 1, 2)
    assert nir_index(NIR_FIRST) == 0 and visible_indices(NIR_FIRST) == (1, 2, 3)
    assert nir_index(("blue", "green", "red", "nir")) == 3
    assert nir_index(("B02", "B03", "B04", "B8A")) == 3  # narrow NIR when B08 is absent
    assert nir_index(("B02", "B03", "B04")) is None


def test_mask_uses_the_nir_whatever_its_position() -> None:
    refl = _with_shadow((60, 60), slice(20, 40), slice(20, 40))
    standard = band_cloud_mask(refl, DEFAULT_BANDS)
    assert standard[20:40, 20:40].all() and standard.sum() == 400
    permuted = refl[PERM]
    np.testing.assert_array_equal(band_cloud_mask(permuted, NIR_FIRST), standard)
    # the old hard-coded index (visible 0-2, NIR 3) misses this shadow in NIR-first order
    assert not brightness_mask(permuted, nir=3)[20:40, 20:40].any()
    with pytest.raises(ValueError, match="3 band names for 4 bands"):
        band_cloud_mask(refl, DEFAULT_BANDS[:3])


def test_wald_cloud_stats_do_not_depend_on_band_order(tmp_path: Path) -> None:
    refl = _with_shadow((128, 128), slice(32, 64), slice(0, 64))
    path = write_geotiff(tmp_path / "s2.tif", np.rint(refl * 10000).astype(np.uint16))
    clouds = {}
    for order in (DEFAULT_BANDS, NIR_FIRST):
        ds = tmp_path / "-".join(order)
        degrade_scene(path, ds, DegradeOptions(patch=16, bands=order, cloud_buffer=0))
        rows = sorted(PairStore(ds).rows(), key=lambda r: (r["lr_row"], r["lr_col"]))
        clouds[order] = [(r["lr_row"], r["lr_col"], r["cloud"]) for r in rows]
    assert clouds[NIR_FIRST] == clouds[DEFAULT_BANDS]
    shadowed = {(r, c): v for r, c, v in clouds[DEFAULT_BANDS] if v > 0}
    # the shadow covers input rows 16-32, cols 0-32 (x2): patches (16, 0) and (16, 16), less
    # the rim that the blur mixes with its surroundings
    assert sorted(shadowed) == [(16, 0), (16, 16)]
    assert min(shadowed.values()) > 0.75


def test_pair_reads_cloud_mask_by_band_name(tmp_path: Path) -> None:
    truth = _with_shadow((160, 160), slice(40, 100), slice(40, 100))
    lr, hr = tmp_path / "s2.tif", tmp_path / "ref.tif"
    make_pair(truth, 2, Perturbation(noise=0.0), lr, hr)
    reads = {}
    for order in (DEFAULT_BANDS, NIR_FIRST):
        pair = ScenePair(lr, hr, BuildOptions(patch=32, bands=order))
        try:
            whole = Window(0, 0, pair.window.width, pair.window.height)
            refl, _, cloud = pair.read_lr(whole)
            reads[order] = (refl, pair.read_hr(whole)[0], cloud)
        finally:
            pair.close()
    # both sides come in the order asked for
    np.testing.assert_array_equal(reads[NIR_FIRST][0], reads[DEFAULT_BANDS][0][PERM])
    np.testing.assert_array_equal(reads[NIR_FIRST][1], reads[DEFAULT_BANDS][1][PERM])
    masks = {order: read[2] for order, read in reads.items()}
    np.testing.assert_array_equal(masks[NIR_FIRST], masks[DEFAULT_BANDS])
    # the shadow spans S2 pixels 20-50 of the scene; the overlap starts 1 px in
    core = masks[DEFAULT_BANDS][22:46, 22:46]
    assert core.all() and masks[DEFAULT_BANDS].mean() < 0.2
