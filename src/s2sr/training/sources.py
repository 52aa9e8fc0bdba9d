"""Loading the real images of ``data.synthetic`` as reflectance in the model's bands.

Any image of a held-out test place (:mod:`s2sr.evaluation.places`) is refused, for
training and validation alike: the test places stay out of training and model selection.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from s2sr.core.bands import TYPICAL_MEAN, TYPICAL_STD
from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.data.synthetic import Source
from s2sr.evaluation.places import held_out
from s2sr.io.nodata import valid_mask
from s2sr.io.raster import open_reference
from s2sr.io.scene import open_scene
from s2sr.training.schema import SourceConfig

log = logging.getLogger(__name__)

#: A training image larger than this (pixels x bands) is refused (about 1.6 GB float32).
MAX_SAMPLES = 400_000_000


def _read_bands(paths: list[tuple[str, int]]) -> tuple[np.ndarray, list[float | None]]:
    planes, nodatas = [], []
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
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise UsageError(f"training image bands differ in size ({sorted(shapes)}): use bands "
                         "of one grid")
    return np.stack(planes), nodatas


def load_source(cfg: SourceConfig, root: Path, bands: list[str]) -> Source:
    """Read one training image as ``(C, H, W)`` reflectance in ``bands`` order."""
    base = Path(root)
    name = Path(cfg.files[0] if cfg.files else cfg.path).name
    for given in [*(cfg.files or []), cfg.path]:
        entry = held_out(base / given) if given else None
        if entry is not None:
            raise UsageError(f"training image {given} is a held-out test place ({entry}, "
                             "s2sr.evaluation.places): remove it from data.synthetic.train "
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
        dn, nodatas = _read_bands(items)
        nodata = cfg.nodata if cfg.nodata is not None else nodatas[0]
        valid = valid_mask(dn, nodata)
        gain = 1e-4 if cfg.gain is None else cfg.gain
        refl = (dn * gain + cfg.offset).astype(np.float32)
    else:
        scene_path = base / cfg.path
        if not scene_path.exists():
            raise InputNotFoundError(f"training image {scene_path} does not exist: check "
                                     "data.synthetic.root and the paths")
        with open_scene(scene_path, bands=bands, dn_offset=0) as scene:
            dn = scene.read(Window(0, 0, scene.meta.width, scene.meta.height))
            nodata = cfg.nodata if cfg.nodata is not None else scene.meta.nodata
            valid = valid_mask(dn, nodata)
            refl = scene.reflectance(dn).astype(np.float32)
            if cfg.gain is not None:
                refl = (dn.astype(np.float32) * cfg.gain + cfg.offset).astype(np.float32)
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
