"""``s2sr`` command line: thin click commands that call library functions.

Errors: a one-line message on stderr and exit code 2 for usage errors, 1 for data errors;
no traceback for anything a user can cause.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# GDAL's block cache defaults to 5 % of RAM; a fixed 128 MB keeps long runs over large
# scenes flat in memory (a user's own GDAL_CACHEMAX wins). Set before GDAL starts. The
# streamed engine's output blocks are sized to it (io.writer.row_block_size): a whole
# 10980^2 tile at x4 peaked at 1129 MB with 256 MB, 981 MB with this (benchmarks/README.md).
os.environ.setdefault("GDAL_CACHEMAX", "128")
# GDAL's default error handler (active in worker threads, where rasterio's is not) prints
# raw messages ("ERROR 1: ...") to stderr; s2sr reports every failure in one line itself.
os.environ.setdefault("CPL_LOG", os.devnull)

import click

from s2sr.cli.bands import bands_options, predict_all_bands, wants_all_bands
from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.evaluate import evaluate
from s2sr.cli.export import export
from s2sr.cli.options import (
    backend_opt,
    device_opt,
    many_options,
    output_opt,
    overwrite_opt,
    precision_opt,
    quiet_opt,
    threads_opt,
)
from s2sr.cli.pairs import pairs
from s2sr.cli.review import review
from s2sr.cli.train import table1, train
from s2sr.core.constants import ENGINES, SCALES
from s2sr.core.dask_logs import dask_logs_to_debug
from s2sr.core.errors import UsageError
from s2sr.core.heap import pin_mmap_threshold
from s2sr.core.safe_text import printable
from s2sr.core.version import __version__

# Library modules are imported inside the commands: they pull in torch, rasterio and numpy
# (seconds), which ``s2sr --help`` and shell completion should not wait for.


def _band_list(_ctx: click.Context, _param: click.Parameter, value: str | None
               ) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give band names separated by commas, e.g. B02,B03,B04,B08")
    return names


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="s2sr")
def cli() -> None:
    """Super-resolution of Sentinel-2 10 m bands (B02, B03, B04, B08) to 5 m and 2.5 m."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@output_opt("GeoTIFF to write; with several scenes, the folder to write one GeoTIFF per "
            "scene into (created if absent).")
@click.option("--weights", default=None, type=click.Path(path_type=Path),
              help="s2sr weights file (.safetensors, or a model from s2sr export); its "
                   "scale sets the output pixel size [default: the shipped model, RGB-only "
                   "when the scene has no B08].")
@click.option("--scale", type=click.Choice([str(s) for s in SCALES]), default=None,
              help="Shipped model to use: x2 (5 m, default) or x4 (2.5 m).")
@click.option("--bands", callback=_band_list, default=None,
              help="Names of a multi-band file's bands by position, e.g. B02,B03,B04,B08 "
                   "(only needed when the file has no band descriptions); or 'all': the ten "
                   "bands B02-B12 at 10 m or 5 m (see --resolution).")
@bands_options
@click.option("--tile", type=click.IntRange(min=8), default=None,
              help="Network input tile in pixels, at most 8192 and what memory allows "
                   "[default: 544 at x2 with PyTorch, else 288].")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Overlap of neighbouring tiles in pixels, a multiple of 4 [default: 32].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Tiles per forward pass [default: 1 on CPU, 8 on CUDA].")
@device_opt()
@backend_opt()
@threads_opt()
@precision_opt()
@click.option("--cog", is_flag=True, help="Write a Cloud Optimised GeoTIFF.")
@overwrite_opt()
@click.option("--consistency", is_flag=True,
              help="Correct the output so that, degraded back, it reproduces the input "
                   "(iterative back-projection).")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="How the network runs over the scene. stream: row bands, exact (equal "
                   "to a whole-scene forward, no overlap recomputed); PyTorch, fp32, "
                   "EDSR models. tiled: overlapping tiles, blended. auto: stream wherever it "
                   "runs; tiled on ONNX Runtime (--backend onnxruntime, ONNX exports, "
                   "int8), bf16, fp16, with --tile/--overlap/--batch-size, or for models that "
                   "cannot stream.")
@click.option("--adapt", type=click.Choice(["off", "on", "auto"]), default="off",
              show_default=True,
              help="Fine-tune a copy of the model on Wald pairs cut from each scene before "
                   "predicting (the scene degraded once more; ~1 min on 2 CPU cores at the "
                   "default steps). auto: only where it paid in the measurement "
                   "(docs/benchmarks.md).")
@click.option("--adapt-steps", type=click.IntRange(1, 5000), default=None,
              help="Fine-tuning steps of --adapt [default: 150].")
@click.option("--adapt-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of --adapt (patches, degradations): same seed, same weights.")
@click.option("--offset", "dn_offset", type=float, default=None,
              help="Additive DN offset of the input: -1000 for Sentinel-2 processing baseline "
                   ">= 04.00 (from 25 Jan 2022), 0 before [default: read from the product's "
                   "metadata, name or tags; a warning when it cannot be known].")
