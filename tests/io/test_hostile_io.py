"""Hostile and bad inputs to the scene readers (issue 9): disguised VRTs, bad SAFE metadata,
archive attacks, absurd sizes, band naming, nodata and the processing-baseline offset."""

from __future__ import annotations

import http.server
import logging
import os
import socketserver
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from s2sr import predict
from s2sr.core.bands import DEFAULT_BANDS, RGB_BANDS
from s2sr.core.errors import (
    BandError,
    DataError,
    GridMismatchError,
    RasterReadError,
    S2SRError,
    UnsafeArchiveError,
    UnsafeInputError,
    UsageError,
)
from s2sr.io.safe_metadata import parse_safe_metadata
from s2sr.io.scene import open_scene
from support.rasters import UTM_TRANSFORM, field, make_safe, write_geotiff

SECRET = b"S2SR-TOP-SECRET-" * 64


# ---------------------------------------------------------------- helpers

@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret" / "id_rsa"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def http_hits() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server recording every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(SECRET)

        def do_HEAD(self) -> None:
            self.do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


def raw_vrt(secret: Path, size: int = 32) -> str:
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">'
            '<VRTRasterBand dataType="UInt16" band="1" subClass="VRTRawRasterBand">'
            f'<SourceFilename relativetoVRT="0">{secret}</SourceFilename>'
            '<ImageOffset>0</ImageOffset><PixelOffset>2</PixelOffset>'
            f'<LineOffset>{2 * size}</LineOffset></VRTRasterBand></VRTDataset>')


def curl_vrt(port: int, size: int = 32) -> str:
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">'
            '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">/vsicurl/http://127.0.0.1:{port}/b.tif'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
            '</VRTDataset>')


def _b02(product: Path) -> Path:
    return next(product.rglob("*_B02_10m.jp2"))


def _rezip(safe: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(safe.rglob("*")):
            zf.write(file, file.relative_to(safe.parent).as_posix())
    return archive


def _assert_no_secret(err: BaseException, root: Path) -> None:
    assert SECRET[:16].decode() not in str(err)
    for file in root.rglob("*.tif"):
        assert SECRET[:16] not in file.read_bytes()


# ---------------------------------------------------------------- 1. disguised VRTs

class TestDisguisedVrt:
    """A band entry named .jp2/.tif that holds VRT XML is refused, in every layout."""

    @pytest.mark.parametrize("kind", ["raw", "curl"])
    def test_safe_folder(self, tmp_path: Path, secret: Path, http_hits: tuple[int, list[str]],
                         kind: str) -> None:
        port, hits = http_hits
        safe = make_safe(tmp_path, field((32, 32), 4))
        _b02(safe).write_text(raw_vrt(secret) if kind == "raw" else curl_vrt(port))
        with pytest.raises(UnsafeInputError, match=r"B02_10m\.jp2.*holds GDAL VRT XML") as err:
            open_scene(safe)
        assert "\n" not in str(err.value) and hits == []
        _assert_no_secret(err.value, tmp_path)

    @pytest.mark.parametrize("kind", ["raw", "curl"])
    def test_safe_zip(self, tmp_path: Path, secret: Path, http_hits: tuple[int, list[str]],
                      kind: str) -> None:
        port, hits = http_hits
        safe = make_safe(tmp_path, field((32, 32), 4))
        _b02(safe).write_text(raw_vrt(secret) if kind == "raw" else curl_vrt(port))
        archive = _rezip(safe, tmp_path / "evil.zip")
        with pytest.raises(UnsafeInputError, match=r"B02_10m\.jp2.*holds GDAL VRT XML") as err:
            open_scene(archive)
        assert hits == []
        _assert_no_secret(err.value, tmp_path)

    def test_predict_on_hostile_zip_writes_nothing(self, tmp_path: Path, secret: Path,
                                                   tiny_weights: Path) -> None:
        safe = make_safe(tmp_path, field((32, 32), 4))
        _b02(safe).write_text(raw_vrt(secret))
        archive = _rezip(safe, tmp_path / "evil.zip")
        with pytest.raises(UnsafeInputError) as err:
            predict(archive, tmp_path / "out.tif", tiny_weights)
        assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))
        _assert_no_secret(err.value, tmp_path)

    @pytest.mark.parametrize("kind", ["raw", "curl"])
    def test_per_band_folder(self, tmp_path: Path, secret: Path,
                             http_hits: tuple[int, list[str]], kind: str) -> None:
        port, hits = http_hits
        folder = tmp_path / "bands"
        folder.mkdir()
        arr = field((32, 32), 4)
        for k, b in enumerate(DEFAULT_BANDS):
            write_geotiff(folder / f"x_{b}.tif", arr[k:k + 1], descriptions=None)
        (folder / "x_B02.tif").write_text(raw_vrt(secret) if kind == "raw" else curl_vrt(port))
        with pytest.raises(UnsafeInputError, match=r"x_B02\.tif.*holds GDAL VRT XML") as err:
            open_scene(folder, bands=DEFAULT_BANDS)
        assert hits == []
        _assert_no_secret(err.value, tmp_path)

    def test_single_tif_holding_vrt(self, tmp_path: Path, secret: Path) -> None:
        scene = tmp_path / "scene.tif"
        scene.write_text(raw_vrt(secret))
        with pytest.raises(UnsafeInputError, match=r"scene\.tif holds GDAL VRT XML, not the GTiff"):
            open_scene(scene, bands=("B02",))


