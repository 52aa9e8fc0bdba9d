"""Issue 19, what a new user tripped on (item 8) and what is held: output folders,
permissions of what s2sr writes, the ``overwrite`` hint in the Python API's words, a full
disk under ``export`` (``predict``'s is in tests/inference/test_hostile_predict.py)."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from s2sr.core.errors import COMMAND_LINE_ENV, OutputExistsError
from s2sr.inference.verified_export import export_model
from support.cli import can_mount_tmpfs, no_ort, run_cli
from support.rasters import UTM_TRANSFORM, field, texture, write_geotiff

EXE = [sys.executable, "-m", "s2sr.cli.main"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _one_line_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines()
             if ln.strip() and not ln.startswith("s2sr: warning:")]
    assert len(lines) == 1 and lines[0].startswith("s2sr: error: "), text
    return lines[0]


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class TestNewUserExportFolder:
    """``export -o new/model.onnx`` makes its folder, as ``predict -o new/`` does."""

    @pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=no_ort)])
    def test_missing_folders_are_made(self, tiny_weights: Path, tmp_path: Path,
                                      fmt: str) -> None:
        out = tmp_path / "new" / "sub" / f"m.{fmt}"
        code, text = run_cli("export", "--weights", tiny_weights, "--format", fmt, "-o", out, "-q")
        assert code == 0, text
        assert out.is_file() and _everything(tmp_path) == ["new", "new/sub", f"new/sub/m.{fmt}"]

    def test_a_file_in_the_way_is_refused_and_nothing_made(self, tiny_weights: Path,
                                                            tmp_path: Path) -> None:
        (tmp_path / "notes").write_text("keep")
        code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript",
                         "-o", tmp_path / "notes" / "sub" / "m.pt")
        assert code == 2
        assert "cannot be made" in _one_line_error(text) and "is a file" in text
        assert _everything(tmp_path) == ["notes"]

    def test_a_broken_link_in_the_way_is_refused(self, tiny_weights: Path,
                                                 tmp_path: Path) -> None:
        (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
        code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript",
                         "-o", tmp_path / "gone" / "sub" / "m.pt")
        assert code == 2 and "broken link" in _one_line_error(text)
        assert _everything(tmp_path) == ["gone"]

    def test_a_refused_export_makes_no_folder(self, tiny_weights: Path,
                                              tmp_path: Path) -> None:
        """Folders are made when the file is written: an export refused before (weights
        that are an export already) leaves nothing, not even an empty folder."""
        exported = tmp_path / "m.pt"
        export_model(tiny_weights, exported, "torchscript")
        code, text = run_cli("export", "--weights", exported, "--format", "torchscript",
                         "-o", tmp_path / "new" / "again.pt")
        assert code == 2 and "already an exported" in _one_line_error(text)
        assert _everything(tmp_path) == ["m.pt"]


class TestNewUserOverwriteHint:
    """The fix named in the caller's words: ``overwrite=True`` from Python, ``--overwrite``
    on the command line; one message, one mechanism."""

    def test_python_api_names_the_argument(self, tiny_weights: Path, tmp_path: Path) -> None:
        out = tmp_path / "m.pt"
        out.write_bytes(b"keep")
        with pytest.raises(OutputExistsError) as info:
            export_model(tiny_weights, out, "torchscript")
        assert "pass overwrite=True to replace it" in str(info.value)
        assert "--overwrite" not in str(info.value)
        assert out.read_bytes() == b"keep"

    def test_command_line_names_the_option_then_python_again(self, tiny_weights: Path,
                                                             tmp_path: Path) -> None:
        out = tmp_path / "m.pt"
        out.write_bytes(b"keep")
        code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript",
                         "-o", out)
        line = _one_line_error(text)
        assert code == 2 and "pass --overwrite to replace it" in line
        assert "overwrite=True" not in line
        assert COMMAND_LINE_ENV not in os.environ  # restored after the command
        assert "overwrite=True" in str(OutputExistsError(f"output {out} exists: pass "
                                                         "--overwrite to replace it"))

    def test_predict_on_the_command_line(self, tiny_weights: Path, tmp_path: Path) -> None:
        src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
        (tmp_path / "o.tif").write_bytes(b"keep")
        code, text = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                         tiny_weights, "--offset", "0")
        assert code == 2 and "--overwrite" in _one_line_error(text)


# Writes one output of each kind under umask 027 (in a child: the umask is per process),
# then the test reads their modes.
_UMASK_SCRIPT = textwrap.dedent("""
    import os, sys
    from click.testing import CliRunner
    from s2sr.cli.main import cli
    from s2sr.models import build_model, save_model
    os.umask(0o027)
    out, src, lr, hr, weights = map(str, sys.argv[1:6])
    save_model(build_model("edsr-tiny", scale=2), os.path.join(out, "saved.safetensors"))
    commands = [
        ["predict", src, "-o", os.path.join(out, "one.tif"), "--weights", weights,
         "--offset", "0", "-q"],
        ["predict", src, lr, "-o", os.path.join(out, "many"), "--weights", weights,
         "--offset", "0", "-q"],
        ["export", "--weights", weights, "--format", "torchscript", "-o",
         os.path.join(out, "new", "m.pt"), "-q"],
        ["evaluate", "scene", "--weights", weights, "--lr", lr, "--hr", hr, "-o",
         os.path.join(out, "report")],
    ]
    if len(sys.argv) > 6:
        commands.append(["export", "--weights", weights, "--format", "onnx", "-o",
                         os.path.join(out, "m.onnx"), "-q"])
    for args in commands:
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, (args, res.output, res.exception)
""")


class TestReliabilityPermissions:
    """Files s2sr writes get the permissions of any new file (0o666 less the umask);
    weights files were 0o600 (safetensors' own choice)."""

    def test_every_output_follows_the_umask(self, tiny_weights: Path, tmp_path: Path) -> None:
        hr = texture((64, 64), seed=7)
        lr = hr.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4))
        src = write_geotiff(tmp_path / "in.tif", np.rint(lr * 10000).astype(np.uint16),
                            transform=UTM_TRANSFORM * Affine.scale(2))
        lr_path = write_geotiff(tmp_path / "lr.tif", np.rint(lr * 10000).astype(np.uint16),
                                transform=UTM_TRANSFORM * Affine.scale(2))
        hr_path = write_geotiff(tmp_path / "hr.tif", np.rint(hr * 10000).astype(np.uint16))
        out = tmp_path / "out"
        out.mkdir()
        args = [str(out), str(src), str(lr_path), str(hr_path), str(tiny_weights)]
        onnx = importlib.util.find_spec("onnx") is not None
        proc = subprocess.run([sys.executable, "-c", _UMASK_SCRIPT, *args,
                               *(["onnx"] if onnx else [])],
                              capture_output=True, text=True, env=ENV, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        paths = list(out.rglob("*"))
        files = [p for p in paths if p.is_file()]
        names = {p.name for p in files}
        assert {"saved.safetensors", "one.tif", "m.pt", "report.md"} <= names
        assert any(p.suffix == ".png" for p in files)  # the report's figures
        for p in paths:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (0o750 if p.is_dir() else 0o640), (p, oct(mode))


class TestReliabilityDiskFull:
    """Held: a full disk under ``export`` is named, and nothing is left (no temporary, no
    lock, no folder the export made)."""

    @pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=no_ort)])
    @pytest.mark.parametrize("sub", ["", "new/sub/"])
    def test_disk_full_leaves_nothing(self, tiny_weights: Path, tmp_path: Path, fmt: str,
                                      sub: str) -> None:
        if not can_mount_tmpfs():
            pytest.skip("needs `unshare -rm` to mount a small tmpfs (user namespaces disabled)")
        mnt = tmp_path / "small"
        mnt.mkdir()
        args = " ".join([*EXE, "export", "--weights", str(tiny_weights), "--format", fmt,
                         "-o", str(mnt / f"{sub}m.{fmt}"), "-q"])
        # 8 KiB: folders fit (they take no data pages), the model does not
        script = (f"mount -t tmpfs -o size=8k tmpfs {mnt} && {{ {args}; echo rc=$?; "
                  f"ls -A {mnt}; }}")
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                              text=True, env=ENV, timeout=300)
        assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
        line = _one_line_error(proc.stderr)
        assert "full" in line and "Traceback" not in proc.stderr
        listing = proc.stdout.split("rc=1", 1)[1].split()
        assert listing == [], f"left on the full disk: {listing}"
