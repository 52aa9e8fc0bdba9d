"""Experiment YAML validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2sr.core.errors import InputNotFoundError, UsageError
from s2sr.training import load_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


BASE = "data: {datasets: [ds]}\n"


def test_minimal_config_resolves_paths(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE + "init_from: parent\n"))
    assert cfg.data.datasets == [str((tmp_path / "ds").resolve())]
    assert cfg.init_from == str((tmp_path / "parent").resolve())
    cfg = load_config(_write(tmp_path, BASE), data_root=tmp_path / "root")
    assert cfg.data.datasets == [str((tmp_path / "root" / "ds").resolve())]
    assert cfg.model.name == "edsr" and cfg.stages[0].epochs == 1


@pytest.mark.parametrize(("text", "message"), [
    ("lerning_rate: 1\n", "unknown key 'lerning_rate' in the top level"),
    ("model: {nmae: edsr}\n", "unknown key 'nmae' in model"),
    ("stages: [{epochs: 1, lr_max: 0.1}]\n", "unknown key 'lr_max' in stages[0]"),
    ("stages: [{epochs: two}]\n", "stages[0].epochs must be int"),
    ("stages: [{epochs: 1, freeze: [neck]}]\n", "parts are head, body, upsample, tail"),
    ("precision: fp8\n", "precision must be"),
    ("model: {scale: 3}\n", "model.scale must be 2 or 4"),
    ("stages: []\n", "at least one stage"),
    ("loss: {feature: {relu2_2: lots}}\n", "loss.feature.relu2_2 must be float"),
])
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        load_config(_write(tmp_path, BASE + text))
    assert message in str(err.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(UsageError, match="must name at least one dataset"):
        load_config(_write(tmp_path, "seed: 1\n"))


def test_epoch_scale(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE + "stages: [{epochs: 50}, {epochs: 100}]\n"))
    assert [s.epochs for s in cfg.scaled(0.01).stages] == [1, 1]
    assert [s.epochs for s in cfg.scaled(0.1).stages] == [5, 10]


def test_shipped_configs_are_valid() -> None:
    from s2sr.training.guided_config import load_guided_config
    from s2sr.training.table1 import default_configs

    root = Path(__file__).resolve().parents[2] / "configs"
    # configs/table1 links to the packaged copy (rglob does not follow the link)
    files = sorted({*root.rglob("*.yaml"), *default_configs().glob("*.yaml")})
    assert len(files) >= 14
    guided = root / "bands20"  # the guided 20 m models' configs (s2sr.training.guided)
    for path in files:
        if path.parent == guided:
            load_guided_config(path)
        else:
            load_config(path)
    assert any(path.parent == guided for path in files)
