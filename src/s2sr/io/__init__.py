"""Reading Sentinel-2 scenes and writing georeferenced rasters."""

from s2sr.io.archive import check_zip_entries
from s2sr.io.safe_metadata import SafeMetadata, parse_safe_metadata
from s2sr.io.scene import SUPPORTED_DTYPES, GeoMeta, Scene, open_scene
from s2sr.io.writer import RasterWriter, output_meta

__all__ = [
    "SUPPORTED_DTYPES",
    "GeoMeta",
    "RasterWriter",
    "SafeMetadata",
    "Scene",
    "check_zip_entries",
    "open_scene",
    "output_meta",
    "parse_safe_metadata",
]
