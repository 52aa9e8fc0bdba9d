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

The same scene given twice is kept once. A folder scan or a glob takes a ``.json`` only
when it is a STAC Item or ItemCollection, and never takes what s2sr itself wrote (outputs
with a completion record or s2sr's tags, completion records, run reports, temporaries), so
``predict DIR -o DIR`` can be run again. An entry found by a scan or a list that cannot be
read becomes a scene carrying its error (:attr:`SceneInput.error`): it fails alone, the
others go on; with ``per_scene_errors`` the inputs given directly do the same.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from s2sr.core.errors import InputNotFoundError, S2SRError, UsageError
from s2sr.core.files import is_temp_name
from s2sr.io.bandfolder import band_files, band_folder_files
from s2sr.io.base import short_error
from s2sr.io.gdal_safety import open_raster
from s2sr.io.remote import is_url
from s2sr.io.safe import is_safe_folder
from s2sr.io.stac_document import (
    MAX_ITEMS,
    item_with_absolute_hrefs,
    read_json_bounded,
    safe_stem,
    stac_items,
)

log = logging.getLogger(__name__)

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
        error: why the scene cannot be read (one line), found while listing the inputs;
            the scene then fails alone.
    """

    source: str
    stem: str
    item: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    error: str | None = field(default=None, compare=False, hash=False)


#: Suffix of the completion records s2sr writes beside its outputs.
RECORD_SUFFIX: Final[str] = ".s2sr.json"
#: ``format`` of s2sr's JSON files that are never inputs (run reports, records).
OWN_FORMATS: Final[tuple[str, ...]] = ("s2sr-run-report", "s2sr-completion-record")


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


def is_own_file(path: Path) -> bool:
    """Whether ``path`` is something s2sr wrote: a temporary, a completion record, a run
    report, or an output (a completion record beside it, or s2sr's tags in it)."""
    name = path.name
    if is_temp_name(name) or name.lower().endswith(RECORD_SUFFIX):
        return True
    if path.with_name(name + RECORD_SUFFIX).is_file():
        return True
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            if path.stat().st_size > (1 << 20):
                return False
            data = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and data.get("format") in OWN_FORMATS
    if suffix in (".tif", ".tiff"):
        try:
            with open_raster(str(path)) as dataset:
                return "S2SR_MODEL_SHA256" in dataset.tags()
        except Exception:
            return False
    return False


def _is_stac_json(path: Path) -> bool:
    """Whether a ``.json`` met in a scan is meant as STAC: anything but valid JSON of
    another kind (a JSON that cannot be read is kept, to fail as a scene saying why)."""
    try:
        if path.stat().st_size > (32 << 20):
            return True
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return True
    return isinstance(data, dict) and data.get("type") in ("Feature", "FeatureCollection")


def _scan_entry(entry: Path) -> bool:
    """Whether a folder entry (or glob match) is a scene to take."""
    if entry.name.startswith(".") or is_own_file(entry):
        return False
    if entry.is_dir():
        try:
            return is_scene_folder(entry)
        except OSError:
            return True  # unreadable: it fails as a scene, saying why
    if entry.suffix.lower() == ".json" and not _is_stac_json(entry):
        log.info("%s is not a STAC Item or ItemCollection: not taken as a scene", entry)
        return False
    return entry.suffix.lower() in SCENE_SUFFIXES


def _folder_scenes(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        raise InputNotFoundError(f"cannot list the folder {folder} ({short_error(err)}): "
                                 "check its permissions") from None
    return [entry for entry in entries if _scan_entry(entry)]


def _failed(path: Path, err: BaseException) -> SceneInput:
    text = short_error(err)
    if isinstance(err, OSError) and not isinstance(err, S2SRError):
        text = f"cannot read {path} ({err.strerror or type(err).__name__}): check its " \
               "permissions"
    return SceneInput(str(path), scene_stem(path), error=text)


def _lenient(path: Path) -> list[SceneInput]:
    """:func:`_path` for an entry found by a scan or a list: its failure is its own."""
    try:
        return _path(path)
    except InputNotFoundError as err:
        if path.exists():
            return [_failed(path, err)]
        raise
    except (S2SRError, OSError) as err:
        return [_failed(path, err)]


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


def _one(entry: str, depth: int, lenient: bool) -> list[SceneInput]:
    if entry.startswith("@"):
        return _many(_read_list(Path(entry[1:])), depth + 1, True)
    if is_url(entry):
        if lenient:
            try:
                return _stac(entry)
            except S2SRError as err:
                stem = safe_stem(entry.rstrip("/").rsplit("/", 1)[-1].split("?")[0])
                return [SceneInput(entry, stem, error=short_error(err))]
        return _stac(entry)
    path = Path(entry)
    if not path.exists():
        if any(c in entry for c in "*?["):
            found = [Path(m) for m in sorted(glob.glob(entry))]
            if not found:
                raise InputNotFoundError(f"{entry} matches no file: check the pattern")
            matches = [m for m in found if _scan_entry(m)]
            if not matches:
                raise InputNotFoundError(f"{entry} matches no scene (only files s2sr wrote, "
                                         "or JSON that is not STAC): check the pattern")
            return [s for m in matches for s in _lenient(m)]
        if depth > 0:  # an entry of a list: it fails alone
            return [SceneInput(entry, scene_stem(path), error=f"input {entry} does not "
                               "exist: check the list file")]
        raise InputNotFoundError(f"input {entry} does not exist: check the path")
    if path.is_file() and path.suffix.lower() == ".txt":
        return _many(_read_list(path), depth + 1, True)
    return _lenient(path) if lenient else _path(path)


def _path(path: Path) -> list[SceneInput]:
    if path.is_dir() and not is_scene_folder(path):
        scenes = _folder_scenes(path)
        if not scenes:
            raise InputNotFoundError(
                f"folder {path} holds no scene (no .tif/.zip/.json files, .SAFE or per-band "
                "folders) and is no per-band folder itself: check the path")
        return [s for p in scenes for s in _lenient(p)]
    if path.is_file() and path.suffix.lower() == ".json":
        return _stac(str(path))
    return [SceneInput(str(path), scene_stem(path))]


def _many(entries: list[str], depth: int, lenient: bool) -> list[SceneInput]:
    if depth > 2:
        raise UsageError("list files nest more than two deep: flatten them")
    return [s for e in entries for s in _one(e, depth, lenient)]


def expand_inputs(entries: list[str] | tuple[str, ...], per_scene_errors: bool = False
                  ) -> list[SceneInput]:
    """The scenes behind the inputs a user gave (see the module's text), duplicates removed.

    Args:
        entries: what the user gave.
        per_scene_errors: an input given directly that exists but cannot be read (a
            broken STAC document, an unreadable file) becomes a scene carrying its error
            instead of raising (entries found by scans and lists always do).

    Raises:
        InputNotFoundError: an input that does not exist or holds no scene.
        UsageError: no input, or more than :data:`MAX_SCENES` scenes.
    """
    if not entries:
        raise UsageError("no input given: pass scene files, folders, globs, @list.txt or "
                         "a STAC ItemCollection")
    scenes = _many([str(e) for e in entries], 0, per_scene_errors)
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
