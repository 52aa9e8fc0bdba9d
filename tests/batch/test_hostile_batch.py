"""Many-scene runs under hostile input and faults (issue 19): remote STAC documents naming
local files, ``--report`` and records under the output policy, folder scans, stale resumes,
bad ``--name`` patterns, leftovers after SIGTERM or a full disk, implausible STAC
radiometry, the ``__main__`` guard, lost workers and Dask's noise."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from s2sr import predict_many
from s2sr.batch.naming import check_name_pattern
from s2sr.batch.record import file_fingerprint, read_record
from s2sr.batch.report import RunReport, SceneResult
from s2sr.cli.main import cli
from s2sr.core.errors import OutputExistsError, S2SRError, StacError, UsageError
from s2sr.core.files import exclusive_output, lock_path, sweep_stale_locks
from s2sr.io.inputs import expand_inputs
from s2sr.io.scene import open_scene
from s2sr.io.stac_document import ORIGIN_KEY, resolve_href
from support.cli import can_mount_tmpfs
from support.many import OPTS, pixels, scenes
from support.rasters import field, write_geotiff
from support.stac import BANDS, RangeHandler, stac_item

EXE = [sys.executable, "-m", "s2sr.cli.main"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run_cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the user
    return result.exit_code, result.output


@contextlib.contextmanager
def serve(folder: Path, handler: Any = RangeHandler) -> Iterator[str]:
    """A loopback HTTP server of ``folder`` (with Range support); yields its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and
                  (".tmp" in p.name or p.name.endswith(".lock")))


# ================================================================ security

def test_remote_document_naming_local_files_is_refused(tmp_path: Path, tiny_weights: Path
                                                       ) -> None:
    """An Item served over http whose hrefs are file:///... must not make s2sr read them."""
    local = stac_item(tmp_path / "private", "secret", field((24, 24), 4), relative=False)
    www = tmp_path / "www"
    www.mkdir()
    item = json.loads(json.dumps(local))
    for asset in item["assets"].values():
        if "eo:bands" in asset:
            asset["href"] = "file://" + asset["href"]
    (www / "items.json").write_text(json.dumps({"type": "FeatureCollection",
                                                "features": [item]}))
    out = tmp_path / "out"
    with serve(www) as base:
        report = predict_many([base + "items.json"], out, tiny_weights, **OPTS)
    (res,) = report.scenes
    assert res.status == "failed" and "http(s) assets only" in res.reason, res.reason
    assert not list(out.glob("*.tif"))
    # the item written out keeps its origin: opened later, it is still refused
    (written,) = (out / ".s2sr-stac").glob("*.json")
    assert json.loads(written.read_text())[ORIGIN_KEY] == base + "items.json"
    with pytest.raises(StacError, match="http\\(s\\) assets only"):
        open_scene(written, bands=BANDS)


@pytest.mark.parametrize(("href", "base", "match"), [
    ("file://evil.example/etc/B02.tif", "/data", "names the host"),
    ("file://localhost/etc/B02.tif", "/data", "names the host"),
    ("file:B02.tif", "/data", "not an absolute file URL"),
    ("file:///etc/B02.tif", "http://127.0.0.1:1/items.json", "http\\(s\\) assets only"),
    ("C:/data/B02.tif", "http://127.0.0.1:1/items.json", "http\\(s\\) assets only"),
])
def test_hostile_file_hrefs(href: str, base: str, match: str) -> None:
    with pytest.raises(StacError, match=match) as err:
        resolve_href(href, base, "item x, asset blue")
    assert "\n" not in str(err.value)


def test_relative_and_rooted_hrefs_of_a_remote_document_stay_remote() -> None:
    base = "http://127.0.0.1:1/a/items.json"
    assert resolve_href("../../etc/B02.tif", base, "x") == "http://127.0.0.1:1/etc/B02.tif"
    assert resolve_href("/etc/B02.tif", base, "x") == "http://127.0.0.1:1/etc/B02.tif"
    assert resolve_href("file:///data/B02.tif", "/x", "x") == "/data/B02.tif"  # local doc


