"""Scene adaptation: fine-tune the model on Wald pairs cut from the scene it will predict.

Before :func:`s2sr.predict` runs the network over a scene, ``adapt`` fine-tunes a copy of
the model for a few hundred steps on pairs made from that scene alone: the scene (10 m) is
the target and the same scene degraded once more by the model's scale, with the training
range of degradations (:data:`ADAPT_RANGE`, :mod:`s2sr.data.synthetic`), is the input.
Nothing else is ever trained on; the shipped weights file is never written.

* Streamed, clean pixels only: :mod:`s2sr.inference.adapt_sources` reads the windows
  trained on (bounded, nodata, saturation and clouds left out).
* Deterministic for a seed (patches, degradations, noise); on CUDA cuDNN runs in its
  deterministic mode meanwhile. Bounded: ``steps`` (at most :data:`MAX_STEPS`) and a time
  budget (:data:`DEFAULT_BUDGET_S`), whichever ends first; the steps done are recorded.
* The training conventions: L1 pixel loss, Adam with the training's betas, gradient norm
  clipped at 1 (``configs/robust/*_world.yaml``), fp32.
* A guard: the L1 on held-out pairs of the scene (other crops, the panel's fixed
  degradations) is measured before and after; an adapted model that does worse there is
  dropped and the shipped one predicts.

Refusals: a scene smaller than one patch with its PSF margin, or without enough clean
pixels, is refused with ``adapt="on"`` (one line, :class:`~s2sr.core.errors.DataError`) and
skipped with a warning with ``adapt="auto"``. ``auto`` adapts only where it paid in the
measurement of ``benchmarks/adapt_gain.py`` (see :func:`auto_adapts` and docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
from torch import nn

from s2sr.core.errors import DataError, UsageError
from s2sr.data.synthetic import (
    DegradationRange,
    SyntheticPairs,
    panel_degradations,
    psf_margin,
)
from s2sr.inference.adapt_sources import read_sources
from s2sr.io.base import Scene
from s2sr.losses.pixel import PixelLoss
from s2sr.models import get_spec
from s2sr.models.header import spec_header

log = logging.getLogger(__name__)
M = TypeVar("M")

#: ``adapt`` values: never, always (refusing what cannot be adapted on), by measurement.
ADAPT_MODES = ("off", "on", "auto")
#: Fine-tuning steps by default, and the most accepted.
DEFAULT_STEPS = 150
MAX_STEPS = 5000
#: Patches per step, their input side (px; smaller on a small scene, never below
#: :data:`MIN_PATCH`: a scene smaller than that and its PSF margin is refused) and the
#: learning rate (constant). On the x4 Wald inputs of the test places, 27 and 32 px
#: patches gained, 16 px ones (rio, 106 x 88 px) lost 0.7-0.9 dB (docs/benchmarks.md).
BATCH = 8
PATCH = 32
MIN_PATCH = 24
LEARNING_RATE = 1e-4
#: Gradient norm clip of the shipped models' training (configs/robust/*_world.yaml) and
#: Adam's betas there (the training's default, s2sr.training.schema.OptimizerConfig, kept
#: equal by a test; not imported: it would pull Lightning into every predict).
CLIP_GRAD_NORM = 1.0
BETAS = (0.95, 0.99)
#: Seconds of fine-tuning at most (the steps done are recorded).
DEFAULT_BUDGET_S = 600.0
#: The shipped models' training range (configs/robust/s2sr_x2_world.yaml).
ADAPT_RANGE = DegradationRange(mtf=(0.15, 0.6), block_only=0.35, shift=0.25,
                               noise=(0.0, 0.002), haze=0.3)
#: Held-out pairs scored before and after (the guard).
GUARD_PAIRS = 16
#: ``auto`` adapts at these scales only, on scenes of at least this many input pixels
#: (benchmarks/adapt_gain.py, docs/benchmarks.md, scene adaptation). With the shipped world-trained
#: models it pays at no scale: at x2 it lost 0.06-0.31 dB on the block-mean input and moved
#: -0.10 to +0.16 at MTF 0.30; at x4 (b59e42206b92) it lost 0.03-0.22 dB on the block mean
#: and -0.18 to +0.03 at MTF 0.30 (the x4 before its world stage had gained up to +0.35).
#: So ``auto`` adapts nowhere; were a scale added, below ~25 Mpx 150 steps cost over 10 %
#: of predict time.
AUTO_SCALES: tuple[int, ...] = ()
AUTO_MIN_PIXELS = 25_000_000


@dataclass(frozen=True)
class AdaptSettings:
    """How to adapt (see the module docstring).

    Attributes:
        steps: optimisation steps. seed: seeds the patches, degradations and noise.
        lr: learning rate. batch: patches per step. patch: input patch side (px).
        budget_s: seconds of fine-tuning at most.
    """

    steps: int = DEFAULT_STEPS
    seed: int = 0
    lr: float = LEARNING_RATE
    batch: int = BATCH
    patch: int = PATCH
    budget_s: float = DEFAULT_BUDGET_S

    def __post_init__(self) -> None:
        check_options("on", self.steps, self.seed)
        if not (0 < self.lr <= 1e-2 and math.isfinite(self.lr)):
            raise UsageError(f"adaptation learning rate must be in (0, 0.01], got {self.lr}")
        if not (1 <= self.batch <= 256 and MIN_PATCH <= self.patch <= 256
                and self.budget_s > 0):
            raise UsageError(f"adaptation batch must be 1-256, patch {MIN_PATCH}-256 and the "
                             f"time budget positive, got {self.batch}, {self.patch}, "
                             f"{self.budget_s}")


@dataclass
class Adapted:
    """What :func:`adapt_model` did.

    Attributes:
        model: the adapted copy (eval mode), or the model given when it was dropped.
        steps: steps done. seconds: time taken. windows: windows used.
        sha256: SHA-256 of the adapted weights (:func:`weights_sha256`). l1_before,
        l1_after: the guard's held-out L1. kept: whether the adapted weights are used.
    """

    model: nn.Module
    steps: int
    seconds: float
    windows: int
    sha256: str
    l1_before: float
    l1_after: float
    kept: bool

    def tags(self) -> dict[str, str]:
        """The output's ``S2SR_ADAPT*`` tags."""
        state = "on" if self.kept else "dropped (no step within the time budget)" \
            if self.steps == 0 else "dropped (held-out L1 rose)"
        return {"S2SR_ADAPT": state, "S2SR_ADAPT_STEPS": str(self.steps),
                "S2SR_ADAPT_SHA256": self.sha256,
                "S2SR_ADAPT_L1": f"{self.l1_before:.6f} -> {self.l1_after:.6f}"}


