"""Many inputs to one list of scenes: files, folders, globs, list files and STAC documents.

:func:`expand_inputs` turns what a user typed after ``s2sr predict`` into
:class:`SceneInput` entries, each one scene with a stem for naming its output:

* a scene file (GeoTIFF/COG, ``.zip``), a ``.SAFE`` folder, a per-band folder, a STAC Item
  ``.json``: one scene;
* another folder: the scenes directly inside it (raster files, ``.zip``, ``.SAFE`` and
  per-band folders, STAC Item files), in name order;
* a glob (``scenes/*.tif``): the scenes it matches, in name order;
* ``@list.txt`` or a ``.txt`` file: one input per line (blank lines and ``#`` comments
  skipped; relative entries are relative to the list's folder);
* a STAC ItemCollection (``.json``) or an ``http(s)://`` URL of an Item or ItemCollection:
  one scene per item (:mod:`s2sr.io.stac`).

The same scene given twice is kept once.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from s2sr.errors import InputNotFoundError, UsageError
from s2sr.io.bandfolder import band_files, band_folder_files
from s2sr.io.safe import is_safe_folder
from s2sr.io.stac import (
    MAX_ITEMS,
    is_url,
    item_with_absolute_hrefs,
    read_json_bounded,
    safe_stem,
    stac_items,
)

#: Suffixes of the scene files found in a folder or a glob.
SCENE_SUFFIXES: Final[tuple[str, ...]] = (".tif", ".tiff", ".zip", ".json", ".vrt")
#: Largest list file read, and the most scenes one run takes.
MAX_LIST_BYTES: Final[int] = 4 * 1024 * 1024
MAX_SCENES: Final[int] = 100_000


@dataclass(frozen=True)
class SceneInput:
    """One scene of a run.

    Attributes:
        source: what :func:`s2sr.io.scene.open_scene` opens (a path), or, for an item of
            an ItemCollection or URL, a label (the document and the item id) until the
            item is written out as its own file.
        stem: the name its output is built from (file stem, SAFE name, STAC item id).
        item: the STAC item (hrefs absolute) when it must be written out first.
    """

    source: str
    stem: str
    item: dict[str, Any] | None = field(default=None, compare=False, hash=False)


def scene_stem(path: Path) -> str:
    """``T33_x.tif`` -> ``T33_x``; ``S2A_...SAFE(.zip)`` -> ``S2A_...``."""
    name = path.name.rstrip("/")
    for suffix in (".SAFE.zip", ".zip", ".SAFE", ".tiff", ".tif", ".json", ".vrt"):
        if name.lower().endswith(suffix.lower()):
            return name[: -len(suffix)] or name
    return path.stem or name


def is_scene_folder(path: Path) -> bool:
    """A ``.SAFE`` product or a folder of per-band files (itself one scene)."""
    return is_safe_folder(path) or path.suffix.upper() == ".SAFE" or \
        bool(band_files(band_folder_files(path)))


def _folder_scenes(folder: Path) -> list[Path]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if is_scene_folder(entry):
                found.append(entry)
        elif entry.suffix.lower() in SCENE_SUFFIXES:
            found.append(entry)
    return found


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise InputNotFoundError(f"list file {path} does not exist: check the path")
    if path.stat().st_size > MAX_LIST_BYTES:
        raise UsageError(f"list file {path} is larger than {MAX_LIST_BYTES} bytes: split it")
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if is_url(text) or os.path.isabs(text):
            entries.append(text)
        else:
            entries.append(str(path.parent / text))
    return entries


def _stac(source: str) -> list[SceneInput]:
    doc = read_json_bounded(source)
    items = stac_items(doc, source)
    if not is_url(source) and doc.get("type") == "Feature":  # opened where it lies
        return [SceneInput(source, safe_stem(items[0]["id"]))]
    base = source if is_url(source) else str(Path(source).resolve().parent)
    return [SceneInput(f"{source}#{item['id']}", safe_stem(item["id"]),
                       item_with_absolute_hrefs(item, base)) for item in items]


def _one(entry: str, depth: int) -> list[SceneInput]:
    if entry.startswith("@"):
        return _many(_read_list(Path(entry[1:])), depth + 1)
    if is_url(entry):
        return _stac(entry)
    path = Path(entry)
    if not path.exists():
        if any(c in entry for c in "*?["):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise InputNotFoundError(f"{entry} matches no file: check the pattern")
            return [s for m in matches for s in _path(Path(m))]
        raise InputNotFoundError(f"input {entry} does not exist: check the path")
    if path.is_file() and path.suffix.lower() == ".txt":
        return _many(_read_list(path), depth + 1)
    return _path(path)


def _path(path: Path) -> list[SceneInput]:
    if path.is_dir() and not is_scene_folder(path):
        scenes = _folder_scenes(path)
        if not scenes:
            raise InputNotFoundError(
                f"folder {path} holds no scene (no .tif/.zip/.json files, .SAFE or per-band "
                "folders) and is no per-band folder itself: check the path")
        return [s for p in scenes for s in _path(p)]
    if path.is_file() and path.suffix.lower() == ".json":
        return _stac(str(path))
    return [SceneInput(str(path), scene_stem(path))]


def _many(entries: list[str], depth: int) -> list[SceneInput]:
    if depth > 2:
        raise UsageError("list files nest more than two deep: flatten them")
    return [s for e in entries for s in _one(e, depth)]


def expand_inputs(entries: list[str] | tuple[str, ...]) -> list[SceneInput]:
    """The scenes behind the inputs a user gave (see the module's text), duplicates removed.

    Raises:
        InputNotFoundError: an input that does not exist or holds no scene.
        UsageError: no input, or more than :data:`MAX_SCENES` scenes.
    """
    if not entries:
        raise UsageError("no input given: pass scene files, folders, globs, @list.txt or "
                         "a STAC ItemCollection")
    scenes = _many([str(e) for e in entries], 0)
    seen: set[str] = set()
    unique = []
    for scene in scenes:
        key = scene.source if scene.item is not None else str(Path(scene.source).resolve())
        if key not in seen:
            seen.add(key)
            unique.append(scene)
    if len(unique) > max(MAX_SCENES, MAX_ITEMS):
        raise UsageError(f"{len(unique)} scenes in one run, more than {MAX_SCENES}: split it")
    return unique
