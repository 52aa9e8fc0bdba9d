"""Hostile configs and stops for ``s2sr train``: YAML alias bombs, self-referring aliases,
deep nesting and duplicate keys (refused by the one YAML reader, before anything is built);
echoed values clipped in every message; a SIGTERM during validation (no partial metrics
row, the resumed run redoes the validation); the VGG16 weights a perceptual loss needs
offline (the message names S2SR_VGG16_WEIGHTS and loss.vgg_weights)."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from s2sr.cli.main import cli
from s2sr.core.checks import shown
from s2sr.core.errors import UsageError
from s2sr.training import load_config, train
from s2sr.training.module import build_loss
from s2sr.training.yamlfile import MAX_ALIASES, MAX_CONFIG_BYTES, read_yaml
from support.cli import write_config
from support.shared import SHARED_ROOT, needs_shared

BASE = "data: {datasets: [ds]}\n"
STAGES = [{"epochs": 2, "lr": 3e-3, "patch": 8}, {"epochs": 2, "lr": 1e-3, "patch": 8}]
REAL_VGG = SHARED_ROOT / "weights" / "vgg16_hed_features.pth"
#: An error line this long is no longer "one line" a person reads.
MAX_LINE = 400


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Bit-identical comparisons need one intra-op thread here and in the subprocess."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, code: int = 2) -> str:
    """The one ``s2sr: error:`` line of ``s2sr train`` on ``text`` (checked: exit code,
    no traceback, nothing created, short)."""
    res = CliRunner().invoke(cli, ["train", str(_write(tmp_path, text)), "-o",
                                   str(tmp_path / "run")])
    assert res.exit_code == code, res.output[:2000]
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.startswith("s2sr: error:")]
    assert len(lines) == 1, res.output[:2000]
    assert len(res.output) < MAX_LINE, res.output[:2000]
    assert not (tmp_path / "run").exists()
    return lines[0]


def _laughs(levels: int, inside: str = "name: {}") -> str:
    """A "billion laughs" document: every level lists the previous one nine times; the
    anchors sit inside one value (``inside`` with ``{}`` for it), so that the expansion
    would reach the validator and its error message."""
    parts = ['&x0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    parts += [f"&x{i} [{','.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels)]
    return BASE + inside.format(f"[{', '.join(parts)}]") + "\n"


def _merge_laughs(levels: int) -> str:
    """The same with merge keys: each mapping merges the previous one nine times over."""
    lines = ["a0: &a0 {k: lol}"]
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"a{i}: &a{i} {{<<: [{refs}], k{i}: [{refs}]}}")
    return "model:\n  options:\n" + "".join(f"    {line}\n" for line in lines) + BASE


# --- security: the document is bounded before any object is built --------------------------

@pytest.mark.parametrize("text", [
    _laughs(8),                                         # 392 bytes -> 9^8 strings
    _laughs(9, "model: {{options: {{x: {}}}}}"),        # a free-form mapping
    _merge_laughs(9),                                   # through merge keys
], ids=["list", "options", "merge"])
def test_alias_bombs_are_refused_before_expansion(tmp_path: Path, text: str) -> None:
    assert len(text.encode()) < 1200
    line = _error(tmp_path, text)
    assert "exp.yaml, line " in line
    assert "once its aliases are expanded" in line or f"more than {MAX_ALIASES} aliases" in line


def test_alias_budget_and_legitimate_anchors(tmp_path: Path) -> None:
    refs = ", ".join(["*s"] * MAX_ALIASES)
    ok = BASE + f"stages: [&s {{epochs: 1, lr: 1.0e-3, patch: 8}}, {refs}]\n"
    assert len(load_config(_write(tmp_path, ok)).stages) == MAX_ALIASES + 1
    line = _error(tmp_path, ok.replace("]\n", ", *s]\n"))
    assert f"more than {MAX_ALIASES} aliases" in line and "write the values out" in line


def test_merge_keys_keep_their_meaning(tmp_path: Path) -> None:
    text = BASE + ("stages:\n  - &first {epochs: 2, lr: 1.0e-3, patch: 8}\n"
                   "  - {<<: *first, lr: 5.0e-4}\n  - {<<: [*first], freeze: [head]}\n")
    cfg = load_config(_write(tmp_path, text))
    assert [(s.epochs, s.lr, s.patch, s.freeze) for s in cfg.stages] == [
        (2, 1e-3, 8, []), (2, 5e-4, 8, []), (2, 1e-3, 8, ["head"])]


@pytest.mark.parametrize("text", [
    BASE + "name: &n [*n]\n",
    BASE + "model: {options: &o {inner: *o}}\n",
    BASE + "stages: [&s {epochs: 1, freeze: *s}]\n",
], ids=["list", "mapping", "stage"])
def test_self_referring_aliases(tmp_path: Path, text: str) -> None:
    line = _error(tmp_path, text)
    assert "an alias refers to the value that contains it" in line


@pytest.mark.parametrize("text", [
    BASE + "name: " + "[" * 200 + "]" * 200 + "\n",
    BASE + "model:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(150)) + "  " * 151
    + "v: 1\n",
], ids=["flow", "block"])
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    line = _error(tmp_path, text)
    assert "nested more than 64 levels" in line and "line " in line


@pytest.mark.parametrize(("text", "message"), [
    (BASE + "seed: " + "7" * 5000 + "\n", "an integer of thousands of digits"),
    (BASE + "name: 2023-13-45\n", "month must be in 1..12"),
    (BASE + "name: *" + "z" * 20000 + "\n", "found undefined alias"),
])
def test_values_yaml_cannot_build(tmp_path: Path, text: str, message: str) -> None:
    assert message in _error(tmp_path, text)


def test_the_file_is_read_with_a_bound(tmp_path: Path) -> None:
    text = BASE + "#" * (MAX_CONFIG_BYTES - len(BASE) - 1) + "\n"
    path = _write(tmp_path, text)
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert read_yaml(path) == {"data": {"datasets": ["ds"]}}
    path.write_text(text + "#")
    with pytest.raises(UsageError, match=f"more than {MAX_CONFIG_BYTES} bytes"):
        read_yaml(path)


# --- reliability: a key given twice is an error, not a silent choice --------------------------

@pytest.mark.parametrize(("text", "key", "lines"), [
    (BASE + "seed: 1\nbatch_size: 8\nseed: 2\n", "'seed'", (4, 2)),
    (BASE + "loss: {pixel: 1.0, pixel: 0.0}\n", "'pixel'", (2, 2)),
    (BASE + "stages:\n  - epochs: 1\n    lr: 1.0e-3\n    epochs: 3\n", "'epochs'", (5, 3)),
    (BASE + "loss: {feature: {relu2_2: 0.1, relu2_2: 0.0}}\n", "'relu2_2'", (2, 2)),
    (BASE + "model: {options: {1: a, 1.0: b}}\n", "1.0", (2, 2)),
    ("data: {datasets: [ds]}\ndata: {datasets: [other]}\n", "'data'", (2, 1)),
])
def test_duplicate_keys_are_refused(tmp_path: Path, text: str, key: str,
                                    lines: tuple[int, int]) -> None:
    line = _error(tmp_path, text)
    assert f"line {lines[0]}: key {key} is given twice in one mapping (first on line " \
           f"{lines[1]}): keep one" in line


def test_two_merge_keys_in_one_mapping(tmp_path: Path) -> None:
    text = BASE + "s: &s {epochs: 1}\nstages: [{<<: *s, <<: *s}]\n"
    line = _error(tmp_path, text)
    assert "a second merge key" in line and "'<<: [*a, *b]'" in line


# --- cosmetic: whatever a config holds, the error line stays short ---------------------------

@pytest.mark.parametrize(("text", "place"), [
    (BASE + "name: [" + ", ".join(["lol"] * 20000) + "]\n", "name must be str"),
    (BASE + "precision: " + "x" * 100_000 + "\n", "precision must be one of"),
    (BASE + "optimizer: {name: " + "y" * 100_000 + "}\n", "optimizer.name must be adam"),
    (BASE + "? " + "k" * 100_000 + "\n: 1\n", "unknown key 'kkkk"),
    (BASE + "loss:\n  feature:\n    ? " + "r" * 100_000 + "\n    : -1\n", "loss.feature.rrrr"),
    (BASE + "model: {scale: " + "9" * 4000 + "}\n", "model.scale must be 2 or 4"),
    (BASE + "model: {name: " + "m" * 100_000 + "}\n", "model.name 'mmmm"),
    (BASE + "model:\n  options:\n    ? " + "o" * 100_000 + "\n    : 1\n", "model.options.oooo"),
    (BASE + "model: {options: {n_feats: [" + "1, " * 30000 + "1]}}\n", "model.options.n_feats"),
    (BASE + "model: {bands: [B02, B03, B04, B08], options: {mean: [" + "0.5, " * 30000
     + "0.5]}}\n", "model.options.mean must list one number per band"),
    (BASE + "stages: [{epochs: 1, freeze: [" + "z" * 100_000 + "]}]\n", "stages[0].freeze has"),
    (BASE + "loss: {rgb_bands: [" + ", ".join(["B04"] * 30000) + "]}\n", "loss.rgb_bands must"),
    (BASE + "optimizer: {betas: [" + ", ".join(["0.9"] * 30000) + "]}\n", "optimizer.betas must"),
])
def test_echoed_values_are_clipped(tmp_path: Path, text: str, place: str) -> None:
    assert len(text) > 4000
    assert place in _error(tmp_path, text)  # and the line is short (_error checks)


def test_shown_never_builds_the_whole_text() -> None:
    nested: list[Any] = []
    nested.append(nested)
    assert len(shown(nested)) <= 80
    assert shown(10 ** 5000) == "<an integer of about 5001 digits>"
    assert len(shown(["x" * 10**6] * 10**6)) <= 80


# --- new user: training offline ----------------------------------------------------------------

def _perceptual(tmp_path: Path, **loss: Any) -> Path:
    return write_config(tmp_path / "vgg.yaml", tmp_path / "ds", loss={
        "pixel": 1.0, "feature": {"relu2_2": 0.02}, **loss})


def _offline_hint(message: str) -> None:
    assert "S2SR_VGG16_WEIGHTS" in message and "loss.vgg_weights" in message
    assert "../shared/weights/vgg16_hed_features.pth" in message


def test_vgg_weights_unreachable_names_the_offline_fix(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2SR_VGG16_WEIGHTS", raising=False)
    # a closed local port: the download fails at once, as it does without a network
    cfg = load_config(_perceptual(tmp_path, vgg_weights="http://127.0.0.1:9/vgg16.pth"))
    with pytest.raises(Exception) as err:
        build_loss(cfg)
    message = str(err.value)
    assert "could not load VGG16 weights" in message and "to train offline" in message
    assert "loss.vgg_weights in " in message  # where the URL came from
    _offline_hint(message)


@pytest.mark.parametrize("where", ["env", "config"])
def test_missing_local_vgg_weights_say_where_they_were_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    missing = tmp_path / "nowhere" / "vgg16.pth"
    if where == "env":
        monkeypatch.setenv("S2SR_VGG16_WEIGHTS", str(missing))
        cfg = load_config(_perceptual(tmp_path))
        origin = "from the environment variable S2SR_VGG16_WEIGHTS"
    else:
        monkeypatch.delenv("S2SR_VGG16_WEIGHTS", raising=False)
        cfg = load_config(_perceptual(tmp_path, vgg_weights=str(missing)))
        origin = "loss.vgg_weights in "
    with pytest.raises(FileNotFoundError) as err:
        build_loss(cfg)
    message = str(err.value)
    assert origin in message and f"VGG16 weights file {missing} does not exist" in message
    _offline_hint(message)


@needs_shared(REAL_VGG, "the real VGG16 feature weights")
def test_smoke_config_trains_its_losses_offline_with_the_shipped_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2SR_VGG16_WEIGHTS", str(REAL_VGG))
    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    cfg = load_config(smoke, data_root=tmp_path)
    loss = build_loss(cfg)
    assert cfg.loss.feature == {"relu2_2": 0.02} and cfg.loss.style == {"relu2_2": 1.0}
    assert loss.perceptual is not None
    raw = torch.load(REAL_VGG, map_location="cpu", weights_only=True)
    assert torch.equal(loss.perceptual.vgg.features[0].weight, raw["features.0.weight"].float())


# --- SIGTERM during validation -------------------------------------------------------------

#: Runs ``s2sr train`` with one change: the first validation batch of epoch EPOCH (0-based)
#: touches MARKER and waits for the signal, so that the test's SIGTERM lands in validation.
_IN_VALIDATION = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from s2sr.training.module import SRModule
    marker, epoch = Path(sys.argv[1]), int(sys.argv[2])
    real = SRModule.validation_step
    def step(self, item, batch_idx):
        out = real(self, item, batch_idx)
        if self.current_epoch == epoch and batch_idx == 0 and not marker.exists():
            marker.touch()
            deadline = time.monotonic() + 120
            while not self.trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.01)
        return out
    SRModule.validation_step = step
    from s2sr.cli.main import cli
    cli(sys.argv[3:], prog_name="s2sr")
""")


