"""Options of pair building shared by ``s2sr pairs build`` (:mod:`s2sr.data.pair_builder`) and
``s2sr pairs degrade`` (:mod:`s2sr.data.wald`, :mod:`s2sr.data.wald20`): the build and the
degrade options, their range checks, and the deterministic id of a scene pair.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2sr.core.bands import DEFAULT_BANDS
from s2sr.core.checks import check_number
from s2sr.core.constants import SCALES
from s2sr.core.errors import UsageError
from s2sr.data.degrade import SENSOR_MTF
from s2sr.data.validation import Thresholds


@dataclass(frozen=True)
class BuildOptions:
    """Options of ``s2sr pairs build`` (defaults follow the study)."""

    scale: int = 2
    patch: int = 96
    stride: int | None = None
    band_map: str | None = None
    bands: tuple[str, ...] = DEFAULT_BANDS
    site: str = "default"
    split: str = "train"
    lr_date: str | None = None
    hr_date: str | None = None
    max_days: float = 45.0
    max_cloud: float = 0.10
    hr_mask: str | None = None
    lr_mtf: float = SENSOR_MTF["sentinel2"]
    cloud_buffer: int = 2
    thresholds: Thresholds = field(default_factory=Thresholds)
    kind: str | None = None
    #: degrade both sides by this factor after alignment (SE20>RE10-style pairs): the
    #: Sentinel-2 patch with the Sentinel-2 MTF, the reference patch with ``hr_mtf``.
    degrade_factor: int = 1
    hr_mtf: float = SENSOR_MTF["rapideye"]


@dataclass(frozen=True)
class DegradeOptions:
    """Options of ``s2sr pairs degrade``.

    Attributes:
        scale: input pixel / target pixel (2 or 4); implied by ``levels`` when given.
        levels: ``(input_m, target_m)``, e.g. ``(20, 10)``; default: target = native.
        resolution: native pixel size in metres (default: from a projected CRS; else the
            sensor's nominal size, 10 m for ``SE``, unless ``levels`` are given).
        sensor: short sensor code for the pair kind (``SE`` Sentinel-2, ``RE`` reference).
        cloud_test: run the brightness cloud test (needs reflectance-scaled DN; turn it
            off for raw-DN imagery such as the WorldView-2 crops).
        gain: reflectance per DN, overriding the scene's (for imagery in raw DN).
        mtf: Nyquist MTF of the simulated coarse sensor.
        bands: bands to read (names, by description); 10 m and 20 m bands together make
            the 20 m bands' Wald pairs (:mod:`s2sr.data.wald20`).
        input_20m: the raster or folder holding the 20 m bands, when the scene does not.
    """

    scale: int | None = None
    levels: tuple[float, float] | None = None
    resolution: float | None = None
    sensor: str = "SE"
    mtf: float = SENSOR_MTF["sentinel2"]
    patch: int = 96
    stride: int | None = None
    site: str = "default"
    split: str = "train"
    bands: tuple[str, ...] = DEFAULT_BANDS
    cloud_buffer: int = 2
    cloud_test: bool = True
    gain: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    input_20m: str | None = None


def pair_id_for(lr: str | Path, hr: str | Path, kind: str, opts: BuildOptions) -> str:
    """Deterministic id of a scene pair (re-adding it replaces it)."""
    stem = lambda p: re.sub(r"[^A-Za-z0-9]+", "-", Path(p).name.split(".")[0])[:40]  # noqa: E731
    key = f"{Path(lr).resolve()}|{Path(hr).resolve()}|{kind}|{opts.scale}|{opts.patch}|" \
          f"{opts.stride}|{opts.bands}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{stem(lr)}__{stem(hr)}__{digest}"


#: Largest input patch side (pixels): a larger one would need gigabytes per block.
MAX_PATCH = 1024


def check_patch_options(patch: Any, stride: Any, cloud_buffer: Any, *, min_patch: int) -> None:
    """Refuse a patch size, stride or cloud buffer out of range (pairs build and degrade)."""
    if not isinstance(patch, int) or not min_patch <= patch <= MAX_PATCH:
        raise UsageError(f"--patch must be a whole number from {min_patch} to {MAX_PATCH}, "
                         f"got {patch!r}")
    if stride is not None and (not isinstance(stride, int)
                               or not 1 <= stride <= 100 * MAX_PATCH):
        raise UsageError(f"--stride must be a whole number from 1 to {100 * MAX_PATCH}, got "
                         f"{stride!r}")
    if not isinstance(cloud_buffer, int) or not 0 <= cloud_buffer <= 64:
        raise UsageError(f"cloud buffer must be 0-64 pixels, got {cloud_buffer!r}")


def check_build_options(opts: BuildOptions) -> None:
    """Refuse out-of-range options before any work (shared by the CLI and the API)."""
    if opts.scale not in SCALES or isinstance(opts.scale, bool):
        raise UsageError(f"--scale must be 2 or 4, got {opts.scale!r}")
    if not isinstance(opts.degrade_factor, int) or not 1 <= opts.degrade_factor <= 8:
        raise UsageError(f"--degrade must be a whole number from 1 to 8, got "
                         f"{opts.degrade_factor!r}")
    check_patch_options(opts.patch, opts.stride, opts.cloud_buffer, min_patch=16)
    check_number("--max-days", opts.max_days, 0, math.inf, allow_inf=True)
    check_number("--max-cloud", opts.max_cloud, 0, 1)
    check_number("Sentinel-2 MTF", opts.lr_mtf, 0, 1, low_open=True)
    check_number("reference MTF", opts.hr_mtf, 0, 1, low_open=True)


def check_degrade_options(opts: DegradeOptions) -> None:
    """Refuse out-of-range options before any work (shared by the CLI and the API)."""
    if opts.scale is not None and (opts.scale not in SCALES or isinstance(opts.scale, bool)):
        raise UsageError(f"--scale must be 2 or 4, got {opts.scale!r}")
    if opts.resolution is not None:
        check_number("--resolution (metres)", opts.resolution, 0, 1e6, low_open=True)
    if opts.levels is not None:
        if len(opts.levels) != 2:
            raise UsageError(f"--levels {opts.levels!r} is not INPUT,TARGET in metres, e.g. "
                             "20,10")
        for v in opts.levels:
            check_number("--levels value (metres)", v, 0, 1e6, low_open=True)
        inp, target = opts.levels
        if inp <= target:
            raise UsageError(f"--levels {inp:g},{target:g}: the input pixel size (first) must "
                             "be larger than the target's (second), e.g. 20,10")
    check_number("--mtf", opts.mtf, 0, 1, low_open=True, high_open=True)
    if opts.gain is not None:
        check_number("--gain", opts.gain, 0, 1e6, low_open=True)
    check_patch_options(opts.patch, opts.stride, opts.cloud_buffer, min_patch=4)
