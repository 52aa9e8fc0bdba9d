"""Hostile and bad input for a pairs dataset's store (issue 19): notes and labels that are
not one line of UTF-8 text, datasets an older s2sr broke with them, CSV injection, and a
full disk while a pair is committed or a decision saved."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from s2sr.cli.main import cli
from s2sr.core.errors import UsageError
from s2sr.data import DegradeOptions, PairStore, degrade_scene
from support.cli import can_mount_tmpfs, one_error_line
from support.rasters import texture, write_geotiff

# A note as a Latin-1 terminal passes it: Python decodes argv with surrogateescape
LATIN1_NOTE = os.fsdecode(b"caf\xe9")


def _scene(path: Path, seed: int = 1) -> Path:
    dn = np.rint(texture((96, 96), seed=seed) * 10000).astype(np.uint16)
    return write_geotiff(path, dn)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two scenes and a dataset made from the first (patch 16, x2: 9 patches)."""
    folder = tmp_path_factory.mktemp("store")
    first, _ = _scene(folder / "a.tif", 1), _scene(folder / "b.tif", 2)
    degrade_scene(first, folder / "ds", DegradeOptions(patch=16))
    return folder, folder / "ds"


@pytest.fixture
def dataset(template: tuple[Path, Path], tmp_path: Path) -> Path:
    shutil.copytree(template[1], tmp_path / "ds")
    return tmp_path / "ds"


