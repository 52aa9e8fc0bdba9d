"""File names that are not UTF-8 (issue 19): a Latin-1 byte in a scene's or an output's name
(``caf\\xe9.tif``) reached GDAL, which needs UTF-8, and crashed with a traceback. Inputs fail
with a one-line error (per scene in many-scene runs, the others done); outputs are refused
before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s2sr.data.options import BuildOptions, pair_id_for
from support.cli import one_error_line, run_cli
from support.rasters import field, write_geotiff

LATIN1 = os.fsdecode(b"caf\xe9")  # the byte 0xE9 kept as the surrogate escape \udce9


@pytest.fixture
def latin1_scene(tmp_path: Path) -> Path:
    plain = write_geotiff(tmp_path / "plain.tif", field((24, 20), 4))  # GDAL needs UTF-8
    try:
        return plain.rename(tmp_path / f"{LATIN1}.tif")
    except OSError:  # pragma: no cover - a file system without byte names
        pytest.skip("this file system does not take non-UTF-8 file names")


def test_predict_names_a_non_utf8_input(tmp_path: Path, latin1_scene: Path,
                                        tiny_weights: Path) -> None:
    code, out = run_cli("predict", latin1_scene, "-o", tmp_path / "out.tif", "--weights",
                    tiny_weights)
    line = one_error_line(out)
    assert code == 1 and "not valid UTF-8" in line and "rename it" in line
    assert "caf\\udce9" in line  # the byte shown escaped, never raw
    assert not (tmp_path / "out.tif").exists()


def test_pairs_degrade_names_a_non_utf8_input(tmp_path: Path, latin1_scene: Path) -> None:
    code, out = run_cli("pairs", "degrade", latin1_scene, "-o", tmp_path / "ds")
    assert code == 1 and "not valid UTF-8" in one_error_line(out)
    assert not (tmp_path / "ds").exists()


def test_many_scenes_fail_only_the_non_utf8_one(tmp_path: Path, latin1_scene: Path,
                                                tiny_weights: Path) -> None:
    write_geotiff(tmp_path / "good.tif", field((24, 20), 4))
    code, out = run_cli("predict", latin1_scene, tmp_path / "good.tif", "-o", tmp_path / "out",
                    "--weights", tiny_weights)
    assert code == 1 and "Traceback" not in out
    assert "1 done" in out and "1 failed" in out and "not valid UTF-8" in out
    assert (tmp_path / "out" / "good_x2.tif").exists()


@pytest.mark.parametrize("several", [False, True])
def test_a_non_utf8_output_name_is_refused_before_writing(
        tmp_path: Path, tiny_weights: Path, several: bool) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    inputs = [src, write_geotiff(tmp_path / "in2.tif", field((24, 20), 4))] if several \
        else [src]
    target = tmp_path / (LATIN1 if several else f"{LATIN1}.tif")
    code, out = run_cli("predict", *inputs, "-o", target, "--weights", tiny_weights)
    assert code == 2 and "not valid UTF-8" in one_error_line(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in inputs)


def test_pair_ids_of_non_utf8_paths() -> None:
    opts = BuildOptions()
    one = pair_id_for(f"/data/{LATIN1}_lr.tif", "/data/hr.tif", "wald", opts)
    assert one == pair_id_for(f"/data/{LATIN1}_lr.tif", "/data/hr.tif", "wald", opts)
    assert one != pair_id_for("/data/cafe_lr.tif", "/data/hr.tif", "wald", opts)
    one.encode("ascii")  # ids are plain ASCII whatever the names
