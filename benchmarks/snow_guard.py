"""The snow guard of ``--bands all`` (:mod:`s2sr.inference.domain_guard`) on and off.

A measurement, not a test. On the held-out native scenes (both dates of the four test
cities and the snowy BigEarthNet patch), Wald x2 (block mean, MTF 0.2, 0.3, 0.45, 0.6)
with ``s2sr_20m_x2`` and Wald x4 (block mean, MTF 0.30) with the 5 m cascade, each run by
:func:`s2sr.inference.multires_predict.super_resolve_bands` (the engine's tiles) with the
guard, and with ``multires_engine.guard_tile`` replaced by the identity ("model"): PSNR
gains over bicubic per band (reflectance, border crop = the scale), the scene-wide guided
baseline beside them. Then, on every held-out scene where the snow test fires on more than
1 % of the 20 m pixels, the spectrally impossible B8A pixels on snow: 10 m pixels whose B8A
is under :data:`NIR_RATIO` times the 10 m B08 (the two NIR bands, 865 and 842 nm, read
nearly the same on snow; the Wald truth never does that), for bicubic, the guided baseline,
the model with and without the guard and (Wald) the truth, on the native input and in each
x2 case.

Usage: OMP_WAIT_POLICY=PASSIVE nice -n 19 python benchmarks/snow_guard.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import s2sr.inference.multires_engine as engine
from s2sr.core.bands import BANDS_20M, TEN_BANDS
from s2sr.data.multires import native_scenes, wald
from s2sr.inference import domain_guard
from s2sr.inference.baselines import guided_baseline, upsample
from s2sr.inference.multires_predict import super_resolve_bands
from s2sr.losses.metrics import Conventions, psnr_bands
from s2sr.models import load_model, pretrained_path
from s2sr.models.pretrained import pretrained_20m_path

#: The panel's degradations: Wald x2 block mean and MTF 0.2-0.6, x4 block mean and MTF 0.3.
CASES: tuple[tuple[int, float | None], ...] = (
    (2, None), (2, 0.20), (2, 0.30), (2, 0.45), (2, 0.60), (4, None), (4, 0.30))
SIX = [TEN_BANDS.index(b) for b in BANDS_20M]
#: B8A / B08 under this on snow counts as spectrally impossible.
NIR_RATIO = 0.7
_B8A = BANDS_20M.index("B8A")


def nir_outliers(out: np.ndarray, guide: np.ndarray, snow: np.ndarray) -> int:
    """The 10 m pixels on ``snow`` (20 m mask) whose B8A (``out``, the six bands) is under
    :data:`NIR_RATIO` times B08 (``guide``, the four 10 m bands)."""
    on = np.repeat(np.repeat(snow, 2, axis=0), 2, axis=1)
    return int((out[_B8A][on] < NIR_RATIO * guide[3][on]).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared")
    args = ap.parse_args()
    guard = engine.guard_tile
    guided = load_model(pretrained_20m_path(2))
    hr = load_model(pretrained_path(2))

    def run(lr: np.ndarray, guide: np.ndarray, factor: int, on: bool) -> np.ndarray:
        engine.guard_tile = guard if on else (lambda out, *a: (out, 0))
        ten = super_resolve_bands(np.ascontiguousarray(guide, np.float32),
                                  np.ascontiguousarray(lr, np.float32), guided,
                                  model_10m=hr if factor == 4 else None)
        engine.guard_tile = guard
        return ten[SIX]

    print("scene | case | method | " + " | ".join(BANDS_20M) + " | mean (dB over bicubic)")
    for scene in native_scenes(args.shared, held_out=True):
        for factor, mtf in CASES:
            lr, guide, truth = wald(scene, factor, mtf)
            conv = Conventions().resolve(factor)
            base = psnr_bands(upsample(lr, factor, "bicubic"), truth, conv)
            for name, out in (("guided", guided_baseline(lr, guide, factor)),
                              ("model", run(lr, guide, factor, False)),
                              ("model+guard", run(lr, guide, factor, True))):
                gain = psnr_bands(np.asarray(out, np.float32), truth, conv) - base
                print(f"{scene.name} | x{factor} {'block mean' if mtf is None else mtf} | "
                      f"{name} | " + " | ".join(f"{g:+.2f}" for g in gain)
                      + f" | {gain.mean():+.3f}", flush=True)
    print_nir_outliers(args.shared, run)


def print_nir_outliers(shared: str,
                       run: Callable[[np.ndarray, np.ndarray, int, bool], np.ndarray]) -> None:
    """Print :func:`nir_outliers` per method on the snowy held-out scenes, native and Wald."""
    print(f"\nscene | input | 10 m snow pixels with B8A < {NIR_RATIO} B08: bicubic, guided, "
          "model, model+guard, truth")
    for scene in native_scenes(shared, held_out=True):
        h, w = scene.lr20.shape[1:]
        native = (scene.lr20, scene.hr10[:, :2 * h, :2 * w], None)
        for label, mtf in (("native", None), *((f"x2 {m or 'block mean'}", m) for m in
                                               (None, 0.20, 0.30, 0.45, 0.60))):
            lr, guide, truth = native if label == "native" else wald(scene, 2, mtf)
            snow = domain_guard.snow_mask(lr, guide)
            if snow.mean() <= domain_guard.WARN_FRACTION:
                break
            outs = [upsample(lr, 2, "bicubic"), guided_baseline(lr, guide, 2),
                    run(lr, guide, 2, False), run(lr, guide, 2, True)]
            counts = [str(nir_outliers(o, guide, snow)) for o in outs]
            counts.append("-" if truth is None else str(nir_outliers(truth, guide, snow)))
            print(f"{scene.name} | {label} | " + " | ".join(counts), flush=True)


if __name__ == "__main__":
    main()