def test_report_never_overwrites_an_input(tmp_path: Path, tiny_weights: Path) -> None:
    inputs = scenes(tmp_path / "a", 2, (24, 24))
    before = inputs[0].read_bytes()
    code, msg = run_cli("predict", tmp_path / "a", "-o", tmp_path / "out", "--weights",
                        tiny_weights, "--report", inputs[0], "--tile", "40", "--overlap", "8",
                        "--overwrite")
    assert code == 2 and "must be a .json file" in msg, msg
    assert inputs[0].read_bytes() == before
    assert not (tmp_path / "out").exists()  # refused before any work
    # a STAC document given as the input is a .json: still never the report
    item = tmp_path / "item.json"
    item.write_text(json.dumps(stac_item(tmp_path, "it", field((24, 24), 4))))
    text = item.read_text()
    with pytest.raises(UsageError, match="is the input"):
        predict_many([str(item), str(inputs[1])], tmp_path / "out2", tiny_weights,
                     report=item, overwrite=True, **OPTS)
    assert item.read_text() == text


def test_report_follows_the_output_policy(tmp_path: Path, tiny_weights: Path) -> None:
    scenes(tmp_path / "in", 2, (24, 24))
    unrelated = tmp_path / "notes.json"
    unrelated.write_text('{"mine": 1}')
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                     report=unrelated, **OPTS)
    assert unrelated.read_text() == '{"mine": 1}'
    assert not (tmp_path / "out").exists()
    # an output of the run, or its completion record, is never the report
    for name in ("scene0_x2.tif.s2sr.json",):
        with pytest.raises(UsageError, match="is the output"):
            predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                         report=tmp_path / "out" / name, overwrite=True, **OPTS)
    with pytest.raises(UsageError, match="does not exist"):
        predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                     report=tmp_path / "nowhere" / "run.json", **OPTS)
    # an earlier s2sr report is updated by a re-run, as its outputs are
    mine = tmp_path / "run.json"
    first = predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                         report=mine, **OPTS)
    again = predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                         report=mine, **OPTS)
    assert first.count("done") == 2 and again.count("skipped") == 2
    assert json.loads(mine.read_text())["skipped"] == 2
    # --overwrite replaces an unrelated file
    predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights, report=unrelated,
                 overwrite=True, **OPTS)
    assert json.loads(unrelated.read_text())["format"] == "s2sr-run-report"


def test_a_foreign_file_at_a_record_name_is_not_replaced(tmp_path: Path, tiny_weights: Path
                                                         ) -> None:
    scenes(tmp_path / "in", 2, (24, 24))
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "scene0_x2.tif.s2sr.json"
    foreign.write_text("my notes")
    report = predict_many([str(tmp_path / "in")], out, tiny_weights, **OPTS)
    assert [s.status for s in report.scenes] == ["failed", "done"]
    assert "not an s2sr completion record" in report.scenes[0].reason
    assert foreign.read_text() == "my notes" and not (out / "scene0_x2.tif").exists()


def test_a_foreign_file_in_the_item_folder_is_not_replaced(tmp_path: Path,
                                                           tiny_weights: Path) -> None:
    items = [stac_item(tmp_path, f"it{k}", field((24, 24), 4, seed=k)) for k in range(2)]
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    folder = tmp_path / "out" / ".s2sr-stac"
    folder.mkdir(parents=True)
    (folder / "it0.json").write_text("mine")
    report = predict_many([str(path)], tmp_path / "out", tiny_weights, **OPTS)
    assert [s.status for s in report.scenes] == ["failed", "done"], report.summary()
    assert "was not written by s2sr" in report.scenes[0].reason
    assert (folder / "it0.json").read_text() == "mine"
    again = predict_many([str(path)], tmp_path / "out", tiny_weights, overwrite=True, **OPTS)
    assert [s.status for s in again.scenes] == ["done", "done"]


