"""Options shared by the ``s2sr`` commands (as rasterio's ``rio/options.py``).

Each command takes ``-o/--output``, ``--overwrite``, ``-q/--quiet`` and ``--device`` from
here, so they are spelled, typed and defaulted the same everywhere; only the help text
(what the output *is*) and the parameter name differ per command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from s2sr.core.constants import BACKENDS, PRECISIONS

F = TypeVar("F", bound=Callable[..., Any])

#: ``--device`` values; ``cuda`` is refused with a message on a machine without a GPU.
DEVICES = ("auto", "cpu", "cuda")


def output_opt(help: str, dest: str = "output") -> Callable[[F], F]:
    """``-o/--output PATH``, required, passed to the command as ``dest``.

    Args:
        help: what the output is, e.g. ``"GeoTIFF to write."``.
        dest: the command's parameter name.
    """
    return click.option("-o", "--output", dest, required=True,
                        type=click.Path(path_type=Path), help=help)


def overwrite_opt(help: str = "Replace an existing output.") -> Callable[[F], F]:
    """``--overwrite`` flag (without it an existing output is refused)."""
    return click.option("--overwrite", is_flag=True, help=help)


def quiet_opt(help: str | None = "No progress bar or warnings.") -> Callable[[F], F]:
    """``-q/--quiet`` flag."""
    return click.option("-q", "--quiet", is_flag=True, help=help)


def device_opt() -> Callable[[F], F]:
    """``--device auto|cpu|cuda`` (default ``auto``: CUDA when there is a GPU)."""
    return click.option("--device", type=click.Choice(DEVICES), default="auto",
                        show_default=True)


def backend_opt() -> Callable[[F], F]:
    """``--backend auto|torch|onnxruntime`` (default ``auto``)."""
    return click.option(
        "--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
        help="What runs the network. auto: ONNX Runtime when installed (pip install "
             "'s2sr[onnx]') and on the CPU (on CUDA only with onnxruntime-gpu), else PyTorch.")


def threads_opt() -> Callable[[F], F]:
    """``--threads N``: intra-op threads of the network."""
    return click.option(
        "--threads", type=click.IntRange(1, 1024), default=None,
        help="Threads of the network [default: OMP_NUM_THREADS when set, else one per "
             "physical core].")


def precision_opt() -> Callable[[F], F]:
    """``--precision auto|fp32|bf16|fp16|int8`` (default ``auto``)."""
    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
        help="Arithmetic of the network. auto: fp32 on the CPU, fp16 on CUDA (a batch that "
             "overflows fp16 runs again at fp32). bf16: PyTorch autocast (CPU or CUDA); "
             "fp16: CUDA; "
             "int8 (experimental, outside the 0.1 dB accuracy bar, see docs/benchmarks.md): ONNX "
             "Runtime static quantisation on the CPU (calibrated on the packaged sample, "
             "cached in ~/.cache/s2sr).")


#: Default output name of a run of many scenes (s2sr.batch.many.DEFAULT_NAME, repeated so
#: that ``--help`` needs no library import).
DEFAULT_NAME = "{stem}_x{scale}.tif"

_many = [
    click.option("--workers", type=click.IntRange(1, 1024), default=None,
                 help="Spread the scenes over a local Dask cluster of N worker processes "
                      "(1 thread each; pip install 's2sr[dask]').", metavar="N"),
    click.option("--scheduler", default=None, metavar="ADDRESS",
                 help="Use an existing Dask cluster (e.g. tcp://host:8786); the workers must "
                      "see the inputs and the output folder."),
    click.option("--name", default=DEFAULT_NAME, show_default=True,
                 help="Output name per scene: {stem} (file, SAFE or STAC item name), "
                      "{scale}, {index}."),
    click.option("--report", type=click.Path(path_type=Path), default=None,
                 help="Where to write the JSON run report: a .json file that is no input or "
                      "output of the run; an existing one is replaced only with --overwrite, "
                      "or when it is an earlier run report [default: OUTPUT/s2sr_run.json]."),
    click.option("--split-mpx", type=click.FloatRange(min=0), default=None, metavar="MPX",
                 help="On a cluster, cut scenes larger than MPX input megapixels into "
                      "row-bands computed on several workers and written into one file "
                      "[default: never]."),
]


def many_options(func: F) -> F:
    """``--workers``, ``--scheduler``, ``--name``, ``--report``, ``--split-mpx``: the options
    of a run of many scenes."""
    for option in reversed(_many):
        func = option(func)
    return func
