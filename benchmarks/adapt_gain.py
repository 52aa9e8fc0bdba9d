"""Does scene adaptation (``s2sr predict --adapt``) pay, where, and at what cost?

For every test place (:data:`s2sr.data.places.TEST_PLACES`, under ``--shared``) and
scale, the native 10 m scene is the truth. Two Wald cases of the robustness panel make the
input from it (block mean; MTF 0.30, :class:`s2sr.evaluation.panel.Case`). The input,
written as a float32 GeoTIFF, is all adaptation sees (:func:`s2sr.inference.adapt.adapt_model`:
it degrades that input once more; the truth is never trained on). Scored: PSNR against the
truth (border crop = scale) of bicubic, the unsharp mask, the plain model and the adapted
model, printed as gains over bicubic (dB), with the adaptation's seconds, the plain
prediction's seconds and the held-out L1 of the guard.

With ``--native`` it also adapts on the native scene itself (what a user's run does) and
prints the Nyquist-line ratio (:func:`s2sr.losses.artefacts.nyquist_line_ratio`, per
axis) of the plain and the adapted output minus bicubic: adaptation must not push it over
:data:`~s2sr.losses.artefacts.LINE_THRESHOLD` where the plain model is below.

Last, the cost: predict seconds per input megapixel of the plain model (measured on the
native scenes) and, per setting, the scene size at which adaptation costs 10 % of predict
time.

Usage (CPU, nice it on a shared machine; about 1-2 min per adaptation on 2 cores)::

    OMP_WAIT_POLICY=PASSIVE nice -n 5 python benchmarks/adapt_gain.py \
        [--shared ../shared/data] [--places abudhabi rio ...] [--scales 2 4] \
        [--settings 150:1e-4 300:1e-4] [--native] [--weights-x2 W] [--weights-x4 W] \
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine

from s2sr.core.constants import SCALES
from s2sr.core.errors import DataError
from s2sr.data.places import TEST_PLACES
from s2sr.evaluation.panel import Case
from s2sr.evaluation.scenes import read_checked
from s2sr.inference.adapt import AdaptSettings, adapt_model
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import super_resolve
from s2sr.io.scene import open_scene
from s2sr.losses.artefacts import LINE_THRESHOLD, nyquist_line_ratio
from s2sr.losses.metrics import Conventions, psnr
from s2sr.models import get_spec, load_model, pretrained_path


def write_scene(path: Path, refl: np.ndarray, bands: tuple[str, ...]) -> Path:
    """``(C, H, W)`` reflectance as a float32 GeoTIFF with band descriptions."""
    with rasterio.open(path, "w", driver="GTiff", width=refl.shape[2], height=refl.shape[1],
                       count=refl.shape[0], dtype="float32", crs="EPSG:32633",
                       transform=Affine(20.0, 0, 500000.0, 0, -20.0, 5000000.0)) as dst:
        dst.write(refl.astype(np.float32))
        dst.descriptions = bands
    return path


def run_model(model: torch.nn.Module, lr: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = super_resolve(np.ascontiguousarray(lr, dtype=np.float32), model, device="cpu",
                        backend="torch")
    return np.asarray(out, np.float32), time.perf_counter() - start


def adapt_on(model: torch.nn.Module, lr: np.ndarray, settings: AdaptSettings,
             folder: Path) -> Any:
    """:func:`adapt_model` on ``lr`` (written as a scene); ``None`` when it refuses."""
    path = write_scene(folder / "input.tif", lr, get_spec(model).bands)
    with open_scene(path) as scene:
        try:
            return adapt_model(model, scene, settings, "cpu")
        except DataError as err:
            print(f"    refused: {err}", flush=True)
            return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--places", nargs="*", default=[p.name for p in TEST_PLACES])
    ap.add_argument("--scales", nargs="*", type=int, default=list(SCALES))
    ap.add_argument("--cases", nargs="*", default=["block", "0.3"])
    ap.add_argument("--settings", nargs="*", default=["150:1e-4"],
                    help="steps:learning-rate pairs")
    ap.add_argument("--native", action="store_true", help="line ratio after adapting on "
                    "the native scene")
    ap.add_argument("--weights-x2", default=None)
    ap.add_argument("--weights-x4", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    places = {p.name: p for p in TEST_PLACES}
    settings = [AdaptSettings(steps=int(s.split(":")[0]), lr=float(s.split(":")[1]),
                              seed=args.seed) for s in args.settings]
    rows: list[dict[str, Any]] = []
    speed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="adapt_gain_") as tmp:
        folder = Path(tmp)
        for scale in args.scales:
            weights = {2: args.weights_x2, 4: args.weights_x4}[scale] or pretrained_path(scale)
            model = load_model(weights)
            bands = get_spec(model).bands
            conv = Conventions(crop=scale)
            print(f"x{scale}: {weights}", flush=True)
            for name in args.places:
                truth, _ = read_checked(Path(args.shared) / places[name].path, bands, "truth")
                h, w = truth.shape[1] // scale * scale, truth.shape[2] // scale * scale
                hr = truth[:, :h, :w]
                for case_name in args.cases:
                    case = Case(scale, None if case_name == "block" else float(case_name))
                    lr = case.make_input(hr)
                    bic = psnr(upsample(lr, scale), hr, conv)
                    uns = psnr(upsample(lr, scale, "unsharp"), hr, conv) - bic
                    plain, t_plain = run_model(model, lr)
                    g_plain = psnr(plain, hr, conv) - bic
                    for st in settings:
                        done = adapt_on(model, lr, st, folder)
                        row = {"scale": scale, "place": name, "case": case.label,
                               "input": list(lr.shape[1:]), "steps": st.steps, "lr": st.lr,
                               "unsharp": uns, "plain": g_plain, "plain_s": t_plain}
                        if done is not None:
                            out, _ = run_model(done.model, lr)
                            row.update(adapted=psnr(out, hr, conv) - bic, adapt_s=done.seconds,
                                       kept=done.kept, l1=[done.l1_before, done.l1_after],
                                       steps_done=done.steps)
                        rows.append(row)
                        print(f"  {name:13s} {case.label:16s} in {lr.shape[2]}x{lr.shape[1]} "
                              f"{st.steps} st lr {st.lr:g}: unsharp {uns:+.2f} plain "
                              f"{g_plain:+.2f} adapted "
                              f"{row.get('adapted', float('nan')):+.2f} dB (kept "
                              f"{row.get('kept')}), adapt {row.get('adapt_s', 0):.0f} s, "
                              f"plain predict {t_plain:.1f} s", flush=True)
                if args.native:
                    plain, t_native = run_model(model, hr)
                    speed.append(t_native / (hr.shape[1] * hr.shape[2] / 1e6))
                    bic_n = upsample(hr, scale)
                    ratio_plain = nyquist_line_ratio(plain, bic_n)
                    done = adapt_on(model, hr, settings[0], folder)
                    ratio = nyquist_line_ratio(run_model(done.model, hr)[0], bic_n) \
                        if done is not None else (float("nan"),) * 2
                    rows.append({"scale": scale, "place": name, "case": "native",
                                 "line_plain": ratio_plain, "line_adapted": ratio,
                                 "predict_s_per_mpx": speed[-1],
                                 "adapt_s": None if done is None else done.seconds})
                    flag = "  <-- ABOVE THRESHOLD" if max(ratio) > LINE_THRESHOLD >= \
                        max(ratio_plain) else ""
                    print(f"  {name:13s} native line ratio x/y plain {ratio_plain[0]:.3f}/"
                          f"{ratio_plain[1]:.3f} adapted {ratio[0]:.3f}/{ratio[1]:.3f}; "
                          f"predict {speed[-1]:.1f} s/Mpx{flag}", flush=True)
    if speed:
        per_mpx = float(np.median(speed))
        for st in settings:
            cost = [r["adapt_s"] for r in rows if r.get("adapt_s")
                    and r.get("steps") == st.steps and r.get("lr") == st.lr]
            if cost:
                mpx = float(np.median(cost)) / 0.1 / per_mpx
                print(f"{st.steps} steps: adaptation {np.median(cost):.0f} s (median) is 10 % "
                      f"of predict time from {mpx:.0f} Mpx ({per_mpx:.1f} s/Mpx)")
    for scale in args.scales:
        for case in dict.fromkeys(r["case"] for r in rows if r["scale"] == scale
                                  and "plain" in r):
            for st in settings:
                sel = [r for r in rows if r["scale"] == scale and r["case"] == case
                       and r["steps"] == st.steps and r["lr"] == st.lr and "adapted" in r]
                if sel:
                    print(f"x{scale} {case:16s} {st.steps} st lr {st.lr:g}: mean unsharp "
                          f"{np.mean([r['unsharp'] for r in sel]):+.2f} plain "
                          f"{np.mean([r['plain'] for r in sel]):+.2f} adapted "
                          f"{np.mean([r['adapted'] for r in sel]):+.2f}; worst plain "
                          f"{min(r['plain'] for r in sel):+.2f} adapted "
                          f"{min(r['adapted'] for r in sel):+.2f} ({len(sel)} places)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
