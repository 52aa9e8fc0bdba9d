"""Patch images: the stretch, the views and the caches, against independent computations."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from s2sr.data import PairStore
from s2sr.review.catalog import Catalog, Query
from s2sr.review.thumbs import THUMB, Thumbnails, diverging, render
from support.review import rebuild


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_true_colour_and_nir_stretch() -> None:
    bands = ["B02", "B03", "B04", "B08"]
    hr = np.zeros((4, 8, 8), np.int16)
    hr[0], hr[1], hr[2], hr[3] = 600, 1500, 3000, 2500  # reflectance 0.06 0.15 0.30 0.25
    lr = hr[:, ::2, ::2].copy()
    true = _png(render(lr, hr, bands, "hr", "true", "full"))
    assert true.shape == (8, 8, 3)
    assert true[0, 0].tolist() == [255, round(0.15 / 0.3 * 255), round(0.06 / 0.3 * 255)]
    nir = _png(render(lr, hr, bands, "hr", "nir", "full"))  # B08 0-0.5, B04, B03 0-0.3
    assert nir[0, 0].tolist() == [round(0.25 / 0.5 * 255), 255, round(0.15 / 0.3 * 255)]
    # a constant input enlarged is the same constant: no difference, white
    assert (_png(render(lr, hr, bands, "lr", "true", "full")) == true).all()
    assert (_png(render(lr, hr, bands, "diff", "true", "full")) == 255).all()
    # without B08 the NIR view falls back to true colour
    rgb = ["B02", "B03", "B04"]
    assert (_png(render(lr[:3], hr[:3], rgb, "hr", "nir", "full")) == true).all()


def test_difference_colours() -> None:
    d = np.array([[-0.05, 0.0, 0.05, 0.2]])
    rgb = diverging(d)
    assert rgb[0, 0].tolist() == [0, 0, 255]  # reference darker: blue
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2].tolist() == [255, 0, 0] == rgb[0, 3].tolist()  # clipped


def test_views_of_a_patch_from_the_arrays(built: Path) -> None:
    cat = Catalog(built)
    row = cat.page(Query(limit=1))["rows"][0]
    thumbs = Thumbnails(cat)
    _, hr = PairStore(built).arrays(row["pair_id"])
    k = cat.row(row["patch_id"])["index"]
    full = _png(thumbs.image(row["patch_id"], "hr", "true", "full"))
    want = np.clip(np.rint(hr[k][[2, 1, 0]] / 10000 / 0.3 * 255), 0, 255).astype(np.uint8)
    # float32 rendering against float64 here: at most one grey level apart
    assert np.abs(full.astype(int) - want.transpose(1, 2, 0)).max() <= 1
    lr_view = _png(thumbs.image(row["patch_id"], "lr", "true", "full"))
    assert lr_view.shape == full.shape == (24, 24, 3)  # enlarged to the target size
    assert abs(lr_view.astype(int) - full.astype(int)).mean() < 20  # same place, blurrier
    # patches no larger than a thumbnail are not resized for the grid
    assert full.shape[0] <= THUMB
    assert thumbs.image(row["patch_id"], "lr", "true", "thumb") == \
        thumbs.image(row["patch_id"], "lr", "true", "full")


def test_memory_and_disk_caches(built: Path, tmp_path: Path) -> None:
    cat = Catalog(built)
    pid = cat.page(Query(equals={"site": {"north"}}, limit=1))["rows"][0]["patch_id"]
    first = Thumbnails(cat, disk=tmp_path / "cache")
    a = first.image(pid, "diff", "true", "thumb")
    assert first.image(pid, "diff", "true", "thumb") == a and first.rendered == 1
    second = Thumbnails(cat, disk=tmp_path / "cache")  # another run: from the disk cache
    assert second.image(pid, "diff", "true", "thumb") == a and second.rendered == 0
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 1
    rebuild(built)  # new arrays: the cached image is not reused
    cat.refresh()
    second.image(pid, "diff", "true", "thumb")
    assert second.rendered == 1
    tiny = Thumbnails(cat, memory_bytes=1)  # the LRU keeps within its size (at least one)
    for view in ("lr", "hr", "diff"):
        tiny.image(pid, view, "true", "thumb")
    assert tiny.rendered == 3
    tiny.image(pid, "diff", "true", "thumb")  # the last image is kept
    assert tiny.rendered == 3
    tiny.image(pid, "lr", "true", "thumb")  # the others were let go
    assert tiny.rendered == 4


def test_large_patches_are_shrunk_for_the_grid() -> None:
    hr = np.full((4, 256, 256), 900, np.int16)
    lr = hr[:, ::2, ::2].copy()
    bands = ["B02", "B03", "B04", "B08"]
    assert _png(render(lr, hr, bands, "hr", "true", "thumb")).shape == (THUMB, THUMB, 3)
    assert _png(render(lr, hr, bands, "hr", "true", "full")).shape == (256, 256, 3)