def test_a_redirect_away_from_http_is_not_followed(tmp_path: Path) -> None:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def __init__(self, *args: Any, directory: str = "", **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1:1/items.json")
            self.end_headers()

    with serve(tmp_path, Redirect) as base, \
            pytest.raises(S2SRError, match="not an http\\(s\\) URL") as err:
        expand_inputs([base + "items.json"])
    assert "\n" not in str(err.value)


def test_an_output_is_never_another_scenes_input(tmp_path: Path, tiny_weights: Path) -> None:
    a, b = scenes(tmp_path / "in", 2, (24, 24))
    victim = b.rename(tmp_path / "in" / "scene0_x2.tif")  # what scene0's output would be
    before = victim.read_bytes()
    with pytest.raises(UsageError, match="is the input"):
        predict_many([str(a), str(victim)], tmp_path / "in", tiny_weights, overwrite=True,
                     **OPTS)
    assert victim.read_bytes() == before
    bands = tmp_path / "bands"
    bands.mkdir()
    for k, band in enumerate(BANDS):
        write_geotiff(bands / f"T_{band}.tif", field((24, 24), 4)[k:k + 1], descriptions=None)
    with pytest.raises(UsageError, match="inside the input folder"):
        predict_many([str(bands), str(a)], bands / "out", tiny_weights, **OPTS)
    assert not (bands / "out").exists()


# ================================================================ reliability

def test_folder_scan_skips_non_stac_json_and_fails_broken_ones_alone(tmp_path: Path,
                                                                     tiny_weights: Path
                                                                     ) -> None:
    scenes(tmp_path / "in", 2, (24, 24))
    (tmp_path / "in" / "config.json").write_text('{"threads": 4}')  # not STAC: not a scene
    (tmp_path / "in" / "broken.json").write_text('{"type": "Feature", ')  # unreadable
    (tmp_path / "in" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'in' / 'scene0.tif'}\n{tmp_path / 'gone.tif'}\n")
    report = predict_many([str(tmp_path / "in"), f"@{listing}"], tmp_path / "out",
                          tiny_weights, **OPTS)
    by_input = {Path(s.input).name: s for s in report.scenes}
    assert set(by_input) == {"broken.json", "deep.json", "scene0.tif", "scene1.tif",
                             "gone.tif"}
    assert by_input["scene0.tif"].status == by_input["scene1.tif"].status == "done"
    assert "not valid JSON" in by_input["broken.json"].reason
    assert "nested too deeply" in by_input["deep.json"].reason
    assert "does not exist" in by_input["gone.tif"].reason
    assert report.count("failed") == 3


def test_predict_dir_into_itself_twice(tmp_path: Path, tiny_weights: Path) -> None:
    """Its outputs, records and report are never taken as inputs on the re-run."""
    folder = tmp_path / "scenes"
    scenes(folder, 2, (24, 24))
    for _ in range(2):
        code, msg = run_cli("predict", folder, "-o", folder, "--weights", tiny_weights,
                            "--tile", "40", "--overlap", "8")
        assert code == 0, msg
    assert "2 scene(s): 0 done, 2 skipped" in msg, msg
    assert sorted(p.name for p in folder.glob("*.tif")) == [
        "scene0.tif", "scene0_x2.tif", "scene1.tif", "scene1_x2.tif"]
    assert [s.stem for s in expand_inputs([str(folder / "*")])] == ["scene0", "scene1"]


def test_changed_band_file_behind_a_stac_item_is_redone(tmp_path: Path, tiny_weights: Path
                                                        ) -> None:
    item = stac_item(tmp_path, "it", field((24, 24), 4))
    path = tmp_path / "it.json"
    path.write_text(json.dumps(item))
    other = scenes(tmp_path / "x", 1, (24, 24))[0]
    out = tmp_path / "out"
    predict_many([str(path), str(other)], out, tiny_weights, **OPTS)
    before = pixels(out / "it_x2.tif")
    record = read_record(out / "it_x2.tif")
    assert record is not None and len(record["input"]["rasters"]) == 4
    write_geotiff(tmp_path / "it" / "B03.tif", field((24, 24), 4, seed=9)[1:2],
                  descriptions=None, driver="COG")
    again = predict_many([str(path), str(other)], out, tiny_weights, **OPTS)
    assert again.scenes[0].reason == "redone: stale record (input changed)"
    assert again.scenes[1].status == "skipped"
    assert not np.array_equal(pixels(out / "it_x2.tif"), before)


def test_changed_source_behind_a_vrt_is_redone(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "data.tif", field((24, 24), 4))
    vrt = tmp_path / "scene.vrt"
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><Description>{name}</Description>'
        f'<SimpleSource><SourceFilename relativeToVRT="1">data.tif</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b, name in enumerate(BANDS, 1))
    with open_scene(src) as scene:
        gt = scene.meta.transform.to_gdal()
        crs = scene.meta.crs.to_wkt()
    vrt.write_text(f'<VRTDataset rasterXSize="24" rasterYSize="24"><SRS>{crs}</SRS>'
                   f"<GeoTransform>{', '.join(map(str, gt))}</GeoTransform>{bands}</VRTDataset>")
    other = scenes(tmp_path / "x", 1, (24, 24))[0]
    out = tmp_path / "out"
    first = predict_many([str(vrt), str(other)], out, tiny_weights, **OPTS)
    assert first.count("done") == 2, first.summary()
    write_geotiff(src, field((24, 24), 4, seed=4))  # the VRT itself is untouched
    again = predict_many([str(vrt), str(other)], out, tiny_weights, **OPTS)
    assert again.scenes[0].status == "done", again.summary()


def test_remote_assets_are_fingerprinted_or_said_unverifiable(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "B02.tif").write_bytes(b"x" * 100)

    class Bare(RangeHandler):
        def end_headers(self) -> None:  # no Last-Modified, no ETag
            self._headers_buffer = [h for h in self._headers_buffer  # type: ignore[attr-defined]
                                    if not h.lower().startswith((b"last-modified", b"etag"))]
            super().end_headers()

    with serve(www) as base:
        seen = file_fingerprint(base + "B02.tif")
        assert seen["verifiable"] and seen["content-length"] == "100" and seen["last-modified"]
    with serve(www, Bare) as base:
        assert file_fingerprint(base + "B02.tif")["verifiable"] is False


def test_a_resume_over_unverifiable_remote_assets_says_so(tmp_path: Path, tiny_weights: Path
                                                          ) -> None:
    www = tmp_path / "www"
    item = stac_item(www, "far", field((24, 24), 4))
    (www / "items.json").write_text(json.dumps({"type": "FeatureCollection",
                                                "features": [item]}))

    class Bare(RangeHandler):
        def end_headers(self) -> None:
            self._headers_buffer = [h for h in self._headers_buffer  # type: ignore[attr-defined]
                                    if not h.lower().startswith((b"last-modified", b"etag"))]
            super().end_headers()

    with serve(www, Bare) as base:
        first = predict_many([base + "items.json"], tmp_path / "out", tiny_weights, **OPTS)
        again = predict_many([base + "items.json"], tmp_path / "out", tiny_weights, **OPTS)
    assert first.scenes[0].status == "done", first.summary()
    assert again.scenes[0].status == "skipped"
    assert "cannot be seen" in again.scenes[0].reason and "--overwrite" in again.scenes[0].reason


@pytest.mark.parametrize("pattern", [
    "{index:s}.tif", "{stem:d}.tif", "{scale:s}{stem}.tif", "{index:99999999}{stem}.tif",
    "{stem!z}.tif", "{stem:>300}.tif", "{stem[0]}.tif", "{stem.upper}.tif", "{}.tif",
    "{stem", "{index:{nope}}{stem}.tif",
])
def test_bad_name_patterns_are_usage_errors(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(UsageError) as err:
        check_name_pattern(pattern)
    assert "\n" not in str(err.value) and "--name" in str(err.value)
    write_geotiff(tmp_path / "a.tif", field((16, 16), 4))
    code, msg = run_cli("predict", tmp_path / "a.tif", "-o", tmp_path / "o.tif", "--name",
                        pattern)
    assert code == 2 and msg.startswith("s2sr: error: --name"), msg
    assert not (tmp_path / "o.tif").exists()


def test_locks_of_dead_writers_are_swept_held_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    stale = lock_path(out)
    stale.write_text("")  # a writer killed with its lock file in place
    held = tmp_path / "y.tif"
    with exclusive_output(held):
        assert sweep_stale_locks(tmp_path) == [stale]
        assert lock_path(held).exists()
    assert not lock_path(held).exists()
    # a lock swept between a writer's open and its flock is not lost: it retakes the new one
    with exclusive_output(out):
        assert lock_path(out).exists()


def test_report_on_a_full_disk_leaves_no_temporary(tmp_path: Path, tiny_weights: Path
                                                   ) -> None:
    if not can_mount_tmpfs():
        pytest.skip("needs `unshare -rm` to mount a small tmpfs (user namespaces disabled)")
    scenes(tmp_path / "in", 2, (24, 24))
    mnt = tmp_path / "small"
    mnt.mkdir()
    args = " ".join([*EXE, "predict", str(tmp_path / "in"), "-o",
                     str(tmp_path / "out"), "--weights", str(tiny_weights), "--tile", "40",
                     "--overlap", "8", "--report", str(mnt / "run.json")])
    script = (f"mount -t tmpfs -o size=16k tmpfs {mnt} && echo '{{\"format\": "
              f"\"s2sr-run-report\"}}' > {mnt}/run.json && (head -c 1M /dev/zero > "
              f"{mnt}/fill 2>/dev/null; true) && {{ {args}; echo rc=$?; ls -A {mnt}; }}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, env=ENV)
    assert "rc=0" in proc.stdout, proc.stdout + proc.stderr
    assert "could not write the run report" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(proc.stdout.split("rc=0", 1)[1].split()) == ["fill", "run.json"]


@pytest.mark.parametrize(("scales", "offsets", "match"), [
    ((1.0, 1e-4, 1e-4, 1e-4), (0.0,) * 4, "different scales"),
    ((1e-4,) * 4, (-0.1, -0.1, 0.0, -0.1), "different offsets"),
    ((1.0,) * 4, (0.0,) * 4, "reflectance of 10000"),
    ((1e-4,) * 4, (-5.0,) * 4, "exceed 1 reflectance"),
])
def test_implausible_raster_bands_are_refused(tmp_path: Path, scales: tuple[float, ...],
                                              offsets: tuple[float, ...], match: str) -> None:
    item = stac_item(tmp_path, "rb", field((16, 16), 4))
    for k, band in enumerate(("blue", "green", "red", "nir")):
        item["assets"][band]["raster:bands"] = [{"scale": scales[k], "offset": offsets[k]}]
    path = tmp_path / "rb.json"
    path.write_text(json.dumps(item))
    with pytest.raises(StacError, match=match) as err:
        open_scene(path, bands=BANDS)
    assert "\n" not in str(err.value) and "--offset" in str(err.value)
    with open_scene(path, bands=BANDS, dn_offset=0) as scene:  # --offset: raster:bands ignored
        assert scene.meta.gains == (1e-4,) * 4


def _first_temporary(out: Path, deadline: float) -> int:
    """Wait for an output being written; the pid of its writer (from the temporary's name)."""
    while time.monotonic() < deadline:
        for entry in out.glob(".*.s2sr-*.tmp*") if out.is_dir() else ():
            return int(entry.name.split(".s2sr-")[1].split("-")[0])
        time.sleep(0.05)
    raise AssertionError("no output was being written")


@pytest.mark.slow
def test_sigterm_on_workers_leaves_nothing_and_resume_is_bit_identical(
        tmp_path: Path, tiny_weights: Path) -> None:
    pytest.importorskip("distributed")
    scenes(tmp_path / "in", 3, (160, 160))
    args = ["predict", str(tmp_path / "in"), "--weights", str(tiny_weights), "--tile", "24",
            "--overlap", "8"]
    # as `timeout` does: SIGTERM to the whole process group, the workers included, while
    # a worker is writing an output
    proc = subprocess.Popen([*EXE, *args, "-o", str(tmp_path / "out"), "--workers", "2"],
                            stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    _first_temporary(tmp_path / "out", time.monotonic() + 240)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [
        "s2sr: stopped by SIGTERM; no partial output was left"], err  # and no Dask noise
    assert _hidden(tmp_path / "out") == []
    # resume, in this process, and compare with a run never interrupted
    resumed = predict_many([str(tmp_path / "in")], tmp_path / "out", tiny_weights,
                           tile=24, overlap=8)
    assert resumed.count("failed") == 0 and resumed.count("done") >= 1
    whole = predict_many([str(tmp_path / "in")], tmp_path / "whole", tiny_weights,
                         tile=24, overlap=8)
    for res in whole.scenes:
        name = Path(res.output).name
        np.testing.assert_array_equal(pixels(tmp_path / "out" / name), pixels(Path(res.output)))
        assert (tmp_path / "out" / name).read_bytes() == Path(res.output).read_bytes()


# ================================================================ new user / cosmetic

@pytest.mark.slow
def test_script_without_main_guard_is_told_about_it(tmp_path: Path, tiny_weights: Path
                                                    ) -> None:
    pytest.importorskip("distributed")
    scenes(tmp_path / "in", 1, (24, 24))
    script = tmp_path / "script.py"
    script.write_text("import s2sr\n"
                      f"s2sr.predict_many([{str(tmp_path / 'in')!r}], {str(tmp_path / 'o')!r},"
                      f" {str(tiny_weights)!r}, workers=2, tile=40, overlap=8)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=ENV, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    assert "if __name__ == \"__main__\":" in proc.stderr.splitlines()[-1], proc.stderr
    assert "OutputExistsError" not in proc.stderr
    assert not list((tmp_path / "o").glob("*.tif"))


@pytest.mark.slow
def test_killed_worker_is_said_and_dask_stays_quiet(tmp_path: Path, tiny_weights: Path
                                                    ) -> None:
    pytest.importorskip("distributed")
    scenes(tmp_path / "in", 3, (160, 160))
    out = tmp_path / "o"
    proc = subprocess.Popen([*EXE, "predict", str(tmp_path / "in"), "-o", str(out),
                             "--weights", str(tiny_weights), "--workers", "2", "--tile", "24",
                             "--overlap", "8"], stderr=subprocess.PIPE, text=True, env=ENV)
    os.kill(_first_temporary(out, time.monotonic() + 240), signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("3 scene(s): 3 done") and " 0.00 " not in lines[0], lines
    assert any("was lost (killed, or out of memory)" in ln for ln in lines), lines
    # nothing else: no "leaked semaphore", no Dask log lines or warnings
    assert all(ln.startswith(("s2sr:", "run report:", "  worker ")) for ln in lines[1:]), lines
    assert json.loads((out / "s2sr_run.json").read_text())["lost_workers"]


def test_summary_rate_and_lost_workers_are_said() -> None:
    report = RunReport(scenes=[SceneResult("a.tif", "a_x2.tif", "done", megapixels=0.0027)],
                       seconds=4.0, lost_workers=[{"worker": "tcp://127.0.0.1:5",
                                                   "scenes": ["a.tif"]}])
    text = report.summary()
    assert "0.00 " not in text and "0.000675 per second" in text, text
    assert "worker tcp://127.0.0.1:5 was lost" in text and "a.tif" in text
    assert report.to_dict()["lost_workers"][0]["scenes"] == ["a.tif"]
    idle = RunReport(scenes=[SceneResult("a.tif", "a_x2.tif", "skipped")], seconds=1.0)
    assert "no scene computed" in idle.summary()
