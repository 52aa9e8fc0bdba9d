"""The streaming engine equals the in-memory reference blend; nodata and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from conftest import field
from s2sr import super_resolve
from s2sr.errors import DataError, UsageError
from s2sr.inference.engine import Radiometry, TiledSuperResolver, read_tile
from s2sr.inference.tiling import TileLayout, blend
from s2sr.models import build_model


def _model(scale: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("edsr-tiny", scale=scale)


@pytest.mark.parametrize(("shape", "tile", "scale"), [((150, 130), 64, 2), ((70, 90), 48, 4)])
def test_streaming_equals_reference_blend(shape: tuple[int, int], tile: int, scale: int) -> None:
    model = _model(scale)
    data = field(shape, 4, seed=1, dtype="float32")
    lay = TileLayout.from_tile(*shape, tile, 32 if tile > 48 else 16, scale)
    radiometry = Radiometry("float32", (1.0,) * 4, (0.0,) * 4, None)
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


def test_tiling_invariance_full_edsr_within_one_dn() -> None:
    torch.manual_seed(0)
    model = build_model("edsr", scale=2)
    data = field((200, 180), 4, seed=2)
    small = super_resolve(data, model, tile=64)
    large = super_resolve(data, model, tile=256)
    assert np.abs(small.astype(np.int32) - large.astype(np.int32)).max() <= 1


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
