"""Turn a finished run into a shipped model: ``python -m s2sr.training.release RUN DEST``.

Takes the run's best-on-validation weights (``best.safetensors``; the test scenes were
never seen) and writes them as float16 safetensors, half the size, for the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

from s2sr.models import load_model, save_model


def release(run_dir: str | Path, dest: str | Path) -> Path:
    """Write ``run_dir``'s best weights to ``dest`` in float16."""
    run = Path(run_dir)
    source = run / "best.safetensors"
    if not source.exists():
        source = run / "model.safetensors"
    return save_model(load_model(source), dest, half=True)


if __name__ == "__main__":
    print(release(sys.argv[1], sys.argv[2]))
