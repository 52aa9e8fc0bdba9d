"""Many inputs to scenes (files, folders, globs, lists, STAC) and hostile STAC documents."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.windows import Window

from s2sr.core.errors import BandError, InputNotFoundError, S2SRError, StacError, UsageError
from s2sr.io.gdal_safety import open_raster
from s2sr.io.inputs import expand_inputs
from s2sr.io.scene import open_scene
from s2sr.io.stac import open_stac_item
from s2sr.io.stac_document import MAX_ITEMS, resolve_href, stac_items
from support.rasters import field, write_geotiff
from support.stac import BANDS, RangeHandler, collection, stac_item


def test_files_folders_globs_and_lists(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for k in range(3):
        write_geotiff(scenes / f"s{k}.tif", field((16, 16), 4, seed=k))
    per_band = scenes / "bandfolder"
    per_band.mkdir()
    for k, band in enumerate(BANDS):
        write_geotiff(per_band / f"T_{band}.tif", field((16, 16), 4)[k:k + 1],
                      descriptions=None)
    (scenes / "notes.md").write_text("not a scene")
    listing = tmp_path / "list.txt"
    listing.write_text("# scenes\nscenes/s1.tif\n\nscenes/s2.tif\n")
    got = expand_inputs([str(scenes)])
    assert [s.stem for s in got] == ["bandfolder", "s0", "s1", "s2"]
    assert [s.stem for s in expand_inputs([str(scenes / "s*.tif")])] == ["s0", "s1", "s2"]
    assert [s.stem for s in expand_inputs([f"@{listing}"])] == ["s1", "s2"]
    assert [s.stem for s in expand_inputs([str(listing)])] == ["s1", "s2"]
    # a per-band folder is one scene; the same scene twice is kept once
    both = expand_inputs([str(per_band), str(scenes / "s0.tif"), str(scenes / "s0.tif")])
    assert [s.stem for s in both] == ["bandfolder", "s0"]
    with pytest.raises(InputNotFoundError, match="matches no file"):
        expand_inputs([str(scenes / "x*.tif")])
    with pytest.raises(InputNotFoundError, match="does not exist"):
        expand_inputs([str(tmp_path / "missing.tif")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputNotFoundError, match="holds no scene"):
        expand_inputs([str(empty)])
    with pytest.raises(UsageError, match="no input"):
        expand_inputs([])


def test_stac_item_collection_over_local_cogs(tmp_path: Path) -> None:
    data = [field((24, 20), 4, seed=k) for k in range(2)]
    items = [stac_item(tmp_path, f"S2A_T33_{k}", data[k]) for k in range(2)]
    path = collection(tmp_path, items)
    scenes = expand_inputs([str(path)])
    assert [s.stem for s in scenes] == ["S2A_T33_0", "S2A_T33_1"]
    assert all(s.item is not None for s in scenes)
    # hrefs made absolute, so the item can be written anywhere
    href = scenes[0].item["assets"]["blue"]["href"]  # type: ignore[index]
    assert Path(href).is_absolute() and Path(href).is_file()
    single = tmp_path / "one.json"
    single.write_text(json.dumps(items[1]))
    with open_scene(single, bands=BANDS) as scene:
        assert scene.meta.bands == BANDS
        assert (scene.meta.width, scene.meta.height) == (20, 24)
        np.testing.assert_array_equal(scene.read(Window(0, 0, 20, 24)), data[1])
        assert scene.meta.gains == (1e-4,) * 4 and scene.meta.offsets == (0.0,) * 4
        assert scene.meta.tags["S2_STAC_ITEM"] == "S2A_T33_1"
        assert scene.meta.tags["ACQUISITION_DATE"] == "2023-06-01"
    # a local Item file is one scene, opened where it lies
    assert [(s.source, s.item) for s in expand_inputs([str(single)])] == [(str(single), None)]


def test_stac_radiometry_from_raster_bands_and_baseline(tmp_path: Path) -> None:
    data = field((16, 16), 4)
    item = stac_item(tmp_path, "a", data, **{"s2:processing_baseline": "05.09",
                                              "platform": "sentinel-2a"})
    path = tmp_path / "a.json"
    path.write_text(json.dumps(item))
    with open_stac_item(path, BANDS) as scene:  # baseline 04.00+: DN offset -1000
        assert scene.meta.offsets == pytest.approx((-0.1,) * 4)
        assert scene.meta.nodata == 0
    for asset in item["assets"].values():
        asset["raster:bands"] = [{"scale": 0.0002, "offset": -0.05, "nodata": 65535}]
    path.write_text(json.dumps(item))
    with open_stac_item(path, BANDS) as scene:
        assert scene.meta.gains == pytest.approx((0.0002,) * 4)
        assert scene.meta.offsets == pytest.approx((-0.05,) * 4)
        assert scene.meta.nodata == 65535


def _write(tmp_path: Path, doc: Any, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    return text


@pytest.mark.parametrize(("doc", "match"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{not json", "not valid JSON"),
    ({"type": "Catalog"}, "not a STAC Item"),
    ({"type": "FeatureCollection", "features": {}}, "list of features"),
    ({"type": "Feature", "id": "x" * 500, "assets": {"a": {}}}, "usable id"),
    ({"type": "Feature", "id": "x", "assets": []}, "no assets"),
    ({"type": "Feature", "id": "x", "assets": {str(k): {} for k in range(600)}},
     "600 assets"),
])
def test_hostile_stac_documents(tmp_path: Path, doc: Any, match: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(S2SRError, match=match) as err:
        expand_inputs([str(path)])
    _one_line(err)


def test_too_many_items_and_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    item = {"type": "Feature", "id": "x", "assets": {"blue": {"href": "b.tif"}}}
    with pytest.raises(StacError, match=f"more than {MAX_ITEMS}") as err:
        stac_items({"type": "FeatureCollection", "features": [item] * (MAX_ITEMS + 1)}, "c")
    _one_line(err)
    monkeypatch.setattr("s2sr.io.stac_document.MAX_JSON_BYTES", 1000)
    path = _write(tmp_path, {"type": "FeatureCollection", "features": [item] * 50})
    with pytest.raises(StacError, match="more than the 1000") as err:
        expand_inputs([str(path)])
    _one_line(err)


@pytest.mark.parametrize(("href", "match"), [
    ("s3://bucket/B02.tif", "scheme s2sr does not read"),
    ("/vsicurl/http://x/B02.tif", "GDAL virtual path"),
    ("https://user:secret@example.org/B02.tif", "credentials"),
    ("https://example.org/B02.vrt", "not a .tif"),
    ("B02.tif\n", None),  # stripped: fine
    ("B02\x00.tif", "control characters"),
    ("https://example.org/" + "a" * 3000 + ".tif", "longer than"),
    (["B02.tif"], "not a non-empty string"),
])
def test_hostile_hrefs(tmp_path: Path, href: Any, match: str | None) -> None:
    if match is None:
        assert resolve_href(href, str(tmp_path), "item") == str(tmp_path / "B02.tif")
        return
    with pytest.raises(StacError, match=match) as err:
        resolve_href(href, str(tmp_path), "item x, asset blue")
    _one_line(err)


def test_item_errors_name_the_item(tmp_path: Path) -> None:
    item = stac_item(tmp_path, "z", field((16, 16), 4))
    del item["assets"]["nir"]
    path = _write(tmp_path, item, "z.json")
    with pytest.raises(BandError, match=r"lacks asset.*B08.*it has B02, B03, B04") as err:
        open_scene(path, bands=BANDS)
    _one_line(err)
    item = stac_item(tmp_path / "b", "y", field((16, 16), 4))
    item["assets"]["blue"]["href"] = "file:///etc/missing_B02.tif"
    path = _write(tmp_path, item, "y.json")
    with pytest.raises(InputNotFoundError, match="does not exist") as err:
        open_scene(path, bands=BANDS)
    _one_line(err)
    # a disguised VRT behind a .tif href is refused like one inside a product
    (tmp_path / "b" / "y" / "B03.tif").write_text("<VRTDataset></VRTDataset>")
    item["assets"]["blue"]["href"] = "y/B02.tif"
    path = _write(tmp_path / "b", item, "y.json")
    with pytest.raises(S2SRError, match="GDAL VRT XML") as err:
        open_scene(path, bands=BANDS)
    _one_line(err)


def test_remote_assets_through_vsicurl(tmp_path: Path) -> None:
    data = field((32, 32), 4, seed=5)
    item = stac_item(tmp_path / "www", "remote", data)
    handler = functools.partial(RangeHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        (tmp_path / "www" / "items.json").write_text(json.dumps(
            {"type": "FeatureCollection", "features": [item]}))
        scenes = expand_inputs([base + "items.json"])  # the collection itself by URL
        assert [s.stem for s in scenes] == ["remote"]
        href = scenes[0].item["assets"]["red"]["href"]  # type: ignore[index]
        assert href == base + "remote/B04.tif"
        path = tmp_path / "remote.json"
        path.write_text(json.dumps(scenes[0].item))
        with open_scene(path, bands=BANDS) as scene:
            np.testing.assert_array_equal(scene.read(Window(0, 0, 32, 32)), data)
        # remote access stays off for everything else (GDAL's safe environment)
        with pytest.raises(S2SRError, match="cannot open"):
            open_raster(f"/vsicurl/{base}remote/B02.tif")
    finally:
        server.shutdown()