def check_options(mode: str, steps: int | None, seed: int) -> None:
    """Refuse an unknown mode, a step count outside 1-:data:`MAX_STEPS` or a negative seed."""
    if mode not in ADAPT_MODES:
        raise UsageError(f"unknown --adapt {mode!r}: use {', '.join(ADAPT_MODES)}")
    if steps is not None and not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise UsageError(f"--adapt-steps must be 1 to {MAX_STEPS}, got {steps}")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UsageError(f"--adapt-seed must be a non-negative integer, got {seed}")


def auto_adapts(scale: int, height: int, width: int) -> tuple[bool, str]:
    """Whether ``adapt="auto"`` adapts a scene, and why (see :data:`AUTO_MIN_PIXELS`)."""
    if scale not in AUTO_SCALES:
        return False, (f"x{scale} adaptation did not pay with the shipped models (docs/"
                       "benchmarks.md); --adapt on forces it")
    if height * width < AUTO_MIN_PIXELS:
        return False, (f"the scene ({width}x{height} px) is below {AUTO_MIN_PIXELS / 1e6:g} "
                       "Mpx, where its fixed cost is over 10 % of predict time")
    return True, "large scene"


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """cuDNN's deterministic algorithms within the block (on CUDA)."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _batch(pairs: SyntheticPairs, start: int, n: int, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    items = [pairs[k] for k in range(start, start + n)]
    return tuple(torch.stack([i[key] for i in items]).to(device)  # type: ignore[return-value]
                 for key in ("lr", "hr"))


@torch.no_grad()
def _held_out_l1(model: nn.Module, guard: SyntheticPairs, device: torch.device) -> float:
    model.eval()
    total = 0.0
    for k in range(0, len(guard), BATCH):
        lr, hr = _batch(guard, k, min(BATCH, len(guard) - k), device)
        total += float((model(lr) - hr).abs().mean()) * lr.shape[0]
    return total / len(guard)


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of ``model``'s spec and weights: the spec header's items, then every tensor's
    name, dtype, shape and bytes, in name order (a safetensors file's own bytes are not
    repeatable: its header's key order varies from save to save)."""
    digest = hashlib.sha256()
    for key, value in sorted(spec_header(get_spec(model)).items()):
        digest.update(f"{key}={value}\n".encode())
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def adapt_model(model: nn.Module, scene: Scene, settings: AdaptSettings | None = None,
                device: torch.device | str = "cpu") -> Adapted:
    """Fine-tune a copy of ``model`` on Wald pairs of ``scene`` (see the module docstring).

    Args:
        model: a PyTorch model (left unchanged).
        scene: the open scene, in the model's bands.
        settings: steps, seed, learning rate, batch, patch, time budget.
        device: where to train.

    Raises:
        DataError: the scene is too small or too empty to adapt on.
    """
    settings = settings or AdaptSettings()
    dev = torch.device(device)
    scale = get_spec(model).scale
    side = min(scene.meta.height, scene.meta.width)
    patch = max(MIN_PATCH, min(settings.patch, (side - 2 * psf_margin(scale)) // scale))
    start = time.perf_counter()
    sources = read_sources(scene, scale, patch)
    pairs = SyntheticPairs(sources, scale, patch, settings.steps * settings.batch,
                           degradations=ADAPT_RANGE, seed=settings.seed)
    guard = SyntheticPairs(sources, scale, patch, GUARD_PAIRS, fixed=panel_degradations(),
                           augment=False, seed=settings.seed + 1_000_003)
    net = copy.deepcopy(model).to(dev).float()
    with _deterministic(dev):
        before = _held_out_l1(net, guard, dev)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=settings.lr, betas=BETAS)
        loss_fn = PixelLoss(kind="l1")
        steps = 0
        for step in range(settings.steps):
            if time.perf_counter() - start > settings.budget_s:
                log.warning("scene adaptation stopped by its time budget (%.0f s) after %d "
                            "of %d steps", settings.budget_s, steps, settings.steps)
                break
            lr_b, hr_b = _batch(pairs, step * settings.batch, settings.batch, dev)
            loss = loss_fn(net(lr_b), hr_b)
            if not bool(torch.isfinite(loss)):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP_GRAD_NORM)
            opt.step()
            steps += 1
        finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
        after = _held_out_l1(net, guard, dev) if finite else math.inf
    net.eval()
    kept, seconds = finite and after <= before and steps > 0, time.perf_counter() - start
    if kept:
        log.info("adapted %s on %d windows of %s: %d steps in %.1f s, held-out L1 %.5f -> "
                 "%.5f", get_spec(model).name, len(sources), scene.meta.source, steps,
                 seconds, before, after)
    else:
        log.warning("scene adaptation did not lower the held-out L1 of %s (%.5f -> %.5f): "
                    "predicting with the model as given", scene.meta.source, before, after)
    sha = weights_sha256(net) if finite else "0" * 64
    return Adapted(net.to(next(model.parameters()).device) if kept else model, steps, seconds,
                   len(sources), sha, before, after, kept)


