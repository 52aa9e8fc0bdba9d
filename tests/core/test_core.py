"""s2sr.core: the one range check accepts and refuses exactly at its bounds, DN <->
reflectance round trips for every dtype and the processing-baseline offset, and the shared
constants agree with what the rooms that use them accept."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from s2sr.core.bands import (
    BANDS,
    BASELINE_04_OFFSET,
    DEFAULT_BANDS,
    QUANTIFICATION_VALUE,
    RGB_BANDS,
    SAFE_BAND_IDS,
    TYPICAL_MEAN,
    TYPICAL_STD,
    nir_index,
    normalize_band_name,
)
from s2sr.core.checks import (
    check_choice,
    check_epoch_scale,
    check_number,
    in_range,
    interval,
    shown,
)
from s2sr.core.constants import (
    BACKENDS,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    MAX_TILE,
    ORT_TILE,
    PATCH_STATS,
    SCALES,
)
from s2sr.core.dn import (
    DN_SCALE,
    SUPPORTED_DTYPES,
    default_gain,
    from_scaled,
    gdal_gains,
    is_integer,
    to_int16_dn,
    to_reflectance,
    to_uint16_dn,
)
from s2sr.core.errors import DataError, SpecError, UsageError

# --- checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "bounds", "ok"), [
    (0, {}, True), (1, {}, True), (0.5, {}, True), (-1e-12, {}, False), (1 + 1e-12, {}, False),
    (0, {"low_open": True}, False), (1e-12, {"low_open": True}, True),
    (1, {"high_open": True}, False), (1 - 1e-12, {"high_open": True}, True),
    (True, {}, False), (False, {}, False), ("0.5", {}, False), (None, {}, False),
    (math.nan, {}, False), (math.inf, {}, False),
    (np.float32(0.5), {}, True), (np.int64(1), {"integer": True}, True),
    (1.0, {"integer": True}, False), (1, {"integer": True}, True),
    (10**400, {}, False), (10**400, {"integer": True}, False),
])
def test_in_range_at_the_bounds(value: Any, bounds: dict[str, bool], ok: bool) -> None:
    """``[0, 1]`` with the ends left out where asked; bools, text, NaN, inf, floats for an
    integer and integers too large for a float are refused (10**400 raised OverflowError in
    a float conversion before)."""
    assert in_range(value, 0, 1, **bounds) is ok


def test_infinity_only_where_allowed() -> None:
    assert in_range(math.inf, 0, math.inf, allow_inf=True)
    assert not in_range(math.inf, 0, math.inf)
    assert not in_range(math.nan, 0, math.inf, allow_inf=True)
    assert interval(0, math.inf) == "[0, inf]"
    assert interval(1, math.inf, integer=True) == "[1, inf]"  # int(inf) raised before
    assert interval(0, 2**32 - 1, integer=True, high_open=True) == "[0, 4294967295)"


def test_check_number_names_the_option_the_interval_and_the_value() -> None:
    with pytest.raises(UsageError) as err:
        check_number("--max-cloud", 2, 0, 1)
    assert str(err.value) == "--max-cloud must be a number in [0, 1], got 2"
    with pytest.raises(UsageError) as err:
        check_number("seed", 2.0, 0, 2**32 - 1, integer=True, fix=": fix it in the config")
    assert str(err.value) == ("seed must be an integer in [0, 4294967295], got 2.0: fix it "
                              "in the config")
    with pytest.raises(UsageError) as err:
        check_number("stages[0].pct_start", 0, 0, 1, low_open=True, high_open=True)
    assert "must be a number in (0, 1), got 0" in str(err.value)
    check_number("--max-cloud", 1, 0, 1)  # the closed end is inside


def test_a_huge_value_is_shown_short() -> None:
    with pytest.raises(UsageError) as err:
        check_number("batch_size", 10**100_000, 1, 4096, integer=True)
    assert "<an integer of about 100001 digits>" in str(err.value)
    loop: list[Any] = [1]
    loop.append(loop)
    assert len(shown(loop)) <= 80 and len(shown("x" * 10**6)) <= 80


@pytest.mark.parametrize("value", [1e-6, 1, 2.5, 1e4])
def test_epoch_scale_accepted(value: float) -> None:
    assert check_epoch_scale(value) == value


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 10000.5, True, "2"])
def test_epoch_scale_refused(value: Any) -> None:
    with pytest.raises(UsageError, match=r"^--epoch-scale must be a number in \(0, 10000\], "):
        check_epoch_scale(value)


def test_check_choice_takes_a_mapping_and_refuses_unhashable_values() -> None:
    lightning = {"fp32": "32-true", "bf16": "bf16-mixed"}
    assert check_choice("precision", "bf16", lightning) == "bf16"
    for bad in ("fp64", ["fp32"], None):  # a list from YAML: no TypeError
        with pytest.raises(UsageError, match=r"^precision must be one of fp32, bf16, got "):
            check_choice("precision", bad, lightning)


# --- DN <-> reflectance -----------------------------------------------------------------

REFL = np.linspace(0.0, 1.2, 2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_dn_round_trip_per_dtype(dtype: str) -> None:
    """Integers hold reflectance x 10000 (to the nearest DN), floats reflectance itself."""
    gain = default_gain(dtype)
    if is_integer(dtype):
        assert gain == 1 / DN_SCALE == 1e-4
        dn = to_uint16_dn(REFL).astype(dtype)
        assert int(dn.max()) == 12000
    else:
        assert gain == 1.0
        dn = REFL.astype(dtype)
    back = to_reflectance(dn, [gain] * 2, [0.0] * 2)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, REFL, atol=0.5 / DN_SCALE + 1e-7, rtol=0)


def test_dn_round_trip_with_the_baseline_04_offset() -> None:
    """From processing baseline 04.00 on, reflectance = (DN - 1000) / 10000: a dark pixel
    (down to -0.1) still has a DN, and the DN of reflectance 0 is 1000."""
    offset = BASELINE_04_OFFSET / QUANTIFICATION_VALUE
    assert offset == -0.1
    refl = np.concatenate([REFL, np.full((2, 1, 7), -0.05, np.float32)], axis=1)
    dn = to_uint16_dn(refl - offset)
    assert int(dn.min()) == 500 and int(to_uint16_dn(np.zeros(1) - offset)[0]) == 1000
    back = to_reflectance(dn, [1 / DN_SCALE] * 2, [offset] * 2)
    np.testing.assert_allclose(back, refl, atol=0.5 / DN_SCALE + 1e-6, rtol=0)


def test_pair_arrays_round_trip_and_missing_becomes_zero() -> None:
    refl = REFL.copy()
    refl[0, 0, 0] = np.nan
    refl[1, 0, 0] = 5.0  # beyond int16 x 10000: clipped
    dn = to_int16_dn(refl)
    assert dn.dtype == np.int16 and dn[0, 0, 0] == 0 and dn[1, 0, 0] == 32767
    np.testing.assert_allclose(from_scaled(dn)[:, 1:], REFL[:, 1:], atol=0.5 / DN_SCALE)


def _tif(path: Path, data: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype.name) as dst:
        dst.write(data)
        dst.scales, dst.offsets = (scale,) * data.shape[0], (offset,) * data.shape[0]
    return path


def test_gdal_gains_read_what_the_file_says(tmp_path: Path) -> None:
    plain = _tif(tmp_path / "plain.tif", to_uint16_dn(REFL))
    scaled = _tif(tmp_path / "scaled.tif", to_uint16_dn(REFL), 2.75e-5, -0.2)
    floats = _tif(tmp_path / "float.tif", REFL)
    for path, gain, offset, explicit in ((plain, 1e-4, 0.0, False),
                                         (scaled, 2.75e-5, -0.2, True),
                                         (floats, 1.0, 0.0, False)):
        with rasterio.open(path) as ds:
            assert gdal_gains(ds, [1, 2], str(path)) == ([gain] * 2, [offset] * 2, explicit)
    zero = _tif(tmp_path / "zero.tif", to_uint16_dn(REFL), 0.0)
    with rasterio.open(zero) as ds, pytest.raises(DataError, match=r"gdal_edit\.py -scale"):
        gdal_gains(ds, [1], str(zero))


# --- the constants agree with the rooms that use them ----------------------------------


def test_scales_are_what_models_and_shipped_weights_take() -> None:
    from s2sr.models.bounds import check_scale
    from s2sr.models.pretrained import pretrained_path

    assert SCALES == (2, 4)
    for scale in SCALES:
        assert check_scale(scale) == scale
        assert pretrained_path(scale).exists() and pretrained_path(scale, rgb=True).exists()
    for bad in (1, 3, 8, True, 2.0):
        with pytest.raises(SpecError):
            check_scale(bad)
        with pytest.raises(UsageError):
            pretrained_path(bad)  # type: ignore[arg-type]


def test_default_tiles_fill_whole_blocks_at_every_scale() -> None:
    """The documented property of the tile defaults: (tile - overlap) x scale is a multiple
    of 512 (whole GeoTIFF blocks per write), and every default makes a valid tiling."""
    from s2sr.inference.tiling import TileLayout

    assert set(DEFAULT_TILE) == set(SCALES) and set(ORT_TILE) <= set(SCALES)
    for table in (DEFAULT_TILE, ORT_TILE):
        for scale, tile in table.items():
            assert (tile - DEFAULT_OVERLAP) * scale % 512 == 0 and 8 <= tile <= MAX_TILE
            layout = TileLayout.from_tile(4 * tile, 4 * tile, tile, DEFAULT_OVERLAP, scale)
            assert layout.tile == tile and layout.stride * scale % 512 == 0


def test_backends_are_what_predict_takes() -> None:
    from s2sr.inference.backends import choose_backend

    for backend in BACKENDS:
        choose_backend(backend, "cpu", 0, ["CPUExecutionProvider"])
    with pytest.raises(UsageError, match="use auto, torch, onnxruntime"):
        choose_backend("gpu", "cpu", 0, None)


def test_patch_stats_are_those_measured_and_bounded() -> None:
    """The manifest, the cutters and the review app list PATCH_STATS: the stats measured on a
    patch (plus the nodata and cloud shares) and those the review thresholds bound."""
    from s2sr.data.stats import patch_stats
    from s2sr.review.catalog import THRESHOLD_OF

    measured = patch_stats(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), np.zeros((8, 8), bool))
    assert set(PATCH_STATS) == {"nodata", "cloud", *measured} == set(THRESHOLD_OF)
    assert len(set(PATCH_STATS)) == len(PATCH_STATS)


def test_band_tables_agree() -> None:
    from s2sr.models.bounds import check_bands

    assert check_bands(list(BANDS)) == tuple(BANDS) == SAFE_BAND_IDS
    assert set(TYPICAL_MEAN) == set(TYPICAL_STD) == set(BANDS)
    assert all(normalize_band_name(b) == b for b in BANDS)
    assert set(RGB_BANDS) < set(DEFAULT_BANDS) <= set(BANDS)
    assert nir_index(DEFAULT_BANDS) == DEFAULT_BANDS.index("B08")


def test_the_rooms_refuse_out_of_range_values_with_the_one_check() -> None:
    """Pairs thresholds and options, Wald degradation options, training configs and the
    epoch scale all say it the same way (each had its own copy, with its own wording)."""
    from s2sr.data.options import (
        BuildOptions,
        DegradeOptions,
        check_build_options,
        check_degrade_options,
    )
    from s2sr.data.validation import Thresholds
    from s2sr.training.trainer import train

    with pytest.raises(UsageError, match=r"^threshold max_cloud must be a number in \[0, 1\], "
                                         r"got nan$"):
        Thresholds(max_cloud=math.nan)
    with pytest.raises(UsageError, match=r"^--max-cloud must be a number in \[0, 1\], got 2$"):
        check_build_options(BuildOptions(max_cloud=2))
    with pytest.raises(UsageError, match=r"^--mtf must be a number in \(0, 1\), got 1$"):
        check_degrade_options(DegradeOptions(mtf=1))
    with pytest.raises(UsageError, match=r"^--epoch-scale must be a number in \(0, 10000\]"):
        train(None, Path("unused"), epoch_scale=0)  # type: ignore[arg-type]


def test_model_bounds_show_a_huge_value_with_the_one_shown() -> None:
    """models/bounds had its own repr-and-clip: repr of a 100000-digit integer raised
    ValueError (Python's digit limit) instead of the SpecError naming the option."""
    from s2sr.models.bounds import check_float, check_int

    with pytest.raises(SpecError, match=r"n_feats must be an integer from 1 to 512, got "
                                        r"<an integer of about 100001 digits>"):
        check_int("n_feats", 10**100_000, 1, 512)
    with pytest.raises(SpecError, match=r"res_scale must be a finite number in \(0, 10\]"):
        check_float("res_scale", 10**100_000, 0, 10, low_open=True)


def test_described_bands_is_the_one_description_matching() -> None:
    from s2sr.core.bands import described_bands

    got = described_bands(["B02", " b3 ", "red", "B04 (red)", "", None, "   ", "cloud mask",
                           "B8A", "B13"])
    assert got == ["B02", "B03", "B04", "B04", None, None, None, None, "B8A", None]
