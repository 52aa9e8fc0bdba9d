"""Running the CLI in-process, reading its one error line, and what the environment allows
(ONNX Runtime installed, a tmpfs mountable), plus the tiny training configuration."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def run_cli(*args: str | Path) -> tuple[int, str]:
    """``s2sr ARGS`` in this process: its exit code and output. An exception other than the
    CLI's own exit is raised again: a traceback would have reached the user."""
    from click.testing import CliRunner

    from s2sr.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    """The single ``s2sr: error:`` line of a command's output (warnings may surround it);
    no traceback."""
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("s2sr: error:")]
    assert len(lines) == 1, output
    return lines[0]


def write_config(path: Path, dataset: Path, **overrides: Any) -> Path:
    """A tiny, fast experiment (edsr-tiny, pixel loss), with overrides."""
    import yaml

    cfg: dict[str, Any] = {
        "name": "test", "seed": 0, "batch_size": 8,
        "model": {"name": "edsr-tiny", "scale": 2},
        "data": {"datasets": [str(dataset)], "kind": ["SE20>SE10"], "max_val_patches": 8},
        "loss": {"pixel": 1.0},
        "stages": [{"epochs": 2, "lr": 3e-3, "patch": 8}, {"epochs": 1, "lr": 1e-3}],
    }
    for key, value in overrides.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def can_mount_tmpfs() -> bool:
    """Whether ``unshare -rm`` can mount a small tmpfs here (user namespaces on): the way
    the disk-full tests fill a disk for real."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


#: Skip a test that needs ONNX Runtime and onnx (the optional extra ``s2sr[onnx]``).
no_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime/onnx are not installed (the optional extra: pip install 's2sr[onnx]')")

