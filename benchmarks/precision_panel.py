"""Is reduced precision good enough to offer? The robustness panel at fp32, bf16, int8.

For the shipped s2sr_x2 and s2sr_x4 models it runs the robustness panel of
``s2sr evaluate panel`` (:func:`s2sr.evaluation.panel.panel_rows`, on the held-out real
scenes under ``--shared``) and the artefact score on the undegraded scenes
(:func:`s2sr.evaluation.panel.artefact_rows`) three times, on the CPU:

* ``fp32`` — PyTorch, float32 (the reference);
* ``bf16`` — PyTorch autocast to bfloat16, channels-last (``predict --precision bf16``);
* ``int8`` — ONNX Runtime static quantisation (``predict --precision int8``; the model is
  quantised once and cached under ``~/.cache/s2sr``).

It prints, per model and precision, the panel's mean gain over bicubic (PSNR, dB) for
every degradation case, its difference to fp32, the artefact score (highest over the
scenes) and its difference to fp32, and a verdict: ``offered`` iff every case is within
:data:`MAX_GAIN_DELTA` dB of fp32 and the artefact score within
:data:`MAX_ARTEFACT_DELTA` of fp32's, else ``not offered``.

This is accuracy, not speed: run it on any machine (it takes a while: three runs of the
panel per model). ``--crop N`` keeps the top-left N x N pixels of each scene (a smoke
run); ``--json FILE`` also writes the numbers.

Usage: python benchmarks/precision_panel.py [--shared ../shared/data] [--scene S.tif ...]
       [--precisions fp32 bf16 int8] [--scales 2 4] [--crop N] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2sr.core.constants import SCALES
from s2sr.evaluation.panel import (
    MAX_PANEL_PIXELS,
    artefact_rows,
    default_scenes,
    panel_rows,
    scene_name,
)
from s2sr.evaluation.scenes import read_checked
from s2sr.models import get_spec, load_model, pretrained_path

#: Largest difference of any case's mean gain over bicubic to fp32's (dB) to offer it.
MAX_GAIN_DELTA = 0.1
#: Largest difference of the artefact score to fp32's to offer it.
MAX_ARTEFACT_DELTA = 0.02
#: precision -> the backend that runs it.
BACKEND = {"fp32": "torch", "bf16": "torch", "int8": "onnxruntime"}


def measure(model: torch.nn.Module, name: str, scenes: Mapping[str, np.ndarray],
            precision: str) -> dict[str, Any]:
    """The panel's mean gain per case and the highest artefact score of ``model``."""
    models = {name: model}
    backend = BACKEND[precision]
    rows = panel_rows(models, scenes, device="cpu", precision=precision, backend=backend)
    gains = {r["case"]: r["gain_psnr"] for r in rows
             if r["scene"] == "mean" and r["method"] == name}
    arts = artefact_rows(models, scenes, device="cpu", precision=precision, backend=backend)
    score = next(r["score"] for r in arts if r["scene"] == "max" and r["method"] == name)
    return {"gains": gains, "artefact": score}


def verdict(result: Mapping[str, Any], reference: Mapping[str, Any]) -> tuple[bool, float,
                                                                              float]:
    """``(offered, worst gain difference dB, artefact difference)`` against fp32."""
    deltas = [result["gains"][c] - reference["gains"][c] for c in reference["gains"]]
    worst = max(deltas, key=abs) if deltas else 0.0
    art = result["artefact"] - reference["artefact"]
    offered = all(abs(d) <= MAX_GAIN_DELTA for d in deltas) and abs(art) <= MAX_ARTEFACT_DELTA
    return offered, worst, art


def report(name: str, results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Lines of the table for one model (fp32 first)."""
    ref = results["fp32"]
    lines = [f"\n## {name}", "",
             "| case | " + " | ".join(f"{p} gain (d fp32)" for p in results) + " |",
             "|---|" + "---:|" * len(results)]
    for case in ref["gains"]:
        cells = [f"{r['gains'][case]:+.3f} ({r['gains'][case] - ref['gains'][case]:+.3f})"
                 for r in results.values()]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    cells = [f"{r['artefact']:.3f} ({r['artefact'] - ref['artefact']:+.3f})"
             for r in results.values()]
    lines.append("| artefact score (max) | " + " | ".join(cells) + " |")
    lines.append("")
    for precision, r in results.items():
        if precision == "fp32":
            continue
        offered, worst, art = verdict(r, ref)
        lines.append(f"{name} {precision}: {'offered' if offered else 'not offered'} (worst "
                     f"case {worst:+.3f} dB vs fp32, limit {MAX_GAIN_DELTA}; artefact score "
                     f"{art:+.3f}, limit {MAX_ARTEFACT_DELTA}; {r['seconds']:.0f} s)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--scene", type=Path, action="append", default=[],
                        help="scenes playing the truth [default: the panel's held-out "
                             "scenes under --shared]")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"],
                        choices=list(BACKEND))
    parser.add_argument("--scales", nargs="+", type=int, default=list(SCALES), choices=SCALES)
    parser.add_argument("--crop", type=int, default=None,
                        help="keep the top-left N x N pixels of each scene (smoke run)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads [default: PyTorch's and ONNX Runtime's]")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers")
    args = parser.parse_args(argv)
    precisions = ["fp32", *[p for p in args.precisions if p != "fp32"]]
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = args.scene or default_scenes(args.shared)
    dn_offset = None if args.scene else 0.0  # the shared crops: DN = reflectance x 1e4
    out: dict[str, Any] = {"scenes": [str(p) for p in paths], "crop": args.crop,
                           "limits": {"gain_db": MAX_GAIN_DELTA,
                                      "artefact": MAX_ARTEFACT_DELTA}, "models": {}}
    lines = ["# Reduced precision on the robustness panel (CPU)",
             f"scenes: {', '.join(scene_name(p) for p in paths)}"
             + (f" (top-left {args.crop} px)" if args.crop else "")]
    for scale in args.scales:
        name = f"s2sr_x{scale}"
        model = load_model(pretrained_path(scale))
        bands = list(get_spec(model).bands)
        scenes = {}
        for path in paths:
            refl, _ = read_checked(path, bands, "scene", dn_offset=dn_offset,
                                   max_pixels=MAX_PANEL_PIXELS)
            crop = args.crop or max(refl.shape)
            scenes[scene_name(path)] = np.ascontiguousarray(refl[:, :crop, :crop], np.float32)
        results: dict[str, dict[str, Any]] = {}
        for precision in precisions:
            start = time.perf_counter()
            results[precision] = measure(model, name, scenes, precision)
            results[precision]["seconds"] = time.perf_counter() - start
            print(f"{name} {precision}: done in {results[precision]['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
        lines += report(name, results)
        out["models"][name] = {p: {**r, "verdict": None if p == "fp32" else
                                   verdict(r, results["fp32"])[0]}
                               for p, r in results.items()}
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
