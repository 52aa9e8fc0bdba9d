"""The built-in demo: super-resolve a real Sentinel-2 L2A patch that ships on PyPI.

The sample is a BigEarthNet patch (120 x 120 px of 10 m bands, CDLA-Permissive-1.0) from
the example archive inside the ``bigearthnet-common`` package, so it reaches any machine
through the package registry.
"""

from __future__ import annotations

import importlib.metadata
import tarfile
from dataclasses import dataclass
from pathlib import Path

from s2sr.bands import DEFAULT_BANDS
from s2sr.errors import UsageError
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import predict
from s2sr.io.outputs import check_output_dir
from s2sr.io.scene import open_scene
from s2sr.models import build_model, save_model
from s2sr.models.pretrained import WEIGHTS_DIR
from s2sr.visualize import side_by_side

SAMPLE_ARCHIVE = "bigearthnet_common/BigEarthNet-S2-Example.tar.bz2"
SAMPLE_PATCH = "S2A_MSIL2A_20170613T101031_87_48"


@dataclass(frozen=True)
class DemoResult:
    """Files the demo wrote."""

    sample: Path
    output: Path
    figure: Path
    weights: Path
    trained: bool


def sample_archive() -> Path:
    """Path of the BigEarthNet example archive inside the installed ``bigearthnet-common``."""
    try:
        dist = importlib.metadata.distribution("bigearthnet-common")
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(
            "the demo sample comes with the package bigearthnet-common: "
            "pip install 's2sr[demo]' (or make demo)"
        ) from None
    path = Path(str(dist.locate_file(SAMPLE_ARCHIVE)))
    if not path.exists():
        raise UsageError(f"{path} is missing from bigearthnet-common: reinstall it")
    return path


def extract_sample(dest: Path, patch: str = SAMPLE_PATCH) -> Path:
    """Extract one patch's per-band GeoTIFFs into ``dest``; returns the patch folder."""
    folder = dest / patch
    if folder.is_dir() and any(folder.glob("*_B02.tif")):
        return folder
    with tarfile.open(sample_archive()) as tar:
        members = [m for m in tar.getmembers() if f"/{patch}/" in m.name and m.isfile()]
        if not members:
            raise UsageError(f"patch {patch} is not in the BigEarthNet example archive")
        folder.mkdir(parents=True, exist_ok=True)
        for member in members:
            member.name = Path(member.name).name
            tar.extract(member, folder, filter="data")
    return folder


def run_demo(out_dir: Path, weights: Path | None = None, overwrite: bool = True) -> DemoResult:
    """Super-resolve the sample x2 and write the GeoTIFF and a side-by-side PNG."""
    check_output_dir(out_dir, overwrite=True)  # the demo refreshes its own folder
    if not out_dir.parent.exists():
        raise UsageError(f"folder {out_dir.parent} does not exist: create it first or choose "
                         "another -o")
    out_dir.mkdir(exist_ok=True)
    sample = extract_sample(out_dir / "sample")
    trained = True
    if weights is None:
        shipped = WEIGHTS_DIR / "s2sr_x2.safetensors"
        if shipped.exists():
            weights = shipped
        else:  # a source tree without the shipped model: show the pipeline, say so
            trained = False
            weights = out_dir / "untrained_edsr_x2.safetensors"
            save_model(build_model("edsr", bands=DEFAULT_BANDS, scale=2), weights)
    output = out_dir / f"{sample.name}_x2.tif"
    # 2017 product: processing baseline before 04.00, so no DN offset (said, not guessed)
    predict(sample, output, weights, overwrite=overwrite, dn_offset=0)
    with open_scene(sample, bands=DEFAULT_BANDS, dn_offset=0) as lr_scene:
        lr_refl = lr_scene.read_all()
    with open_scene(output, bands=DEFAULT_BANDS) as sr_scene:
        sr_refl = sr_scene.read_all()
    rgb = [2, 1, 0]
    figure = out_dir / f"{sample.name}_x2_side_by_side.png"
    side_by_side(
        [
            ("Sentinel-2 10 m (nearest)", upsample(lr_refl, 2, "nearest")[rgb]),
            ("bicubic x2", upsample(lr_refl, 2, "bicubic")[rgb]),
            ("s2sr x2" + ("" if trained else " (UNTRAINED)"), sr_refl[rgb]),
        ],
        figure,
    )
    return DemoResult(sample, output, figure, weights, trained)
