"""The review page's dataset view: filters, sorting, pages, histograms and decisions,
checked against the manifest read independently and against the store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s2sr.core.constants import PATCH_STATS
from s2sr.core.errors import UsageError
from s2sr.data import PairDataset, PairStore
from s2sr.review.catalog import Catalog, Query
from support.review import manifest_rows, rebuild


def test_filters_sort_and_pages_match_the_manifest(generated: Path) -> None:
    rows = manifest_rows(generated)
    cat = Catalog(generated)
    q = Query(equals={"site": {"alps", "delta"}, "status": {"auto-accepted"}},
              ranges={"corr": (0.8, None), "shift": (None, 0.3)}, sort="ssim",
              descending=True, offset=5, limit=7)
    page = cat.page(q)
    want = [r for r in rows if r["site"] in ("alps", "delta")
            and r["auto_status"] == "auto-accepted" and r["corr"] >= 0.8
            and r["shift"] <= 0.3]
    assert page["matched"] == len(want) > 20
    want.sort(key=lambda r: -r["ssim"])
    assert [r["patch_id"] for r in page["rows"]] == [r["patch_id"] for r in want[5:12]]
    assert page["total"] == len(rows) == 600
    assert page["counts"]["site"] == {s: sum(r["site"] == s for r in want)
                                      for s in ("alps", "delta") if any(
                                          r["site"] == s for r in want)}
    # histograms count the filtered patches, bins span the whole dataset's values
    hist = page["histograms"]["corr"]
    assert sum(hist["counts"]) == len(want)
    assert hist["edges"][0] == pytest.approx(min(r["corr"] for r in rows))
    assert hist["edges"][-1] == pytest.approx(max(r["corr"] for r in rows))
    assert np.histogram([r["corr"] for r in want], bins=hist["edges"])[0].tolist() == \
        hist["counts"]


def test_ascending_sort_puts_missing_values_last(built: Path) -> None:
    # the degraded dataset: some statistics may be null (no valid pixels) -> NaN last
    cat = Catalog(built)
    manifest = built / "manifest.json"
    data = json.loads(manifest.read_text())
    k = data["patches"][3]
    k["corr"] = None  # a null statistic, as a patch without valid pixels has
    manifest.write_text(json.dumps(data))
    cat.refresh()
    ordered = cat.page(Query(sort="corr", limit=500))["rows"]
    values = [r["corr"] for r in ordered]
    assert values[-1] is None and k["patch_id"] == ordered[-1]["patch_id"]
    assert values[:-1] == sorted(values[:-1])
    down = [r["corr"] for r in cat.page(Query(sort="corr", descending=True, limit=500))["rows"]]
    assert down[-1] is None and down[:-1] == sorted(down[:-1], reverse=True)


def test_thresholds_and_options(generated: Path) -> None:
    opts = Catalog(generated).options()
    assert opts["thresholds"] == {"nodata": [0.0], "cloud": [0.01], "corr": [0.6],
                                  "ssim": [0.3], "shift": [0.5], "residual": [0.03]}
    assert opts["values"]["site"] == ["alps", "city", "delta", "fields", "forest"]
    assert opts["values"]["split"] == ["test", "train", "val"]
    assert opts["has_nir"] is True
    assert set(opts["values"]["reason"]) >= {"", "cloud", "nodata"}


@pytest.mark.parametrize("bad", [dict(equals={"path": {"x"}}), dict(ranges={"note": (0, 1)}),
                                 dict(sort="lr_array"), dict(limit=0), dict(limit=10_000),
                                 dict(offset=-1)])
def test_bad_queries_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        Query(**bad)  # type: ignore[arg-type]


def test_decisions_go_through_the_store(built: Path) -> None:
    cat = Catalog(built)
    ids = [r["patch_id"] for r in cat.page(Query(limit=10))["rows"]]
    assert cat.decide(ids[0], "rejected", "cloud shadow")["status"] == "rejected"
    cat.decide(ids[1], "rejected")
    cat.decide(ids[2], "accepted")
    cat.decide(ids[2], "auto")  # reset to automatic
    decisions = json.loads((built / "decisions.json").read_text())
    assert set(decisions) == {ids[0], ids[1]}
    assert decisions[ids[0]]["note"] == "cloud shadow"
    store = PairStore(built)
    status = {r["patch_id"]: (r["status"], r["reason"]) for r in store.rows()}
    assert status[ids[0]] == ("rejected", "cloud shadow")
    assert status[ids[1]] == ("rejected", "manual")
    assert status[ids[2]][0] == "auto-accepted"
    # the status filter sees them; training leaves them out
    assert {r["patch_id"] for r in cat.page(Query(equals={"status": {"rejected"}}))["rows"]
            } == {ids[0], ids[1]}
    kept = {PairDataset(built).rows[k]["patch_id"] for k in range(len(PairDataset(built)))}
    assert ids[0] not in kept and ids[1] not in kept and ids[2] in kept
    with pytest.raises(KeyError):
        cat.decide("../../etc/passwd", "rejected")
    with pytest.raises(UsageError):
        cat.decide(ids[0], "deleted")


def test_a_decision_made_in_a_terminal_is_seen(built: Path) -> None:
    cat = Catalog(built)
    pid = cat.page(Query(limit=1))["rows"][0]["patch_id"]
    subprocess.run([sys.executable, "-m", "s2sr.cli.main", "pairs", "decide", str(built), pid,
                    "rejected", "--note", "from the shell"], check=True)
    assert cat.page(Query(equals={"status": {"rejected"}}))["rows"][0]["reason"] == \
        "from the shell"


def test_decisions_survive_a_rebuild(built: Path) -> None:
    cat = Catalog(built)
    pid = cat.page(Query(equals={"site": {"north"}}, limit=1))["rows"][0]["patch_id"]
    cat.decide(pid, "rejected", "blurred")
    old = PairStore(built).pairs
    rebuild(built)
    new = PairStore(built).pairs
    assert new.keys() == old.keys()  # the same pair, built again: new arrays
    assert {p: i["lr_array"] for p, i in new.items()} != \
        {p: i["lr_array"] for p, i in old.items()}
    page = cat.page(Query(equals={"status": {"rejected"}}))  # noticed on disk
    assert [(r["patch_id"], r["reason"]) for r in page["rows"]] == [(pid, "blurred")]


def test_nan_statistics_are_json_null(generated: Path) -> None:
    cat = Catalog(generated)
    for row in cat.page(Query(limit=50))["rows"]:
        assert all(row[s] is None or math.isfinite(row[s]) for s in PATCH_STATS)
