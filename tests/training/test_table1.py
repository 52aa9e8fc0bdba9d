"""The Table 1 runner: dependency order from the configs' ``init_from`` graph; on the
stand-in data (needs ../shared), transfer with frozen parts, and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from s2sr.evaluation.table2 import table2_report
from s2sr.training.table1 import ORDER, default_configs, run_table1, vgg_default
from support.shared import SHARED, requires_shared


def _parents(configs: Path) -> dict[str, str]:
    """``child -> parent`` from the ``init_from`` of each ``<name>.yaml``."""
    graph = {}
    for path in sorted(configs.glob("*.yaml")):
        parent = yaml.safe_load(path.read_text()).get("init_from")
        if parent is not None:
            graph[path.stem] = str(parent)
    return graph


def test_order_runs_every_parent_before_its_child() -> None:
    configs = default_configs()
    assert sorted(ORDER) == sorted(p.stem for p in configs.glob("*.yaml"))
    graph = _parents(configs)
    # the study's transfers: 1.2, 1.3 from 1.1; 1.4 from 1.2; 2.2 from 2.1; 3.2 from 3.1
    assert graph == {"1.2": "1.1", "1.3": "1.1", "1.4": "1.2", "2.2": "2.1", "3.2": "3.1"}
    for child, parent in graph.items():
        assert ORDER.index(parent) < ORDER.index(child), (parent, child)
    # a child can start from its parent's weights: same architecture, scale and bands
    for child, parent in graph.items():
        a, b = (yaml.safe_load((configs / f"{n}.yaml").read_text())["model"]
                for n in (parent, child))
        assert (a["name"], a["scale"], a["bands"]) == (b["name"], b["scale"], b["bands"])


def _first_stage_only(configs: Path, name: str) -> list[str]:
    """Cut ``name``'s config to its first stage; return the parts that stage freezes."""
    path = configs / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["stages"] = cfg["stages"][:1]
    path.write_text(yaml.safe_dump(cfg))
    return list(cfg["stages"][0]["freeze"])


@requires_shared
@pytest.mark.slow
def test_table1_runs_in_order_and_reports(tmp_path: Path) -> None:
    vgg_default(SHARED)
    configs = tmp_path / "configs"
    shutil.copytree(default_configs(), configs)
    # 1.2 cut to its first stage, which trains only the upsampler and tail
    frozen = _first_stage_only(configs, "1.2")
    assert frozen == ["head", "body"]
    runs = tmp_path / "runs"
    made = run_table1(runs, shared=SHARED, configs=configs, epoch_scale=0.01,
                      only=["1.2", "1.1"])  # the order of --only does not matter
    assert made is not None and sorted(made.weights) == ["1.1", "1.2"]
    report = table2_report(made.weights, made.datasets, runs / "report", epoch_scale=0.01)
    assert report.exists()
    for name in ("1.1", "1.2"):
        assert (runs / name / "model.safetensors").exists()
    # the parent finished before anything of the child was written
    child_files = [p for p in (runs / "1.2").rglob("*") if p.is_file()]
    assert (runs / "1.1" / "model.safetensors").stat().st_mtime <= min(
        p.stat().st_mtime for p in child_files)
    parent, child = (load_file(runs / n / "model.safetensors") for n in ("1.1", "1.2"))
    assert parent.keys() == child.keys()
    for key in parent:
        part = key.split(".")[0]
        if part in frozen or part in ("mean", "std"):  # frozen parts, normalisation buffers
            assert torch.equal(parent[key], child[key]), f"{key} changed although frozen"
        else:
            assert not torch.equal(parent[key], child[key]), f"{key} did not train"
    data = json.loads((runs / "report" / "report.json").read_text())
    methods = {s["method"] for s in data["summary"]}
    assert {"bicubic", "lanczos", "1.1", "1.2", "1.2 +consistency"} <= methods
    assert {s["kind"] for s in data["summary"]} == {"RE10>RE5", "SE10>RE5"}
    assert "Stand-in data" in report.read_text()
    # a second call (runs complete) refreshes the report instead of refusing its folder
    made = run_table1(runs, shared=SHARED, configs=configs, epoch_scale=0.01, only=["1.1"])
    assert made is not None
    again = table2_report(made.weights, made.datasets, runs / "report", epoch_scale=0.01)
    assert again.exists()
    methods = {s["method"] for s in json.loads(again.with_suffix(".json").read_text()
                                               )["summary"]}
    assert "1.1" in methods and "1.2" not in methods
