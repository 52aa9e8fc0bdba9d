"""Writing georeferenced GeoTIFF/COG atomically, window by window.

The raster is written under a hidden temporary name next to the output (unique to the
call, see :mod:`s2sr.core.files`) and renamed only when complete, so no half-written file
ever carries the final name. Without ``overwrite`` the final name is created with a hard
link, which fails if another run created it meanwhile: two concurrent runs cannot both
"succeed" in writing one output. ``--cog`` output is made by GDAL's COG driver from the
finished temporary GeoTIFF (the COG driver can only copy a complete dataset); that
intermediate is written with a fast codec (:data:`INTERMEDIATE_CODEC`), not uncompressed
(a whole tile at x4 would take about 15 GB). A full disk is reported as such, and leaves
nothing behind.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.control import GroundControlPoint
from rasterio.env import get_gdal_config
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2sr.core.errors import RasterReadError, S2SRError
from s2sr.core.files import (
    disk_full_error,
    is_disk_full,
    publish,
    sweep_stale_temps,
    temp_path,
)
from s2sr.io.base import GeoMeta
from s2sr.io.outputs import check_output_file

log = logging.getLogger(__name__)


def output_meta(meta: GeoMeta, scale: int) -> GeoMeta:
    """The grid of a x``scale`` output: same CRS and bounds, pixel size divided by ``scale``.

    GCPs (a raster georeferenced by them only) move with the grid: GDAL's pixel/line
    coordinates count from the top-left corner of the top-left pixel (a pixel centre is at
    ``+0.5``), so a point at ``(col, row)`` of the input is at ``(col * scale, row * scale)``
    of the output, and pixel centres stay where they were.
    """
    gcps = meta.gcps
    if gcps is not None:
        points = tuple(GroundControlPoint(row=p.row * scale, col=p.col * scale, x=p.x, y=p.y,
                                          z=p.z, id=p.id, info=p.info) for p in gcps[0])
        gcps = (points, gcps[1])
    return replace(
        meta,
        transform=meta.transform @ Affine.scale(1 / scale),
        width=meta.width * scale,
        height=meta.height * scale,
        gcps=gcps,
    )


#: Source tags an output keeps: they name the acquisition, its product and licence, which a
#: super-resolved copy shares. Every other tag may describe the source's pixels (its bands,
#: pixel size, georeferencing: ``BAND_ORDER``, ``GEOREFERENCED``, ``AREA_OR_POINT``...) and
#: would be stale; s2sr's own ``S2_*`` reader tags (baseline, DN offset and its source) are
#: kept, since the output keeps the input's DN encoding.
CARRIED_TAGS = frozenset({
    "ACQUISITION_DATE", "DATE_ACQUIRED", "PROCESSING_BASELINE", "PRODUCT_START_TIME",
    "PRODUCT_STOP_TIME", "PRODUCT_URI", "PRODUCT_TYPE", "PROCESSING_LEVEL", "SENSING_TIME",
    "SPACECRAFT_NAME", "DATATAKE_1_SPACECRAFT_NAME", "DATATAKE_1_DATATAKE_SENSING_START",
    "TILE_ID", "MGRS_TILE", "LICENSE",
})
#: Longest tag value carried (a hostile file's tags are not copied whole).
MAX_TAG_VALUE = 1000


def carried_tags(tags: dict[str, str]) -> dict[str, str]:
    """The source tags that stay true of a super-resolved output (:data:`CARRIED_TAGS` and
    ``S2_*``), values cut to :data:`MAX_TAG_VALUE` characters."""
    return {k: v[:MAX_TAG_VALUE] for k, v in tags.items()
            if k in CARRIED_TAGS or (k.startswith("S2_") and k.isupper() and len(k) <= 64)}


#: Codec of the intermediate GeoTIFF before COG conversion. ZSTD level 1 with the
#: horizontal-differencing predictor: on a 2048 x 2048 x 4 uint16 super-resolved crop it
#: writes in 0.09 s (LZW + predictor 2: 0.36 s; deflate level 6: 0.54 s; none: 0.03 s) and
#: takes 62 % of the raw size (LZW: 69 %); ``benchmarks/bench_intermediate.py``.
INTERMEDIATE_CODEC: dict[str, Any] = {"compress": "zstd", "zstd_level": 1}


#: Deflate level of the output GeoTIFF (GDAL's ``ZLEVEL``; its default is 6). Level 1 with
#: the predictor: a real Sentinel-2 x4 output (2400 x 2400 x 4 uint16, the DSen2 T33UUB
#: crop) written in 0.34 s, 26.4 MB; level 6: 1.08 s, 26.1 MB (1.1 % smaller); level 3:
#: 0.55 s, 26.5 MB; one thread, best of 3 (issue 23). While the network runs the writing
#: thread's compression takes CPU time from it: the cheap level keeps ``s2sr predict``
#: near the network's own speed. Any deflate reader reads it (same codec); the COG copy,
#: after the network, keeps GDAL's default level.
OUTPUT_ZLEVEL = 1


#: GDAL's ``NUM_THREADS`` (deflate on that many threads) where nothing else needs the CPUs:
#: the same bytes, written 1.9 times as fast on 2 cores (4096^2 x 4 uint16). While the
#: network runs on the CPU its threads already take every core, and compression threads
#: beside them slowed ``s2sr predict`` down (OpenMP's thread team waits for a preempted
#: thread): there the output is compressed in the writing thread alone (``"1"``). On a
#: GPU the single-threaded deflate was the bottleneck (16 CPUs: 4096^2 x2 in 29.6 s, 16.3 s
#: with all of them; benchmarks/README.md, "GPU"); the COG copy, after the network, always
#: uses all CPUs. GDAL's own ``GDAL_NUM_THREADS`` (a number or ``ALL_CPUS``) overrides both.
ALL_CPUS = "ALL_CPUS"


def compress_threads(default: str = ALL_CPUS) -> str:
    """GDAL's ``NUM_THREADS`` for the output: ``GDAL_NUM_THREADS`` when it is set to a
    number from 1 to 1024 or ``ALL_CPUS``, else ``default``."""
    value = os.environ.get("GDAL_NUM_THREADS", "").strip().upper()
    if value == ALL_CPUS or (value.isdigit() and 1 <= int(value) <= 1024):
        return value
    return default


def intermediate_profile(dtype: str) -> dict[str, Any]:
    """Creation options of the intermediate GeoTIFF for ``dtype`` (predictor 3 for floats,
    2 for integers)."""
    is_float = np.issubdtype(np.dtype(dtype), np.floating)
    return {**INTERMEDIATE_CODEC, "predictor": 3 if is_float else 2}


def to_cog(src: Path, dest: Path) -> None:
    """Copy the finished GeoTIFF ``src`` to a Cloud Optimised GeoTIFF ``dest`` (512 px
    blocks, averaged overviews, deflate with a predictor)."""
    rasterio.shutil.copy(
        str(src), str(dest), driver="COG", BLOCKSIZE=512, BIGTIFF="IF_SAFER",
        OVERVIEWS="AUTO", RESAMPLING="AVERAGE", COMPRESS="DEFLATE", PREDICTOR="YES",
        NUM_THREADS=compress_threads(),
    )


#: Exception types GDAL raises through rasterio (``CPLE_*`` are not ``RasterioError``).
GDAL_ERRORS: tuple[type[Exception], ...] = (RasterioError, CPLE_BaseError, OSError)


def write_failure(err: BaseException, path: Path) -> Exception:
    """The one-line error for a failed write of ``path`` (disk full named as such)."""
    if is_disk_full(err, Path(path).parent):
        return disk_full_error(path)
    text = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return RasterReadError(f"writing {path} failed ({text}): check the disk and the output "
                           "folder; nothing was left behind")


def block_size_for(stride: int) -> int:
    """Largest of 512, 256, ..., 16 dividing ``stride`` (so tile writes fill whole blocks)."""
    for size in (512, 256, 128, 64, 32, 16):
        if stride % size == 0:
            return size
    return 256


#: Share of GDAL's block cache one block row of a row-by-row output may take (the rest
#: holds the input's blocks and finished output blocks until GDAL writes them).
BLOCK_ROW_SHARE = 3


def gdal_cache_bytes() -> int:
    """GDAL's block cache size in bytes (``GDAL_CACHEMAX``, as GDAL reads it)."""
    with rasterio.Env():
        return int(get_gdal_config("GDAL_CACHEMAX"))


