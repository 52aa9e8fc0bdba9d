"""Band groups of a paired dataset: bands of one resolution stored together (issue 22).

A pair holds its bands in one or more *groups*; each group's bands share one pixel size at
the input and one at the target, and have their own array files. The first group is the
pair's own ``bands``, ``patch``, ``lr_array`` and ``hr_array`` (every pair has it, and every
reader of the 10 m bands reads only it); a Wald pair made with the 20 m bands
(:mod:`s2sr.data.wald20`) adds them as a second group in ``groups``::

    "bands": ["B02", "B03", "B04", "B08"], "patch": 96, "scale": 2,
    "lr_array": "..._lr.npy", "hr_array": "..._hr.npy",
    "groups": [{"bands": ["B05", "B06", "B07", "B8A", "B11", "B12"], "patch": 48,
                "lr_array": "..._lr.npy", "hr_array": "..._hr.npy"}],
    "band_resolution_m": {"B02": [20.0, 10.0], ..., "B05": [40.0, 20.0], ...}

``band_resolution_m`` gives every band's pixel size in metres at the input and at the
target. Every group covers the same ground per patch (``patch x input pixel`` is equal) and
has the pair's ``scale``. A manifest without the field (made before it existed) is one
group, of 10 m bands: its sizes come from ``levels_m`` when the pair has it, else 10 m
Sentinel-2 input.

What a dataset folder says is untrusted: :func:`check_band_groups` bounds every value
(resolutions finite, positive and at most :data:`MAX_RESOLUTION_M`, ratios equal to the
scale, patch sides at most :data:`MAX_PATCH`, band counts, array names) when the manifest
is read, before any array is opened.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2sr.core.errors import DataError
from s2sr.data.arrays import load_patch_array

#: Largest patch side (input pixels) a manifest may declare.
MAX_PATCH = 4096
#: Name an array file of a dataset may have (no path, no hidden file).
ARRAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.npy$")
#: Largest pixel size (metres) a manifest may declare.
MAX_RESOLUTION_M = 100_000.0
#: Most band groups a pair may have (the first included), and most bands in all.
MAX_GROUPS = 8
MAX_BANDS = 64
_REL = 1e-6  # relative tolerance of equal sizes in metres


@dataclass(frozen=True)
class BandGroup:
    """Bands of a pair stored together, at one resolution.

    Attributes:
        bands: the bands, in their arrays' order.
        input_m: their pixel size at the input (metres). target_m: at the target.
        patch: input patch side (pixels); the target's is ``patch * scale``.
        scale: target pixels per input pixel (the pair's).
        lr_array: the input array's file name. hr_array: the target's.
    """

    bands: tuple[str, ...]
    input_m: float
    target_m: float
    patch: int
    scale: int
    lr_array: str
    hr_array: str

    @property
    def hr_size(self) -> int:
        """Target patch side (pixels)."""
        return self.patch * self.scale


def _legacy_levels(info: dict[str, Any]) -> tuple[float, float]:
    """(input, target) metres of a pair without ``band_resolution_m``: its ``levels_m``
    (Wald pairs), else Sentinel-2's 10 m input (``degrade_factor`` times coarser)."""
    levels = info.get("levels_m")
    if isinstance(levels, list) and len(levels) == 2 and all(
            _is_size(v) for v in levels):
        return float(levels[0]), float(levels[1])
    k = info.get("degrade_factor", 1)
    k = k if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 8 else 1
    return 10.0 * k, 10.0 * k / info["scale"]


def band_groups(info: dict[str, Any]) -> tuple[BandGroup, ...]:
    """The band groups of a pair's manifest entry (checked by :func:`check_band_groups`),
    the pair's own bands first."""
    res = info.get("band_resolution_m")
    entries = [info, *info.get("groups", [])]
    out = []
    for entry in entries:
        bands = tuple(entry["bands"])
        inp, tgt = (float(res[bands[0]][0]), float(res[bands[0]][1])) if res \
            else _legacy_levels(info)
        out.append(BandGroup(bands, inp, tgt, entry["patch"], info["scale"],
                             entry["lr_array"], entry["hr_array"]))
    return tuple(out)


def band_resolutions(info: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each band of a pair -> its ``(input, target)`` pixel size in metres."""
    return {b: (g.input_m, g.target_m) for g in band_groups(info) for b in g.bands}


def group_arrays(folder: Path, info: dict[str, Any], n: int, pair_id: str
                 ) -> list[tuple[BandGroup, np.ndarray, np.ndarray]]:
    """Each band group of a pair with its memory-mapped ``(lr, hr)`` int16 arrays
    ``(n, bands, patch, patch)`` / ``(n, bands, patch * scale, patch * scale)``.

    Args:
        folder: the dataset's ``arrays/`` folder. info: the pair's (checked) manifest
            entry. n: its number of patches. pair_id: its id (for messages).

    Raises:
        DataError: a file is missing, not a plain ``.npy`` or not of the shape the
            manifest gives (a wrong band count included).
    """
    out = []
    for g in band_groups(info):
        c = len(g.bands)
        out.append((g, load_patch_array(folder / g.lr_array, (n, c, g.patch, g.patch), pair_id),
                    load_patch_array(folder / g.hr_array, (n, c, g.hr_size, g.hr_size),
                                     pair_id)))
    return out


def array_names(info: dict[str, Any]) -> set[str]:
    """The array file names a pair's manifest entry references (every group's)."""
    return {entry[k] for entry in [info, *info.get("groups", [])]
            for k in ("lr_array", "hr_array") if isinstance(entry.get(k), str)}


def _is_size(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) \
        and 0 < v <= MAX_RESOLUTION_M


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(abs(a), abs(b))


def _damaged(path: Path, where: str, what: str) -> DataError:
    return DataError(f"{path} is damaged: {where} {what}; rebuild the dataset (or restore "
                     "the file)")


def _check_group_entry(entry: Any, where: str, path: Path) -> None:
    if not isinstance(entry, dict):
        raise _damaged(path, where, f"is a {type(entry).__name__}, not an object")
    bands = entry.get("bands")
    if not (isinstance(bands, list) and 0 < len(bands) <= MAX_BANDS
            and all(isinstance(b, str) and 0 < len(b) <= 16 for b in bands)):
        raise _damaged(path, where, "has a bad 'bands' (a list of 1-64 band names)")
    patch = entry.get("patch")
    if not (isinstance(patch, int) and not isinstance(patch, bool)
            and 1 <= patch <= MAX_PATCH):
        raise _damaged(path, where, f"has a bad 'patch' ({str(patch)[:40]!r})")
    for key in ("lr_array", "hr_array"):
        if not (isinstance(entry.get(key), str) and ARRAY_NAME.match(entry[key])):
            raise _damaged(path, where, f"has a bad {key!r}")


def check_band_groups(pid: str, info: dict[str, Any], path: Path) -> None:
    """Refuse a pair whose band groups or resolutions are not what s2sr writes.

    ``info``'s own fields (bands, patch, scale, arrays) are checked before this.

    Raises:
        DataError: naming the file, the pair, the bad entry and the fix.
    """
    where = f"pair {pid[:60]!r}"
    groups, res = info.get("groups"), info.get("band_resolution_m")
    if groups is not None and not (isinstance(groups, list)
                                   and 0 < len(groups) < MAX_GROUPS):
        raise _damaged(path, where, f"has a bad 'groups' (a list of 1-{MAX_GROUPS - 1} "
                       "band groups)")
    for k, entry in enumerate(groups or []):
        _check_group_entry(entry, f"{where} group {k + 1}", path)
    entries = [info, *(groups or [])]
    bands = [b for e in entries for b in e["bands"]]
    if len(bands) > MAX_BANDS or len(set(bands)) != len(bands):
        raise _damaged(path, where, "names a band twice or more than 64 bands")
    names = [e[k] for e in entries for k in ("lr_array", "hr_array")]
    if len(set(names)) != len(names):
        raise _damaged(path, where, "names an array file twice")
    if res is None:
        if groups is not None:
            raise _damaged(path, where, "has band groups but no 'band_resolution_m'")
        return
    if not isinstance(res, dict) or set(res) != set(bands):
        raise _damaged(path, where, "has a 'band_resolution_m' that does not give each of "
                       "its bands once")
    ground = None
    for k, entry in enumerate(entries):
        values = [res[b] for b in entry["bands"]]
        if not all(isinstance(v, list) and len(v) == 2 and all(map(_is_size, v))
                   for v in values) or len({(v[0], v[1]) for v in values}) != 1:
            raise _damaged(path, where, f"has a bad resolution in group {k} (two sizes in "
                           f"metres, 0-{MAX_RESOLUTION_M:g}, equal for the group's bands)")
        size = (float(values[0][0]), float(values[0][1]))
        if not _close(size[0], size[1] * info["scale"]):
            raise _damaged(path, where, f"has resolutions {size[0]:g}/{size[1]:g} m in "
                           f"group {k}, not {info['scale']} apart (its scale)")
        span = entry["patch"] * size[0]
        if ground is not None and not _close(span, ground):
            raise _damaged(path, where, f"has group {k} patches of {span:g} m, not the "
                           f"{ground:g} m of its first group")
        ground = span