class TestDeliberateVrt:
    """A .vrt passed as the scene is read, but raw-file and remote sources stay disabled."""

    def test_plain_vrt_of_local_files_is_read(self, tmp_path: Path) -> None:
        data = field((24, 20), 4)
        tif = write_geotiff(tmp_path / "s.tif", data)
        vrt = tmp_path / "s.vrt"
        with rasterio.open(tif) as src:
            bands = "".join(
                f'<VRTRasterBand dataType="UInt16" band="{i}"><Description>{d}</Description>'
                f'<SimpleSource><SourceFilename relativeToVRT="1">s.tif</SourceFilename>'
                f'<SourceBand>{i}</SourceBand></SimpleSource></VRTRasterBand>'
                for i, d in enumerate(src.descriptions, start=1))
            gt = ",".join(str(v) for v in src.transform.to_gdal())
            vrt.write_text(f'<VRTDataset rasterXSize="20" rasterYSize="24"><SRS>{src.crs.wkt}'
                           f'</SRS><GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>')
        with open_scene(vrt, bands=DEFAULT_BANDS, dn_offset=0) as scene:
            np.testing.assert_array_equal(scene.read(Window(0, 0, 20, 24)), data)

    def test_raw_band_refused(self, tmp_path: Path, secret: Path) -> None:
        vrt = tmp_path / "evil.vrt"
        vrt.write_text(raw_vrt(secret))
        with pytest.raises(UnsafeInputError, match="raw-file band") as err:
            open_scene(vrt, bands=("B02",))
        _assert_no_secret(err.value, tmp_path)

    def test_remote_source_refused(self, tmp_path: Path, http_hits: tuple[int, list[str]]) -> None:
        port, hits = http_hits
        vrt = tmp_path / "remote.vrt"
        vrt.write_text(curl_vrt(port))
        with pytest.raises(UnsafeInputError, match="local files only"):
            open_scene(vrt, bands=("B02",))
        assert hits == []

    def test_nested_raw_vrt_disguised_as_tif_refused(self, tmp_path: Path, secret: Path) -> None:
        (tmp_path / "inner.tif").write_text(raw_vrt(secret))
        outer = tmp_path / "outer.vrt"
        outer.write_text('<VRTDataset rasterXSize="32" rasterYSize="32">'
                         '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
                         '<SourceFilename relativeToVRT="1">inner.tif</SourceFilename>'
                         '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
        with pytest.raises(UnsafeInputError, match=r"inner\.tif holds a raw-file band"):
            open_scene(outer, bands=("B02",))

    def test_python_pixel_function_refused(self, tmp_path: Path) -> None:
        vrt = tmp_path / "py.vrt"
        vrt.write_text('<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand '
                       'dataType="UInt16" band="1" subClass="VRTDerivedRasterBand">'
                       '<PixelFunctionLanguage>Python</PixelFunctionLanguage>'
                       '<PixelFunctionCode>import os</PixelFunctionCode></VRTRasterBand>'
                       '</VRTDataset>')
        with pytest.raises(UnsafeInputError, match="Python pixel code"):
            open_scene(vrt, bands=("B02",))


# ---------------------------------------------------------------- 2. SAFE metadata and archives

_MTD = """<n1:Level-2A_User_Product xmlns:n1="x"><General_Info><Product_Info>
<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE></Product_Info>
<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>
<BOA_QUANTIFICATION_VALUE>{quant}</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>
<BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET {band_id}>{offset}</BOA_ADD_OFFSET>
</BOA_ADD_OFFSET_VALUES_LIST><Spectral_Information_List>
<Spectral_Information bandId="{spec_id}" physicalBand="{physical}"/>
</Spectral_Information_List></Product_Image_Characteristics></General_Info>
</n1:Level-2A_User_Product>"""
_GOOD = {"quant": "10000", "band_id": 'band_id="1"', "offset": "-1000", "spec_id": "1",
         "physical": "B2"}


class TestSafeMetadata:
    def test_good_metadata_parses(self) -> None:
        meta = parse_safe_metadata(_MTD.format(**_GOOD).encode(), "p")
        assert meta.offsets == {"B02": -1000.0} and meta.quantification == 10000.0

    @pytest.mark.parametrize(("key", "value", "message"), [
        ("band_id", 'band_id="two"', "band_id 'two' is not a band number"),
        ("band_id", "", "without its attribute"),
        ("band_id", 'band_id="99"', "'99' is not a band number"),
        ("band_id", 'band_id="-1"', "'-1' is not a band number"),
        ("quant", "abc", "BOA_QUANTIFICATION_VALUE 'abc' is not a number"),
        ("quant", "-10000", "outside 1-1e\\+06"),
        ("quant", "0", "outside 1-1e\\+06"),
        ("quant", "1e30", "outside 1-1e\\+06"),
        ("quant", "nan", "not finite"),
        ("offset", "minus thousand", "is not a number"),
        ("offset", "inf", "not finite"),
        ("offset", "-1e9", "beyond"),
        ("spec_id", "x", "bandId 'x' is not a band number"),
        ("physical", "B99", "physicalBand 'B99' is not a Sentinel-2 band"),
    ])
    def test_bad_values_refused(self, key: str, value: str, message: str) -> None:
        xml = _MTD.format(**{**_GOOD, key: value}).encode()
        with pytest.raises(RasterReadError, match=message) as err:
            parse_safe_metadata(xml, "S2B.SAFE")
        assert str(err.value).startswith("S2B.SAFE: product metadata") and "\n" not in str(
            err.value)

    @pytest.mark.parametrize("as_zip", [False, True])
    def test_bad_metadata_in_product_refused(self, tmp_path: Path, as_zip: bool) -> None:
        product = make_safe(tmp_path, field((16, 16), 4))
        mtd = product / "MTD_MSIL2A.xml"
        mtd.write_text(mtd.read_text().replace('band_id="1"', 'band_id="1.5"'))
        if as_zip:
            product = _rezip(product, tmp_path / "p.zip")
        with pytest.raises(RasterReadError, match=r"'1\.5' is not a band number"):
            open_scene(product)

    def test_xxe_refused(self, tmp_path: Path, secret: Path) -> None:
        xml = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
               "<Level-2A_User_Product><PROCESSING_BASELINE>&x;</PROCESSING_BASELINE>"
               "</Level-2A_User_Product>").encode()
        with pytest.raises(RasterReadError, match="DOCTYPE") as err:
            parse_safe_metadata(xml, "p")
        _assert_no_secret(err.value, tmp_path)

    def test_billion_laughs_refused_fast(self) -> None:
        refs = [f"&l{i - 1};" * 10 for i in range(1, 10)]
        ents = "".join(f'<!ENTITY l{i} "{ref}">' for i, ref in enumerate(refs, start=1))
        xml = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">{ents}]>'
               "<r><PROCESSING_BASELINE>&l9;</PROCESSING_BASELINE></r>").encode()
        t = time.perf_counter()
        with pytest.raises(RasterReadError, match="DOCTYPE"):
            parse_safe_metadata(xml, "p")
        assert time.perf_counter() - t < 1


