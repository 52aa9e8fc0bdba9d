"""The training loop: schedule, transfer, freezing, resume, outputs, data parallelism."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from s2sr.core.errors import OutputExistsError, UsageError
from s2sr.core.signals import Terminated
from s2sr.training import Trainer, load_config, train
from s2sr.training.module import SRModule
from s2sr.training.schedule import one_cycle
from support.cli import write_config


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_one_cycle_shape() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = one_cycle(opt, 0.01, 100, pct_start=0.3)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lambda i: lrs[i])
    assert 25 <= peak <= 35 and lrs[peak] == pytest.approx(0.01, rel=0.01)
    assert lrs[0] == pytest.approx(0.01 / 25, rel=0.01)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert lrs[-1] < 0.01 / 1000


def test_run_outputs_and_lr_follows_one_cycle_per_stage(wald_dataset: Path,
                                                        tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", wald_dataset))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    final = trainer.run()
    run = tmp_path / "run"
    for name in ("model.safetensors", "best.safetensors", "checkpoint.pt", "metrics.csv",
                 "curves.png", "config.yaml"):
        assert (run / name).exists(), name
    assert final == run / "model.safetensors"
    rows = _rows(run)
    assert [int(r["stage"]) for r in rows] == [0, 0, 1]
    # bicubic is scored on the same validation patches every epoch; the model improves
    assert len({r["val_psnr_bicubic"] for r in rows}) == 1
    psnrs = [float(r["val_psnr"]) for r in rows]
    assert 20 < psnrs[0] < psnrs[-1] < 80
    assert all(0 < float(r["val_ssim"]) <= 1 for r in rows)
    for stage, max_lr in ((0, 3e-3), (1, 1e-3)):
        lrs = [lr for s, lr in trainer.lr_history if s == stage]
        peak = max(range(len(lrs)), key=lambda i: lrs[i])
        assert lrs[peak] == pytest.approx(max_lr, rel=0.05)
        assert lrs[0] < max_lr / 5 and lrs[-1] < max_lr / 5
        assert 0 < peak < len(lrs) - 1
    with pytest.raises(OutputExistsError, match="not empty"):
        Trainer(cfg, run, progress=False).run()


def test_seed_makes_runs_repeatable_and_resume_continues(
        wald_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = write_config(tmp_path / "c.yaml", wald_dataset)
    cfg = load_config(cfg_path)
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # stop mid-run with real signals (SIGTERM in the first epoch, Ctrl-C in the third),
    # resuming each time: every stop saves a checkpoint at the batch it reached, and the
    # result equals the uninterrupted run with one metrics row per epoch
    original = SRModule.training_step
    # global steps (9 batches per epoch): in epoch 1, epoch 2 and epoch 3 (the second stage)
    stops = {3: signal.SIGTERM, 13: signal.SIGINT, 22: signal.SIGTERM}

    def step(self, batch, idx):  # type: ignore[no-untyped-def]
        signum = stops.pop(self.global_step, None)
        if signum is not None:
            os.kill(os.getpid(), signum)
        return original(self, batch, idx)

    monkeypatch.setattr(SRModule, "training_step", step)
    with pytest.raises(Terminated):
        train(cfg, tmp_path / "c", progress=False)
    assert (tmp_path / "c" / "checkpoint.pt").is_file()
    assert len(_rows(tmp_path / "c")) == 0
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "c", resume=True, progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "c")] == ["1"]
    with pytest.raises(Terminated):
        train(cfg, tmp_path / "c", resume=True, progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "c")] == ["1", "2"]
    train(cfg, tmp_path / "c", resume=True, progress=False)
    assert not stops
    c = load_file(tmp_path / "c" / "model.safetensors")
    assert all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    rows = _rows(tmp_path / "c")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    ref = _rows(tmp_path / "a")
    for got, want in zip(rows, ref, strict=True):  # the interrupted epochs' rows are whole
        assert float(got["train_loss"]) == pytest.approx(float(want["train_loss"]), rel=1e-5)
        assert float(got["val_psnr"]) == pytest.approx(float(want["val_psnr"]), abs=1e-4)


def test_init_from_and_frozen_parts(wald_dataset: Path, tmp_path: Path) -> None:
    parent_cfg = load_config(write_config(tmp_path / "p.yaml", wald_dataset))
    train(parent_cfg.scaled(0.5), tmp_path / "parent", progress=False)
    parent = load_file(tmp_path / "parent" / "model.safetensors")
    child_path = write_config(tmp_path / "child.yaml", wald_dataset, init_from="parent",
                              stages=[{"epochs": 1, "lr": 1e-2, "freeze": ["head", "body"]}])
    train(load_config(child_path), tmp_path / "child", progress=False)
    child = load_file(tmp_path / "child" / "model.safetensors")
    for key in parent:
        same = torch.equal(parent[key], child[key])
        if key.startswith(("head.", "body.", "mean", "std")):
            assert same, f"{key} changed although frozen"
        elif key.endswith("weight"):
            assert not same, f"{key} did not train"


def test_init_from_with_more_blocks_grows_the_parent(wald_dataset: Path,
                                                    tmp_path: Path) -> None:
    """``init_from`` with a larger ``n_resblocks`` trains the parent deepened (its blocks
    first, the added ones starting as the identity), not a fresh network."""
    parent_cfg = load_config(write_config(tmp_path / "p.yaml", wald_dataset))
    train(parent_cfg.scaled(0.5), tmp_path / "parent", progress=False)
    parent = load_file(tmp_path / "parent" / "model.safetensors")
    child_path = write_config(tmp_path / "child.yaml", wald_dataset, init_from="parent",
                              model={"name": "edsr-tiny", "scale": 2,
                                     "options": {"n_resblocks": 3}},
                              stages=[{"epochs": 1, "lr": 1e-2, "freeze": ["head", "body"]}])
    train(load_config(child_path), tmp_path / "child", progress=False)
    child = load_file(tmp_path / "child" / "model.safetensors")
    # edsr-tiny has one block: body.0 is the parent's, body.1-2 were added, body.3 is the
    # parent's closing convolution (body.1 there); frozen, so each is still what it started as
    assert torch.equal(child["body.0.body.0.weight"], parent["body.0.body.0.weight"])
    assert torch.equal(child["body.3.weight"], parent["body.1.weight"])
    assert not child["body.2.body.2.weight"].any()
    assert not torch.equal(child["tail.weight"], parent["tail.weight"])
    shrink = write_config(tmp_path / "shrink.yaml", wald_dataset, init_from="child",
                          model={"name": "edsr-tiny", "scale": 2,
                                 "options": {"n_resblocks": 2}})
    with pytest.raises(UsageError, match="more than the parent's 3"):
        train(load_config(shrink), tmp_path / "shrunk", progress=False)
    assert not (tmp_path / "shrunk" / "model.safetensors").exists()


def test_cli_train_and_predict_with_result(wald_dataset: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from s2sr.cli.main import cli
    from support.rasters import texture, write_geotiff

    cfg = write_config(tmp_path / "c.yaml", wald_dataset)
    res = CliRunner().invoke(cli, ["train", str(cfg), "-o", str(tmp_path / "run"), "-q",
                                   "--epoch-scale", "0.5"])
    assert res.exit_code == 0, res.output
    assert len(_rows(tmp_path / "run")) == 2  # 2 * 0.5 -> 1, 1 * 0.5 -> 1
    scene = write_geotiff(tmp_path / "s.tif", (texture((40, 40)) * 10000).astype("uint16"))
    res = CliRunner().invoke(cli, ["predict", str(scene), "-o", str(tmp_path / "o.tif"),
                                   "--weights", str(tmp_path / "run" / "model.safetensors"),
                                   "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "missing.yaml"), "-o",
                                   str(tmp_path / "r2")])
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.slow
def test_two_processes_match_one(wald_dataset: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) gives the single-process result."""
    cfg = write_config(tmp_path / "c.yaml", wald_dataset,
                       stages=[{"epochs": 1, "lr": 3e-3, "patch": 8}])
    train(load_config(cfg), tmp_path / "one", progress=False)
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "s2sr.cli.main",
           "train", str(cfg), "-o",
           str(tmp_path / "two"), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    # on failure, show what each rank said last (a C++ abort prints before torchrun's summary)
    said = [line for line in proc.stderr.splitlines()
            if any(w in line for w in ("terminate", "what()", "Error", "error", "gloo"))]
    assert proc.returncode == 0, "\n".join(said[-20:]) + proc.stderr[-1500:]
    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    for key in one:
        assert torch.allclose(one[key], two[key], atol=2e-4, rtol=1e-3), key


def test_gradient_clipping_is_applied_when_configured(wald_dataset: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(float(max_norm))
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    stages = [{"epochs": 1, "lr": 1e-3}]
    clipped = write_config(tmp_path / "a.yaml", wald_dataset, stages=stages,
                           optimizer={"name": "adam", "clip_grad_norm": 0.25})
    train(load_config(clipped), tmp_path / "a", progress=False)
    assert calls and set(calls) == {0.25}
    calls.clear()
    plain = write_config(tmp_path / "b.yaml", wald_dataset, stages=stages)
    train(load_config(plain), tmp_path / "b", progress=False)
    assert calls == []
