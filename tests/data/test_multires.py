"""Native 10 m + 20 m scenes, their grid offsets and the Wald degradation (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2sr.core.errors import DataError, UsageError
from s2sr.data.degrade import block_mean, degrade
from s2sr.data.multires import (
    BANDS_20M,
    GUIDE_BANDS,
    NativeScene,
    centred_offset,
    footprint_mean,
    make_scene,
    native_scenes,
    wald,
)
from s2sr.data.places import TEST_PLACES
from support.rasters import texture, write_geotiff
from support.shared import SENTINEL2, SHARED, requires_shared


def _fine(h5: int, w5: int, seed: int = 0) -> np.ndarray:
    """A 5 m landscape ``(1, h5, w5)``: both grids are block means of it."""
    return texture((h5, w5), bands=1, seed=seed)


def _synthetic(dy5: int, dx5: int, h: int = 48, w: int = 40, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """DN of a 10 m guide and a 20 m stack of one landscape, the 20 m grid starting
    ``(dy5, dx5)`` half 10 m pixels after the 10 m grid. Every band holds the same landscape
    of uniform 10 m pixels (the footprint model), so the guide's footprint mean must
    reproduce the 20 m bands exactly."""
    ten = _fine(2 * h + 4, 2 * w + 4, seed)[0]
    fine = np.repeat(np.repeat(ten, 2, axis=0), 2, axis=1)  # each 10 m pixel is uniform
    hr = ten[:2 * h, :2 * w]
    lr = block_mean(fine[None, dy5:dy5 + 4 * h, dx5:dx5 + 4 * w], 4)[0]
    return (np.repeat(hr[None] * 10000, 4, axis=0).astype(np.uint16),
            np.repeat(lr[None] * 10000, 6, axis=0).astype(np.uint16))


@pytest.mark.parametrize(("dy5", "dx5", "offset"), [
    (0, 0, (0.0, 0.0)), (1, 0, (0.5, 0.0)), (0, 1, (0.0, 0.5)), (1, 1, (0.5, 0.5))])
def test_offset_measured_and_the_guide_footprint_is_exact(tmp_path: Path, dy5: int, dx5: int,
                                                          offset: tuple[float, float]) -> None:
    hr, lr = _synthetic(dy5, dx5)
    scene = make_scene("synthetic", "synthetic", hr, lr, tmp_path)
    assert scene is not None and scene.offset == offset
    assert np.allclose(scene.measured, offset, atol=0.15)
    assert scene.hr10.shape[1:] == (2 * scene.lr20.shape[1], 2 * scene.lr20.shape[2])
    guide20 = footprint_mean(scene.hr10, 2, scene.offset)
    h, w = guide20.shape[1:]
    # exact up to the uint16 rounding of both grids' DN
    assert np.abs(guide20[0] - scene.lr20[0, :h, :w]).max() < 1.5e-4
    # the half-pixel offset matters: ignoring it is far worse
    if offset != (0.0, 0.0):
        plain = block_mean(scene.hr10, 2)[0, :h, :w]
        assert np.abs(plain - scene.lr20[0, :h, :w]).max() > 10 * 1.5e-4


def test_a_negative_half_pixel_offset_is_cropped_to_a_positive_one(tmp_path: Path) -> None:
    """The 20 m grid starting half a 10 m pixel *before* the 10 m grid: first rows dropped."""
    hr, lr = _synthetic(1, 1)
    scene = make_scene("neg", "neg", hr[:, 1:, 1:], lr, tmp_path)  # 10 m grid now starts later
    assert scene is not None and scene.offset == (0.5, 0.5)
    assert np.allclose(scene.measured, (-0.5, -0.5), atol=0.15)
    guide20 = footprint_mean(scene.hr10, 2, scene.offset)
    h, w = guide20.shape[1:]
    assert np.abs(guide20[0] - scene.lr20[0, :h, :w]).max() < 1.5e-4


def test_an_offset_off_the_half_pixel_lattice_leaves_the_scene_out(tmp_path: Path) -> None:
    """20 m grid a quarter of a 10 m pixel off: the grids do not nest, the scene is left out."""
    ten = _fine(2 * 48 + 4, 2 * 40 + 4)[0]
    quarter = np.repeat(np.repeat(ten, 4, axis=0), 4, axis=1)  # 2.5 m, uniform 10 m pixels
    hr_dn = np.repeat(ten[None, :96, :80] * 1e4, 4, axis=0).astype(np.uint16)
    for start, kept in ((1, False), (2, True)):  # 0.25 (off) and 0.5 (on) 10 m px
        lr = block_mean(quarter[None, start:start + 384, :320], 8)[0]
        lr_dn = np.repeat(lr[None] * 1e4, 6, axis=0).astype(np.uint16)
        assert (make_scene("s", "s", hr_dn, lr_dn, tmp_path) is not None) == kept


def test_centred_crops_must_agree_with_the_measurement(tmp_path: Path) -> None:
    assert centred_offset(798, 399) == 0.0
    assert centred_offset(799, 399) == 0.5 and centred_offset(799, 400) == -0.5
    hr, lr = _synthetic(1, 0, h=48, w=40)  # measured (0.5, 0)
    # an odd 10 m side, the 20 m side rounded down: +0.5, as measured
    assert make_scene("c", "c", hr[:, :95], lr[:, :47], tmp_path, centred=True) is not None
    # the crop sizes say -0.5 or 0: ambiguous, left out
    assert make_scene("c", "c", hr[:, :95], lr, tmp_path, centred=True) is None
    assert make_scene("c", "c", hr, lr, tmp_path, centred=True) is None


def _scene(offset: tuple[float, float] = (0.0, 0.0), h: int = 40, w: int = 36) -> NativeScene:
    rng = np.random.default_rng(0)
    hr = texture((2 * h, 2 * w), 4)
    lr = rng.uniform(0.05, 0.4, (6, h, w)).astype(np.float32)
    return NativeScene("s", "s", hr, lr, offset, np.ones((2 * h, 2 * w), bool),
                       np.ones((h, w), bool), None)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("mtf", [None, 0.3])
@pytest.mark.parametrize("offset", [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)])
def test_wald_shapes_and_truth(factor: int, mtf: float | None,
                               offset: tuple[float, float]) -> None:
    scene = _scene(offset)
    lr, guide, truth = wald(scene, factor, mtf)
    n, m = lr.shape[1:]
    assert lr.shape[0] == 6 and guide.shape == (4, 2 * n, 2 * m)
    assert truth.shape == (6, n * factor, m * factor)
    # the truth is the real 20 m bands, never resampled
    assert np.array_equal(truth, scene.lr20[:, :n * factor, :m * factor])
    want = (block_mean(truth, factor) if mtf is None
            else degrade(scene.lr20, factor, mtf)[:, :n, :m])
    assert np.allclose(lr, want, atol=1e-6)
    if offset == (0.0, 0.0):  # the guide is the plain degradation of the 10 m bands
        plain = (block_mean(scene.hr10, factor) if mtf is None
                 else degrade(scene.hr10, factor, mtf))
        assert np.allclose(guide, plain[:, :2 * n, :2 * m], atol=1e-6)


def test_wald_and_footprints_refuse_bad_arguments() -> None:
    with pytest.raises(UsageError, match="Wald factor must be 2 or 4"):
        wald(_scene(), 3, None)
    with pytest.raises(UsageError, match=r"footprint offset must be 0 or 0\.5"):
        footprint_mean(np.zeros((1, 8, 8), np.float32), 2, (0.25, 0.0))


def _write_city(root: Path, city: str, dy5: int, seed: int) -> None:
    folder = root / "sentinel2" / "oscd" / city / "imgs_1"
    folder.mkdir(parents=True)
    hr, lr = _synthetic(dy5, 0, h=40, w=36, seed=seed)
    if dy5:  # OSCD's odd side, 20 m side rounded down: +0.5
        hr, lr = hr[:, :79], lr[:, :39]
    for i, band in enumerate(GUIDE_BANDS):
        write_geotiff(folder / f"T00XXX_{band}.tif", hr[i:i + 1], crs="EPSG:4326",
                      descriptions=None)
    for i, band in enumerate(BANDS_20M):
        write_geotiff(folder / f"T00XXX_{band}.tif", lr[i:i + 1], crs="EPSG:4326",
                      descriptions=None)


def test_native_scenes_reads_cities_and_splits_held_out(tmp_path: Path) -> None:
    test_city = TEST_PLACES[1].name  # rio
    _write_city(tmp_path, "paris", 0, 1)
    _write_city(tmp_path, test_city, 1, 2)
    scenes = native_scenes(tmp_path)
    assert [s.name for s in scenes] == ["oscd/paris/imgs_1", f"oscd/{test_city}/imgs_1"]
    train = native_scenes(tmp_path, held_out=False)
    assert [s.place for s in train] == ["paris"] and train[0].held_out is None
    test = native_scenes(tmp_path / "sentinel2", held_out=True)  # the sentinel2 folder works
    assert [s.place for s in test] == [test_city] and test[0].offset == (0.5, 0.0)
    assert test[0].held_out == f"sentinel2/oscd/{test_city}"


def test_a_band_with_nan_or_a_huge_header_is_refused_before_use(tmp_path: Path) -> None:
    _write_city(tmp_path, "paris", 0, 1)
    b12 = tmp_path / "sentinel2" / "oscd" / "paris" / "imgs_1" / "T00XXX_B12.tif"
    with rasterio.open(b12) as ds:
        band = ds.read().astype(np.float32)
    band[0, 5, 7] = np.nan  # bicubic spread it, and the panel blamed the model's weights
    write_geotiff(b12, band, crs="EPSG:4326", descriptions=None)
    with pytest.raises(DataError, match=r"T00XXX_B12.tif holds NaN or inf \(first at row 5, "
                                        r"column 7\): write missing pixels as 0"):
        native_scenes(tmp_path)
    # a sparse file whose header claims 5000 x 5000 px (a few KB on disk): refused from its
    # header, never read whole
    with rasterio.open(b12, "w", driver="GTiff", width=5000, height=5000, count=1,
                       dtype="uint16", crs="EPSG:4326", tiled=True, compress="deflate",
                       SPARSE_OK=True):
        pass
    assert b12.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"is 5000 x 5000 px, more than the 16777216 px .* "
                                        "crop the scene"):
        native_scenes(tmp_path)


def test_native_scenes_needs_a_sentinel2_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no sentinel2/ folder under .*: pass the shared"):
        native_scenes(tmp_path)


@requires_shared
def test_real_scenes_offsets_and_the_test_places_kept_out() -> None:
    """On the real data: OSCD's half-pixel offsets follow the crop sizes, every scene has
    both grids nested, and the training split holds no test place."""
    train = native_scenes(SHARED, held_out=False)
    test = native_scenes(SHARED, held_out=True)
    tests = {p.name for p in TEST_PLACES}
    assert not {s.place for s in train} & tests
    assert {"abudhabi", "rio", "hongkong", "milano"} <= {s.place for s in test}
    assert len(train) >= 30 and (SENTINEL2 / "oscd").is_dir()
    halves = [s for s in train + test if s.offset != (0.0, 0.0)]
    assert len({s.place for s in halves}) >= 10  # OSCD's odd-sided cities
    for s in train + test:
        assert s.hr10.shape[1:] == (2 * s.lr20.shape[1], 2 * s.lr20.shape[2])
        assert set(s.offset) <= {0.0, 0.5}
        # the 20 m bands lie on the guide's footprints: B8A correlates with B08 on them
        # better than on the plain 2 x 2 blocks
        g = footprint_mean(s.hr10[3:4], 2, s.offset)[0]
        h, w = g.shape
        b8a = s.lr20[3, :h, :w].ravel()
        plain = block_mean(s.hr10[3:4], 2)[0, :h, :w]
        on = np.corrcoef(g.ravel(), b8a)[0, 1]
        assert on > 0.7, s.name
        if s.offset != (0.0, 0.0):
            assert on > np.corrcoef(plain.ravel(), b8a)[0, 1], s.name
