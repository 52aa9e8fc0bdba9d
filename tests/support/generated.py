"""A generated dataset of many patches, for the review page's tests, benchmark and
screenshot: written quickly through the dataset store's own writer and commit (no scene
is read, aligned or cut), with plausible statistics that the automatic validation then
judges as it does for real pairs. A test fixture: it lives with the tests, not in the wheel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from affine import Affine

from s2sr.core.dn import DN_SCALE
from s2sr.data.manifest import patch_rows
from s2sr.data.store import PairStore
from s2sr.data.validation import Thresholds

BANDS = ("B02", "B03", "B04", "B08")
SITES = ("alps", "delta", "fields", "forest", "city")


def _imagery(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """``(n, 4, side, side)`` reflectance: smooth fields with edges, band-dependent."""
    coarse = rng.uniform(0, 1, (n, 1, side // 8 + 1, side // 8 + 1))
    fields = np.kron(coarse, np.ones((1, 1, 8, 8)))[:, :, :side, :side]
    fine = rng.normal(0, 1, (n, 1, side, side)).cumsum(axis=2).cumsum(axis=3)
    fine = (fine - fine.mean(axis=(2, 3), keepdims=True)) / (
        fine.std(axis=(2, 3), keepdims=True) + 1e-6)
    vegetation = rng.uniform(0, 1, (n, 1, 1, 1))
    base = np.array([0.05, 0.07, 0.06, 0.25])[None, :, None, None]
    gain = np.array([0.05, 0.06, 0.08, 0.15])[None, :, None, None]
    nir = np.array([0, 0, -0.03, 0.2])[None, :, None, None] * vegetation
    out = base + nir + gain * fields + 0.01 * fine
    return np.clip(out, 0.0, 0.8).astype(np.float32)


def generate_dataset(root: str | os.PathLike[str], patches: int = 20_000, *,
                     patch: int = 16, scale: int = 2, pairs: int = 20, seed: int = 0,
                     thresholds: Thresholds | None = None) -> PairStore:
    """Write a dataset of ``patches`` generated patches in ``pairs`` scene pairs.

    Args:
        root: the dataset folder (new, or a dataset to add pairs to).
        patches: how many patches in all.
        patch: input patch side (the target is ``patch * scale``).
        scale: 2 or 4.
        pairs: scene pairs (sites and splits cycle over them).
        seed: random seed (the same seed writes the same dataset).
        thresholds: automatic validation thresholds (default :class:`Thresholds`).

    Returns:
        The dataset's store.
    """
    rng = np.random.default_rng(seed)
    t = thresholds or Thresholds()
    store = PairStore(root, create=True)
    per = [patches // pairs + (k < patches % pairs) for k in range(pairs)]
    for k, n in enumerate(per):
        if n == 0:
            continue
        pid = f"gen{k:03d}"
        site, split = SITES[k % len(SITES)], ("train", "train", "val", "test")[k % 4]
        side = patch * scale
        hr = _imagery(rng, n, side)
        lr = hr.reshape(n, 4, patch, scale, patch, scale).mean(axis=(3, 5))
        cols = int(np.ceil(np.sqrt(n)))
        origins = [(patch * (i // cols), patch * (i % cols)) for i in range(n)]
        cloudy = rng.uniform(0, 1, n) < 0.05
        stats = {
            "nodata": np.where(rng.uniform(0, 1, n) < 0.03, rng.uniform(0, 0.5, n), 0.0),
            "cloud": np.where(cloudy, rng.uniform(0, 0.6, n), rng.uniform(0, 0.008, n)),
            "corr": np.clip(rng.normal(0.88, 0.08, n), -1, 1),
            "ssim": np.clip(rng.normal(0.75, 0.12, n), -1, 1),
            "shift": np.abs(rng.normal(0.15, 0.15, n)),
            "residual": np.abs(rng.normal(0.012, 0.006, n)),
        }
        lr_path, hr_path, lr_w, hr_w = store.new_arrays(pid, n, len(BANDS), patch, side)
        try:
            for i in range(n):
                lr_w[i] = np.rint(lr[i] * DN_SCALE)
                hr_w[i] = np.rint(hr[i] * DN_SCALE)
            lr_w.flush()
            hr_w.flush()
        except BaseException:
            lr_w.discard()
            hr_w.discard()
            raise
        grid = Affine(10.0, 0.0, 400_000.0 + 50_000 * k, 0.0, -10.0, 5_000_000.0)
        kind = f"SE10>RE{10 // scale}"
        rows = patch_rows(
            pid, origins, {key: v.tolist() for key, v in stats.items()}, t,
            common={"kind": kind, "site": site, "split": split, "lr_scene": f"{pid}_s2.tif",
                    "hr_scene": f"{pid}_ref.tif", "crs": "EPSG:32633"},
            patch=patch, scale=scale, lr_grid=grid, hr_grid=grid * Affine.scale(1 / scale))
        info = {"kind": kind, "site": site, "split": split, "scale": scale, "patch": patch,
                "bands": list(BANDS), "lr_array": Path(lr_path).name,
                "hr_array": Path(hr_path).name, "shift_px": [0.0, 0.0],
                "time_gap_days": float(k % 9), "crs": "EPSG:32633",
                "thresholds": t.as_dict(), "generated": True}
        store.commit_pair(pid, info, rows, (lr_w, hr_w))
    return store
