"""Simulated Sentinel-2/reference pairs named by a CSV, for the many-pairs builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2sr.data import BuildOptions, PairStore
from s2sr.data.simulate import Perturbation, make_pair
from support.rasters import texture

#: build options of the simulated pairs
OPTS = BuildOptions(patch=32, max_cloud=0.5)


def make_pairs(folder: Path, n: int) -> Path:
    """``n`` simulated Sentinel-2/reference pairs and a CSV naming them (plus a bad row)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["lr,hr,site,split,dates"]
    for k in range(n):
        make_pair(texture((200, 200), seed=30 + k), 2, Perturbation(shift=(0.2, -0.1)),
                  folder / f"s2_{k}.tif", folder / f"ref_{k}.tif")
        lines.append(f"s2_{k}.tif,ref_{k}.tif,site{k % 2},{'val' if k == 1 else 'train'},"
                     "2020-06-01/2020-06-05")
    lines.append("s2_0.tif,missing.tif,site0,train,")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def assert_same_dataset(a: Path, b: Path) -> None:
    """The two datasets hold the same pairs, arrays and patch statuses."""
    sa, sb = PairStore(a), PairStore(b)
    assert sorted(sa.pairs) == sorted(sb.pairs)
    for pid in sa.pairs:
        for x, y in zip(sa.arrays(pid), sb.arrays(pid), strict=True):
            np.testing.assert_array_equal(x, y)
    strip = lambda rows: sorted((r["patch_id"], r["status"]) for r in rows)  # noqa: E731
    assert strip(sa.rows()) == strip(sb.rows())
