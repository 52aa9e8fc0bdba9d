"""``s2sr evaluate`` subcommands (issue 21): each takes only its own options, has its own
help, answers a wrong or missing option with exit 2, and the flag form of earlier releases
is refused in one line that names the subcommand to use (no run, nothing written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner, Result

from s2sr.cli.main import cli
from s2sr.data.degrade import degrade
from support.rasters import UTM_TRANSFORM, texture, write_geotiff

SUBCOMMANDS = ("dataset", "scene", "consistency", "panel", "bands")

#: The options each subcommand has; every other evaluate option must be absent from it.
OWN = {
    "dataset": {"--weights", "--dataset", "--split", "--kinds", "--data-range", "--crop",
                "--no-figures", "--overwrite", "--output"},
    "scene": {"--weights", "--lr", "--hr", "--data-range", "--crop", "--no-figures",
              "--overwrite", "--output"},
    "consistency": {"--lr", "--overwrite", "--output"},
    "panel": {"--weights", "--scene", "--shared", "--data-range", "--crop", "--overwrite",
              "--output"},
    "bands": {"--weights-20m", "--shared", "--data-range", "--crop", "--overwrite",
              "--output"},
}


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def _one_line_error(res: Result, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("s2sr: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A co-registered 20 m / 10 m pair (the 10 m one also plays a predict output)."""
    root = tmp_path_factory.mktemp("evaluate_cli")
    hr = texture((64, 64), seed=41)
    return {
        "hr": write_geotiff(root / "hr.tif", np.rint(hr * 10000).astype(np.uint16)),
        "lr": write_geotiff(root / "lr.tif", np.rint(degrade(hr, 2) * 10000).astype(
            np.uint16), transform=UTM_TRANSFORM * Affine.scale(2)),
    }


def test_group_help_lists_the_four_subcommands() -> None:
    res = _run("--help")
    assert res.exit_code == 0, res.output
    listed = [line.split()[0] for line in res.output.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_only_its_own_options(name: str) -> None:
    res = _run(name, "--help")
    assert res.exit_code == 0, res.output
    assert f"s2sr evaluate {name} " in res.output  # its own usage example
    everything = set().union(*OWN.values())
    shown = {opt for opt in everything if f"{opt} " in res.output or f"{opt}\n" in res.output}
    assert shown == OWN[name], sorted(shown ^ OWN[name])


@pytest.mark.parametrize(("args", "names"), [
    (["--panel", "--weights", "m.safetensors", "-o", "rep"], "s2sr evaluate panel"),
    (["--weights", "m.safetensors", "--panel", "-o", "rep"], "s2sr evaluate panel"),
    (["--consistency", "out.tif", "--lr", "in.tif", "-o", "rep"],
     "s2sr evaluate consistency OUTPUT --lr INPUT"),
    (["--weights", "m.safetensors", "--lr", "lr.tif", "--hr", "hr.tif", "-o", "rep"],
     "s2sr evaluate scene"),
    (["--weights", "m.safetensors", "--dataset", "ds", "-o", "rep"], "s2sr evaluate dataset"),
    (["--weights=m.safetensors", "--lr=lr.tif", "--hr=hr.tif", "-o", "rep"],
     "s2sr evaluate scene"),
])
def test_the_flag_form_is_refused_naming_the_subcommand(tmp_path: Path, args: list[str],
                                                         names: str) -> None:
    res = CliRunner().invoke(cli, ["evaluate", *args], catch_exceptions=False)
    _one_line_error(res, "takes a subcommand", names)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "foreign"), [
    ("panel", ["--dataset", "ds"]), ("panel", ["--no-figures"]), ("panel", ["--kinds", "x"]),
    ("consistency", ["--weights", "m.safetensors"]), ("consistency", ["--crop", "2"]),
    ("scene", ["--dataset", "ds"]), ("scene", ["--split", "val"]),
    ("dataset", ["--lr", "x.tif"]), ("dataset", ["--scene", "x.tif"]),
])
def test_an_option_of_another_subcommand_is_a_usage_error(tmp_path: Path, name: str,
                                                           foreign: list[str]) -> None:
    res = _run(name, *foreign, "-o", tmp_path / "rep")
    assert res.exit_code == 2 and f"No such option '{foreign[0]}'" in res.output, res.output
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["dataset", "--dataset", "ds"], "evaluate dataset needs --weights and --dataset"),
    (["dataset", "--weights", "m.safetensors"], "evaluate dataset needs --weights and --dataset"),
    (["scene", "--weights", "m.safetensors", "--lr", "lr.tif"],
     "evaluate scene needs --lr, --hr and exactly one --weights"),
    (["scene", "--weights", "a.safetensors", "--weights", "b.safetensors", "--lr", "lr.tif",
      "--hr", "hr.tif"], "exactly one --weights"),
    (["consistency", "out.tif"], "evaluate consistency needs --lr"),
    (["panel"], "evaluate panel needs at least one --weights"),
    (["panel", "--weights", "m.safetensors", "--crop", "-1"], "--crop must be 0 or more"),
])
def test_a_missing_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                 needle: str) -> None:
    _one_line_error(_run(*args, "-o", tmp_path / "rep"), needle)
    assert not (tmp_path / "rep").exists()


def test_consistency_needs_its_output_argument(tmp_path: Path) -> None:
    res = _run("consistency", "--lr", "in.tif", "-o", tmp_path / "rep")
    assert res.exit_code == 2 and "Missing argument 'OUTPUT'" in res.output, res.output


def test_consistency_runs(pair: dict[str, Path], tmp_path: Path) -> None:
    res = _run("consistency", pair["hr"], "--lr", pair["lr"], "-o", tmp_path / "rep")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"report: {tmp_path / 'rep' / 'consistency.md'}"
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["consistency.json",
                                                                     "consistency.md"]


def test_scene_runs(pair: dict[str, Path], tiny_weights: Path, tmp_path: Path) -> None:
    res = _run("scene", "--weights", f"mine={tiny_weights}", "--lr", pair["lr"], "--hr",
               pair["hr"], "--no-figures", "-o", tmp_path / "rep")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| mine " in text and "bicubic" in text