@pytest.fixture(scope="module")
def reference(wald_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (two stages of two epochs): its folder holds c.yaml and run/."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write_config(root / "c.yaml", wald_dataset, stages=STAGES)
    with _one_thread():
        train(load_config(cfg), root / "run", progress=False)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 3], ids=["end-of-stage-0", "last-epoch"])
def test_sigterm_during_validation_leaves_no_partial_row(reference: Path, tmp_path: Path,
                                                         epoch: int) -> None:
    cfg = reference / "c.yaml"
    rows_before = [str(k + 1) for k in range(epoch)]
    run, marker = tmp_path / "run", tmp_path / "in-validation"
    script = tmp_path / "stop_in_validation.py"
    script.write_text(_IN_VALIDATION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(marker), str(epoch), "train",
                             str(cfg), "-o", str(run), "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == rows_before, rows  # none for the stopped epoch
    assert not any(math.isnan(float(r["val_psnr"])) for r in rows)
    assert not (run / "model.safetensors").exists()
    with _one_thread():
        res = CliRunner().invoke(cli, ["train", str(cfg), "-o", str(run), "--resume", "-q"])
    assert res.exit_code == 0, res.output
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    for got, want in zip(rows, _rows(reference / "run"), strict=True):
        for key in ("val_psnr", "val_ssim", "val_psnr_bicubic", "train_loss"):
            assert math.isfinite(float(got[key])), (key, got)
            assert got[key] == want[key], (key, got, want)
    a = load_file(run / "model.safetensors")
    b = load_file(reference / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@needs_shared(REAL_VGG, "the real VGG16 feature weights")
def test_a_perceptual_run_prints_no_lightning_eval_mode_warning(
        wald_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        recwarn: pytest.WarningsRecorder) -> None:
    monkeypatch.setenv("S2SR_VGG16_WEIGHTS", str(REAL_VGG))
    cfg = write_config(tmp_path / "c.yaml", wald_dataset, loss={
        "pixel": 1.0, "feature": {"relu2_2": 0.02}}, stages=[{"epochs": 1, "lr": 1e-3,
                                                              "patch": 8}])
    train(load_config(cfg), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    noise = [str(w.message) for w in recwarn if "eval mode" in str(w.message)]
    assert noise == []  # the loss's VGG16 is frozen in eval mode on purpose
