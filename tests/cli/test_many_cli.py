"""``s2sr predict`` with several inputs: a folder of outputs, the summary, the exit code,
resuming, and the single-scene form unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import run_cli
from support.rasters import field, write_geotiff

ARGS = ("--tile", "40", "--overlap", "8", "--backend", "torch")


def test_many_inputs_to_a_folder(tmp_path: Path, tiny_weights: Path) -> None:
    a = write_geotiff(tmp_path / "a.tif", field((24, 24), 4))
    b = write_geotiff(tmp_path / "b.tif", field((24, 24), 4, seed=1))
    listing = tmp_path / "more.txt"
    listing.write_text("b.tif\n")
    out = tmp_path / "out"
    code, text = run_cli("predict", a, f"@{listing}", "-o", out, "--weights", tiny_weights,
                     "--name", "{stem}-sr.tif", *ARGS)
    assert code == 0, text
    assert sorted(p.name for p in out.glob("*.tif")) == ["a-sr.tif", "b-sr.tif"]
    assert "2 scene(s): 2 done, 0 skipped (complete), 0 failed" in text
    code, text = run_cli("predict", a, b, "-o", out, "--weights", tiny_weights,
                     "--name", "{stem}-sr.tif", *ARGS)
    assert code == 0 and "0 done, 2 skipped" in text, text
    report = json.loads((out / "s2sr_run.json").read_text())
    assert report["skipped"] == 2


def test_a_failed_scene_gives_exit_code_1(tmp_path: Path, tiny_weights: Path) -> None:
    a = write_geotiff(tmp_path / "a.tif", field((24, 24), 4))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    code, text = run_cli("predict", a, bad, "-o", tmp_path / "out", "--weights", tiny_weights,
                     "-q", *ARGS)
    assert code == 1
    assert "1 done" in text and "failed: " in text and "bad.tif" in text
    assert (tmp_path / "out" / "a_x2.tif").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (("--workers", "0"), "Invalid value for '--workers'"),
    (("--name", "{stem}.png"), "must end in .tif"),
])
def test_many_usage_errors(tmp_path: Path, tiny_weights: Path, extra: tuple[str, ...],
                           message: str) -> None:
    a = write_geotiff(tmp_path / "a.tif", field((24, 24), 4))
    code, text = run_cli("predict", a, a, "-o", tmp_path / "out", "--weights", tiny_weights,
                     *extra)
    assert code == 2 and message in text, text


def test_a_folder_of_scenes_needs_an_output_folder(tmp_path: Path, tiny_weights: Path
                                                   ) -> None:
    (tmp_path / "in").mkdir()
    for k in range(2):
        write_geotiff(tmp_path / "in" / f"s{k}.tif", field((24, 24), 4, seed=k))
    code, text = run_cli("predict", tmp_path / "in", "-o", tmp_path / "out.tif", "--weights",
                     tiny_weights, *ARGS)
    assert code == 2 and "holds 2 scenes: give -o a folder" in text
