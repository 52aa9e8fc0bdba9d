"""The streaming engine equals the in-memory reference blend; nodata and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from s2sr import super_resolve
from s2sr.core.errors import DataError, UsageError
from s2sr.inference.encoding import DnEncoding, located_at, refilled
from s2sr.inference.engine import TiledSuperResolver, read_tile
from s2sr.inference.tiling import TileLayout, blend
from s2sr.models import build_model
from support.rasters import field


def _model(scale: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("edsr-tiny", scale=scale)


@pytest.mark.parametrize(("shape", "tile", "scale"), [((150, 130), 64, 2), ((70, 90), 48, 4)])
def test_streaming_equals_reference_blend(shape: tuple[int, int], tile: int, scale: int) -> None:
    model = _model(scale)
    data = field(shape, 4, seed=1, dtype="float32")
    lay = TileLayout.from_tile(*shape, tile, 32 if tile > 48 else 16, scale)
    radiometry = DnEncoding("float32", (1.0,) * 4, (0.0,) * 4, None)
    out = np.zeros((4, shape[0] * scale, shape[1] * scale), np.float32)

    def reader(w: Window) -> np.ndarray:
        return data[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]

    def writer(w: Window, arr: np.ndarray) -> None:
        out[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = arr

    runner = TiledSuperResolver(model, lay, radiometry, np.zeros(4), torch.device("cpu"), 3)
    assert runner.run(reader, writer) == shape[0] * shape[1]
    preds = {}
    with torch.no_grad():
        for i in range(lay.rows):
            for j in range(lay.cols):
                x = torch.from_numpy(read_tile(reader, lay, i, j)[None])
                preds[(i, j)] = model(x)[0].numpy()
    np.testing.assert_allclose(out, blend(lay, preds), atol=1e-5)


#: Dilation of the wide model's first convolution: its receptive field reaches
#: ``WIDE_DILATION`` + 3 (two convolutions of the block, the body's last one, the upsampler)
#: input pixels, plus half a pixel for the tail on the output grid.
WIDE_DILATION = 12
WIDE_REACH = WIDE_DILATION + 4


def _wide_model() -> torch.nn.Module:
    """edsr-tiny with a dilated first convolution: every output depends strongly (through
    one random kernel tap, not a long chain of small ones) on inputs 12 px away, so a tile
    whose context is cut short shows at once."""
    torch.manual_seed(0)
    model = build_model("edsr-tiny", scale=2)
    model.head.dilation = (WIDE_DILATION, WIDE_DILATION)
    model.head.padding = (WIDE_DILATION, WIDE_DILATION)
    return model


def _full_context(model: torch.nn.Module, data: np.ndarray) -> np.ndarray:
    """One forward pass over the whole scene (uint16 DN -> DN, float)."""
    with torch.no_grad():
        x = torch.from_numpy(data.astype(np.float32) / 10000)[None]
        return model(x)[0].numpy().astype(np.float64) * 10000


def test_wide_model_reaches_as_far_as_stated() -> None:
    model = _wide_model()
    data = field((80, 80), 4, seed=1).astype(np.float32) / 10000
    x = torch.from_numpy(data)[None]
    poked = x.clone()
    poked[0, :, 40, 40] += 0.05
    with torch.no_grad():
        change = (model(poked) - model(x))[0].abs().amax(dim=0).numpy() * 10000
    rows = np.nonzero(change.max(axis=1) > 1e-3)[0] / 2 - 40  # input px from the poke
    assert rows.max() == pytest.approx(WIDE_REACH + 0.5, abs=0.5)
    assert change[80 + 2 * WIDE_DILATION].max() > 10  # 12 px away: more than 10 DN


@pytest.mark.parametrize(("tile", "overlap"), [(128, 80), (160, 72)])
def test_tiling_invariance_where_the_halo_covers_the_receptive_field(tile: int,
                                                                     overlap: int) -> None:
    """Halo (overlap / 4) of 20 or 18 px >= the model's reach: the tiles equal one forward
    pass over the whole scene, seams included."""
    assert overlap // 4 >= WIDE_REACH + 1
    model = _wide_model()
    data = field((200, 180), 4, seed=2)
    tiled = super_resolve(data, model, tile=tile, overlap=overlap).astype(np.float64)
    one = super_resolve(data, model, tile=300, overlap=overlap).astype(np.float64)
    assert np.abs(tiled - one).max() <= 1
    # away from the scene border (padded by reflection), also equal to a plain forward pass
    m = 2 * (WIDE_REACH + 2)
    assert np.abs(tiled - _full_context(model, data))[:, m:-m, m:-m].max() <= 1


def _far_from_tile_edges(lay: TileLayout, n: int, reach: float) -> np.ndarray:
    """Output pixels along one axis (``n`` input px) farther than ``reach`` input px from
    the input edge of every tile and from the scene's edges."""
    starts = np.arange(0, n + lay.stride, lay.stride) - lay.halo
    edges = np.concatenate([starts, starts + lay.tile, [0, n]])
    centres = (np.arange(n * lay.scale) + 0.5) / lay.scale
    return np.abs(centres[:, None] - edges[None]).min(axis=1) > reach


@pytest.mark.parametrize("overlap", [16, 32])
def test_a_halo_smaller_than_the_receptive_field_shows_at_the_seams(overlap: int) -> None:
    """The check above can fail: with a halo of 4 or 8 px the same model's tiles differ
    from the whole-scene pass, and only near tile edges."""
    model = _wide_model()
    data = field((200, 180), 4, seed=2)
    tiled = super_resolve(data, model, tile=96, overlap=overlap).astype(np.float64)
    diff = np.abs(tiled - _full_context(model, data)).max(axis=0)
    m = 2 * (WIDE_REACH + 2)
    assert diff[m:-m, m:-m].max() > 20
    lay = TileLayout.from_tile(200, 180, 96, overlap, 2)
    far = np.ix_(_far_from_tile_edges(lay, 200, WIDE_REACH + 1),
                 _far_from_tile_edges(lay, 180, WIDE_REACH + 1))
    assert diff[far].size > 1000 and diff[far].max() <= 1