@many_options
@quiet_opt()
@handle_errors
def predict(inputs: tuple[str, ...], output: Path, weights: Path | None, scale: str | None,
            bands: list[str] | None,
            tile: int | None, overlap: int | None, batch_size: int | None, device: str,
            backend: str, threads: int | None, precision: str, cog: bool, overwrite: bool,
            consistency: bool, engine: str, adapt: str, adapt_steps: int | None, adapt_seed: int,
            dn_offset: float | None, workers: int | None,
            scheduler: str | None, name: str, report: Path | None, split_mpx: float | None,
            quiet: bool, resolution: int | None = None, input_20m: Path | None = None,
            weights_20m: Path | None = None) -> None:
    """Super-resolve Sentinel-2 scenes INPUT... into georeferenced GeoTIFFs.

    INPUT is a multi-band GeoTIFF/COG, a folder of per-band files (*_B02.tif, *_B03.jp2,
    ...), a Sentinel-2 L1C/L2A .SAFE folder or its .zip, or a STAC Item .json. Several
    scenes: several INPUTs, a folder of scenes, a glob ('scenes/*.tif'), @list.txt (one
    input per line), a STAC ItemCollection .json or an http(s) URL of one; -o is then a
    folder, and a re-run skips the outputs that are complete (see --overwrite).
    """
    setup_logging(quiet)
    if wants_all_bands(bands) or (resolution, input_20m, weights_20m) != (None,) * 3:
        if not wants_all_bands(bands):
            raise UsageError("--resolution, --input-20m and --weights-20m go with --bands all")
        done = predict_all_bands(
            inputs, output, resolution=resolution, input_20m=input_20m,
            weights_20m=weights_20m, weights=weights, tile=tile, device=device, cog=cog,
            overwrite=overwrite, dn_offset=dn_offset, threads=threads,
            progress=not quiet and sys.stderr.isatty(),
            many={"workers": workers, "scheduler": scheduler, "report": report,
                  "split_mpx": split_mpx}, scale=scale, overlap=overlap,
            batch_size=batch_size, consistency=consistency, backend=backend,
            precision=precision, adapt=adapt, adapt_steps=adapt_steps, engine=engine)
        if not quiet:
            click.echo(f"wrote {printable(done)}", err=True)
        return
    from s2sr.inference import predict as run_predict
    from s2sr.io.inputs import expand_inputs

    options = _predict_options(
        scale=int(scale) if scale else None, bands=bands, tile=tile, overlap=overlap,
        batch_size=batch_size, device=device, cog=cog, consistency=consistency,
        dn_offset=dn_offset, backend=backend, threads=threads, precision=precision,
        engine=engine, adapt=adapt, adapt_steps=adapt_steps,
        adapt_seed=adapt_seed)
    progress = not quiet and sys.stderr.isatty()
    from s2sr.batch.naming import check_name_pattern

    check_name_pattern(name)  # a bad pattern is a usage error, used or not
    scenes = None  # expanded once: a STAC URL is fetched once
    if len(inputs) == 1 and workers is None and scheduler is None:
        scenes = expand_inputs(inputs)
        single = len(scenes) == 1 and scenes[0].item is None
        if not single and output.suffix.lower() in (".tif", ".tiff"):
            raise UsageError(f"{inputs[0]} holds {len(scenes)} scenes: give -o a folder "
                             "to write one output per scene")
    else:
        single = False
    if single and scenes is not None:  # one scene: -o is the file to write, as ever
        result = run_predict(scenes[0].source, output, weights, overwrite=overwrite,
                             progress=progress, **options)
        if not quiet:
            click.echo(f"wrote {printable(result)}", err=True)
        return
    from s2sr.batch import predict_many

    run = predict_many(
        inputs, output, weights, name=name, workers=workers, scheduler=scheduler,
        overwrite=overwrite, progress=progress, report=report, split_mpx=split_mpx,
        scenes=scenes, **options)
    if not quiet or run.failed:  # scene names are untrusted: escaped, line by line
        click.echo("\n".join(printable(line) for line in run.summary().splitlines()),
                   err=True)
    if run.failed:
        sys.exit(1)

def _predict_options(engine: str, adapt: str, adapt_steps: int | None,
                     adapt_seed: int, **options: Any) -> dict[str, Any]:
    """The keyword options of predict and predict_many; --engine and --adapt only when not
    their defaults (earlier runs' completion records hold neither)."""
    if engine != "auto":
        options.update(engine=engine)
    if adapt != "off":
        options.update(adapt=adapt, adapt_steps=adapt_steps, adapt_seed=adapt_seed)
    return options



@cli.command()
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), default=Path("demo_output"),
              show_default=True, help="Folder for the sample, the result and the figure.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights to use instead of the built-in default.")
@handle_errors
def demo(output_dir: Path, weights: Path | None) -> None:
    """Super-resolve a real Sentinel-2 sample (shipped on PyPI) and draw a comparison."""
    setup_logging(False)
    from s2sr.cli.demo import run_demo
    from s2sr.models import file_sha256, get_spec, load_model

    result = run_demo(output_dir, weights)
    if not result.trained:
        click.echo("NOTE: the shipped model is missing from this installation; this demo uses "
                   "an UNTRAINED EDSR network, so its output shows the pipeline, not real "
                   "super-resolution.")
    spec = get_spec(load_model(result.weights))
    click.echo(f"sample (BigEarthNet L2A, 10 m): {result.sample}")
    click.echo(f"model: {result.weights.name} ({spec.name}, x{spec.scale}, bands "
               f"{', '.join(spec.bands)}, sha256 {file_sha256(result.weights)[:12]}; "
               "see MODEL_CARD.md)")
    click.echo(f"5 m GeoTIFF: {result.output}")
    click.echo(f"side-by-side PNG: {result.figure}")


cli.add_command(evaluate)
cli.add_command(export)
cli.add_command(pairs)
cli.add_command(review)
cli.add_command(train)
cli.add_command(table1)


def main() -> None:
    """Console-script entry point."""
    pin_mmap_threshold()  # large temporaries go back to the OS (see s2sr.core.heap)
    dask_logs_to_debug()  # no late Dask noise on stderr (see s2sr.core.dask_logs)
    cli()


if __name__ == "__main__":
    main()
