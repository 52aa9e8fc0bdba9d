"""What the trainer asks of Lightning, decided on the CPU: precision plugins (the CUDA and
AMP paths included), the data-parallel layout under torchrun, the resumable batch order and
Lightning's own DDP launcher."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from safetensors.torch import load_file

from s2sr.core.errors import UsageError
from s2sr.training import load_config, train
from s2sr.training.data import EpochBatches
from s2sr.training.module import stage_of
from s2sr.training.trainer import distributed_layout, lightning_precision
from support.cli import write_config


@pytest.mark.filterwarnings("ignore:.*GradScaler is enabled, but CUDA is not available")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_precision_selection(device: str) -> None:
    assert lightning_precision("fp32", device) == ("32-true", [])
    assert lightning_precision("32-true", device) == ("32-true", [])
    for name in ("bf16", "bf16-mixed"):
        assert lightning_precision(name, device, native_bf16=True) == ("bf16-mixed", [])
    for name in ("fp16", "16-mixed"):
        precision, plugins = lightning_precision(name, device)
        # fp16 keeps its loss scaling on every device: an explicit plugin with a scaler
        # (on the CPU, Lightning alone would silently switch to bf16)
        assert precision is None and len(plugins) == 1
        plugin = plugins[0]
        assert isinstance(plugin, MixedPrecision) and plugin.precision == "16-mixed"
        assert plugin.device == device and plugin.scaler is not None
    with pytest.raises(UsageError, match="precision must be one of"):
        lightning_precision("int8", device)


def test_distributed_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert distributed_layout(1, 1) == (1, 1)
    assert distributed_layout(4, 2) == (4, 2)
    # launched by torchrun: its layout wins (2 nodes of 4 processes)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed_layout(1, 1) == (4, 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # not a layout: the config's
    assert distributed_layout(2, 1) == (2, 1)


def test_epoch_batches_split_global_batches_and_skip() -> None:
    whole = list(EpochBatches(50, 8, seed=3))
    assert len(whole) == 6 and all(len(b) == 8 for b in whole)  # partial batch dropped
    assert len({i for b in whole for i in b}) == 48
    assert whole == list(EpochBatches(50, 8, seed=3))
    assert whole != list(EpochBatches(50, 8, seed=4))
    halves = [list(EpochBatches(50, 8, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == whole
    resumed = EpochBatches(50, 8, seed=3)
    resumed.skip = 4
    assert len(resumed) == 6 and list(resumed) == whole[4:]


def test_stage_of_counts_epochs_over_stages(wald_dataset: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", wald_dataset, stages=[
        {"epochs": 2, "lr": 1e-3}, {"epochs": 1, "lr": 1e-3}, {"epochs": 3, "lr": 1e-3}]))
    assert [stage_of(cfg, e) for e in range(6)] == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1),
                                                    (2, 2)]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_lightning_ddp_launcher_matches_one_process(wald_dataset: Path,
                                                    tmp_path: Path) -> None:
    """``--devices 2`` on the CPU: Lightning starts the second process itself (gloo); the
    weights equal the single-process run's, and so do the validation scores, which every
    rank computes on its share of the patches."""
    cfg = write_config(tmp_path / "c.yaml", wald_dataset,
                       stages=[{"epochs": 2, "lr": 3e-3, "patch": 8}])
    train(load_config(cfg), tmp_path / "one", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "s2sr.cli.main", "train", str(cfg), "-o",
                           str(tmp_path / "two"), "-q", "--devices", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    for key in one:
        assert torch.allclose(one[key], two[key], atol=2e-4, rtol=1e-3), key
    rows_one, rows_two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(rows_one) == len(rows_two) == 2
    for a, b in zip(rows_one, rows_two, strict=True):
        assert float(a["val_psnr_bicubic"]) == pytest.approx(float(b["val_psnr_bicubic"]),
                                                             abs=1e-6)
        assert float(a["val_psnr"]) == pytest.approx(float(b["val_psnr"]), abs=0.05)
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)


def test_betas0_drives_the_one_cycle_momentum(wald_dataset: Path, tmp_path: Path) -> None:
    from s2sr.training.schedule import one_cycle

    for top in (0.95, 0.9):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.Adam([p], lr=1e-3, betas=(0.5, 0.99))
        sched = one_cycle(opt, 1e-3, 100, pct_start=0.3, momentum=top)
        seen = []
        for _ in range(100):
            seen.append(opt.param_groups[0]["betas"][0])
            opt.step()
            sched.step()
        assert seen[0] == pytest.approx(top) and min(seen) == pytest.approx(top - 0.1)
        assert seen[-1] == pytest.approx(top, abs=1e-3)
    # the default keeps fastai's 0.95 -> 0.85; a top below the dip is refused by name
    assert load_config(write_config(tmp_path / "d.yaml", wald_dataset)).optimizer.betas[0] \
        == 0.95
    with pytest.raises(UsageError, match=r"optimizer\.betas\[0\]"):
        load_config(write_config(tmp_path / "b.yaml", wald_dataset,
                                 optimizer={"name": "adam", "betas": [0.05, 0.99]}))


def test_bf16_on_a_cpu_without_it_trains_at_fp32_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    """PyTorch emulates bf16 on a CPU without AVX512-BF16/AMX, many times slower than
    fp32: such a CPU trains at fp32, with a warning; a GPU keeps bf16."""
    with caplog.at_level("WARNING"):
        assert lightning_precision("bf16", "cpu", native_bf16=False) == ("32-true", [])
    assert "no native bfloat16" in caplog.text and "precision: fp32" in caplog.text
    caplog.clear()
    assert lightning_precision("bf16", "cuda", native_bf16=False) == ("bf16-mixed", [])
    assert lightning_precision("bf16", "cpu", native_bf16=True) == ("bf16-mixed", [])
    assert not caplog.text

