"""The options every command shares are spelled, typed and defaulted the same everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from s2sr.cli.main import cli
from s2sr.cli.options import DEVICES, device_opt, output_opt, overwrite_opt, quiet_opt


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def _options(long: str) -> list[tuple[str, click.Option]]:
    return [(name, p) for name, cmd in _commands(cli) for p in cmd.params
            if isinstance(p, click.Option) and long in p.opts]


def test_every_output_option_is_a_required_path_behind_o() -> None:
    found = _options("--output")
    assert {name for name, _ in found} >= {"predict", "evaluate dataset", "evaluate scene",
                                          "evaluate consistency", "evaluate panel",
                                          "pairs build", "pairs degrade", "train", "table1"}
    for name, opt in found:
        assert opt.opts == ["-o", "--output"], name
        assert opt.required, name
        assert isinstance(opt.type, click.Path) and opt.type.type is Path, name


def test_every_quiet_overwrite_and_device_option_agrees() -> None:
    quiet = _options("--quiet")
    assert {name for name, _ in quiet} >= {"predict", "train", "table1"}
    for name, opt in quiet:
        assert opt.opts == ["-q", "--quiet"] and opt.is_flag, name
    overwrite = _options("--overwrite")
    assert {name for name, _ in overwrite} >= {"predict", "evaluate dataset", "evaluate scene",
                                              "evaluate consistency", "evaluate panel"}
    for name, opt in overwrite:
        assert opt.opts == ["--overwrite"] and opt.is_flag, name
    for name, opt in _options("--device"):
        assert isinstance(opt.type, click.Choice) and tuple(opt.type.choices) == DEVICES, name
        assert opt.default == "auto", name


@pytest.mark.parametrize("args", [[], ["-o", "x", "--overwrite", "-q", "--device", "cuda"]])
def test_shared_options_parse_the_same_on_any_command(args: list[str]) -> None:
    seen: dict[str, object] = {}

    @click.command()
    @output_opt("Where.", "where")
    @overwrite_opt()
    @quiet_opt()
    @device_opt()
    def probe(where: Path, overwrite: bool, quiet: bool, device: str) -> None:
        seen.update(where=where, overwrite=overwrite, quiet=quiet, device=device)

    result = CliRunner().invoke(probe, args)
    if not args:  # -o is required: a usage error (exit 2) naming it
        assert result.exit_code == 2 and "'-o' / '--output'" in result.output
        return
    assert result.exit_code == 0, result.output
    assert seen == {"where": Path("x"), "overwrite": True, "quiet": True, "device": "cuda"}
    bad = CliRunner().invoke(probe, ["-o", "x", "--device", "tpu"])
    assert bad.exit_code == 2 and "'tpu' is not one of 'auto', 'cpu', 'cuda'" in bad.output