def adapt_for_run(model: M, scene: Scene, mode: str, steps: int | None, seed: int,
                  device: torch.device, precision: str) -> tuple[M, dict[str, str]]:
    """What :func:`s2sr.inference.predict.prepare_run` does for ``adapt``: the model to
    predict with and the output's ``S2SR_ADAPT*`` tags.

    ``on`` refuses what cannot be adapted (an ONNX model, int8, a scene too small or too
    empty; a TorchScript export is rebuilt as a PyTorch model and adapts); ``auto`` skips
    them with a one-line warning, and adapts only where :func:`auto_adapts` says it pays.
    """
    if mode == "off":
        return model, {"S2SR_ADAPT": "off"}
    what = None
    if not isinstance(model, nn.Module) or getattr(model, "spec", None) is None:
        what = ("an ONNX model cannot be fine-tuned: give the .safetensors weights it was "
                "exported from (or a TorchScript export) as --weights")
    elif precision == "int8":
        what = ("int8 runs a model quantised once and cached: adapt at --precision fp32, "
                "bf16 or fp16")
    if what is not None:
        if mode == "on":
            raise UsageError(f"--adapt on: {what}, or use --adapt off")
        log.warning("--adapt auto skipped: %s", what)
        return model, {"S2SR_ADAPT": "skipped: ONNX model or int8"}
    scale = get_spec(cast(nn.Module, model)).scale
    if mode == "auto":
        yes, why = auto_adapts(scale, scene.meta.height, scene.meta.width)
        if not yes:
            log.info("--adapt auto: not adapting (%s)", why)
            return model, {"S2SR_ADAPT": f"auto: off ({why})"}
    settings = AdaptSettings(steps=steps or DEFAULT_STEPS, seed=seed)
    try:
        done = adapt_model(cast(nn.Module, model), scene, settings, device)
    except DataError as err:
        if mode == "on":
            raise
        log.warning("--adapt auto skipped: %s", err)
        return model, {"S2SR_ADAPT": "skipped: scene too small or too empty"}
    return cast(M, done.model), {**done.tags(), "S2SR_ADAPT_SEED": str(seed)}