class TestArchives:
    @pytest.mark.parametrize("entry", [
        "../../etc/owned.jp2", "/etc/owned.jp2", "S2A.SAFE\\..\\..\\owned.jp2",
        "C:/Windows/owned.jp2", "c:owned.jp2", "S2A.SAFE/GRANULE/../../../x.jp2",
    ])
    def test_escaping_entries_refused(self, tmp_path: Path, entry: str) -> None:
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("S2A.SAFE/MTD_MSIL2A.xml", _MTD.format(**_GOOD))
            zf.writestr(entry, "x")
        with pytest.raises(UnsafeArchiveError, match="escapes the archive"):
            open_scene(evil)

    def test_symlink_entry_refused(self, tmp_path: Path) -> None:
        evil = tmp_path / "link.zip"
        info = zipfile.ZipInfo("S2A.SAFE/GRANULE/L2A_T/IMG_DATA/R10m/T_B02_10m.jp2")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)
        with zipfile.ZipFile(evil, "w") as zf:
            zf.writestr("S2A.SAFE/MTD_MSIL2A.xml", _MTD.format(**_GOOD))
            zf.writestr(info, "/etc/passwd")
        with pytest.raises(UnsafeArchiveError, match="symbolic link"):
            open_scene(evil)

    def test_symlinked_band_in_safe_folder_refused(self, tmp_path: Path) -> None:
        safe = make_safe(tmp_path, field((16, 16), 4))
        outside = tmp_path / "elsewhere.jp2"
        b02 = _b02(safe)
        b02.rename(outside)
        b02.symlink_to(outside)
        with pytest.raises(UnsafeArchiveError, match="symbolic link"):
            open_scene(safe)

    @pytest.mark.parametrize("member", ["S2A.SAFE/MTD_MSIL2A.xml",
                                        "S2A.SAFE/GRANULE/L2A_T/IMG_DATA/R10m/T_B02_10m.jp2"])
    def test_zip_bomb_refused_fast(self, tmp_path: Path, member: str) -> None:
        bomb = tmp_path / "bomb.zip"
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            if not member.endswith(".xml"):
                zf.writestr("S2A.SAFE/MTD_MSIL2A.xml", _MTD.format(**_GOOD))
            with zf.open(member, "w", force_zip64=True) as f:
                chunk = b"\0" * (1 << 20)
                for _ in range(64):
                    f.write(chunk)
        assert bomb.stat().st_size < 200_000
        t = time.perf_counter()
        with pytest.raises(UnsafeArchiveError, match="zip bomb"):
            open_scene(bomb)
        assert time.perf_counter() - t < 1

    def test_not_a_zip(self, tmp_path: Path) -> None:
        fake = tmp_path / "fake.zip"
        fake.write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(RasterReadError, match="not a readable zip"):
            open_scene(fake)


