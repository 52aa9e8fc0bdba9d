"""The review page's thumbnail cache on disk: a cache file that cannot be written costs
speed only, and leaves no temporary behind (it used to keep one per failed write)."""

from __future__ import annotations

from pathlib import Path

from s2sr.core.files import leftovers
from s2sr.review.catalog import Catalog, Query
from s2sr.review.thumbs import Thumbnails


def test_unwritable_cache_entry_leaves_no_temporary(built: Path, tmp_path: Path) -> None:
    cat = Catalog(built)
    pid = cat.page(Query(equals={"site": {"north"}}, limit=1))["rows"][0]["patch_id"]
    cache = tmp_path / "cache"
    png = Thumbnails(cat, disk=cache).image(pid, "lr", "true", "thumb")
    [entry] = cache.rglob("*.png")
    entry.unlink()
    (entry / "keep").mkdir(parents=True)  # a folder where the cache file goes: rename fails
    again = Thumbnails(cat, disk=cache)
    assert again.image(pid, "lr", "true", "thumb") == png and again.rendered == 1
    assert leftovers(entry.parent) == [] and entry.is_dir()
