"""predict_many in this process: outputs equal predict's, completion records, resuming,
failures per scene, the run report, naming, STAC collections over local COGs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2sr import predict, predict_many
from s2sr.batch.record import check_record, read_record, record_path
from s2sr.core.errors import UsageError
from support.many import OPTS, pixels, scenes
from support.rasters import field, write_geotiff
from support.stac import BANDS, collection, stac_item


def test_outputs_equal_predict_and_rerun_skips(tmp_path: Path, tiny_weights: Path) -> None:
    inputs = scenes(tmp_path / "in")
    out = tmp_path / "out"
    report = predict_many([str(tmp_path / "in")], out, tiny_weights, **OPTS)
    assert [s.status for s in report.scenes] == ["done"] * 3
    for k, src in enumerate(inputs):
        single = predict(src, tmp_path / f"single{k}.tif", tiny_weights, **OPTS)
        made = out / f"scene{k}_x2.tif"
        np.testing.assert_array_equal(pixels(made), pixels(single))
        record = read_record(made)
        assert record is not None and record["model_sha256"] and record["options"]["tile"] == 40
        assert record["output"]["size"] == made.stat().st_size
    data = json.loads((out / "s2sr_run.json").read_text())
    assert (data["done"], data["skipped"], data["failed"]) == (3, 0, 0)
    assert data["scenes"][0]["megapixels"] == pytest.approx(48 * 56 / 1e6)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    again = predict_many([str(tmp_path / "in")], out, tiny_weights, **OPTS)
    assert [s.status for s in again.scenes] == ["skipped"] * 3
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")} == before
    forced = predict_many([str(tmp_path / "in")], out, tiny_weights, overwrite=True, **OPTS)
    assert [s.status for s in forced.scenes] == ["done"] * 3


def test_partial_stale_and_foreign_outputs(tmp_path: Path, tiny_weights: Path) -> None:
    scenes(tmp_path / "in", 4)
    out = tmp_path / "out"
    predict_many([str(tmp_path / "in")], out, tiny_weights, **OPTS)
    names = [out / f"scene{k}_x2.tif" for k in range(4)]
    reference = [pixels(p) for p in names]
    record_path(names[0]).unlink()  # stopped between the output and its record
    with open(names[1], "r+b") as f:  # damaged after the run
        f.seek(-10, os.SEEK_END)
        f.write(b"\xff" * 10)
    names[2].unlink()  # never made
    report = predict_many([str(tmp_path / "in")], out, tiny_weights, **OPTS)
    by_name = {Path(s.output).name: s for s in report.scenes}
    assert by_name["scene0_x2.tif"].reason == "redone: no completion record"
    assert by_name["scene1_x2.tif"].reason == "redone: output checksum differs from its record"
    assert by_name["scene2_x2.tif"].status == "done"
    assert by_name["scene3_x2.tif"].status == "skipped"
    for path, ref in zip(names, reference, strict=True):
        np.testing.assert_array_equal(pixels(path), ref)
    # other options make every record stale
    changed = predict_many([str(tmp_path / "in")], out, tiny_weights,
                           **{**OPTS, "overlap": 12})
    assert {s.reason for s in changed.scenes} == {"redone: stale record (options changed)"}
    # a file s2sr did not write is not replaced without --overwrite
    foreign = out / "scene0_x2.tif"
    foreign.unlink()
    record_path(foreign).unlink()
    write_geotiff(foreign, field((8, 8), 4))
    report = predict_many([str(tmp_path / "in")], out, tiny_weights, **{**OPTS, "overlap": 12})
    assert report.scenes[0].status == "failed"
    assert "was not written by s2sr" in report.scenes[0].reason
    assert [s.status for s in report.scenes[1:]] == ["skipped"] * 3


def test_one_failure_does_not_stop_the_others(tmp_path: Path, tiny_weights: Path) -> None:
    inputs = scenes(tmp_path / "in", 2)
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    out = tmp_path / "out"
    report = predict_many([str(inputs[0]), str(bad), str(inputs[1])], out, tiny_weights,
                          **OPTS)
    assert [s.status for s in report.scenes] == ["done", "failed", "done"]
    assert "broken.tif" in report.scenes[1].reason and "\n" not in report.scenes[1].reason
    assert not (out / "broken_x2.tif").exists()
    assert "1 failed" in report.summary() and "broken.tif" in report.summary()
    saved = json.loads(Path(report.report).read_text())
    assert saved["failed"] == 1 and saved["scenes"][1]["status"] == "failed"


def test_naming_pattern(tmp_path: Path, tiny_weights: Path) -> None:
    scenes(tmp_path / "in", 2, (24, 24))
    out = tmp_path / "out"
    predict_many([str(tmp_path / "in")], out, tiny_weights, name="{index:03d}_{stem}.tif",
                 **OPTS)
    assert sorted(p.name for p in out.glob("*.tif")) == ["000_scene0.tif", "001_scene1.tif"]
    for pattern, match in [("{stem}.png", "end in .tif"), ("sub/{stem}.tif", "plain file"),
                           ("{date}.tif", "unknown field"), ("out.tif", "same name")]:
        with pytest.raises(UsageError, match=match):
            predict_many([str(tmp_path / "in")], out, tiny_weights, name=pattern, **OPTS)
    (tmp_path / "b").mkdir()
    write_geotiff(tmp_path / "b" / "scene0.tif", field((24, 24), 4))
    with pytest.raises(UsageError, match=r"both give the output name scene0_x2\.tif"):
        predict_many([str(tmp_path / "in"), str(tmp_path / "b")], tmp_path / "o2",
                     tiny_weights, **OPTS)


def test_stac_collection_equals_the_multiband_scene(tmp_path: Path, tiny_weights: Path
                                                    ) -> None:
    data = [field((40, 36), 4, seed=k) for k in range(2)]
    items = [stac_item(tmp_path / "stac", f"S2B_{k}", data[k]) for k in range(2)]
    path = collection(tmp_path / "stac", items)
    out = tmp_path / "out"
    report = predict_many([str(path)], out, tiny_weights, **OPTS)
    assert [s.status for s in report.scenes] == ["done", "done"]
    for k in range(2):
        single = write_geotiff(tmp_path / f"multi{k}.tif", data[k])
        expected = predict(single, tmp_path / f"expected{k}.tif", tiny_weights, **OPTS)
        made = out / f"S2B_{k}_x2.tif"
        np.testing.assert_array_equal(pixels(made), pixels(expected))
        with rasterio.open(made) as a, rasterio.open(expected) as b:
            assert (a.crs, a.transform, a.descriptions) == (b.crs, b.transform, BANDS)
    again = predict_many([str(path)], out, tiny_weights, **OPTS)
    assert [s.status for s in again.scenes] == ["skipped", "skipped"]
    ok, why = check_record(out / "S2B_0_x2.tif", json.loads(
        record_path(out / "S2B_0_x2.tif").read_text()))
    assert ok, why