def _pids(root: Path) -> list[str]:
    return [r["patch_id"] for r in json.loads((root / "manifest.json").read_text())["patches"]]


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset (hidden ones too) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _run(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res.exit_code, res.output


def _csv_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- reliability: notes and labels that are not one line of UTF-8 text ----------------------

class TestNotes:
    def test_latin1_note_is_refused_before_anything_is_written(
            self, dataset: Path, template: tuple[Path, Path]) -> None:
        before = _files(dataset)
        pid = _pids(dataset)[0]
        code, out = _run("pairs", "decide", dataset, pid, "rejected", "--note", LATIN1_NOTE)
        assert code == 2 and "--note" in one_error_line(out) and "UTF-8" in out
        assert _files(dataset) == before
        # and the dataset stays usable: decisions, and a pair added to it
        code, out = _run("pairs", "decide", dataset, pid, "rejected", "--note", "café")
        assert code == 0, out
        assert _csv_rows(dataset)[0]["reason"] == "café"
        code, out = _run("pairs", "degrade", template[0] / "b.tif", "-o", dataset,
                         "--patch", "16")
        assert code == 0, out

    @pytest.mark.parametrize("note", ["\ud800", "caf\udce9", "two\nlines", "cr\r", "nul\x00",
                                      "bell\x07", "\u202egnp.exe", "x" * 501])
    def test_api_refuses_what_a_dataset_cannot_keep(self, dataset: Path, note: str) -> None:
        before = _files(dataset)
        with pytest.raises(UsageError, match="note"):
            PairStore(dataset).decide(_pids(dataset)[0], "rejected", note)
        assert _files(dataset) == before

    def test_a_long_unicode_note_within_the_limit_is_kept(self, dataset: Path) -> None:
        note = "é😀" * 250  # 500 characters, 1500 bytes of UTF-8
        pid = _pids(dataset)[0]
        PairStore(dataset).decide(pid, "accepted", note)
        assert PairStore(dataset).decisions[pid]["note"] == note
        assert _csv_rows(dataset)[0]["reason"] == note

    def test_labels_are_checked_before_any_work(self, template: tuple[Path, Path],
                                                tmp_path: Path) -> None:
        scene = template[0] / "a.tif"
        for option, value in (("--site", LATIN1_NOTE), ("--site", "a\nb"),
                              ("--sensor", "S\x1bE"), ("--site", "s" * 101)):
            code, out = _run("pairs", "degrade", scene, "-o", tmp_path / "new", option, value)
            assert code == 2 and option in one_error_line(out), out
            assert not (tmp_path / "new").exists()

    def test_a_pairs_csv_site_is_checked_before_any_work(self, tmp_path: Path) -> None:
        from s2sr.batch.many_pairs import read_pairs_csv
        from s2sr.data import BuildOptions

        for site, word in (('"a\nb"', "control character"), ("s" * 101, "101 characters"),
                           ("\u202eevil", "bidirectional")):
            table = tmp_path / "pairs.csv"
            table.write_text(f"lr,hr,site\na.tif,b.tif,{site}\n", encoding="utf-8")
            with pytest.raises(UsageError, match=f"line 2: the site .*{word}"):
                read_pairs_csv(table, BuildOptions())

    def test_api_labels_and_paths_are_stored_readably(self, template: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
        # the library does not refuse a label; it stores it so that every tool reads it
        scene = template[0] / "a.tif"
        info = degrade_scene(scene, tmp_path / "ds", DegradeOptions(patch=16,
                                                                   site="caf\udce9\n"))
        assert info["site"] == "caf\\xe9 "
        (tmp_path / "ds" / "manifest.csv").read_text(encoding="utf-8")  # valid UTF-8
        assert {r["site"] for r in _csv_rows(tmp_path / "ds")} == {"caf\\xe9 "}


class TestDatasetBrokenByAnOlderVersion:
    """``decisions.json`` as an older s2sr wrote it: a note with a surrogate (JSON escape
    ``\\udce9``), control characters, too long. The dataset must still work."""

    @pytest.fixture
    def broken(self, dataset: Path) -> Path:
        pids = _pids(dataset)
        (dataset / "decisions.json").write_text(json.dumps({
            pids[0]: {"status": "rejected", "note": "caf\udce9", "time": "t"},
            pids[1]: {"status": "accepted", "note": "a\nb\x00c" + "y" * 600, "time": "t"},
        }))
        return dataset

    def test_it_is_read_repaired_with_a_warning(self, broken: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            store = PairStore(broken)
        rows = {r["patch_id"]: r for r in store.rows()}
        pids = _pids(broken)
        assert rows[pids[0]]["reason"] == "caf\\xe9"
        assert rows[pids[1]]["reason"].startswith("a b c") and \
            len(rows[pids[1]]["reason"]) == 500
        assert "cannot keep" in caplog.text

    def test_decisions_and_degrade_work_again(self, broken: Path,
                                              template: tuple[Path, Path]) -> None:
        pids = _pids(broken)
        code, out = _run("pairs", "decide", broken, pids[2], "rejected", "--note", "ok")
        assert code == 0, out
        saved = json.loads((broken / "decisions.json").read_text(encoding="utf-8"))
        assert saved[pids[0]]["note"] == "caf\\xe9"  # the repaired text was saved
        assert {r["patch_id"]: r["reason"] for r in _csv_rows(broken)}[pids[0]] == "caf\\xe9"
        code, out = _run("pairs", "degrade", template[0] / "b.tif", "-o", broken,
                         "--patch", "16")
        assert code == 0, out
        code, out = _run("pairs", "info", broken)
        assert code == 0 and "rejected" in out, out


    def test_a_label_an_older_version_stored_does_not_break_the_csv(self, dataset: Path
                                                                   ) -> None:
        data = json.loads((dataset / "manifest.json").read_text())
        for row in data["patches"]:
            row["site"] = "caf\udce9"  # saved by json.dumps as the escape \udce9
        (dataset / "manifest.json").write_text(json.dumps(data))
        pid = _pids(dataset)[0]
        code, out = _run("pairs", "decide", dataset, pid, "rejected", "--note", "ok")
        assert code == 0, out
        assert {r["site"] for r in _csv_rows(dataset)} == {"caf\\udce9"}


class TestCsvInjection:
    @pytest.mark.parametrize("note", ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0",
                                      "-2+3", "@SUM(A1)"])
    def test_formula_notes_are_quoted_in_the_csv_only(self, dataset: Path, note: str) -> None:
        pid = _pids(dataset)[0]
        PairStore(dataset).decide(pid, "rejected", note)
        assert _csv_rows(dataset)[0]["reason"] == "'" + note
        assert PairStore(dataset).decisions[pid]["note"] == note  # the note itself is kept

    def test_numbers_are_not_quoted(self, dataset: Path) -> None:
        PairStore(dataset).decide(_pids(dataset)[0], "rejected", "-0.5")
        row = _csv_rows(dataset)[0]
        assert row["reason"] == "-0.5"
        assert not any(v.startswith("'") for v in row.values())


# --- reliability: a full disk ----------------------------------------------------------------

needs_tmpfs = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs `unshare -rm` to "
                                 "mount a small tmpfs (user namespaces disabled)")

# Runs inside `unshare -rm` (root in a private mount namespace): mounts a tmpfs of each size
# in turn on MNT and tries an operation on it; prints one JSON line per size.
_SWEEP = r"""
import json, shutil, subprocess, sys
from pathlib import Path
from s2sr.data import DegradeOptions, PairStore, degrade_scene
mode, mnt, scene, other, template = sys.argv[1:6]
mnt = Path(mnt)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mnt)], check=True)
for size in range(4, 400, 4):
    subprocess.run(["mount", "-o", f"remount,size={size}k", str(mnt)], check=True)
    for p in list(mnt.iterdir()):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    ds = mnt / "out" / "ds"
    before = {}
    try:
        if mode != "new":
            shutil.copytree(template, ds)  # the dataset as it was (may not fit: skip)
            before = {str(p.relative_to(ds)): p.read_bytes() for p in ds.rglob("*")
                      if p.is_file()}
    except OSError:
        continue
    error = None
    try:
        if mode == "decide":
            pid = json.loads((ds / "manifest.json").read_text())["patches"][3]["patch_id"]
            PairStore(ds).decide(pid, "rejected", "n" * 400)
        else:
            degrade_scene(scene if mode == "new" else other, ds,
                          DegradeOptions(patch=16))
    except OSError as err:
        error = err.errno
    files = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
    after = {str(p.relative_to(ds)): p.read_bytes() for p in ds.rglob("*")
             if p.is_file()} if ds.is_dir() else {}
    print(json.dumps({"size": size, "error": error, "files": files,
                      "same": after == before}), flush=True)
    if error is None:
        break
"""


def _sweep(mode: str, tmp_path: Path, template: tuple[Path, Path]) -> list[dict]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    folder, ds = template
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", _SWEEP, mode, str(mnt), str(folder / "a.tif"),
         str(folder / "b.tif"), str(ds)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@needs_tmpfs
class TestDiskFull:
    def test_degrade_into_a_new_dataset_commits_all_or_nothing(
            self, tmp_path: Path, template: tuple[Path, Path]) -> None:
        results = _sweep("new", tmp_path, template)
        failed = [r for r in results if r["error"] is not None]
        assert failed and results[-1]["error"] is None, results  # both cases were met
        for r in failed:
            assert r["error"] == 28, r  # ENOSPC, not another error on the way out
            assert r["files"] == [], f"left on a {r['size']} KB disk: {r['files']}"
        done = results[-1]["files"]
        assert "out/ds/manifest.csv" in done and "out/ds/manifest.json" in done
        # every stage failed at some size: arrays, the manifest, the csv (4 KB apart)
        assert len(failed) >= 5

    def test_degrade_into_an_existing_dataset_leaves_it_as_it_was(
            self, tmp_path: Path, template: tuple[Path, Path]) -> None:
        results = _sweep("add", tmp_path, template)
        failed = [r for r in results if r["error"] is not None]
        assert failed and results[-1]["error"] is None, results
        for r in failed:
            assert r["error"] == 28 and r["same"], r
            assert not [f for f in r["files"] if ".tmp" in f], r["files"]

    def test_decide_on_a_full_disk_changes_nothing(
            self, tmp_path: Path, template: tuple[Path, Path]) -> None:
        results = _sweep("decide", tmp_path, template)
        failed = [r for r in results if r["error"] is not None]
        assert failed and results[-1]["error"] is None, results
        for r in failed:
            assert r["error"] == 28 and r["same"], r
            assert not [f for f in r["files"] if ".tmp" in f], r["files"]

    def test_command_line_says_so_in_one_line(self, tmp_path: Path,
                                              template: tuple[Path, Path]) -> None:
        mnt = tmp_path / "small"
        mnt.mkdir()
        script = (f"mount -t tmpfs -o size=12k tmpfs {mnt} && {{ {sys.executable} -m "
                  f"s2sr.cli.main pairs degrade {template[0] / 'a.tif'} -o {mnt / 'ds'} "
                  f"--patch 16; echo rc=$?; ls -A {mnt}; }}")
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                              text=True, env={**os.environ,
                                              "PYTHONPATH": os.pathsep.join(sys.path)})
        assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
        assert "full" in one_error_line(proc.stderr)
        assert proc.stdout.split("rc=1", 1)[1].split() == []


