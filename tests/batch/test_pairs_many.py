"""``s2sr pairs build --pairs CSV``: many pairs, one writer, failures reported per pair."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from s2sr.batch.many_pairs import build_pairs, read_pairs_csv
from s2sr.cli.main import cli
from s2sr.core.errors import UsageError
from s2sr.data import PairStore, build_pair
from support.pairs import OPTS, assert_same_dataset, make_pairs


@pytest.mark.slow
def test_csv_pairs_equal_one_by_one(tmp_path: Path) -> None:
    csv_path = make_pairs(tmp_path / "in", 3)
    results = build_pairs(csv_path, tmp_path / "ds", OPTS)
    assert [r.status for r in results] == ["done", "done", "done", "failed"]
    assert "missing.tif" in results[3].reason and "\n" not in results[3].reason
    store = PairStore(tmp_path / "ds")
    assert sorted(p["site"] for p in store.pairs.values()) == ["site0", "site0", "site1"]
    assert sorted(p["split"] for p in store.pairs.values()) == ["train", "train", "val"]
    assert not list((tmp_path / "ds" / "arrays").glob(".*"))  # no temporaries left
    for k in range(3):
        build_pair(tmp_path / "in" / f"s2_{k}.tif", tmp_path / "in" / f"ref_{k}.tif",
                   tmp_path / "one", replace(OPTS, site=f"site{k % 2}",
                                             split="val" if k == 1 else "train",
                                             lr_date="2020-06-01", hr_date="2020-06-05"))
    assert_same_dataset(tmp_path / "ds", tmp_path / "one")


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    for text, match in [("a,b\n1,2\n", "needs the columns lr and hr"),
                        ("lr,hr,split\na.tif,b.tif,later\n", "is not one of train"),
                        ("lr,hr,dates\na.tif,b.tif,2020-01-01\n", "LR_DATE/HR_DATE"),
                        ("lr,hr\n", "holds no pair")]:
        path.write_text(text)
        with pytest.raises(UsageError, match=match):
            read_pairs_csv(path, OPTS)


def test_cli_pairs_csv(tmp_path: Path) -> None:
    csv_path = make_pairs(tmp_path / "in", 1)
    result = CliRunner().invoke(cli, ["pairs", "build", "--pairs", str(csv_path), "-o",
                                      str(tmp_path / "ds"), "--patch", "32",
                                      "--max-cloud", "0.5"])
    assert result.exit_code == 1  # the bad row
    assert '"status": "done"' in result.output and "missing.tif" in result.output
    assert len(PairStore(tmp_path / "ds").pairs) == 1
    result = CliRunner().invoke(cli, ["pairs", "build", "--pairs", str(csv_path), "--lr",
                                      str(csv_path), "-o", str(tmp_path / "ds")])
    assert result.exit_code == 2 and "either --lr and --hr" in result.output
