"""``s2sr predict --bands all``: the ten bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 at
10 m or 5 m, in one GeoTIFF/COG (issue 22).

:func:`predict_bands` opens the scene's 10 m and 20 m bands (:mod:`s2sr.io.multires`), the
guided model of the 20 m bands (``s2sr_20m_x2``, or ``weights_20m``; at 5 m it runs twice,
the cascade, or a x4 guided model once) and, at 5 m, the 10 m model (``s2sr_x2`` or
``weights``), and runs
:class:`~s2sr.inference.multires_engine.BandsSuperResolver` into the atomic writer of the
4-band predict. :func:`super_resolve_bands` is the same on in-memory arrays. The 60 m bands
(B01, B09, B10) are not super-resolved.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Final

import numpy as np
from rasterio.windows import Window
from torch import nn

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS, TEN_BANDS, asks_all_bands
from s2sr.core.dn import SUPPORTED_DTYPES, default_gain
from s2sr.core.errors import DataError, UsageError, WeightsError
from s2sr.core.files import exclusive_output, make_parents, remove_made
from s2sr.core.version import __version__
from s2sr.inference.backends import check_threads, torch_threads
from s2sr.inference.domain_guard import guard_tags
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.multires_engine import HR_INDEX, LR_INDEX, BandsSuperResolver
from s2sr.inference.stream import stream_refusal
from s2sr.io.base import GeoMeta
from s2sr.io.multires import MultiResScene, open_multires
from s2sr.io.outputs import check_output_file
from s2sr.io.processing_baseline import record_offsets
from s2sr.io.writer import RasterWriter, carried_tags, output_meta
from s2sr.models import file_sha256, get_spec
from s2sr.models.device import cuda_device_count, select_device
from s2sr.models.guided import guide_of
from s2sr.models.open import open_model
from s2sr.models.pretrained import pretrained_20m_path

#: Output pixel sizes of ``--bands all`` (metres) and the guided models' scales each takes
#: (at 5 m: x2 twice, the cascade and the default, or a x4 model once).
RESOLUTIONS: Final[dict[int, tuple[int, ...]]] = {10: (2,), 5: (2, 4)}
_SIXTY = "the 60 m bands (B01, B09, B10) are not super-resolved"


#: Options of the 4-band predict that ``--bands all`` does not take, and the values that
#: mean "not given" (``backend``/``precision``: what the ten-band engine runs anyway).
NOT_TAKEN: Final[dict[str, tuple[object, ...]]] = {
    "scale": (None,), "overlap": (None,), "batch_size": (None,), "consistency": (False,),
    "backend": ("auto", "torch"), "precision": ("auto", "fp32"), "adapt": ("off",),
    "adapt_steps": (None,), "engine": ("auto",),
}


def refuse_options(**given: object) -> None:
    """Refuse, in one line, an option of the 4-band predict that ``--bands all`` does not
    take (:data:`NOT_TAKEN`): it runs PyTorch at fp32, exact tiles, its own scales."""
    for name, value in given.items():
        if name in NOT_TAKEN and value not in NOT_TAKEN[name]:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} does not apply to --bands all (the ten bands run on "
                             "PyTorch at fp32 in exact tiles, at --resolution 10 or 5): "
                             f"drop {flag}")


def check_resolution(resolution: object) -> int:
    """``--resolution`` as 10 or 5, refused otherwise in one line."""
    for value in RESOLUTIONS:
        if resolution == value and not isinstance(resolution, bool):
            return value
    raise UsageError(f"--resolution {str(resolution)[:20]!r} is not offered: use 10 (the 20 m "
                     f"bands to 10 m) or 5 (all ten bands to 5 m); {_SIXTY}")


def open_guided(weights_20m: str | os.PathLike[str] | None, resolution: int
                ) -> tuple[nn.Module, Path]:
    """The guided model of the 20 m bands for ``resolution``: ``weights_20m`` or the
    shipped ``s2sr_20m_x2``, checked to fit (its bands, guide, scale: x2 at 10 m, x2 or x4
    at 5 m).

    Raises:
        UsageError: the shipped model is not installed, or the model does not fit.
        WeightsError: the file is not a weights file of a guided model.
    """
    scales = RESOLUTIONS[resolution]
    if weights_20m is None:
        try:
            weights_20m = pretrained_20m_path(2)
        except UsageError:
            raise UsageError("the shipped 20 m model s2sr_20m_x2 is not in this "
                             "installation: pass a guided model (guided-edsr) with "
                             "--weights-20m FILE") from None
    opened = open_model(weights_20m)
    model = opened.module
    guide = guide_of(opened.spec)
    if model is None or guide is None or opened.kind != "safetensors":
        raise WeightsError(f"{weights_20m} is not a guided model's weights file (it is "
                           f"{opened.spec.name}, {opened.kind}): pass a guided-edsr "
                           ".safetensors file with --weights-20m")
    spec = opened.spec
    if tuple(spec.bands) != BANDS_20M or guide != (DEFAULT_BANDS, 2):
        raise UsageError(f"{weights_20m} sharpens {', '.join(spec.bands)} guided by "
                         f"{', '.join(guide[0])} at guide scale {guide[1]}; --bands all needs "
                         f"{', '.join(BANDS_20M)} guided by {', '.join(DEFAULT_BANDS)} at 2")
    if spec.scale not in scales:
        raise UsageError(f"{weights_20m} is a x{spec.scale} guided model (20 m to "
                         f"{20 // spec.scale} m) but --resolution {resolution} needs x2: "
                         "pass a x2 guided model with --weights-20m, or --resolution 5")
    return model, opened.path


def open_hr_model(weights: str | os.PathLike[str] | None) -> tuple[nn.Module, Path]:
    """The x2 model of the 10 m bands for a 5 m output: ``weights`` or ``s2sr_x2``.

    Raises:
        UsageError: a model of other bands or scale, or one that is not an EDSR weights file
            (the tile's context is its receptive field).
    """
    opened = open_model(weights if weights is not None else "s2sr_x2")
    if opened.module is None:
        raise UsageError(f"{opened.path} is not an EDSR weights file of the 10 m bands: pass "
                         "one (e.g. the shipped s2sr_x2) with --weights, or drop --weights")
    check_hr_model(opened.module, str(opened.path))
    return opened.module, opened.path


def check_hr_model(model: nn.Module, where: str) -> None:
    """Refuse a 10 m model that is not an EDSR x2 of B02 B03 B04 B08 (in one line)."""
    spec = get_spec(model)
    if guide_of(spec) is not None or stream_refusal(model) is not None:
        raise UsageError(f"{where} is not an EDSR model of the 10 m bands: pass one (e.g. the "
                         "shipped s2sr_x2) with --weights, or drop --weights")
    if tuple(spec.bands) != DEFAULT_BANDS or spec.scale != 2:
        raise UsageError(f"{where} is a x{spec.scale} model of {', '.join(spec.bands)}; "
                         f"--resolution 5 needs a x2 model of {', '.join(DEFAULT_BANDS)}")


def ten(hr: tuple[float, ...], lr: tuple[float, ...]) -> tuple[float, ...]:
    """Per-band values of the 10 m bands and of the 20 m bands, in :data:`TEN_BANDS` order."""
    out = [0.0] * len(TEN_BANDS)
    for k, v in zip(HR_INDEX, hr, strict=True):
        out[k] = v
    for k, v in zip(LR_INDEX, lr, strict=True):
        out[k] = v
    return tuple(out)


def output_grid(scene: MultiResScene, resolution: int) -> GeoMeta:
    """The output's grid (the common extent at ``resolution``), ten bands and encoding."""
    hr, lr = scene.hr.meta, scene.lr.meta
    meta = replace(scene.hr_meta(), bands=TEN_BANDS, gains=ten(hr.gains, lr.gains),
                   offsets=ten(hr.offsets, lr.offsets),
                   nodata=hr.nodata if hr.nodata is not None else lr.nodata)
    return output_meta(meta, 2) if resolution == 5 else meta


def _tags(scene: MultiResScene, out: GeoMeta, resolution: int,
          models: list[tuple[nn.Module, Path]], input: str | os.PathLike[str],
          engine: BandsSuperResolver) -> dict[str, str]:
    """The output's dataset tags: the input's worth carrying, then what made it (the guided
    model first, then the 10 m model at 5 m)."""
    tags = {
        **carried_tags(scene.hr.meta.tags),
        "S2SR_MODEL": ",".join(get_spec(m).name for m, _ in models),
        "S2SR_MODEL_SHA256": ",".join(file_sha256(p) for _, p in models),
        "S2SR_MODEL_FILE": ",".join(p.name for _, p in models),
        "S2SR_BANDS": "all",
        "S2SR_RESOLUTION": f"{resolution} m",
        "S2SR_SOURCE": str(Path(input).resolve()),
        "S2SR_VERSION": __version__,
        "S2SR_BACKEND": "torch",
        "S2SR_PRECISION": "fp32",
    }
    if engine.strips is None:
        tags.update(S2SR_ENGINE="tiled", S2SR_TILE=f"{engine.tile} (20 m pixels)")
    else:
        tags.update(S2SR_ENGINE="stream",
                    S2SR_STRIPS=f"{len(engine.strips.cores)} of {engine.core} (20 m pixels)")
    source = scene.hr.meta.tags.get("S2_DN_OFFSET_SOURCE", "assumed")
    record_offsets(tags, TEN_BANDS, [o / g for o, g in zip(out.offsets, out.gains,
                                                            strict=True)], source)
    return tags


def predict_bands(
    input: str | os.PathLike[str], output: str | os.PathLike[str], *,
    resolution: int = 10, input_20m: str | os.PathLike[str] | None = None,
    weights_20m: str | os.PathLike[str] | None = None,
    weights: str | os.PathLike[str] | None = None, tile: int | None = None,
    device: str = "auto", cog: bool = False, overwrite: bool = False, progress: bool = False,
    dn_offset: float | None = None, threads: int | None = None,
) -> Path:
    """The ten bands of a scene at 10 m or 5 m in one georeferenced GeoTIFF/COG.

    Args:
        input: a SAFE folder or ``.zip``, a per-band folder with the 10 m and 20 m files, a
            STAC Item, or (with ``input_20m``) the 10 m bands.
        output: the GeoTIFF to write (atomically; refused if it exists, unless ``overwrite``).
        resolution: 10 (the 20 m bands to 10 m, the 10 m bands unchanged) or 5 (all ten).
        input_20m: the six 20 m bands (B05 B06 B07 B8A B11 B12) at their native 20 m, on a
            grid nesting in the 10 m grid (``--input-20m``).
        weights_20m: a guided model (``--weights-20m``); default ``s2sr_20m_x2`` (at 5 m
            run twice, the cascade; a x4 guided model runs once). weights: at 5 m, the x2
            model of the 10 m bands (default ``s2sr_x2``).
        tile: 20 m pixels per tile side, context included (default at 10 m: a core of 384
            20 m pixels and the models' context around it; at 5 m on the CPU: column strips
            streamed top to bottom, :mod:`~s2sr.inference.multires_strips`; a tile given
            there runs the tiled engine).
        device, cog, overwrite, progress, dn_offset, threads: as :func:`s2sr.predict`'s.

    Returns:
        The output path.
    """
    resolution = check_resolution(resolution)
    check_threads(threads)
    if weights is not None and resolution == 10:
        raise UsageError("--weights is the 10 m bands' model, used at --resolution 5 only (at "
                         "10 m they are copied): drop it, or pass the guided model with "
                         "--weights-20m")
    out_path = check_output_file(Path(output), overwrite,
                                 (input, input_20m, weights, weights_20m), create_parent=True)
    dev = select_device(device, cuda_device_count())
    guided, guided_path = open_guided(weights_20m, resolution)
    hr_model, hr_path = open_hr_model(weights) if resolution == 5 else (None, None)
    made: list[Path] = []
    with open_multires(input, input_20m, dn_offset) as scene, torch_threads(threads):
        hr, lr = scene.hr.meta, scene.lr.meta
        engine = BandsSuperResolver(
            guided, hr_model, scene.height, scene.width,
            DnEncoding(hr.dtype, hr.gains, hr.offsets, hr.nodata),
            DnEncoding(lr.dtype, lr.gains, lr.offsets, lr.nodata), tile, dev, progress)
        out = output_grid(scene, resolution)
        models = [(guided, guided_path)]
        if hr_model is not None and hr_path is not None:
            models.append((hr_model, hr_path))
        tags = _tags(scene, out, resolution, models, input, engine)
        plain = default_gain(out.dtype)
        try:
            made = make_parents(out_path)
            with exclusive_output(out_path), RasterWriter(
                    out_path, out, overwrite=overwrite, cog=cog, tags=tags,
                    blocksize=engine.block,
                    write_scales=any(g != plain for g in out.gains) or any(out.offsets),
            ) as writer:
                if engine.run(scene.read_hr, scene.read_lr, writer.write) == 0:
                    raise DataError(f"{input} holds no valid pixels where the 10 m and the "
                                    "20 m bands are both present: check the scene or its "
                                    "nodata value")
                writer.update_tags(**guard_tags(engine.guard_fallback,
                                                engine.height * engine.width))
                return writer.commit()
        except BaseException:
            remove_made(made)
            raise


def ten_bands_asked(bands: object, resolution: object, input_20m: object,
                    weights_20m: object) -> bool:
    """Whether a predict asks for the ten bands (``bands="all"``); the ten-band options
    without it are refused.

    Raises:
        UsageError: ``all`` beside band names, or a ten-band option without ``all``.
    """
    try:
        asked = asks_all_bands(bands)  # type: ignore[arg-type]
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not asked and (resolution, input_20m, weights_20m) != (None, None, None):
        raise UsageError("--resolution, --input-20m and --weights-20m (resolution, input_20m, "
                         "weights_20m) go with --bands all (bands='all'): add it")
    return asked


def predict_ten_bands(
    input: str | os.PathLike[str], output: str | os.PathLike[str],
    weights: str | os.PathLike[str] | None = None, *, resolution: int | None = None,
    input_20m: str | os.PathLike[str] | None = None,
    weights_20m: str | os.PathLike[str] | None = None, tile: int | None = None,
    device: str = "auto", cog: bool = False, overwrite: bool = False, progress: bool = False,
    dn_offset: float | None = None, threads: int | None = None, **others: object,
) -> Path:
    """:func:`s2sr.predict` with ``bands="all"``: :func:`predict_bands`, once the 4-band
    predict's options it does not take (``others``) are refused when given."""
    refuse_options(**others)
    return predict_bands(input, output, resolution=10 if resolution is None else resolution,
                         input_20m=input_20m, weights_20m=weights_20m, weights=weights,
                         tile=tile, device=device, cog=cog, overwrite=overwrite,
                         progress=progress, dn_offset=dn_offset, threads=threads)


class _Arrays:
    """Windows of in-memory 10 m and 20 m arrays, and the ten-band output they fill."""

    def __init__(self, hr: np.ndarray, lr: np.ndarray, scale: int) -> None:
        self.hr, self.lr = hr, lr
        self.out = np.empty((len(TEN_BANDS), lr.shape[1] * scale, lr.shape[2] * scale),
                            hr.dtype)

    @staticmethod
    def _cut(array: np.ndarray, window: Window) -> np.ndarray:
        r, c = int(window.row_off), int(window.col_off)
        return array[:, r:r + int(window.height), c:c + int(window.width)]

    def read_hr(self, window: Window) -> np.ndarray:
        return self._cut(self.hr, window)

    def read_lr(self, window: Window) -> np.ndarray:
        return self._cut(self.lr, window)

    def write(self, window: Window, data: np.ndarray) -> None:
        r, c = int(window.row_off), int(window.col_off)
        self.out[:, r:r + data.shape[1], c:c + data.shape[2]] = data


def super_resolve_bands(
    array: np.ndarray, array_20m: np.ndarray, model: nn.Module, *,
    model_10m: nn.Module | None = None, nodata: float | None = None,
    gain: float | None = None, offset: float = 0.0, tile: int | None = None,
    device: str = "auto", threads: int | None = None,
) -> np.ndarray:
    """The ten bands of in-memory arrays at the guided ``model``'s resolution.

    Args:
        array: ``(4, 2h, 2w)`` DN of B02 B03 B04 B08 (10 m).
        array_20m: ``(6, h, w)`` DN of B05 B06 B07 B8A B11 B12 (20 m), on the same extent.
        model: a guided model: x2 gives 10 m (the 10 m bands copied), or 5 m with
            ``model_10m`` (the cascade: the model twice); x4 gives 5 m in one pass.
        model_10m: the x2 model of the 10 m bands: asks for 5 m.
        nodata, gain, offset, device, threads: as :func:`s2sr.super_resolve`'s.
        tile: as :func:`predict_bands`'s.

    Returns:
        ``(10, 2h * k, 2w * k)`` DN of the input dtype in :data:`TEN_BANDS` order (k = 1
        at 10 m, 2 at 5 m).
    """
    spec = get_spec(model)
    if guide_of(spec) is None:
        raise UsageError(f"array_20m needs a guided model (guided-edsr), got {spec.name}")
    if spec.scale not in RESOLUTIONS[5]:
        raise UsageError(f"a x{spec.scale} guided model: pass a x2 (or x4) guided model")
    resolution = 5 if spec.scale == 4 or model_10m is not None else 10
    if resolution == 5 and model_10m is None:
        raise UsageError("a x4 guided model gives 5 m: pass the 10 m bands' x2 model as "
                         "model_10m")
    if model_10m is not None:
        check_hr_model(model_10m, "model_10m")
    if array.ndim != 3 or array_20m.ndim != 3 or array.shape[0] != len(DEFAULT_BANDS) or \
            array_20m.shape[0] != len(BANDS_20M) or \
            array.shape[1:] != (2 * array_20m.shape[1], 2 * array_20m.shape[2]):
        raise UsageError(f"arrays of shapes {array.shape} and {array_20m.shape}: pass (4, 2h, "
                         "2w) 10 m bands and (6, h, w) 20 m bands of one extent")
    if array.dtype != array_20m.dtype or array.dtype.name not in SUPPORTED_DTYPES:
        raise DataError(f"dtypes {array.dtype} and {array_20m.dtype}: pass both as uint16/int16 "
                        "DN or both as float32 reflectance")
    if array_20m.shape[1] == 0 or array_20m.shape[2] == 0:
        raise DataError("the arrays are empty: pass at least one 20 m pixel")
    check_threads(threads)
    g = gain if gain is not None else default_gain(array.dtype.name)
    hr_enc = DnEncoding(array.dtype.name, (g,) * 4, (offset,) * 4, nodata)
    lr_enc = DnEncoding(array.dtype.name, (g,) * 6, (offset,) * 6, nodata)
    engine = BandsSuperResolver(model, model_10m, array_20m.shape[1], array_20m.shape[2],
                                hr_enc, lr_enc, tile, select_device(device, cuda_device_count()))
    arrays = _Arrays(array, array_20m, engine.scale)
    with torch_threads(threads):
        if engine.run(arrays.read_hr, arrays.read_lr, arrays.write) == 0:
            raise DataError("the arrays hold no valid pixels (all nodata)")
    return arrays.out
