"""Patch images for the review page: PNGs rendered lazily from the memory-mapped arrays.

Three views of a patch, all at the target's pixel grid:

* ``lr``: the Sentinel-2 input enlarged to the target size by bicubic interpolation;
* ``hr``: the reference (target);
* ``diff``: reference minus enlarged input, the mean over the three bands shown, on a
  diverging scale: -0.05 reflectance blue, 0 white, +0.05 red (clipped beyond).

Colours (the stretch is fixed, so that patches compare with each other and nothing must
be computed over the dataset first): true colour is B04, B03, B02 as red, green, blue with
reflectance 0-0.3 mapped linearly to 0-255; the NIR false colour is B08, B04, B03 with
0-0.5 for B08 and 0-0.3 for the others. A pair without those bands shows its first band
in grey (0-0.3); the NIR view of a pair without B08 is its true colour.

Rendered images are kept in an in-memory LRU cache and, optionally, in a folder (one file
per image, named by a digest of the dataset, the array file, the patch and the view): a
rebuilt pair has new array files, so stale images are never served.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from s2sr.core.dn import from_scaled
from s2sr.core.errors import UsageError
from s2sr.core.files import write_atomic
from s2sr.review.catalog import Catalog

#: Bumped when the rendering changes, so that disk caches are not reused across it.
RENDER_VERSION = 1
VIEWS = ("lr", "hr", "diff")
MODES = ("true", "nir")
SIZES = ("thumb", "full")
#: Longest side of a grid thumbnail, pixels.
THUMB = 128
TRUE_BANDS = ("B04", "B03", "B02")
NIR_BANDS = ("B08", "B04", "B03")
VISIBLE_MAX = 0.3
NIR_MAX = 0.5
DIFF_MAX = 0.05


def band_pick(bands: list[str], mode: str) -> tuple[list[int], list[float]]:
    """Band indexes and the reflectance shown as full brightness, for a colour mode.

    ``nir`` of a pair without B08 (a dataset may mix RGB and RGBN pairs) falls back to
    true colour, and true colour without B02-B04 to the first band in grey.
    """
    wanted = TRUE_BANDS if mode == "true" else NIR_BANDS
    if all(b in bands for b in wanted):
        return [bands.index(b) for b in wanted], [
            NIR_MAX if b == "B08" else VISIBLE_MAX for b in wanted]
    if mode == "nir":
        return band_pick(bands, "true")
    return [0, 0, 0], [VISIBLE_MAX] * 3


def to_rgb(refl: np.ndarray, tops: list[float]) -> np.ndarray:
    """``(3, H, W)`` reflectance -> ``(H, W, 3)`` uint8, channel k scaled 0..``tops[k]``."""
    scaled = refl / np.asarray(tops, dtype=np.float32)[:, None, None]
    return np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def diverging(diff: np.ndarray, top: float = DIFF_MAX) -> np.ndarray:
    """``(H, W)`` signed values -> ``(H, W, 3)`` uint8: -top blue, 0 white, +top red."""
    t = np.clip(diff / top, -1.0, 1.0)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    r = 1.0 - neg
    g = 1.0 - np.maximum(pos, neg)
    b = 1.0 - pos
    return np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255), 0, 255).astype(np.uint8)


def enlarge(lr: np.ndarray, size: int) -> np.ndarray:
    """``(C, p, p)`` float32 -> ``(C, size, size)`` by bicubic interpolation (Pillow)."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(band), mode="F")
                                .resize((size, size), Image.Resampling.BICUBIC))
                     for band in lr]).astype(np.float32)


def render(lr_dn: np.ndarray, hr_dn: np.ndarray, bands: list[str], view: str, mode: str,
           size: str) -> bytes:
    """The PNG of one view of one patch.

    Args:
        lr_dn: ``(C, p, p)`` int16 input (reflectance x 10000).
        hr_dn: ``(C, P, P)`` int16 target.
        bands: the pair's band names, in array order.
        view: ``lr``, ``hr`` or ``diff``. mode: ``true`` or ``nir``.
        size: ``thumb`` (at most :data:`THUMB` pixels) or ``full`` (the target's size).
    """
    pick, tops = band_pick(bands, mode)
    side = hr_dn.shape[-1]
    hr = from_scaled(np.asarray(hr_dn[pick]))
    if view == "hr":
        rgb = to_rgb(hr, tops)
    else:
        lr_up = enlarge(from_scaled(np.asarray(lr_dn[pick])), side)
        rgb = to_rgb(lr_up, tops) if view == "lr" else diverging((hr - lr_up).mean(axis=0))
    image = Image.fromarray(rgb, mode="RGB")
    if size == "thumb" and side > THUMB:
        image = image.resize((THUMB, THUMB), Image.Resampling.BOX)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class Thumbnails:
    """Renders and caches patch images of a :class:`Catalog`.

    Args:
        catalog: the dataset.
        memory_bytes: the in-memory LRU cache's size.
        disk: a folder for a persistent cache (created when needed), or ``None``.
    """

    def __init__(self, catalog: Catalog, memory_bytes: int = 64 << 20,
                 disk: Path | None = None) -> None:
        self.catalog = catalog
        self.memory_bytes = memory_bytes
        self.disk = disk
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.rendered = 0  #: images rendered (cache misses), for tests and benchmarks
        self._dataset = str(catalog.root.resolve())

    def image(self, patch_id: str, view: str, mode: str, size: str) -> bytes:
        """The PNG of ``view`` of a patch.

        Raises:
            KeyError: no such patch. UsageError: a bad view, mode or size.
            DataError: a damaged array file.
        """
        if view not in VIEWS or mode not in MODES or size not in SIZES:
            raise UsageError(f"image view/mode/size must be one of {VIEWS}/{MODES}/{SIZES}")
        row = self.catalog.row(patch_id)
        info = self.catalog.pair(row["pair_id"])
        key = hashlib.sha256(repr((RENDER_VERSION, self._dataset, info["lr_array"],
                                   info["hr_array"], row["index"], view, mode, size)
                                  ).encode()).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self._from_disk(key)
        if data is None:
            lr, hr = self._arrays(row["pair_id"], info)
            data = render(lr[row["index"]], hr[row["index"]], list(info["bands"]), view,
                          mode, size)
            self.rendered += 1
            self._to_disk(key, data)
        with self._lock:
            self._cache[key] = data
            self._held += len(data)
            while self._held > self.memory_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._held -= len(old)
        return data

    def _arrays(self, pair_id: str, info: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
        name = f"{info['lr_array']}|{info['hr_array']}"
        with self._lock:
            if name not in self._maps:
                if len(self._maps) > 256:  # a dataset of many pairs: keep the maps bounded
                    self._maps.clear()
                self._maps[name] = self.catalog.store.arrays(pair_id)
            return self._maps[name]

    def _from_disk(self, key: str) -> bytes | None:
        if self.disk is None:
            return None
        try:
            return (self.disk / key[:2] / f"{key}.png").read_bytes()
        except OSError:
            return None

    def _to_disk(self, key: str, data: bytes) -> None:
        if self.disk is None:
            return
        path = self.disk / key[:2] / f"{key}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        except OSError:  # a full or read-only cache only costs speed
            return
