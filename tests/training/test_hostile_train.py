"""Bad and hostile input for ``s2sr train`` and ``s2sr table1``: config numbers and files,
divergence, failed runs, hostile checkpoints, interrupted runs (SIGTERM, SIGKILL), resume."""

from __future__ import annotations

import contextlib
import csv
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from s2sr.cli.main import cli
from s2sr.core.errors import (
    CheckpointError,
    InputNotFoundError,
    TrainingDivergedError,
    UsageError,
    WeightsError,
)
from s2sr.training import Trainer, load_config, train
from s2sr.training.trainer import load_checkpoint, restore_rng
from support.cli import write_config

BASE = "data: {datasets: [ds]}\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(res: Any, code: int) -> str:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.startswith("s2sr: error:")]
    assert len(lines) == 1, res.output
    return lines[0]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".s2sr-" in p.name or ".tmp" in p.name]


class Marker:
    """Unpickling this would create a file: proof that code ran."""

    path = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _hostile_pickle(path: Path, marker: Path) -> Path:
    evil = Marker()
    evil.path = str(marker)  # type: ignore[misc]
    torch.save({"model": evil}, path)  # torch.save pickles the object: a hostile file
    return path


# --- 1. config numbers and files ---------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("stages: [{epochs: 1, lr: .nan}]\n", "stages[0].lr must be a number in (0, 10]"),
    ("stages: [{epochs: 1, lr: .inf}]\n", "stages[0].lr must be a number in (0, 10]"),
    ("stages: [{epochs: 1}, {epochs: 1, lr: -0.001}]\n", "stages[1].lr must be a number in (0"),
    ("stages: [{epochs: 1, lr: 'nan'}]\n", "stages[0].lr must be"),
    ("stages: [{epochs: 1, pct_start: 5}]\n", "stages[0].pct_start must be a number in (0, 1)"),
    ("stages: [{epochs: 1, pct_start: 0}]\n", "stages[0].pct_start must be a number in (0, 1)"),
    ("data: {datasets: [ds], workers: -2}\n", "data.workers must be an integer in [0, 64]"),
    ("stages: [{epochs: 1, patch: 0}]\n", "stages[0].patch must be an integer in [2, 1024]"),
    ("stages: [{epochs: 1, patch: 100000}]\n", "stages[0].patch must be an integer in [2, 1024]"),
    ("stages: [{epochs: 1, patch: 1024}]\nbatch_size: 4096\n", "lower stages[0].patch"),
    ("batch_size: 0\n", "batch_size must be an integer in [1, 4096]"),
    ("stages: [{epochs: 1, batch_size: 0}]\n", "stages[0].batch_size must be an integer"),
    ("stages: [{epochs: -1}]\n", "stages[0].epochs must be an integer in [1, 100000]"),
    ("stages: [{epochs: 1000000000000}]\n", "stages[0].epochs must be an integer in [1, "),
    ("loss: {pixel: -1}\n", "loss.pixel must be a number in [0, 1e+06]"),
    ("loss: {pixel: .nan}\n", "loss.pixel must be a number in [0, 1e+06]"),
    ("loss: {feature: {relu2_2: -0.5}}\n", "loss.feature.relu2_2 must be a number in [0"),
    ("loss: {style: {relu2_2: .nan}}\n", "loss.style.relu2_2 must be a number in [0"),
    ("loss: {style_weight: .inf}\n", "loss.style_weight must be a number in [0"),
    ("loss: {rgb_scale: 0}\n", "loss.rgb_scale must be a number in (0, 100]"),
    ("model: {options: {n_feats: -4}}\n", "model.options.n_feats must be an integer in [1, "),
    ("model: {options: {n_feats: 1.5}}\n", "model.options.n_feats must be an integer"),
    ("model: {options: {n_feats: 1000}}\n", "model.options.n_feats must be an integer in [1, 512]"),
    ("model: {options: {n_resblocks: 65}}\n", "model.options.n_resblocks"),
    ("model: {options: {upsampler_norm: layer}}\n", "model.options.upsampler_norm"),
    ("model: {options: {depth: 3}}\n", "model.options"),
    ("model: {bands: [B02, B02, B03, B04]}\n", "model.bands"),
    ("model: {options: {n_resblocks: many}}\n", "model.options.n_resblocks must be an integer"),
    ("model: {options: {n_resblocks: 100000000}}\n", "model.options.n_resblocks must be an"),
    ("model: {options: {res_scale: .nan}}\n", "model.options.res_scale must be a number"),
    ("model: {options: {std: [1, 1, 0, 1]}}\n", "model.options.std[2] must be a number"),
    ("model: {options: {mean: [0.1]}}\n", "model.options.mean must list one number per band"),
    ("optimizer: {betas: [0.9, 1.5]}\n", "optimizer.betas[1] must be a number in [0, 1)"),
    ("optimizer: {weight_decay: .inf}\n", "optimizer.weight_decay must be a number in [0, 1]"),
    ("optimizer: {clip_grad_norm: 0}\n", "optimizer.clip_grad_norm must be a number in (0"),
    ("optimizer: {name: sgd}\n", "optimizer.name must be adam or adamw"),
    ("seed: -1\n", "seed must be an integer in [0, 4294967295]"),
    ("data: {datasets: [ds], max_val_patches: 0}\n", "data.max_val_patches must be an integer"),
])
def test_config_numbers_are_range_checked(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        load_config(_write(tmp_path, BASE + text if not text.startswith("data:") else text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_n_feats_negative_through_the_cli(tmp_path: Path) -> None:
    cfg = _write(tmp_path, BASE + "model: {options: {n_feats: -4}}\n")
    line = _one_line_error(_invoke("train", cfg, "-o", tmp_path / "run"), 2)
    assert "model.options.n_feats" in line and "[1, 512]" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("   \n# only a comment\n", "is empty"),
    ("- 1\n- 2\n", "must hold a mapping of keys"),
    ("42\n", "must hold a mapping of keys"),
    (b"name: \xff\xfe\x00bad\n", "is not UTF-8"),
    ("a: [1, 2\n", "is not valid YAML"),
    ("data: {datasets: &a [*a]}\n", "an alias refers to the value that contains it"),
])
def test_config_files_that_are_not_experiments(tmp_path: Path, content: str | bytes,
                                               message: str) -> None:
    cfg = _write(tmp_path, content)
    line = _one_line_error(_invoke("train", cfg, "-o", tmp_path / "run"), 2)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_config_folder_and_huge_file(tmp_path: Path) -> None:
    line = _one_line_error(_invoke("train", tmp_path, "-o", tmp_path / "run"), 2)
    assert "is a folder" in line
    huge = _write(tmp_path, BASE + "#" + "x" * (2 * 1024 * 1024) + "\n")
    line = _one_line_error(_invoke("train", huge, "-o", tmp_path / "run"), 2)
    assert "more than" in line and "bytes" in line


def test_python_yaml_tags_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for tag in (f"!!python/object/apply:os.system ['touch {marker}']",
                f"!!python/object/apply:builtins.open ['{marker}', 'w']",
                "!!python/name:os.system"):
        cfg = _write(tmp_path, BASE + f"name: {tag}\n")
        line = _one_line_error(_invoke("train", cfg, "-o", tmp_path / "run"), 2)
        assert "not valid YAML" in line
    assert not marker.exists()


# --- 10. a config whose datasets were never built -----------------------------------------

def test_smoke_config_without_data_names_the_fix(tmp_path: Path) -> None:
    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    line = _one_line_error(_invoke("train", smoke, "-o", tmp_path / "run"), 2)
    assert "se_wald is not an s2sr pairs dataset" in line
    assert "s2sr table1 --prepare-only -o DIR" in line and "--data-root DIR/data" in line
    assert not (tmp_path / "run").exists()


# --- 3. the run folder: refused outputs, failed runs leave nothing -------------------------

def test_output_that_is_a_file_or_inside_the_dataset(wald_dataset: Path,
                                                     tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", wald_dataset)
    target = tmp_path / "file"
    target.write_text("keep me")
    line = _one_line_error(_invoke("train", cfg, "-o", target), 2)
    assert "is a file, not a folder" in line
    assert target.read_text() == "keep me"
    line = _one_line_error(_invoke("train", cfg, "-o", wald_dataset / "run"), 2)
    assert "inside the input folder" in line
    assert not (wald_dataset / "run").exists()


def _diverging(wald_dataset: Path, tmp_path: Path) -> Any:
    cfg = load_config(write_config(tmp_path / "c.yaml", wald_dataset,
                                   stages=[{"epochs": 2, "lr": 1e-3}]))
    cfg.stages[0].lr = float("inf")  # what a run far too hot does, without waiting for it
    return cfg


def test_divergence_is_not_blamed_on_the_data(wald_dataset: Path, tmp_path: Path) -> None:
    cfg = _diverging(wald_dataset, tmp_path)
    with pytest.raises(TrainingDivergedError) as err:
        train(cfg, tmp_path / "a" / "b" / "run", progress=False)
    text = str(err.value)
    assert "training diverged" in text and "stage 0 epoch 1" in text
    assert "stages[0].lr is inf" in text and "patches are finite" in text
    assert "lower stages[0].lr" in text and "clip_grad_norm" in text
    assert "NaN or inf; fill or crop" not in text
    # the failed run left nothing: not the run folder, not the parents it created
    assert not (tmp_path / "a").exists()


def test_failed_run_leaves_an_existing_folder_as_it_was(wald_dataset: Path,
                                                        tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(TrainingDivergedError):
        train(_diverging(wald_dataset, tmp_path), run, progress=False)
    assert run.is_dir() and list(run.iterdir()) == []
    # ...so that a plain run into it now works
    cfg = write_config(tmp_path / "ok.yaml", wald_dataset, stages=[{"epochs": 1, "lr": 1e-3}])
    res = _invoke("train", cfg, "-o", run, "-q")
    assert res.exit_code == 0, res.output
    assert len(_rows(run)) == 1


def test_bad_data_path_creates_nothing(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "data: {datasets: [nowhere]}\n")
    line = _one_line_error(_invoke("train", cfg, "-o", tmp_path / "x" / "run"), 2)
    assert "nowhere is not an s2sr pairs dataset" in line
    assert not (tmp_path / "x").exists()


def test_leftovers_of_a_run_killed_before_its_first_checkpoint(wald_dataset: Path,
                                                               tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", wald_dataset,
                       stages=[{"epochs": 1, "lr": 1e-3, "patch": 8}])
    for flag in ([], ["--resume"]):
        run = tmp_path / f"run{len(flag)}"
        run.mkdir()
        (run / "config.yaml").write_text("name: old\n")
        (run / "metrics.csv").write_text("stage,epoch\n")
        (run / ".metrics.csv.s2sr-999999999-0123abcd.tmp").write_text("stale")
        res = _invoke("train", cfg, "-o", run, "-q", *flag)
        assert res.exit_code == 0, res.output
        assert len(_rows(run)) == 1 and (run / "checkpoint.pt").is_file()
        assert _temps(run) == []
    # a folder holding anything else is still refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    line = _one_line_error(_invoke("train", cfg, "-o", other), 2)
    assert "not empty" in line and (other / "notes.txt").exists()


# --- 4. hostile or mismatched checkpoints -------------------------------------------------

STAGES = [{"epochs": 2, "lr": 3e-3, "patch": 8}, {"epochs": 2, "lr": 1e-3, "patch": 8}]


@pytest.fixture(scope="module")
def reference(wald_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (two stages of two epochs): its folder holds c.yaml and run/."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write_config(root / "c.yaml", wald_dataset, stages=STAGES)
    with _one_thread():
        train(load_config(cfg), root / "run", progress=False)
    return root


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Bit-identical comparisons need the same reduction order: one intra-op thread here and
    in the training subprocesses (OMP_NUM_THREADS=1), whatever earlier tests left set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _copy_run(reference: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(reference / "run", run)
    return run


def _tamper(kind: str, path: Path, marker: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "pickle":
        _hostile_pickle(path, marker)
    elif kind == "raw_pickle":
        evil = Marker()
        evil.path = str(marker)  # type: ignore[misc]
        path.write_bytes(pickle.dumps(evil))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "not a checkpoint")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "wrong_types":
        state["state_dict"] = "weights"
        torch.save(state, path)
    elif kind == "bad_stage":
        state["s2sr_epoch"]["stage"] = 10**12
        torch.save(state, path)
    elif kind == "bad_rng":
        state["s2sr"]["rng"] = torch.zeros(3, dtype=torch.float32)
        torch.save(state, path)
    elif kind == "architecture":
        state["state_dict"] = {k: torch.zeros(2, 2) for k in state["state_dict"]}
        state["s2sr"].pop("config")
        torch.save(state, path)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "message"), [
    ("truncated", "truncated, corrupt or not an s2sr checkpoint"),
    ("pickle", "truncated, corrupt or not an s2sr checkpoint"),
    ("raw_pickle", "truncated, corrupt or not an s2sr checkpoint"),
    ("zip", "truncated, corrupt or not an s2sr checkpoint"),
    ("empty", "truncated, corrupt or not an s2sr checkpoint"),
    ("list", "holds a list, not an s2sr checkpoint"),
    ("wrong_types", "no valid 'state_dict' entry"),
    ("bad_stage", "stage 1000000000000 is out of range"),
    ("bad_rng", "random state is not a byte tensor"),
    ("architecture", "does not fit this experiment's model"),
])
def test_hostile_checkpoints_are_one_line_errors(reference: Path, tmp_path: Path,
                                                 kind: str, message: str) -> None:
    run = _copy_run(reference, tmp_path)
    marker = tmp_path / "marker"
    _tamper(kind, run / "checkpoint.pt", marker)
    before = sorted(p.name for p in run.iterdir())
    line = _one_line_error(_invoke("train", reference / "c.yaml", "-o", run, "--resume"),
                           1)
    assert message in line and "checkpoint" in line
    assert not marker.exists()
    assert sorted(p.name for p in run.iterdir()) == before


def test_checkpoint_of_another_config_is_refused(reference: Path, tmp_path: Path,
                                                 wald_dataset: Path) -> None:
    run = _copy_run(reference, tmp_path)
    other = write_config(tmp_path / "other.yaml", wald_dataset,
                         stages=[{"epochs": 5, "lr": 1e-2}])
    line = _one_line_error(_invoke("train", other, "-o", run, "--resume"), 1)
    assert "made with another experiment (stages differ)" in line
    wider = write_config(tmp_path / "wide.yaml", wald_dataset,
                         model={"name": "edsr-tiny", "scale": 2, "options": {"n_feats": 8}},
                         stages=STAGES)
    line = _one_line_error(_invoke("train", wider, "-o", run, "--resume"), 1)
    assert "model differ" in line


def test_load_checkpoint_maps_to_cpu_and_restores_rng(reference: Path) -> None:
    ckpt = load_checkpoint(reference / "run" / "checkpoint.pt")
    assert all(t.device.type == "cpu" for t in ckpt["state_dict"].values())
    state = ckpt["s2sr"]
    assert state["rng"].dtype == torch.uint8 and state["rows"] == 4
    torch.manual_seed(123)
    restore_rng(state)
    assert torch.equal(torch.get_rng_state(), state["rng"])
    # CUDA states without CUDA are ignored; a CPU state that is not on the CPU (here a
    # "meta" tensor, as a checkpoint mapped to another device) is a clear error
    restore_rng({**state, "cuda_rng": [torch.zeros(16, dtype=torch.uint8)]})
    with pytest.raises(CheckpointError, match="cannot be restored"):
        restore_rng({"rng": torch.empty(5056, dtype=torch.uint8, device="meta")})
    with pytest.raises(CheckpointError, match="cannot be restored"):
        restore_rng({"rng": torch.zeros(7, dtype=torch.uint8)})


# --- 11. nothing is ever unpickled --------------------------------------------------------

def test_init_from_and_vgg_weights_are_never_unpickled(wald_dataset: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "marker"
    parent = tmp_path / "parent"
    parent.mkdir()
    _hostile_pickle(parent / "model.safetensors", marker)
    cfg = write_config(tmp_path / "c.yaml", wald_dataset, init_from="parent")
    with pytest.raises(WeightsError):
        train(load_config(cfg), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    vgg = _hostile_pickle(tmp_path / "vgg.pth", marker)
    monkeypatch.setenv("S2SR_VGG16_WEIGHTS", str(vgg))
    cfg = write_config(tmp_path / "v.yaml", wald_dataset,
                       loss={"pixel": 1.0, "feature": {"relu2_2": 0.1}})
    res = _invoke("train", cfg, "-o", tmp_path / "run2")
    line = _one_line_error(res, 1)
    assert "VGG16 weights file" in line
    assert not marker.exists() and not (tmp_path / "run2").exists()


# --- 5. interrupted runs: crash while saving, SIGTERM, SIGKILL ------------------------------

def _same_weights(a: Path, b: Path) -> None:
    wa = load_file(a / "model.safetensors")
    wb = load_file(b / "run" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.slow
def test_crash_while_saving_a_checkpoint(wald_dataset: Path, tmp_path: Path, reference: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", wald_dataset, stages=STAGES))
    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def crashing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint: half written, then the process dies
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crashing_save)
    with _one_thread(), pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run, progress=False).run()
    monkeypatch.setattr(torch, "save", real_save)
    assert _temps(run) == []
    assert len(_rows(run)) == 3  # the third row was written, its checkpoint was not
    assert not (run / "model.safetensors").exists()
    assert load_checkpoint(run / "checkpoint.pt")["s2sr"]["rows"] == 2
    # a temporary left by a process that died (kill -9) is swept on the next start
    stale = run / ".checkpoint.pt.s2sr-999999999-deadbeef.tmp"
    stale.write_bytes(b"junk")
    with _one_thread():
        train(cfg, run, resume=True, progress=False)
    assert not stale.exists() and _temps(run) == []
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3", "4"]
    _same_weights(run, reference)


def _start(cfg: Path, run: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "s2sr.cli.main", "train", str(cfg), "-o",
                             str(run), "-q", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen[str], run: Path) -> None:
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_mid_run_then_resume_is_bit_identical(wald_dataset: Path, tmp_path: Path,
                                                     reference: Path, sig: int) -> None:
    cfg = write_config(tmp_path / "c.yaml", wald_dataset, stages=STAGES)
    run = tmp_path / "run"
    proc = _start(cfg, run)
    _wait_for_checkpoint(proc, run)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, err  # 128 + SIGTERM, as for every command
        assert "interrupted by SIGTERM" in err and "--resume" in err and "Traceback" not in err
        assert _temps(run) == []
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.safetensors").exists()
    with _one_thread():
        res = _invoke("train", cfg, "-o", run, "--resume", "-q")
    assert res.exit_code == 0, res.output
    assert _temps(run) == []
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3", "4"]
    _same_weights(run, reference)


@pytest.mark.slow
def test_sigterm_before_the_first_checkpoint_leaves_nothing(tmp_path: Path,
                                                            wald_dataset: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", wald_dataset, stages=STAGES)
    run = tmp_path / "run"
    proc = _start(cfg, run)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if (run / "checkpoint.pt").exists():  # the first epoch won the race: nothing to test
        pytest.skip("the first epoch finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert "before the first checkpoint" in err
    assert not run.exists()


# --- 7. fp16 with a gradient scaler -------------------------------------------------------

def test_fp16_trains_with_a_gradient_scaler(wald_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", wald_dataset, precision="fp16",
                                   stages=[{"epochs": 1, "lr": 1e-3, "patch": 8}],
                                   optimizer={"name": "adam", "clip_grad_norm": 1.0}))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.run()
    # Lightning's fp16 plugin with its gradient scaler, on the CPU too (Lightning alone
    # would switch a CPU run to bf16)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["MixedPrecision"]["scale"] > 0
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert all(bool(torch.isfinite(v).all()) for v in weights.values())


# --- 8, 9. table1: shipped configs, --only, --configs --------------------------------------

def test_default_configs_come_from_the_package() -> None:
    from importlib import resources

    from s2sr.training.table1 import ORDER, default_configs

    folder = default_configs()
    packaged = resources.files("s2sr").joinpath("configs", "table1")
    assert folder == Path(str(packaged))
    assert sorted(p.stem for p in folder.glob("*.yaml")) == sorted(ORDER)
    for name in ORDER:
        assert load_config(folder / f"{name}.yaml").name == f"table1-{name}"
    # the source tree's configs/table1 is the same files (one source of truth)
    top = Path(__file__).resolve().parents[2] / "configs" / "table1"
    assert top.resolve() == folder.resolve()


@pytest.mark.parametrize(("args", "message", "code"), [
    (["--only", "9.9"], "unknown experiment '9.9': the known ones are 1.1, 1.2", 2),
    (["--only", "1.1,,"], "unknown experiment ''", 2),
    (["--configs", "nowhere"], "configs folder nowhere does not exist", 2),
    (["--configs", "c.yaml"], "is a file, not a folder", 2),
    (["--configs", "empty"], "lacks 1.1.yaml", 2),
])
def test_table1_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                            message: str, code: int) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(BASE)
    (tmp_path / "empty").mkdir()
    line = _one_line_error(_invoke("table1", "-o", "out", "--shared", "noshared", *args), code)
    assert message in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scale", ["nan", "inf", "1e9"])
def test_epoch_scale_out_of_range(tmp_path: Path, scale: str) -> None:
    cfg = _write(tmp_path, "data: {datasets: [ds]}\n")
    line = _one_line_error(_invoke("train", cfg, "-o", tmp_path / "run", "--epoch-scale",
                                   scale), 2)
    assert "--epoch-scale must be a number in (0, 10000]" in line
    line = _one_line_error(_invoke("table1", "-o", tmp_path / "t", "--epoch-scale", scale), 2)
    assert "--epoch-scale must be a number in (0, 10000]" in line


def test_table1_output_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    line = _one_line_error(_invoke("table1", "-o", tmp_path / "out", "--only", "1.1"), 2)
    assert "is a file, not a folder" in line


def test_run_table1_refuses_unknown_ids_before_any_work(tmp_path: Path) -> None:
    from s2sr.training.table1 import run_table1

    with pytest.raises(UsageError, match=r"unknown experiment '9\.9'"):
        run_table1(tmp_path / "out", shared=tmp_path / "none", only=["9.9"])
    with pytest.raises(InputNotFoundError, match="stand-ins are built from"):
        run_table1(tmp_path / "out", shared=tmp_path / "none", only=["1.1"])
