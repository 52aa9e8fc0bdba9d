"""``s2sr export``: a weights file as an ONNX model or a TorchScript program."""

from __future__ import annotations

from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.options import output_opt, overwrite_opt, quiet_opt

#: ``--format`` values (s2sr.models.serialize.FORMATS, repeated so that ``--help`` needs no
#: torch; a test keeps them equal).
FORMATS = ("onnx", "torchscript")


@click.command()
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="s2sr weights file (.safetensors) to export.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx (for ONNX Runtime: s2sr predict --backend onnxruntime) or "
                   "torchscript (for libtorch).")
@output_opt("Model file to write (e.g. model.onnx or model.pt).")
@click.option("--opset", type=click.IntRange(min=1), default=None,
              help="ONNX opset, 13 to 20 [default: 17].")
@click.option("--int8", is_flag=True,
              help="With --format onnx: the int8 model (ONNX Runtime static quantisation, "
                   "calibrated on the packaged Sentinel-2 sample), as predict --precision "
                   "int8 runs it.")
@overwrite_opt()
@quiet_opt("Print nothing on success.")
@handle_errors
def export(weights: Path, fmt: str, output: Path, opset: int | None, int8: bool,
           overwrite: bool, quiet: bool) -> None:
    """Export a model with its s2sr header (bands, scale, normalisation, source SHA-256),
    dynamic in batch and tile size, checked against PyTorch before it is written.

    The file works as --weights of s2sr predict.
    """
    setup_logging(quiet)
    from s2sr.inference.verified_export import export_model

    result = export_model(weights, output, fmt, opset=opset, overwrite=overwrite, int8=int8)
    if quiet:
        return
    for check in result.checks:
        if check.p99_abs_diff is None:
            click.echo(f"checked against PyTorch on {check.shape}: max abs difference "
                       f"{check.max_abs_diff:.2e} reflectance (limit {check.limits[0]:g})")
        else:
            click.echo(f"checked against PyTorch on the packaged sample {check.shape}: max "
                       f"abs difference {check.max_abs_diff:.2e}, 99th percentile "
                       f"{check.p99_abs_diff:.2e} reflectance (limits "
                       f"{' and '.join(f'{v:g}' for v in check.limits)})")
    click.echo(f"wrote {result.path} ({result.format}, from weights sha256 "
               f"{result.source_sha256[:12]})")
