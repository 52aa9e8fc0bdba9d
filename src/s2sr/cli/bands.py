"""``s2sr predict --bands all``: the options of the ten-band product, checked and passed
to :func:`s2sr.inference.multires_predict.predict_bands` (issue 22)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s2sr.core.bands import asks_all_bands
from s2sr.core.errors import UsageError


def wants_all_bands(bands: list[str] | None) -> bool:
    """Whether ``--bands`` asks for the ten-band product (``all``): see
    :func:`s2sr.core.bands.asks_all_bands`."""
    try:
        return asks_all_bands(bands)
    except ValueError as err:
        raise UsageError(str(err)) from None


def predict_all_bands(inputs: tuple[str, ...], output: Path, *, resolution: int | None,
                      input_20m: Path | None, weights_20m: Path | None,
                      weights: Path | None, tile: int | None, device: str, cog: bool,
                      overwrite: bool, dn_offset: float | None, threads: int | None,
                      progress: bool, many: dict[str, Any], **others: Any) -> Path:
    """Run ``predict --bands all`` on one scene (see
    :func:`~s2sr.inference.multires_predict.predict_ten_bands`).

    Args:
        many: the many-scene options (``--workers``...): refused when given.
        others: the 4-band predict's options, refused when not their defaults
            (:func:`~s2sr.inference.multires_predict.refuse_options`).
    """
    from s2sr.inference.multires_predict import predict_ten_bands

    given = [k for k, v in many.items() if v is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(f"{flag} does not apply to --bands all, which runs one scene: "
                         f"drop {flag}")
    if len(inputs) != 1:
        raise UsageError(f"--bands all takes one scene per run, got {len(inputs)} inputs: "
                         "run it once per scene")
    return predict_ten_bands(inputs[0], output, weights, resolution=resolution,
                             input_20m=input_20m, weights_20m=weights_20m, tile=tile,
                             device=device, cog=cog, overwrite=overwrite, progress=progress,
                             dn_offset=dn_offset, threads=threads, **others)


def bands_options(func: Any) -> Any:
    """``--resolution``, ``--input-20m``, ``--weights-20m``: the options of ``--bands all``."""
    import click

    options = [
        click.option("--resolution", type=int, default=None, metavar="10|5",
                     help="With --bands all: the output pixel size in metres, 10 (the six "
                          "20 m bands sharpened to 10 m, the 10 m bands unchanged) or 5 (all "
                          "ten bands) [default: 10]. The 60 m bands are not super-resolved."),
        click.option("--input-20m", type=click.Path(path_type=Path), default=None,
                     metavar="FILE",
                     help="With --bands all, when INPUT is a 10 m raster: the raster of the "
                          "six 20 m bands (B05 B06 B07 B8A B11 B12) at their native 20 m, on "
                          "a grid nesting in INPUT's (same CRS, origin on a 10 m pixel edge)."),
        click.option("--weights-20m", type=click.Path(path_type=Path), default=None,
                     help="With --bands all: the guided model of the 20 m bands [default: the "
                          "shipped s2sr_20m_x2, run twice at --resolution 5; a x4 guided "
                          "model runs once there]; --weights is then the 10 m bands' x2 "
                          "model at --resolution 5."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
