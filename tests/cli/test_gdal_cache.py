"""GDAL's block cache under ``s2sr``: 128 MB unless the user's ``GDAL_CACHEMAX`` says
otherwise, and the streamed engine's output blocks sized to the cache GDAL has (a block
row larger than the cache made GDAL rewrite part blocks; see io.writer.row_block_size)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from support.rasters import field, write_geotiff

CACHE = ("import s2sr.cli.main; from s2sr.io.writer import gdal_cache_bytes; "
         "print(gdal_cache_bytes())")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    return {**env, **values}


@pytest.mark.parametrize(("value", "expected"), [(None, 128 << 20), ("300", 300 << 20),
                                                 ("40000000", 40_000_000)])
def test_default_cache_and_the_users_wins(value: str | None, expected: int) -> None:
    env = _env() if value is None else _env(GDAL_CACHEMAX=value)
    out = subprocess.run([sys.executable, "-c", CACHE], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert int(out.strip()) == expected


def test_users_cache_sizes_the_streamed_blocks(tmp_path: Path, tiny_weights_x4: Path
                                               ) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((40, 1100), 4))
    exe = Path(sys.executable).with_name("s2sr")
    blocks, pixels = {}, {}
    for name, value in (("default", None), ("user", "16")):
        out = tmp_path / f"{name}.tif"
        env = _env() if value is None else _env(GDAL_CACHEMAX=value)
        subprocess.run([str(exe), "predict", str(src), "-o", str(out), "--weights",
                        str(tiny_weights_x4), "--scale", "4", "--quiet"], env=env,
                       check=True)
        with rasterio.open(out) as ds:
            blocks[name], pixels[name] = ds.block_shapes[0], ds.read()
    # a 4400-px output row of 4 uint16 bands: 512 rows take 18 MB (128 MB / 3 = 43 MB),
    # 128 rows 4.5 MB (16 MB / 3 = 5.3 MB)
    assert blocks == {"default": (512, 512), "user": (128, 128)}
    np.testing.assert_array_equal(pixels["default"], pixels["user"])
