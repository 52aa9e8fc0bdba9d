"""The Table 1 runner on the stand-in data (needs ../shared): order, transfer, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import SHARED, requires_shared
from s2sr.training.table1 import ORDER, run_table1, vgg_default


@requires_shared
@pytest.mark.slow
def test_table1_runs_in_order_and_reports(tmp_path: Path) -> None:
    vgg_default(SHARED)
    report = run_table1(tmp_path, shared=SHARED, epoch_scale=0.01,
                        only=["1.1", "1.2"])
    assert report is not None and report.exists()
    for name in ("1.1", "1.2"):
        assert (tmp_path / name / "model.safetensors").exists()
    # 1.2 starts from 1.1 with head and body frozen in its first stage: after one epoch
    # of that stage and one of the second, the weights differ from the parent's
    parent, child = (load_file(tmp_path / n / "model.safetensors") for n in ("1.1", "1.2"))
    assert any(not (parent[k] == child[k]).all() for k in parent)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    methods = {s["method"] for s in data["summary"]}
    assert {"bicubic", "lanczos", "1.1", "1.2", "1.2 +consistency"} <= methods
    assert {s["kind"] for s in data["summary"]} == {"RE10>RE5", "SE10>RE5"}
    assert "Stand-in data" in report.read_text()
    assert ORDER.index("1.1") < ORDER.index("1.2") and ORDER.index("2.1") < ORDER.index("2.2")
    # a second call (runs complete) refreshes the report instead of refusing its folder
    again = run_table1(tmp_path, shared=SHARED, epoch_scale=0.01, only=["1.1"])
    assert again is not None and again.exists()
    methods = {s["method"] for s in json.loads(again.with_suffix(".json").read_text()
                                               )["summary"]}
    assert "1.1" in methods and "1.2" not in methods
