"""``s2sr pairs``: build, degrade, inspect and decide paired datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.options import F, output_opt
from s2sr.core.bands import TEN_BANDS, normalize_band_name
from s2sr.core.constants import SCALES
from s2sr.core.errors import UsageError
from s2sr.core.signals import terminate_raises

# Library modules are imported inside the commands: they pull in torch, rasterio and numpy
# (seconds), which ``s2sr --help`` and shell completion should not wait for.


def _thresholds(values: tuple[str, ...]) -> object:
    from s2sr.data.validation import Thresholds

    items = {}
    for item in values:
        key, sep, val = item.partition("=")
        try:
            items[key.strip()] = float(val) if sep else float("nan")
        except ValueError:
            raise click.BadParameter(f"{item!r} is not KEY=NUMBER", param_hint="--threshold"
                                     ) from None
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=NUMBER", param_hint="--threshold")
    return Thresholds.from_dict(items)


def _labels(**labels: str | None) -> None:
    """Refuse labels a dataset cannot keep (not UTF-8, control characters, too long)."""
    from s2sr.data.manifest import MAX_LABEL, check_text

    for name, value in labels.items():
        if value is not None:
            check_text(value, f"--{name}", MAX_LABEL)


def _bands(value: str) -> tuple[str, ...]:
    if value.strip().lower() == "all":  # the 10 m and 20 m bands, in Sentinel-2 order
        return TEN_BANDS
    names = tuple(normalize_band_name(v) or "" for v in value.split(","))
    if not all(names):
        raise UsageError(f"--bands {value!r} holds a name that is not a Sentinel-2 band")
    return names


_common = [
    output_opt("Dataset folder (created if absent).", "dataset"),
    click.option("--patch", default=96, show_default=True, type=click.IntRange(16, 1024),
                 help="Input patch size in pixels (the target is patch x scale)."),
    click.option("--stride", default=None, type=click.IntRange(1, 102400),
                 help="Patch step in input pixels [default: the patch size]."),
    click.option("--site", default="default", show_default=True, help="Site name."),
    click.option("--split", type=click.Choice(["train", "val", "test"]), default="train",
                 show_default=True),
    click.option("--bands", default="B02,B03,B04,B08", show_default=True,
                 help="Sentinel-2 bands to pair; with degrade, 'all' (or 10 m and 20 m bands "
                      "together) makes the 20 m bands' Wald pairs, guided by the 10 m bands."),
    click.option("--threshold", multiple=True,
                 help="Validation threshold KEY=VALUE (max_nodata, max_cloud, max_shift, "
                      "min_corr, min_ssim, max_residual, mad_z); repeatable."),
]


def common(func: F) -> F:
    """Apply the options shared by build and degrade."""
    for option in reversed(_common):
        func = option(func)
    return func


@click.group()
def pairs() -> None:
    """Build and inspect paired datasets (Sentinel-2 + reference, or degraded pairs)."""


@pairs.command()
@click.option("--lr", "lr", default=None, type=click.Path(path_type=Path),
              help="Sentinel-2 scene (GeoTIFF, per-band folder, SAFE or .zip).")
@click.option("--hr", "hr", default=None, type=click.Path(path_type=Path),
              help="Reference scene (any CRS, resolution and dtype).")
@click.option("--pairs", "pairs_csv", default=None, type=click.Path(path_type=Path),
              help="CSV of many pairs instead of --lr/--hr: columns lr, hr and optionally "
                   "site, split, lr_date, hr_date (or dates as LR/HR); paths relative to the "
                   "CSV.")
@click.option("--workers", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="With --pairs: build the pairs on a local Dask cluster of N processes "
                   "(pip install 's2sr[dask]'); this process commits them.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="With --pairs: use an existing Dask cluster (e.g. tcp://host:8786).")
@common
@click.option("--scale", type=click.Choice([str(s) for s in SCALES]), default="2",
              show_default=True)
@click.option("--band-map", default=None,
              help="Reference bands: a preset (rapideye, planetscope4, planetscope8, spot, "
                   "rgbn) or B02=1,B03=2,B04=3,B08=5 [default: from band descriptions].")
@click.option("--lr-date", default=None, help="Sentinel-2 acquisition date (YYYY-MM-DD).")
@click.option("--hr-date", default=None, help="Reference acquisition date (YYYY-MM-DD).")
@click.option("--max-days", default=45.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest time gap accepted.")
@click.option("--max-cloud", default=0.10, show_default=True,
              type=click.FloatRange(0, 1), help="Largest cloud fraction over the overlap.")
@click.option("--hr-mask", default=None, type=click.Path(exists=True, path_type=Path),
              help="Cloud mask raster for the reference (non-zero = cloud).")
@click.option("--kind", default=None, help="Pair kind label [default: SE10>RE<10/scale>].")
@click.option("--degrade", "degrade_factor", default=1, show_default=True,
              type=click.IntRange(1, 8),
              help="Degrade both sides by this factor after alignment: 2 gives SE20>RE10 "
                   "pairs from a Sentinel-2 / 5 m reference pair.")
@handle_errors
def build(lr: Path | None, hr: Path | None, pairs_csv: Path | None, workers: int | None,
          scheduler: str | None, dataset: Path, patch: int, stride: int | None, site: str,
          split: str, bands: str, threshold: tuple[str, ...], scale: str,
          band_map: str | None, lr_date: str | None, hr_date: str | None, max_days: float,
          max_cloud: float, hr_mask: Path | None, kind: str | None,
          degrade_factor: int) -> None:
    """Add one Sentinel-2 / reference scene pair (or the pairs of a CSV) to DATASET."""
    setup_logging(False)
    from s2sr.data.options import BuildOptions
    from s2sr.data.pair_builder import build_pair

    if (pairs_csv is None) == (lr is None or hr is None) or \
            (pairs_csv is not None and (lr is not None or hr is not None)):
        raise UsageError("give either --lr and --hr (one pair) or --pairs CSV (many pairs)")
    if pairs_csv is None and (workers is not None or scheduler is not None):
        raise UsageError("--workers and --scheduler go with --pairs CSV")
    _labels(site=site, kind=kind)
    if bands.strip().lower() == "all":
        raise UsageError("--bands all (the 20 m bands with their 10 m guide) is for "
                         "s2sr pairs degrade; build pairs of bands on one grid, e.g. "
                         "--bands B02,B03,B04,B08")

    opts = BuildOptions(
        scale=int(scale), patch=patch, stride=stride, band_map=band_map, bands=_bands(bands),
        site=site, split=split, lr_date=lr_date, hr_date=hr_date, max_days=max_days,
        max_cloud=max_cloud, hr_mask=str(hr_mask) if hr_mask else None,
        thresholds=_thresholds(threshold), kind=kind,  # type: ignore[arg-type]
        degrade_factor=degrade_factor,
    )
    if pairs_csv is not None:
        from s2sr.batch.many_pairs import build_pairs

        with terminate_raises():
            results = build_pairs(pairs_csv, dataset, opts, workers=workers,
                                  scheduler=scheduler, progress=sys.stderr.isatty())
        for res in results:
            click.echo(json.dumps({"pair": res.input, "status": res.status,
                                   "reason": res.reason}))
        failed = [r for r in results if r.status == "failed"]
        click.echo(f"{len(results)} pair(s): {len(results) - len(failed)} done, "
                   f"{len(failed)} failed", err=True)
        if failed:
            sys.exit(1)
        return
    assert lr is not None and hr is not None  # checked above
    with terminate_raises():  # SIGTERM cleans up like Ctrl-C: no temporaries left
        info = build_pair(lr, hr, dataset, opts)
    _echo_pair(info)


@pairs.command()
@click.argument("scene", type=click.Path(path_type=Path))
@common
@click.option("--scale", type=click.Choice([str(s) for s in SCALES]), default=None,
              help="Input/target pixel ratio [default: 2, or from --levels].")
@click.option("--levels", default=None,
              help="INPUT,TARGET pixel sizes in metres, e.g. 20,10 [default: target = the "
                   "scene's own].")
@click.option("--resolution", type=float, default=None,
              help="The scene's pixel size in metres [default: from its projected CRS; "
                   "without one, 10 for --sensor SE (as predict assumes)].")
@click.option("--sensor", default="SE", show_default=True,
              help="Sensor code for the pair kind (SE = Sentinel-2, RE = reference).")
@click.option("--mtf", default=0.3, show_default=True, type=click.FloatRange(0.01, 0.99),
              help="Nyquist MTF of the simulated coarse sensor.")
@click.option("--no-cloud-test", is_flag=True,
              help="Skip the brightness cloud test (for imagery not in reflectance x 10000).")
@click.option("--gain", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Reflectance per DN, overriding the scene's (for imagery in raw DN).")
@click.option("--input-20m", "input_20m", default=None, type=click.Path(path_type=Path),
              help="The 20 m bands (GeoTIFF or per-band folder) when SCENE holds only the "
                   "10 m ones; their grid must fall on SCENE's.")
@handle_errors
def degrade(scene: Path, dataset: Path, patch: int, stride: int | None, site: str, split: str,
            bands: str, threshold: tuple[str, ...], scale: str | None, levels: str | None,
            resolution: float | None, sensor: str, mtf: float, no_cloud_test: bool,
            gain: float | None, input_20m: Path | None) -> None:
    """Add degraded (Wald-protocol) pairs made from one SCENE to DATASET."""
    setup_logging(False)
    from s2sr.data.options import DegradeOptions
    from s2sr.data.wald import degrade_scene

    _labels(site=site, sensor=sensor)
    lv = None
    if levels is not None:
        try:
            a, b = (float(v) for v in levels.split(","))
        except ValueError:
            raise UsageError(f"--levels {levels!r} is not INPUT,TARGET in metres, e.g. 20,10"
                             ) from None
        lv = (a, b)
    opts = DegradeOptions(
        scale=int(scale) if scale else None, levels=lv, resolution=resolution, sensor=sensor,
        mtf=mtf, patch=patch, stride=stride, site=site, split=split, bands=_bands(bands),
        cloud_test=not no_cloud_test, gain=gain,
        thresholds=_thresholds(threshold),  # type: ignore[arg-type]
        input_20m=str(input_20m) if input_20m is not None else None,
    )
    with terminate_raises():  # SIGTERM cleans up like Ctrl-C: no temporaries left
        info = degrade_scene(scene, dataset, opts)
    _echo_pair(info)


@pairs.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@handle_errors
def info(dataset: Path, as_json: bool) -> None:
    """Counts per site, split, kind, status and reason, and per scene pair."""
    from s2sr.data.store import PairStore

    summary = PairStore(dataset).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"{summary['dataset']}: {summary['patches']} patches")
    for key in ("by_site", "by_split", "by_kind", "by_status", "by_reason"):
        values = ", ".join(f"{k}: {v}" for k, v in sorted(summary[key].items())) or "-"
        click.echo(f"  {key[3:]:<7} {values}")
    for pid, p in summary["pairs"].items():
        click.echo(f"  pair {pid} ({p['kind']}, {p['site']}/{p['split']}): "
                   f"{p['patches']} patches, shift {p['shift_px'][0]:+.2f},"
                   f"{p['shift_px'][1]:+.2f} px, gap {p['time_gap_days']} d, "
                   f"{', '.join(f'{k} {v}' for k, v in sorted(p['by_status'].items()))}")


@pairs.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("patch_id")
@click.argument("decision", type=click.Choice(["accepted", "rejected", "auto"]))
@click.option("--note", default="", help="Why (kept with the decision): one line of "
              "text, at most 500 characters.")
@handle_errors
def decide(dataset: Path, patch_id: str, decision: str, note: str) -> None:
    """Record a person's DECISION on PATCH_ID (auto clears it); it survives rebuilding."""
    from s2sr.data.manifest import MAX_NOTE, check_text
    from s2sr.data.store import PairStore

    check_text(note, "--note", MAX_NOTE)  # before the dataset is touched
    PairStore(dataset).decide(patch_id, decision, note)


def _echo_pair(info: dict[str, object]) -> None:
    click.echo(json.dumps(info))