# --- new user: scenes without a projected CRS -------------------------------------------------

class TestScenesWithoutMetres:
    """``pairs degrade`` takes what ``predict`` takes: a scene in EPSG:4326 or without any
    georeferencing is Sentinel-2 with 10 m pixels (said in a warning); only where metres
    are really needed (``--levels``, another sensor) is ``--resolution`` asked for, and the
    message says why."""

    @pytest.fixture(params=["EPSG:4326", None, "identity"])
    def scene(self, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
        from affine import Affine

        dn = np.rint(texture((96, 96), seed=3) * 10000).astype(np.uint16)
        if request.param == "EPSG:4326":
            return write_geotiff(tmp_path / "geo.tif", dn, crs="EPSG:4326",
                                 transform=Affine(1e-4, 0, 10, 0, -1e-4, 45))
        return write_geotiff(tmp_path / "plain.tif", dn, crs=None, transform=Affine.identity()
                             if request.param == "identity" else
                             Affine(10, 0, 0, 0, -10, 0))

    def test_degrade_takes_them_like_predict(self, scene: Path, tmp_path: Path) -> None:
        code, out = _run("pairs", "degrade", scene, "-o", tmp_path / "ds", "--patch", "16")
        assert code == 0, out
        assert "taken as 10 m" in out and "--resolution" in out
        info = json.loads(out.strip().splitlines()[-1])
        assert info["kind"] == "SE20>SE10" and info["levels_m"] == [20.0, 10.0]
        assert len(_csv_rows(tmp_path / "ds")) == 9

    def test_resolution_is_asked_for_only_where_metres_are_needed(self, scene: Path,
                                                                 tmp_path: Path) -> None:
        code, out = _run("pairs", "degrade", scene, "-o", tmp_path / "ds", "--patch", "16",
                         "--levels", "40,20")
        line = one_error_line(out)
        assert code == 2 and "--levels are in metres" in line and "--resolution" in line
        code, out = _run("pairs", "degrade", scene, "-o", tmp_path / "ds", "--patch", "16",
                         "--sensor", "RE")
        line = one_error_line(out)
        assert code == 2 and "'RE' has no nominal pixel size" in line and \
            "--resolution" in line
        assert not (tmp_path / "ds").exists()
        code, out = _run("pairs", "degrade", scene, "-o", tmp_path / "ds", "--patch", "16",
                         "--levels", "40,20", "--resolution", "20")
        assert code == 0 and "taken as" not in out, out
        assert json.loads(out.strip().splitlines()[-1])["kind"] == "SE40>SE20"
