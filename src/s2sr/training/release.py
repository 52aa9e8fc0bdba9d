"""Turn a finished run into a shipped model: ``python -m s2sr.training.release RUN DEST``.

Takes the run's best-on-validation weights (``best.safetensors``; the test scenes were
never seen) and writes them as float16 safetensors, half the size, for the package. A run
without them (none selected: a guided run whose every epoch failed its artefact gate, or a
run stopped before its first validation) is refused: the last epoch is never released in
their place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2sr.core.errors import S2SRError, UsageError, report_error
from s2sr.models import load_model, save_model


def release(run_dir: str | Path, dest: str | Path) -> Path:
    """Write ``run_dir``'s best weights to ``dest`` in float16.

    Raises:
        UsageError: ``run_dir`` holds no ``best.safetensors``.
    """
    source = Path(run_dir) / "best.safetensors"
    if not source.is_file():
        raise UsageError(f"{run_dir} has no best.safetensors (no epoch was selected; see its "
                         "metrics.csv): finish or rerun the training before releasing it")
    return save_model(load_model(source), dest, half=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``RUN DEST``; exit 2 on usage errors, 1 on bad weights, one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder")
    parser.add_argument("dest", type=Path, help="the float16 weights file to write")
    args = parser.parse_args(argv)
    try:
        print(release(args.run, args.dest))
    except S2SRError as err:
        return report_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
