"""Loading the real images of ``data.synthetic`` as reflectance in the model's bands.

Any image of a held-out test place (:mod:`s2sr.data.places`) is refused, for
training and validation alike: the test places stay out of training and model selection.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from s2sr.core.bands import TYPICAL_MEAN, TYPICAL_STD
from s2sr.core.dn import gdal_gains, to_reflectance
from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.data.places import held_out
from s2sr.data.synthetic import Source
from s2sr.io.nodata import valid_mask
from s2sr.io.raster import open_reference
from s2sr.io.scene import open_scene
from s2sr.training.schema import SourceConfig

log = logging.getLogger(__name__)

#: A training image larger than this (pixels x bands) is refused (about 1.6 GB float32).
MAX_SAMPLES = 400_000_000


def _read_bands(paths: list[tuple[str, int]]
                ) -> tuple[np.ndarray, list[float | None], list[float], list[float]]:
    """The bands ``(file, 1-based index)`` as ``(C, H, W)`` float32 DN, with each band's
    nodata and what the file says of its reflectance (:func:`s2sr.core.dn.gdal_gains`: the
    GDAL scale/offset, else 1e-4 for integers and 1 for floats)."""
    planes, nodatas, gains, offsets = [], [], [], []
    for path, index in paths:
        with open_reference(path) as ds:
            if not 1 <= index <= ds.count:
                raise UsageError(f"{path} has {ds.count} band(s), no band {index}: fix the "
                                 "training image's bands")
            if ds.width * ds.height * len(paths) > MAX_SAMPLES:
                raise UsageError(f"{path} is too large to train from in memory "
                                 f"({ds.width}x{ds.height}): crop it")
            planes.append(ds.read(index).astype(np.float32))
            nodatas.append(ds.nodatavals[index - 1])
            gain, offset, _ = gdal_gains(ds, [index], path)
            gains += gain
            offsets += offset
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise UsageError(f"training image bands differ in size ({sorted(shapes)}): use bands "
                         "of one grid")
    return np.stack(planes), nodatas, gains, offsets


def load_source(cfg: SourceConfig, root: Path, bands: list[str]) -> Source:
    """Read one training image as ``(C, H, W)`` reflectance in ``bands`` order."""
    base = Path(root)
    name = Path(cfg.files[0] if cfg.files else cfg.path).name
    for given in [*(cfg.files or []), cfg.path]:
        entry = held_out(base / given) if given else None
        if entry is not None:
            raise UsageError(f"training image {given} is a held-out test place ({entry}, "
                             "s2sr.data.places): remove it from data.synthetic.train "
                             "and .val")
    if cfg.files is not None or cfg.bands is not None:
        if cfg.files is not None:
            items = [(str(base / f), 1) for f in cfg.files]
        else:
            items = [(str(base / cfg.path), i) for i in cfg.bands or []]
        for path, _ in items:
            if not Path(path).exists():
                raise InputNotFoundError(f"training image {path} does not exist: check "
                                         "data.synthetic.root and the paths")
        dn, nodatas, gains, offsets = _read_bands(items)
        nodata = cfg.nodata if cfg.nodata is not None else nodatas[0]
        valid = valid_mask(dn, nodata)
        if cfg.gain is None:  # what the files say, as a scene's bands
            refl = to_reflectance(dn, gains, offsets) + np.float32(cfg.offset)
        else:
            refl = to_reflectance(dn, [cfg.gain] * len(dn), [cfg.offset] * len(dn))
    else:
        scene_path = base / cfg.path
        if not scene_path.exists():
            raise InputNotFoundError(f"training image {scene_path} does not exist: check "
                                     "data.synthetic.root and the paths")
        with open_scene(scene_path, bands=bands, dn_offset=0) as scene:
            dn = scene.read(Window(0, 0, scene.meta.width, scene.meta.height))
            nodata = cfg.nodata if cfg.nodata is not None else scene.meta.nodata
            valid = valid_mask(dn, nodata)
            if cfg.gain is None:
                refl = scene.reflectance(dn).astype(np.float32) + np.float32(cfg.offset)
            else:
                refl = to_reflectance(dn, [cfg.gain] * len(dn), [cfg.offset] * len(dn))
    if not valid.any():
        raise UsageError(f"training image {name} holds no valid pixel")
    if cfg.match:
        for b, band in enumerate(bands):
            vals = refl[b][valid]
            mu, sd = float(vals.mean()), float(vals.std()) or 1.0
            refl[b] = (refl[b] - mu) / sd * TYPICAL_STD[band] + TYPICAL_MEAN[band]
    refl = np.where(valid[None], refl, 0).astype(np.float32)
    log.info("training image %s: %dx%d px, %.0f%% valid", name, refl.shape[2], refl.shape[1],
             100 * valid.mean())
    return Source(name=name, array=refl, valid=valid, weight=cfg.weight)
