"""Checkpoints of training runs: Lightning's checkpoint I/O with s2sr's rules (atomic
writes, ``weights_only`` reads onto the CPU, structure and values checked before use), the
experiment fingerprint a resume must match, and the random states."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from s2sr.core.errors import CheckpointError
from s2sr.core.files import atomic_path
from s2sr.training.schema import TrainConfig

log = logging.getLogger(__name__)

#: The parts of the experiment a checkpoint must agree with to be resumed.
RESUME_KEYS = ("seed", "precision", "batch_size", "model", "optimizer", "stages")


def fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records of its experiment (compared on resume)."""
    plain = cfg.as_dict()
    return {k: plain[k] for k in RESUME_KEYS}


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with s2sr's rules: written to a temporary and moved into
    place (a crash while saving leaves the previous checkpoint), read without unpickling
    objects (``weights_only``), onto the CPU first, and checked before use."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(Path(path))


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read ``checkpoint.pt`` safely (no objects unpickled, tensors on the CPU) and check
    its structure.

    Raises:
        CheckpointError: unreadable, truncated, hostile or not an s2sr checkpoint.
    """
    fix = "start a new run in another folder (or without --resume after removing it)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or not an s2sr "
                              f"checkpoint ({type(err).__name__}: {_first_line(err)}): "
                              f"{fix}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not an s2sr "
                              f"checkpoint: {fix}")
    kinds: dict[str, type | tuple[type, ...]] = {
        "state_dict": dict, "optimizer_states": list, "lr_schedulers": list, "loops": dict,
        "epoch": int, "global_step": int, "s2sr": dict, "s2sr_epoch": dict}
    for key, kind in kinds.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {path} has no valid {key!r} entry (got "
                                  f"{type(value).__name__}): it is not an s2sr checkpoint; "
                                  f"{fix}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor)
               for k, v in state["state_dict"].items()):
        raise CheckpointError(f"checkpoint {path}: 'state_dict' is not a state dict of "
                              f"tensors: {fix}")
    info, part = state["s2sr"], state["s2sr_epoch"]
    ints = {"epoch": state["epoch"], "global_step": state["global_step"],
            "rows": info.get("rows"), "stage": part.get("stage"),
            "batches": part.get("batches"), "patches": part.get("patches")}
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**9:
            raise CheckpointError(f"checkpoint {path}: {key} {value!r} is out of range: {fix}")
    floats = {"best": info.get("best"), "seconds": part.get("seconds"),
              "data_seconds": part.get("data_seconds")}
    sums = part.get("sums")
    if not (isinstance(sums, list) and len(sums) == 4):
        raise CheckpointError(f"checkpoint {path}: the epoch's loss sums are missing: {fix}")
    floats.update({f"sums[{i}]": v for i, v in enumerate(sums)})
    for key, value in floats.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            raise CheckpointError(f"checkpoint {path}: {key} {value!r} is not a number: {fix}")
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the CPU random state (from a CPU ByteTensor, whatever device the checkpoint
    was mapped to) and the CUDA states when the checkpoint has them and CUDA is here."""
    cpu = state.get("rng")
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.ndim != 1:
        raise CheckpointError("checkpoint's random state is not a byte tensor: it is not an "
                              "s2sr checkpoint; start a new run")
    try:
        torch.set_rng_state(cpu.detach().to("cpu").contiguous())
    except (RuntimeError, NotImplementedError) as err:
        raise CheckpointError(f"checkpoint's random state cannot be restored "
                              f"({_first_line(err)}): start a new run") from None
    cuda = state.get("cuda_rng")
    if cuda is None or not torch.cuda.is_available():
        return
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) and
                                             t.dtype == torch.uint8 for t in cuda):
        raise CheckpointError("checkpoint's CUDA random states are not byte tensors: start "
                              "a new run")
    if len(cuda) != torch.cuda.device_count():
        log.warning("checkpoint has %d CUDA random states, this machine %d GPUs: the resumed "
                    "run will not repeat the original one exactly", len(cuda),
                    torch.cuda.device_count())
        return
    torch.cuda.set_rng_state_all([t.detach().to("cpu").contiguous() for t in cuda])


