"""Output names of a run of many scenes: the ``--name`` pattern, checked before any work."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Final

from s2sr.core.errors import UsageError
from s2sr.io.base import short_error
from s2sr.io.inputs import SceneInput

#: Default output name: ``T33UUB_20230601_x2.tif``.
DEFAULT_NAME: Final[str] = "{stem}_x{scale}.tif"
#: Fields a naming pattern may use.
NAME_FIELDS: Final[tuple[str, ...]] = ("stem", "scale", "index")

def check_name_pattern(pattern: str) -> None:
    """Refuse a naming pattern with unknown fields, folders or a non-GeoTIFF suffix."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as err:
        raise UsageError(f"--name {pattern!r} is not a valid pattern ({err}): use e.g. "
                         f"{DEFAULT_NAME!r}") from None
    unknown = [f for f in fields if f not in NAME_FIELDS]
    if unknown:
        raise UsageError(f"--name {pattern!r} uses unknown field(s) {', '.join(unknown)}: "
                         f"use {', '.join('{' + f + '}' for f in NAME_FIELDS)}")
    if "/" in pattern or "\\" in pattern or pattern.startswith("."):
        raise UsageError(f"--name {pattern!r} must be a plain file name (no folders, not "
                         "hidden)")
    if not pattern.lower().endswith((".tif", ".tiff")):
        raise UsageError(f"--name {pattern!r} must end in .tif or .tiff")
    if "stem" not in fields and "index" not in fields:
        raise UsageError(f"--name {pattern!r} gives every scene the same name: include "
                         "{stem} or {index}")
    specs = [s for _, _, s, _ in string.Formatter().parse(pattern) if s]
    if any(len(d) > 3 for spec in specs for d in re.findall(r"\d+", spec)):
        raise UsageError(f"--name {pattern!r} asks for a field more than 999 characters wide: "
                         "use e.g. {index:04d}")
    try:  # every field with a value of its type: {index:s}, {stem:d}, {scale:x<}...
        trial = pattern.format(stem="S2A_MSIL2A_T33UUB", scale=2, index=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise UsageError(f"--name {pattern!r} cannot be filled in ({short_error(err)}): "
                         "{stem} is text, {scale} and {index} are whole numbers; use e.g. "
                         f"{DEFAULT_NAME!r} or '{{index:04d}}_{{stem}}.tif'") from None
    check_output_name(trial, pattern)


def check_output_name(name: str, pattern: str) -> None:
    """Refuse a filled-in output name that is no plain, visible file name."""
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name or \
            len(name.encode("utf-8", "surrogateescape")) > 255:
        raise UsageError(f"--name {pattern!r} gives {name[:80]!r}, which is no plain file name "
                         "(no folders, not hidden, at most 255 bytes): change the pattern")


def output_names(scenes: Sequence[SceneInput], pattern: str, scale: int) -> list[str]:
    """One output file name per scene.

    Raises:
        UsageError: two scenes would get the same name.
    """
    check_name_pattern(pattern)
    names: dict[str, str] = {}
    out = []
    for k, scene in enumerate(scenes):
        name = pattern.format(stem=scene.stem, scale=scale, index=k)
        check_output_name(name, pattern)
        if scene.error is not None:  # never written: it fails as it is listed
            out.append(name)
            continue
        if name in names:
            raise UsageError(f"{names[name]} and {scene.source} both give the output name "
                             f"{name}: use --name with {{index}}, e.g. "
                             "'{index:04d}_{stem}_x{scale}.tif'")
        names[name] = scene.source
        out.append(name)
    return out
