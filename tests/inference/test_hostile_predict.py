"""``s2sr predict`` under bad input, faults and races: refusals, clean-up, no silent errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr.core.errors import DataError, OutputBusyError, UsageError, WeightsError
from s2sr.inference import predict, super_resolve
from s2sr.inference.encoding import DnEncoding
from s2sr.models import build_model, save_model
from support.cli import can_mount_tmpfs, run_cli
from support.rasters import UTM_TRANSFORM, field, write_geotiff

EXE = [sys.executable, "-m", "s2sr.cli.main"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _one_line_error(text: str) -> str:
    """The error line; warnings (e.g. an unknown processing baseline) may precede it."""
    lines = [ln for ln in text.strip().splitlines()
             if ln.strip() and not ln.startswith("s2sr: warning:")]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- output paths -----------------------------------------------------------------------

def test_output_equal_to_input_is_refused_even_with_overwrite(tmp_path: Path,
                                                              tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    before = src.read_bytes()
    code, out = run_cli("predict", src, "-o", src, "--weights", tiny_weights, "--overwrite")
    assert code == 2 and "is the input" in _one_line_error(out)
    assert src.read_bytes() == before
    # the same file through another spelling of the path
    code, out = run_cli("predict", src, "-o", tmp_path / "." / "in.tif", "--weights", tiny_weights,
                    "--overwrite")
    assert code == 2 and "is the input" in out and src.read_bytes() == before


def test_output_equal_to_weights_or_inside_input_folder_is_refused(
        tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    weights = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, weights)
    code, out = run_cli("predict", src, "-o", weights, "--weights", weights, "--overwrite")
    assert code == 2 and "is the input" in out
    assert weights.read_bytes() == tiny_weights.read_bytes()
    folder = tmp_path / "bands"
    folder.mkdir()
    for k, b in enumerate(("B02", "B03", "B04", "B08")):
        write_geotiff(folder / f"T_{b}.tif", field((24, 20), 4)[k:k + 1], descriptions=None)
    code, out = run_cli("predict", folder, "-o", folder / "out.tif", "--weights", tiny_weights)
    assert code == 2 and "inside the input folder" in out
    assert not (folder / "out.tif").exists()


@pytest.mark.parametrize("kind", ["folder", "parent-is-file", "broken-link-above"])
def test_unusable_output_paths(tmp_path: Path, tiny_weights: Path, kind: str) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    if kind == "folder":
        out_path = tmp_path / "dir.tif"
        out_path.mkdir()
        expect = "is a folder"
    elif kind == "parent-is-file":
        (tmp_path / "file").write_text("x")
        out_path = tmp_path / "file" / "out.tif"
        expect = "is a file"
    else:
        (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
        out_path = tmp_path / "gone" / "sub" / "out.tif"
        expect = "broken link"
    for extra in ([], ["--overwrite"]):
        code, out = run_cli("predict", src, "-o", out_path, "--weights", tiny_weights, *extra)
        assert code == 2 and expect in _one_line_error(out)
    assert _leftovers(tmp_path) == []


def test_missing_output_folders_are_made_and_taken_away_on_failure(
        tmp_path: Path, tiny_weights: Path) -> None:
    """One scene into new folders works as export and many-scene predict do; a scene that
    fails after the folders were made leaves none of them behind."""
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    out_path = tmp_path / "new" / "deeper" / "out.tif"
    code, out = run_cli("predict", src, "-o", out_path, "--weights", tiny_weights)
    assert code == 0, out
    with rasterio.open(out_path) as ds:
        assert (ds.width, ds.height) == (40, 48)
    empty = write_geotiff(tmp_path / "empty.tif", np.zeros((4, 24, 20), np.uint16), nodata=0)
    code, out = run_cli("predict", empty, "-o", tmp_path / "other" / "sub" / "out.tif",
                    "--weights", tiny_weights)
    assert code == 1 and "no valid pixels" in _one_line_error(out)
    assert not (tmp_path / "other").exists()


# --- numbers ------------------------------------------------------------------------------

def test_huge_tile_is_refused_before_allocating(tmp_path: Path, tiny_weights: Path) -> None:
    code, out = run_cli("predict", write_geotiff(tmp_path / "in.tif", field((24, 20), 4)), "-o",
                    tmp_path / "o.tif", "--weights", tiny_weights, "--tile", "100000")
    assert code == 2 and "--tile 100000" in _one_line_error(out)


def test_tile_needing_more_memory_than_the_machine_is_refused(tmp_path: Path) -> None:
    # A 20000 x 20000 scene (sparse: nothing written, so tiny on disk) and the full EDSR:
    # an 8192 px tile would need hundreds of GiB; refused before any pixel is read.
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", width=20000, height=20000, count=4,
                       dtype="uint16", crs="EPSG:32633", transform=UTM_TRANSFORM, tiled=True,
                       compress="deflate", SPARSE_OK="TRUE") as ds:
        ds.descriptions = ("B02", "B03", "B04", "B08")
    weights = save_model(build_model("edsr", scale=2), tmp_path / "edsr.safetensors")
    start = time.perf_counter()
    code, out = run_cli("predict", big, "-o", tmp_path / "o.tif", "--weights", weights,
                    "--tile", "8192", "--device", "cpu")
    assert code == 2 and "GiB" in _one_line_error(out) and "--tile" in out
    assert time.perf_counter() - start < 60  # refused up front, not after reading
    assert not (tmp_path / "o.tif").exists() and _leftovers(tmp_path) == []


def test_tile_larger_than_the_scene_is_shrunk_and_gives_the_same_output(
        tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
    a = predict(src, tmp_path / "a.tif", tiny_weights, tile=64)
    b = predict(src, tmp_path / "b.tif", tiny_weights, tile=4096)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        diff = np.abs(da.read().astype(int) - db.read().astype(int))
        assert diff.max() <= 1
        assert db.tags()["S2SR_TILE"].split("/")[0] != "4096"


@pytest.mark.parametrize("overlap", ["2", "6", "30"])
def test_overlap_must_split_into_ramp_and_context(tmp_path: Path, tiny_weights: Path,
                                                  overlap: str) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "--overlap", overlap)
    assert code == 2 and "multiple of 4" in _one_line_error(out)


# --- silent errors --------------------------------------------------------------------------

def test_inf_is_reported_where_it_is(tmp_path: Path, tiny_weights: Path) -> None:
    data = field((40, 30), 4, dtype="float32")
    data[2, 5, 7] = np.inf
    src = write_geotiff(tmp_path / "in.tif", data)
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights)
    assert code == 1 and "row 5, column 7" in _one_line_error(out)
    assert not (tmp_path / "o.tif").exists() and _leftovers(tmp_path) == []


def test_model_producing_nan_is_an_error_not_a_zero_image() -> None:
    model = build_model("edsr-tiny", scale=2)
    with torch.no_grad():
        model.tail.weight.fill_(float("nan"))
    with pytest.raises(WeightsError, match="NaN or infinite"):
        super_resolve(field((20, 20), 4), model, tile=32, overlap=8)


def _dark_model() -> torch.nn.Module:
    """A model whose output is far below zero reflectance everywhere."""
    model = build_model("edsr-tiny", scale=2)
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.fill_(-50.0)  # normalised space: mean - 50 std < 0
    return model


def test_negative_predictions_clamp_at_zero_reflectance_never_nodata() -> None:
    model = _dark_model()
    data = field((20, 20), 4)
    out = super_resolve(data, model, tile=32, overlap=8, nodata=0)
    assert (out == 1).all()  # DN 1: just above zero reflectance, never the nodata 0
    out = super_resolve(data, model, tile=32, overlap=8)  # no nodata: DN 0 still avoided
    assert (out == 1).all()
    # baseline >= 04.00 encoding: reflectance = (DN - 1000) / 10000 -> floor at DN 1000
    shifted = (data.astype(np.int32) + 1000).astype(np.uint16)
    out = super_resolve(shifted, model, tile=32, overlap=8, nodata=0, offset=-0.1)
    assert (out == 1000).all()
    out = super_resolve(field((20, 20), 4, dtype="float32"), model, tile=32, overlap=8)
    assert (out >= 0).all() and out.min() == 0.0


def test_dn_floor_respects_encoding() -> None:
    r = DnEncoding("int16", (1e-4,), (0.0,), -9999)
    assert r.dn_floor().tolist() == [0]
    r = DnEncoding("uint16", (1e-4,), (-0.1,), 1000)  # nodata sits exactly on the floor
    assert r.dn_floor().tolist() == [1001]


def test_nan_weights_never_write_an_output(tmp_path: Path, tiny_weights: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    # save_model refuses non-finite weights, so write the hostile file by hand: the valid
    # header of a real weights file over all-NaN tensors
    with safe_open(str(tiny_weights), framework="pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    tensors = {k: torch.full_like(v, float("nan")) if k not in ("mean", "std") else v
               for k, v in tensors.items()}
    weights = tmp_path / "nan.safetensors"
    save_file(tensors, str(weights), metadata=header)
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", weights)
    assert code == 1 and ("NaN" in out or "non-finite" in out), out
    assert not (tmp_path / "o.tif").exists() and _leftovers(tmp_path) == []


def test_scene_without_b08_says_it_uses_the_rgb_model(tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "rgb.tif", field((24, 20), 3),
                        descriptions=("B02", "B03", "B04"))
    proc = subprocess.run([*EXE, "predict", str(src), "-o", str(tmp_path / "o.tif")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "no B08: using the RGB model" in proc.stderr


def test_b08_on_another_grid_is_an_error_not_a_silent_rgb_model(tmp_path: Path) -> None:
    folder = tmp_path / "bands"
    folder.mkdir()
    data = field((24, 20), 4)
    for k, b in enumerate(("B02", "B03", "B04")):
        write_geotiff(folder / f"T_{b}.tif", data[k:k + 1], descriptions=None)
    write_geotiff(folder / "T_B08.tif", data[3:4, :12, :10], descriptions=None,
                  transform=UTM_TRANSFORM * UTM_TRANSFORM.scale(2))
    code, out = run_cli("predict", folder, "-o", tmp_path / "o.tif")
    assert code == 1 and "B08" in _one_line_error(out) and "grid" in out
    assert not (tmp_path / "o.tif").exists()


# --- races and signals ----------------------------------------------------------------------

def test_two_calls_in_one_process_never_corrupt_one_output(tmp_path: Path,
                                                           tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((300, 260), 4))
    reference = predict(src, tmp_path / "ref.tif", tiny_weights, tile=64)
    out = tmp_path / "out.tif"
    errors: list[BaseException] = []

    def work() -> None:
        try:
            predict(src, out, tiny_weights, tile=64, overwrite=True)
        except OutputBusyError as err:
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) < 3  # at least one wrote
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert _leftovers(tmp_path) == []


def test_concurrent_runs_without_overwrite_only_one_succeeds(tmp_path: Path,
                                                             tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((400, 400), 4))
    out = tmp_path / "out.tif"
    cmd = [*EXE, "predict", str(src), "-o", str(out), "--weights", str(tiny_weights), "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.stderr.read() if p.stderr else "" for p in procs]
    assert sorted(codes) == [0, 2], errs
    assert any("exists" in e or "being written" in e for e in errs)
    with rasterio.open(out) as ds:
        assert ds.read().shape == (4, 800, 800)
    assert _leftovers(tmp_path) == []


def _start_slow_predict(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    src = write_geotiff(tmp_path / "in.tif", field((768, 768), 4))
    torch.manual_seed(0)
    weights = save_model(build_model("edsr", scale=2), tmp_path / "edsr.safetensors")
    out = tmp_path / "out.tif"
    proc = subprocess.Popen([*EXE, "predict", str(src), "-o", str(out), "--weights",
                             str(weights), "--tile", "160", "-q"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(".tmp" in n for n in _leftovers(tmp_path)):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "predict finished before it could be interrupted"
    return proc, out


@pytest.mark.slow
def test_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    proc, out = _start_slow_predict(tmp_path)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 143, err
    assert "SIGTERM" in err and "Traceback" not in err
    assert not out.exists()
    assert [n for n in _leftovers(tmp_path) if ".tmp" in n or ".lock" in n] == []


@pytest.mark.slow
def test_kill_9_leaves_no_output_and_the_next_run_sweeps_its_temporary(
        tmp_path: Path, tiny_weights: Path) -> None:
    proc, out = _start_slow_predict(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists()
    assert any(".tmp" in n for n in _leftovers(tmp_path))  # the dead run's temporary
    code, msg = run_cli("predict", tmp_path / "in.tif", "-o", out, "--weights", tiny_weights,
                    "-q")
    assert code == 0, msg
    assert [n for n in _leftovers(tmp_path) if ".tmp" in n or ".lock" in n] == []


# --- a full disk ------------------------------------------------------------------------------

@pytest.mark.parametrize("cog", [False, True])
def test_disk_full_is_named_and_leaves_nothing(tmp_path: Path, tiny_weights: Path,
                                               cog: bool) -> None:
    if not can_mount_tmpfs():
        pytest.skip("needs `unshare -rm` to mount a small tmpfs (user namespaces disabled)")
    src = write_geotiff(tmp_path / "in.tif", field((256, 256), 4) * 7 % 4096)
    mnt = tmp_path / "small"
    mnt.mkdir()
    # A 160 KB disk: the uncompressed intermediate of --cog does not fit, nor (for random
    # data) the deflated GeoTIFF.
    args = " ".join([*EXE, "predict", str(src), "-o", str(mnt / "out.tif"), "--weights",
                     str(tiny_weights), "-q", *(["--cog"] if cog else [])])
    script = (f"mount -t tmpfs -o size=160k tmpfs {mnt} && {{ {args}; echo rc=$?; "
              f"ls -A {mnt}; }}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert "disk" in proc.stderr and "full" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # s2sr's own report is one line; libtiff may print its own line before it (a C-level
    # write to stderr that no GDAL/Python setting silences).
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("s2sr:")]
    assert len(ours) == 1 and "full" in ours[0], proc.stderr
    assert "ERROR 1" not in proc.stderr
    listing = proc.stdout.split("rc=1", 1)[1].split()
    assert listing == [], f"left on the full disk: {listing}"


def test_usage_error_for_bad_batch_size_in_api(tiny_weights: Path) -> None:
    from s2sr.models import load_model

    with pytest.raises(UsageError, match="batch_size"):
        super_resolve(field((20, 20), 4), load_model(tiny_weights), batch_size=0)
    with pytest.raises(DataError, match="all nodata"):
        super_resolve(np.zeros((4, 20, 20), np.uint16), load_model(tiny_weights), nodata=0)


def test_demo_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "demo_output"
    target.write_text("precious")
    code, out = run_cli("demo", "-o", target)
    assert code == 2 and "is a file" in _one_line_error(out)
    assert target.read_text() == "precious"
    code, out = run_cli("demo", "-o", tmp_path / "missing" / "demo")
    assert code == 2 and "does not exist" in _one_line_error(out)


def test_explicit_offset_reaches_the_output_encoding(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4) + 1000)
    out = predict(src, tmp_path / "o.tif", tiny_weights, dn_offset=-1000)
    with rasterio.open(out) as ds:
        np.testing.assert_allclose(ds.offsets, [-0.1] * 4)
        assert (ds.read() >= 1000).all()  # never below the DN of zero reflectance
    code, msg = run_cli("predict", src, "-o", tmp_path / "p.tif", "--weights", tiny_weights,
                    "--offset", "nan")
    assert code == 2 and "offset" in _one_line_error(msg)
