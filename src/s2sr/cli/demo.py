"""The built-in demo: super-resolve a real Sentinel-2 L2A patch that ships on PyPI.

The sample is a BigEarthNet patch (120 x 120 px of 10 m bands, CDLA-Permissive-1.0) from
the example archive inside the ``bigearthnet-common`` package, so it reaches any machine
through the package registry (:mod:`s2sr.io.sample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s2sr.core.bands import DEFAULT_BANDS
from s2sr.core.errors import UsageError
from s2sr.inference.baselines import upsample
from s2sr.inference.predict import predict
from s2sr.io.outputs import check_output_dir
from s2sr.io.sample import extract_sample
from s2sr.io.scene import open_scene
from s2sr.io.visualize import side_by_side
from s2sr.models import build_model, save_model
from s2sr.models.pretrained import WEIGHTS_DIR

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """Files the demo wrote."""

    sample: Path
    output: Path
    figure: Path
    weights: Path
    trained: bool


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