def row_block_size(width: int, count: int, dtype: str, cache: int | None = None) -> int:
    """Block size of an output written a few rows at a time, ``width`` px wide with
    ``count`` bands of ``dtype``: the largest of 512, 256, 128, 64 whose block row takes
    at most 1/:data:`BLOCK_ROW_SHARE` of GDAL's block ``cache`` (default: its size now).

    GDAL allocates a block whole when a row of it is written and keeps it dirty until it
    leaves the cache; a cache smaller than one block row makes GDAL write (compress) part
    blocks, read them back and rewrite them at the end of the file: slow, and the file
    grows with orphaned blocks.
    """
    cache = gdal_cache_bytes() if cache is None else cache
    row = width * count * np.dtype(dtype).itemsize
    for size in (512, 256, 128):
        if row * size * BLOCK_ROW_SHARE <= cache:
            return size
    return 64


class RasterWriter:
    """An output raster opened for window writes; commit with :meth:`commit`.

    Args:
        path: final output path.
        meta: output grid, dtype, nodata and bands (see :func:`output_meta`).
        overwrite: replace an existing output.
        cog: make a Cloud Optimised GeoTIFF.
        tags: dataset tags to record.
        blocksize: internal tile size of the GeoTIFF.
        write_scales: record ``meta.gains``/``meta.offsets`` as GDAL band scale/offset.
        threads: GDAL's ``NUM_THREADS`` while writing: ``"1"`` (the default: compression
            in the writing thread) or ``"ALL_CPUS"`` when the CPUs are free (the network
            runs on a GPU); see :func:`compress_threads`.
    """

    def __init__(
        self, path: str | os.PathLike[str], meta: GeoMeta, *, overwrite: bool = False,
        cog: bool = False, tags: dict[str, str] | None = None, blocksize: int = 512,
        write_scales: bool = False, threads: str = "1",
    ) -> None:
        self.path = Path(path)
        check_output_file(self.path, overwrite)
        sweep_stale_temps(self.path.parent, self.path.name)
        self.meta = meta
        self.cog = cog
        self.overwrite = overwrite
        self.blocksize = blocksize
        #: a row of blocks being filled: its first row, its rows, which rows came
        self._held: tuple[int, np.ndarray, np.ndarray] | None = None
        self.tmp = temp_path(self.path, ".tif")
        self._cog_tmp = temp_path(self.path, ".cog.tif")
        is_float = np.issubdtype(np.dtype(meta.dtype), np.floating)
        # the COG driver recompresses: keep its intermediate fast to write
        codec = intermediate_profile(meta.dtype) if cog else {
            "compress": "deflate", "zlevel": OUTPUT_ZLEVEL, "predictor": 3 if is_float else 2}
        profile: dict[str, Any] = {
            "driver": "GTiff", "width": meta.width, "height": meta.height,
            "count": len(meta.bands), "dtype": meta.dtype, "crs": meta.crs,
            "transform": meta.transform, "nodata": meta.nodata, "tiled": True,
            "blockxsize": blocksize, "blockysize": blocksize, "BIGTIFF": "IF_SAFER",
            "interleave": "pixel", "num_threads": compress_threads(threads),
            **codec,
        }
        if meta.crs is None:
            profile.pop("crs")
        if meta.gcps is not None:  # georeferenced by GCPs: no geotransform
            profile.pop("transform")
            profile["gcps"], profile["crs"] = meta.gcps
            if profile["crs"] is None:
                profile.pop("crs")
        self._dataset: Any = None
        try:
            self._dataset = rasterio.open(self.tmp, "w", **profile)
            self._dataset.descriptions = tuple(meta.bands)
            if tags:
                self._dataset.update_tags(**tags)
            if write_scales:
                self._dataset.scales = meta.gains
                self._dataset.offsets = meta.offsets
        except GDAL_ERRORS as err:
            failure = write_failure(err, self.path)
            self.abort()
            raise failure from None
        except BaseException:  # refused by rasterio itself (band counts), Ctrl-C...
            self.abort()
            raise

    def write(self, window: Window, data: np.ndarray) -> None:
        """Write ``(C, h, w)`` data of the output dtype into ``window``.

        Full-width rows that do not fill a row of blocks (a streamed output) are held
        until the row of blocks is complete and then written at once: GDAL writes whole
        blocks straight to the file and raises when that fails, whereas blocks it caches
        are flushed at close, where a failed write (a full disk) is not raised by rasterio
        and the output would be published damaged."""
        r0, h = int(window.row_off), int(window.height)
        if int(window.col_off) != 0 or int(window.width) != self.meta.width:
            self._write(window, data)
            return
        bh = self.blocksize
        while h > 0:  # one row of blocks at a time
            top = r0 // bh * bh
            rows = min(h, top + bh - r0)
            self._hold(top, r0, data[:, :rows])
            data, r0, h = data[:, rows:], r0 + rows, h - rows

    def _hold(self, top: int, r0: int, rows: np.ndarray) -> None:
        """Rows ``r0 .. r0 + len`` of the row of blocks starting at ``top``: written when
        that row of blocks is complete (at once when ``rows`` fills it)."""
        full = min(self.blocksize, self.meta.height - top)
        n = rows.shape[1]
        if r0 == top and n == full:
            self._write(Window(0, top, self.meta.width, n), rows)
            return
        if self._held is None or self._held[0] != top:
            if self._held is not None:  # an unfinished row of blocks: write what came
                self._flush_held()
            self._held = (top, np.zeros((rows.shape[0], full, self.meta.width), rows.dtype),
                          np.zeros(full, bool))
        _, buf, got = self._held
        buf[:, r0 - top:r0 - top + n] = rows
        got[r0 - top:r0 - top + n] = True
        if got.all():
            self._flush_held()

    def _flush_held(self) -> None:
        """Write the held rows (only those that came: an unfinished row of blocks is
        written in runs of rows, through GDAL's cache)."""
        if self._held is None:
            return
        top, buf, got = self._held
        self._held = None
        edges = np.flatnonzero(np.diff(np.concatenate(([0], got.view(np.int8), [0]))))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            self._write(Window(0, top + int(a), self.meta.width, int(b - a)), buf[:, a:b])

    def _write(self, window: Window, data: np.ndarray) -> None:
        try:
            self._dataset.write(data, window=window)
        except GDAL_ERRORS as err:
            raise write_failure(err, self.path) from None

    def update_tags(self, **tags: str) -> None:
        """Record more dataset tags before :meth:`commit` (e.g. counts known at the end)."""
        self._dataset.update_tags(**tags)

    def commit(self) -> Path:
        """Close, convert to COG if asked, and move to the final path.

        Raises:
            DiskFullError: the disk ran out (nothing is left behind).
            OutputExistsError: without ``overwrite``, another run created the output
                meanwhile (it is kept; this run's file is discarded).
        """
        try:
            self._flush_held()
            self._dataset.close()
            src = self.tmp
            if self.cog:
                to_cog(self.tmp, self._cog_tmp)
                self.tmp.unlink(missing_ok=True)
                src = self._cog_tmp
            publish(src, self.path, overwrite=self.overwrite)
        except S2SRError:
            self.abort()
            raise
        except GDAL_ERRORS as err:
            failure = write_failure(err, self.path)
            self.abort()
            raise failure from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete everything written so far."""
        try:
            if self._dataset is not None and not self._dataset.closed:
                self._dataset.close()
        except Exception:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)
            self._cog_tmp.unlink(missing_ok=True)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
