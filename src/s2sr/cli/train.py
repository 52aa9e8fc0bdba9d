"""``s2sr train``: run one experiment from a YAML file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.cli.options import quiet_opt
from s2sr.core.signals import exit_code, stop_name


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(path_type=Path),
              help="Run folder (new, or the one to resume).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--epoch-scale", default=1.0, show_default=True, type=click.FloatRange(min=0,
                                                                                    min_open=True),
              help="Multiply every stage's epochs (0.01 for a quick run; at least 1 epoch).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Resolve relative dataset paths against this folder instead of the "
                   "config's.")
@click.option("--runs-root", type=click.Path(path_type=Path), default=None,
              help="Resolve a relative init_from against this folder instead of the config's.")
@click.option("--devices", type=click.IntRange(1, 4096), default=None,
              help="Data-parallel processes (one per GPU, or CPU processes) instead of the "
                   "config's devices.")
@quiet_opt("No progress bars.")
@handle_errors
def train(config: Path, run_dir: Path, resume: bool, epoch_scale: float,
          data_root: Path | None, runs_root: Path | None, devices: int | None,
          quiet: bool) -> None:
    """Train the experiment in CONFIG (YAML) into a run folder.

    Data-parallel (Lightning's DDP: NCCL on GPUs, gloo on CPUs) with ``--devices N`` or
    ``devices: N`` in the config, or launched by
    ``torchrun --nproc_per_node N -m s2sr.cli.main train CONFIG -o RUN`` (several nodes:
    ``--nnodes``). Ctrl-C or SIGTERM stops after the current batch with a checkpoint;
    ``--resume`` continues from it.
    """
    setup_logging(quiet)
    from s2sr.training import load_config
    from s2sr.training import train as run_train

    cfg = load_config(config, data_root=data_root, runs_root=runs_root)
    if devices is not None:
        cfg.devices = devices
    try:
        final = run_train(cfg, run_dir, resume=resume, epoch_scale=epoch_scale,
                          progress=not quiet and sys.stderr.isatty())
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (timeout, job schedulers)
        what = stop_name(err)
        if (run_dir / "checkpoint.pt").is_file():
            click.echo(f"s2sr: interrupted by {what}; continue from the last checkpoint with: "
                       f"s2sr train {config} -o {run_dir} --resume", err=True)
        else:
            click.echo(f"s2sr: interrupted by {what} before the first checkpoint; nothing "
                       "was kept", err=True)
        sys.exit(exit_code(err))
    if not quiet:
        click.echo(f"wrote {final}", err=True)


@click.command()
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Folder for the data, the nine runs and the report.")
@click.option("--epoch-scale", default=1.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Multiply every stage's epochs (0.01: the whole table in minutes).")
@click.option("--shared", type=click.Path(path_type=Path), default=Path("../shared/data"),
              show_default=True, help="The real imagery the stand-in datasets are built from.")
@click.option("--configs", type=click.Path(path_type=Path), default=None,
              help="Folder of the nine YAML files [default: configs/table1].")
@click.option("--only", default=None, help="Comma-separated experiments to run (e.g. 1.1,1.2).")
@click.option("--prepare-only", is_flag=True, help="Only build the stand-in datasets.")
@quiet_opt(None)
@handle_errors
def table1(out: Path, epoch_scale: float, shared: Path, configs: Path | None,
           only: str | None, prepare_only: bool, quiet: bool) -> None:
    """Run the study's Table 1 experiments in dependency order and write the Table 2 report."""
    setup_logging(quiet)
    from s2sr.evaluation.table2 import table2_report
    from s2sr.training.table1 import run_table1, vgg_default

    vgg_default(shared)
    runs = run_table1(out, shared=shared, configs=configs, epoch_scale=epoch_scale,
                      only=only.split(",") if only else None, prepare_only=prepare_only,
                      progress=not quiet and sys.stderr.isatty())
    if runs is not None:
        report = table2_report(runs.weights, runs.datasets, out / "report",
                               epoch_scale=runs.epoch_scale)
        click.echo(f"report: {report}")
    else:
        click.echo(f"stand-in datasets: {out / 'data'}")