def test_batch_size_does_not_change_the_result() -> None:
    model = _model()
    data = field((100, 100), 4, seed=3)
    a = super_resolve(data, model, tile=64, batch_size=1)
    b = super_resolve(data, model, tile=64, batch_size=5)
    assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 1


def test_nodata_stays_nodata_and_data_never_becomes_nodata() -> None:
    model = _model()
    data = field((64, 64), 4, seed=4)
    data[:, 10:30, 5:20] = 0
    data[2, 40, 40] = 0  # one band missing makes the pixel missing
    out = super_resolve(data, model, nodata=0, tile=64)
    missing = np.zeros((64, 64), bool)
    missing[10:30, 5:20] = True
    missing[40, 40] = True
    missing_hr = np.repeat(np.repeat(missing, 2, 0), 2, 1)
    assert (out[:, missing_hr] == 0).all()
    assert (out[:, ~missing_hr] != 0).all()


def test_float_input_keeps_float_and_nan_is_refused() -> None:
    model = _model()
    data = field((40, 40), 4, seed=5, dtype="float32")
    out = super_resolve(data, model, tile=64)
    assert out.dtype == np.float32 and out.shape == (4, 80, 80)
    assert 0.0 < float(np.median(out)) < 1.0
    data[1, 3, 4] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        super_resolve(data, model, tile=64)
    out = super_resolve(data, model, tile=64, nodata=float("nan"))
    assert np.isnan(out[:, 6:8, 8:10]).all() and not np.isnan(out[:, :6]).any()


def test_all_nodata_and_wrong_band_count_are_refused() -> None:
    model = _model()
    with pytest.raises(DataError, match="no valid pixels"):
        super_resolve(np.zeros((4, 30, 30), np.uint16), model, nodata=0)
    with pytest.raises(UsageError, match="4 bands"):
        super_resolve(np.zeros((3, 30, 30), np.uint16), model)
    with pytest.raises(DataError, match="unsupported dtype"):
        super_resolve(np.zeros((4, 30, 30), np.uint8), model)


def test_scene_smaller_than_a_tile_and_single_pixel() -> None:
    model = _model(4)
    out = super_resolve(field((5, 3), 4), model)
    assert out.shape == (4, 20, 12)
    one = super_resolve(np.full((4, 1, 1), 1000, np.uint16), model)
    assert one.shape == (4, 4, 4)


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint32", "int32", "float32", "float64"])
@pytest.mark.parametrize("nodata", [None, 0, 1000])
def test_dn_conversion_in_torch_equals_numpy(dtype: str, nodata: int | None) -> None:
    """The GPU's DN conversion (DnEncoding.dn_values + finish, in PyTorch) gives exactly the
    CPU's (DnEncoding.to_dn, NumPy): rounding, the floor, the dtype's range, the nodata bump
    and invalid pixels, at the output's scale."""
    rng = np.random.default_rng(7)
    refl = rng.normal(0.1, 0.5, (3, 16, 12)).astype(np.float32)
    refl[0, 0, :4] = [0.1, 0.10005, -0.1, 1e9]  # on the nodata DN, half-way, floor, range
    valid_lr = rng.random((8, 6)) > 0.2
    valid = np.repeat(np.repeat(valid_lr, 2, axis=0), 2, axis=1)
    r = DnEncoding(dtype, (1e-4, 2e-4, 1e-4), (0.0, -0.1, 0.0), nodata)
    want = r.to_dn(refl, valid)
    got = r.finish(r.dn_values(torch.from_numpy(refl)).numpy(), valid_lr)
    assert got.dtype == want.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
    if nodata is not None:
        assert (want[:, ~valid] == nodata).all()
        if np.issubdtype(want.dtype, np.integer):  # integer data is kept off nodata
            assert (want[:, valid] != nodata).all()


@pytest.mark.parametrize("dtype,nodata", [("uint16", 0), ("uint16", None), ("int16", -1),
                                          ("float32", None)])
def test_refilled_equals_decoding_again_with_the_other_fill(dtype: str,
                                                            nodata: int | None) -> None:
    """The ten-band engines decode the 10 m bands once and refill them for the 10 m model:
    the same array, bit for bit, as a second decode with that model's fill, nodata and
    saturated samples included (the saturated ones per band)."""
    rng = np.random.default_rng(3)
    enc = DnEncoding(dtype, (1e-4,) * 4, (-0.1, 0.0, 0.0, -0.1), nodata)
    dn = rng.integers(1000, 6000, (4, 20, 24)).astype(dtype)
    if nodata is not None:
        dn[:, 2:5, 3:9] = nodata
    if np.issubdtype(np.dtype(dtype), np.integer):
        dn[1, 10, 4:7] = np.iinfo(np.dtype(dtype)).max  # saturated in one band
    fill_a = np.array([0.05, 0.06, 0.07, 0.2], np.float32).reshape(-1, 1, 1)
    fill_b = np.array([0.11, 0.03, 0.09, 0.3], np.float32).reshape(-1, 1, 1)
    refl, valid, sat = enc.decode(dn, fill_a, located_at(0, 0))
    want = enc.decode(dn, fill_b, located_at(0, 0))[0]
    got = refilled(refl, valid, sat, fill_b)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, refl) or (valid.all() and sat is None)