# ---------------------------------------------------------------- 3. nodata of product bands

class TestProductNodata:
    def _jp2_folder(self, folder: Path, names: str) -> Path:
        folder.mkdir(parents=True)
        data = field((16, 16), 4)
        data[:, :, :3] = 0  # a no-data border
        for k, b in enumerate(DEFAULT_BANDS):
            write_geotiff(folder / names.format(b=b), data[k:k + 1], descriptions=None,
                          driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
        return folder

    def test_s2_named_jp2_folder_gets_nodata_0(self, tmp_path: Path) -> None:
        folder = self._jp2_folder(tmp_path / "bands", "T33UUB_20230601T102031_{b}_10m.jp2")
        with open_scene(folder, bands=DEFAULT_BANDS, dn_offset=0) as scene:
            assert scene.meta.nodata == 0

    def test_img_data_folder_gets_nodata_0(self, tmp_path: Path) -> None:
        folder = self._jp2_folder(tmp_path / "IMG_DATA", "x_{b}.jp2")
        with open_scene(folder, bands=DEFAULT_BANDS, dn_offset=0) as scene:
            assert scene.meta.nodata == 0

    def test_other_files_keep_their_nodata(self, tmp_path: Path) -> None:
        folder = self._jp2_folder(tmp_path / "mine", "x_{b}.jp2")
        with open_scene(folder, bands=DEFAULT_BANDS, dn_offset=0) as scene:
            assert scene.meta.nodata is None


# ---------------------------------------------------------------- 4./5. band names

class TestBandNames:
    def test_bands_select_among_descriptions(self, tmp_path: Path) -> None:
        data = field((8, 8), 4)
        tif = write_geotiff(tmp_path / "s.tif", data)
        with open_scene(tif, bands=DEFAULT_BANDS, band_names=list(DEFAULT_BANDS)) as scene:
            assert scene.meta.bands == DEFAULT_BANDS
        with open_scene(tif, band_names=["B04", "B02"]) as scene:
            assert scene.meta.bands == ("B04", "B02")
            np.testing.assert_array_equal(scene.read(Window(0, 0, 8, 8)), data[[2, 0]])
        with open_scene(tif, bands=RGB_BANDS, band_names=["b4", "B3", "blue"]) as scene:
            np.testing.assert_array_equal(scene.read(Window(0, 0, 8, 8)), data[:3])
        with pytest.raises(BandError, match="leaves out B08"):
            open_scene(tif, bands=DEFAULT_BANDS, band_names=["B02", "B03", "B04"])
        with pytest.raises(UsageError, match="B11 not among the band descriptions"):
            open_scene(tif, band_names=["B02", "B11"])
        with pytest.raises(UsageError, match="more than once"):
            open_scene(tif, band_names=["B02", "B02"])

    def test_position_naming_without_descriptions(self, tmp_path: Path) -> None:
        data = field((8, 8), 4)
        tif = write_geotiff(tmp_path / "p.tif", data, descriptions=None)
        with open_scene(tif, bands=("B08",), band_names=["B02", "B03", "B04", "B08"]) as scene:
            np.testing.assert_array_equal(scene.read(Window(0, 0, 8, 8)), data[3:])
        with pytest.raises(UsageError, match="name every band"):
            open_scene(tif, band_names=["B02"])

    @pytest.mark.parametrize("descriptions", [("Band 1", "Band 2", "Band 3", "Band 4"),
                                              ("red edge", "foo", "B04", "B08")])
    def test_unrecognised_descriptions_refused(self, tmp_path: Path,
                                               descriptions: tuple[str, ...]) -> None:
        tif = write_geotiff(tmp_path / "u.tif", field((8, 8), 4), descriptions=descriptions)
        with pytest.raises(BandError, match="not Sentinel-2 names") as err:
            open_scene(tif, bands=DEFAULT_BANDS)
        assert repr(descriptions[0]) in str(err.value) and "--bands" in str(err.value)
        assert "no band descriptions" not in str(err.value)
        with open_scene(tif, bands=DEFAULT_BANDS, band_names=list(DEFAULT_BANDS),
                        dn_offset=0) as scene:  # --bands naming by position overrides them
            assert scene.meta.bands == DEFAULT_BANDS

    def test_no_descriptions_still_assumed_with_warning(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        tif = write_geotiff(tmp_path / "n.tif", field((8, 8), 4), descriptions=None)
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
                tif, bands=DEFAULT_BANDS, dn_offset=0):
            pass
        assert "no band descriptions" in caplog.text


# ---------------------------------------------------------------- 6. grids

def test_band_on_another_grid_is_a_distinct_error(tmp_path: Path) -> None:
    arr = field((16, 16), 4)
    for k, b in enumerate(RGB_BANDS):
        write_geotiff(tmp_path / f"x_{b}.tif", arr[k:k + 1], descriptions=None)
    with pytest.raises(BandError) as missing:
        open_scene(tmp_path, bands=DEFAULT_BANDS)
    assert not isinstance(missing.value, GridMismatchError)
    write_geotiff(tmp_path / "x_B08.tif", arr[3:, ::2, ::2], descriptions=None,
                  transform=UTM_TRANSFORM @ Affine.scale(2))
    with pytest.raises(GridMismatchError, match=r"B08 \(8x8 px\) is not on the grid"):
        open_scene(tmp_path, bands=DEFAULT_BANDS)


# ---------------------------------------------------------------- 7. GDAL scale/offset

@pytest.mark.parametrize(("scale", "offset"), [
    (0.0, 0.0), (-1e-4, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (1e-4, float("nan")),
    (1e-40, 0.0), (1e-12, 0.0), (1e30, 0.0), (1e-4, 1e30)])  # absurd but finite too
def test_bad_gdal_scale_refused(tmp_path: Path, scale: float, offset: float) -> None:
    tif = write_geotiff(tmp_path / "s.tif", field((8, 8), 4))
    with rasterio.open(tif, "r+") as ds:
        ds.scales = (scale,) * 4
        ds.offsets = (offset,) * 4
    with pytest.raises(DataError, match="s2sr takes a scale of 1e-07 to 100"):
        open_scene(tif, bands=DEFAULT_BANDS)


# ---------------------------------------------------------------- 8./10. sizes and odd files

def _huge_sparse(path: Path, width: int, height: int, count: int = 4) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype="uint16", tiled=True, blockxsize=4096, blockysize=4096,
                       SPARSE_OK=True, BIGTIFF="YES", crs="EPSG:32633",
                       transform=UTM_TRANSFORM) as ds:
        ds.descriptions = DEFAULT_BANDS[:count]
    return path


@pytest.mark.parametrize(("width", "height"), [(1_000_000, 1_000_000), (100_001, 16)])
def test_absurd_size_refused_before_reading(tmp_path: Path, tiny_weights: Path, width: int,
                                            height: int) -> None:
    tif = _huge_sparse(tmp_path / "huge.tif", width, height)
    t = time.perf_counter()
    with pytest.raises(DataError, match=f"claims {width} x {height} pixels.*100000 px a side"):
        predict(tif, tmp_path / "out.tif", tiny_weights)
    assert time.perf_counter() - t < 5
    assert not list(tmp_path.glob("out*"))


def test_too_many_bands_refused(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "many.tif", np.ones((300, 2, 2), np.uint16), descriptions=None)
    with pytest.raises(DataError, match="claims 300 bands"):
        open_scene(tif, bands=DEFAULT_BANDS)


def test_zero_band_vrt_refused(tmp_path: Path) -> None:
    vrt = tmp_path / "empty.vrt"
    vrt.write_text('<VRTDataset rasterXSize="4" rasterYSize="4"></VRTDataset>')
    with pytest.raises(RasterReadError, match=r"cannot open .*empty\.vrt as a raster"):
        open_scene(vrt, bands=DEFAULT_BANDS)


@pytest.mark.parametrize("content", [b"hello, not a raster\n", b"", b"II*\x00\x08\x00"])
def test_non_raster_named_tif_refused(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "fake.tif"
    fake.write_bytes(content)
    with pytest.raises(S2SRError, match=r"fake\.tif") as err:
        open_scene(fake, bands=DEFAULT_BANDS)
    assert "\n" not in str(err.value) and err.value.exit_code == 1


def test_multi_band_file_in_per_band_folder_refused(tmp_path: Path) -> None:
    arr = field((8, 8), 4)
    for k, b in enumerate(DEFAULT_BANDS):
        write_geotiff(tmp_path / f"x_{b}.tif", arr[k:k + 1], descriptions=None)
    write_geotiff(tmp_path / "x_B02.tif", arr, descriptions=None)
    with pytest.raises(DataError, match="has 4 bands: a per-band file holds one"):
        open_scene(tmp_path, bands=DEFAULT_BANDS)


# ---------------------------------------------------------------- 9. processing baseline offset

class TestBaselineOffset:
    def _folder(self, folder: Path, data: np.ndarray) -> Path:
        folder.mkdir(parents=True)
        for k, b in enumerate(DEFAULT_BANDS):
            write_geotiff(folder / f"T33UUB_20230615T102031_{b}_10m.jp2", data[k:k + 1],
                          descriptions=None, driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
        return folder

    def test_product_name_in_path(self, tmp_path: Path) -> None:
        name = "S2B_MSIL2A_20230615T102031_N0509_R065_T33UUB_20230615T131000.SAFE"
        folder = self._folder(tmp_path / name / "bands", field((8, 8), 4) + 1000)
        with open_scene(folder, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (-0.1,) * 4
            assert scene.meta.tags["S2_PROCESSING_BASELINE"] == "05.09"

    def test_old_baseline_name_gives_no_offset(self, tmp_path: Path) -> None:
        name = "S2A_MSIL1C_20210615T102031_N0300_R065_T33UUB_20210615T131000"
        folder = self._folder(tmp_path / name, field((8, 8), 4))
        with open_scene(folder, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (0.0,) * 4

    def test_mtd_tl_beside_granule_copy(self, tmp_path: Path) -> None:
        granule = self._folder(tmp_path / "granule" / "IMG_DATA", field((8, 8), 4))
        (granule.parent / "MTD_TL.xml").write_text(
            "<Level-1C_Tile_ID><General_Info><TILE_ID>S2A_OPER_MSI_L1C_TL_2APS_20230615T1_"
            "A041000_T33UUB_N04.00</TILE_ID></General_Info></Level-1C_Tile_ID>")
        with open_scene(granule.parent, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (-0.1,) * 4 and scene.meta.nodata == 0

    @pytest.mark.parametrize("level", ["L2A", "L1C"])
    @pytest.mark.parametrize("depth", ["granule", "img_data"])
    def test_granule_folder_of_a_product(self, tmp_path: Path, level: str, depth: str) -> None:
        data = field((16, 16), 4) + 1000
        safe = make_safe(tmp_path, data, level=level, offset=-900)
        granule = next((safe / "GRANULE").iterdir())
        target = granule if depth == "granule" else granule / "IMG_DATA"
        with open_scene(target, bands=DEFAULT_BANDS) as scene:
            meta = scene.meta
            np.testing.assert_array_equal(scene.read(Window(0, 0, 16, 16)), data)
        assert meta.offsets == pytest.approx((-0.09,) * 4) and meta.nodata == 0 and meta.width == 16

    def test_geotiff_baseline_tag(self, tmp_path: Path) -> None:
        tif = write_geotiff(tmp_path / "extract.tif", field((8, 8), 4))
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(PROCESSING_BASELINE="05.09")
        with open_scene(tif, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (-0.1,) * 4

    def test_explicit_offset_overrides(self, tmp_path: Path) -> None:
        tif = write_geotiff(tmp_path / "extract.tif", field((8, 8), 4))
        with open_scene(tif, bands=DEFAULT_BANDS, dn_offset=-1000) as scene:
            assert scene.meta.offsets == (-0.1,) * 4
            assert scene.meta.tags["S2_DN_OFFSET"].startswith("B02:-1000")
        safe = make_safe(tmp_path, field((8, 8), 4) + 1000, baseline="05.09")
        with open_scene(safe, bands=DEFAULT_BANDS, dn_offset=0) as scene:
            assert scene.meta.offsets == (0.0,) * 4

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e6])
    def test_bad_explicit_offset(self, tmp_path: Path, bad: float) -> None:
        tif = write_geotiff(tmp_path / "e.tif", field((8, 8), 4))
        with pytest.raises(UsageError, match=r"DN offset .* is out of range"):
            open_scene(tif, bands=DEFAULT_BANDS, dn_offset=bad)

    def test_offset_on_float_reflectance_refused(self, tmp_path: Path) -> None:
        tif = write_geotiff(tmp_path / "f.tif", field((8, 8), 4, dtype="float32"))
        with pytest.raises(UsageError, match="applies to integer DN"):
            open_scene(tif, bands=DEFAULT_BANDS, dn_offset=-1000)

    def test_unknown_baseline_warns(self, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
        folder = self._folder(tmp_path / "plain", field((8, 8), 4))
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
                folder, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (0.0,) * 4
        assert "cannot tell the processing baseline" in caplog.text
        assert "--offset -1000" in caplog.text
        caplog.clear()
        tif = write_geotiff(tmp_path / "export.tif", field((8, 8), 4))  # a plain export: no noise
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(tif, bands=DEFAULT_BANDS):
            pass
        assert "processing baseline" not in caplog.text


def test_prediction_output_is_not_offset_twice(tmp_path: Path, tiny_weights: Path) -> None:
    """An s2sr output (GDAL scale/offset set) re-read is not shifted by its baseline tags."""
    safe = make_safe(tmp_path, field((16, 16), 4) + 1000, as_zip=True)
    out = predict(safe, tmp_path / "sr.tif", tiny_weights)
    with open_scene(out) as scene:
        assert scene.meta.offsets == pytest.approx((-0.1,) * 4)
    assert os.path.getsize(out) > 0
