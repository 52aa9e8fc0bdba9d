"""The test places: real Sentinel-2 scenes held out of training and model selection.

The one place in code that names them (issue #20). The robustness panel
(:mod:`s2sr.evaluation.panel`) scores the models per place on :data:`TEST_PLACES`, and
:func:`held_out` lets the training sources (:mod:`s2sr.training.sources`) refuse any
image inside :data:`HELD_OUT` (every date of a test place, and the earlier test scenes),
for training and validation alike. Paths are relative to the shared data folder
(``../shared/data``); MODEL_CARD.md lists the same places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HELD_OUT", "TEST_PLACES", "Place", "held_out"]


@dataclass(frozen=True)
class Place:
    """A test place: its name, its native 10 m scene (relative path) and its setting."""

    name: str
    path: str
    setting: str


#: Four OSCD cities of different climates (date 1, L1C) and one independent L2A scene.
TEST_PLACES: tuple[Place, ...] = (
    Place("abudhabi", "sentinel2/oscd/abudhabi/imgs_1",
          "hot desert coast (BWh), bright sand and city, UAE"),
    Place("rio", "sentinel2/oscd/rio/imgs_1",
          "tropical coast (Aw), steep forested hills and dense city, Brazil"),
    Place("hongkong", "sentinel2/oscd/hongkong/imgs_1",
          "humid subtropical coast (Cwa), high-rise city and sea, China"),
    Place("milano", "sentinel2/oscd/milano/imgs_1",
          "European plain (Cfa), city and farmland, Italy"),
    Place("boston_roads", "sentinel2/boston_roads_L2A.tif",
          "humid continental (Dfa), US suburb and roads, L2A"),
)

#: Never read for training or model selection: every date of the test places, and the
#: earlier test scenes (the other boadella date and one BigEarthNet patch).
HELD_OUT: tuple[str, ...] = (
    "sentinel2/oscd/abudhabi",
    "sentinel2/oscd/rio",
    "sentinel2/oscd/hongkong",
    "sentinel2/oscd/milano",
    "sentinel2/boston_roads_L2A.tif",
    "sentinel2/boadella_20200113_L2A.tif",
    "sentinel2/bigearthnet/S2B_MSIL2A_20180204T94161_57_38",
)


def _parts(entry: str) -> tuple[str, ...]:
    parts = Path(entry).parts
    return parts[1:] if parts[0] == "sentinel2" and len(parts) > 1 else parts


def held_out(path: str | os.PathLike[str]) -> str | None:
    """The :data:`HELD_OUT` entry that ``path`` lies in (or is), else None.

    Matched on the path's components wherever the shared folder lives (a copy of
    ``oscd/milano/imgs_2`` under another root is still Milan): a path whose components
    hold an entry's components in a row (without the leading ``sentinel2``) is held out.
    """
    parts = Path(os.path.abspath(path)).parts
    for entry in HELD_OUT:
        want = _parts(entry)
        n = len(want)
        if any(parts[i:i + n] == want for i in range(len(parts) - n + 1)):
            return entry
    return None
