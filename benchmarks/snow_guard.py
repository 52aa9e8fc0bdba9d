"""The snow guard of ``--bands all`` (:mod:`s2sr.inference.domain_guard`) on and off.

A measurement, not a test. On the held-out native scenes (both dates of the four test
cities and the snowy BigEarthNet patch), Wald x2 (block mean, MTF 0.30) with
``s2sr_20m_x2`` and Wald x4 (MTF 0.30) with the 5 m cascade, each run by
:func:`s2sr.inference.multires_predict.super_resolve_bands` (the engine's tiles) with the
guard, and with ``multires_engine.guard_tile`` replaced by the identity ("model"): PSNR
gains over bicubic per band (reflectance, border crop = the scale), the scene-wide guided
baseline beside them.

Usage: OMP_WAIT_POLICY=PASSIVE nice -n 5 python benchmarks/snow_guard.py [--shared ../shared]
"""

from __future__ import annotations

import argparse

import numpy as np

import s2sr.inference.multires_engine as engine
from s2sr.core.bands import BANDS_20M, TEN_BANDS
from s2sr.data.multires import native_scenes, wald
from s2sr.inference.baselines import guided_baseline, upsample
from s2sr.inference.multires_predict import super_resolve_bands
from s2sr.losses.metrics import Conventions, psnr_bands
from s2sr.models import load_model, pretrained_path
from s2sr.models.pretrained import pretrained_20m_path

CASES: tuple[tuple[int, float | None], ...] = ((2, None), (2, 0.30), (4, 0.30))
SIX = [TEN_BANDS.index(b) for b in BANDS_20M]


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


if __name__ == "__main__":
    main()
