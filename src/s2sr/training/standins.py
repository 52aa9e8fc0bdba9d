"""Stand-in datasets for the study's experiments, built with ``s2sr pairs`` from the real
imagery in ``../shared/data`` (no RapidEye imagery exists here).

- ``se_wald``: Sentinel-2 Wald pairs, SE20>SE10 (x2) and SE40>SE10 (x4), from the real
  Sentinel-2 crops; whole scenes are held out for validation and test.
- ``re_wald``: the reference role is played by the real WorldView-2 multispectral crops
  (about 1 m), treated as if their pixels were RapidEye's 5 m, i.e. degraded by the
  study's factors relative to their own resolution: RE20>RE10 (x4 and x2 of native) and
  RE10>RE5 (x2 of native). Their raw DN are rescaled to reflectance-like values
  (``WV2_GAIN``).
- ``se_re``: SE10>RE5 and SE20>RE10 from *simulated* Sentinel-2 / reference pairs
  (:mod:`s2sr.data.simulate`): a real Sentinel-2 crop plays the 5 m truth; Sentinel-2 is it
  degraded x2; the reference is it shifted, re-gained and re-blurred.
"""

from __future__ import annotations

import logging
from pathlib import Path

from s2sr.core.bands import DEFAULT_BANDS
from s2sr.core.constants import SCALES
from s2sr.core.dn import from_scaled
from s2sr.core.errors import InputNotFoundError
from s2sr.data.options import BuildOptions, DegradeOptions
from s2sr.data.pair_builder import build_pair
from s2sr.data.simulate import Perturbation, make_pair
from s2sr.data.validation import Thresholds
from s2sr.data.wald import degrade_scene
from s2sr.io.raster import read_bands

log = logging.getLogger(__name__)

#: Sentinel-2 crops: (file, split). Whole scenes are held out.
S2_SCENES: list[tuple[str, str]] = [
    ("dsen2_T33UUB_20170527_L1C.tif", "train"),
    ("eolearn_slovenia_2_L1C.tif", "train"),
    ("eolearn_slovenia_4_L1C.tif", "train"),
    ("boadella_20200128_L2A.tif", "train"),
    ("eolearn_slovenia_3_L1C.tif", "val"),
    ("eurosat_forest_L1C.tif", "val"),
    ("boadella_20200113_L2A.tif", "test"),
    ("boston_roads_L2A.tif", "test"),
]
BIGEARTHNET_SPLITS = ("train", "train", "train", "train", "val", "test")
WV2: list[tuple[str, str]] = [("worldview2_rotterdam_ms1.tif", "train"),
                              ("worldview2_rotterdam_ms3.tif", "val"),
                              ("worldview2_rotterdam_ms2.tif", "test")]
#: The WorldView-2 crops carry raw DN (about 100-500); this brings them to Sentinel-2-like
#: reflectance (about 0.06-0.3) so that models move between the stand-in sensors.
WV2_GAIN = 6e-4
#: Simulated cross-sensor pairs: (truth crop, split).
SIM: list[tuple[str, str]] = [("dsen2_T33UUB_20170527_L1C.tif", "train"),
                              ("boadella_20200128_L2A.tif", "val"),
                              ("boadella_20200113_L2A.tif", "test")]


def _site(name: str) -> str:
    return name.split(".")[0]


def prepare(out: Path, shared: Path, patch: int = 16) -> dict[str, Path]:
    """Build the stand-in datasets under ``out`` (skips those already built)."""
    s2 = shared / "sentinel2"
    ref = shared / "reference"
    if not s2.is_dir():
        raise InputNotFoundError(f"{s2} not found: stand-ins are built from ../shared/data "
                                 "(pass --shared)")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"se_wald": out / "se_wald", "re_wald": out / "re_wald", "se_re": out / "se_re"}
    if not (paths["se_wald"] / "manifest.json").exists():
        scenes = [(s2 / f, split) for f, split in S2_SCENES]
        big = sorted((s2 / "bigearthnet").iterdir()) if (s2 / "bigearthnet").is_dir() else []
        scenes += list(zip(big, BIGEARTHNET_SPLITS, strict=False))
        for scene, split in scenes:
            for scale in SCALES:
                # x4 inputs are 3/4 of the x2 patch (12 px at 40 m -> 48 px targets)
                degrade_scene(scene, paths["se_wald"], DegradeOptions(
                    scale=scale, patch=patch if scale == 2 else patch * 3 // 4,
                    site=_site(scene.name), split=split, resolution=10.0))
    if not (paths["re_wald"] / "manifest.json").exists():
        for name, split in WV2:
            for levels in ((20.0, 10.0), (10.0, 5.0)):
                degrade_scene(ref / name, paths["re_wald"], DegradeOptions(
                    levels=levels, resolution=5.0, sensor="RE", patch=patch, site=_site(name),
                    split=split, cloud_test=False, gain=WV2_GAIN,
                    thresholds=Thresholds(max_nodata=0.05)))
    if not (paths["se_re"] / "manifest.json").exists():
        sim_dir = out / "simulated_scenes"
        sim_dir.mkdir(exist_ok=True)
        for k, (name, split) in enumerate(SIM):
            truth = from_scaled(read_bands(s2 / name, DEFAULT_BANDS))
            h, w = (truth.shape[1] // 2) * 2, (truth.shape[2] // 2) * 2
            truth = truth[:, :h, :w]
            lr_path = sim_dir / f"sim{k}_s2_20200601.tif"
            hr_path = sim_dir / f"sim{k}_ref_20200610.tif"
            pert = Perturbation(shift=(0.25 * (k + 1), -0.2), gain=(1.05, 0.95, 1.0, 0.9),
                                offset=(0.005, 0.0, -0.005, 0.01), blur_sigma=0.5, seed=k)
            make_pair(truth, 2, pert, lr_path, hr_path, hr_border=4)
            for factor, kind in ((1, "SE10>RE5"), (2, "SE20>RE10")):
                build_pair(lr_path, hr_path, paths["se_re"], BuildOptions(
                    patch=patch * 2 // factor, site=_site(name), split=split,
                    degrade_factor=factor, kind=kind, max_cloud=0.5))
    return paths
