"""Sentinel-2 scenes as STAC: per-band COGs with an Item naming them as Earth Search does,
a FeatureCollection file, and an HTTP handler with Range support for GDAL's /vsicurl/."""

from __future__ import annotations

import http.server
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from support.rasters import write_geotiff

BANDS = ("B02", "B03", "B04", "B08")
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}


def stac_item(folder: Path, ident: str, data: np.ndarray, *, relative: bool = True,
              cog: bool = True, **props: Any) -> dict[str, Any]:
    """Per-band COGs of ``data`` in ``folder/ident/`` and a STAC Item naming them the way
    Earth Search does (asset keys by common name, eo:bands with the band name)."""
    scene = folder / ident
    scene.mkdir(parents=True)
    assets: dict[str, Any] = {}
    for k, band in enumerate(BANDS):
        path = write_geotiff(scene / f"{band}.tif", data[k:k + 1], descriptions=None,
                             driver="COG" if cog else "GTiff")
        assets[COMMON[band]] = {
            "href": f"{ident}/{band}.tif" if relative else str(path),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "eo:bands": [{"name": band, "common_name": COMMON[band]}], "roles": ["data"]}
    assets["thumbnail"] = {"href": "https://example.invalid/thumb.png", "roles": ["thumbnail"]}
    assets["visual"] = {"href": f"{ident}/visual.tif", "eo:bands": [
        {"name": "B04"}, {"name": "B03"}, {"name": "B02"}]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": ident,
            "properties": {"datetime": "2023-06-01T10:20:31Z", **props}, "assets": assets,
            "geometry": None, "links": []}


def collection(folder: Path, items: list[dict[str, Any]]) -> Path:
    """``items`` as a FeatureCollection file ``folder/items.json``."""
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (what GDAL's /vsicurl/ needs)."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().send_head()
        start, _, end = header.removeprefix("bytes=").partition("-")
        data = path.read_bytes()
        first, last = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(data[first:last + 1])
