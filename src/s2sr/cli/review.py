"""``s2sr review``: the local review page of a paired dataset."""

from __future__ import annotations

from pathlib import Path

import click

from s2sr.cli.common import handle_errors, setup_logging
from s2sr.core.errors import UsageError

# The library (numpy, the store, Starlette, uvicorn) is imported inside the command:
# ``s2sr --help`` should not wait for it.


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option("--cache", "cache", type=click.Path(path_type=Path), default=None,
              help="Also keep rendered patch images in this folder, for the next runs "
                   "[default: in memory only].")
@handle_errors
def review(dataset: Path, port: int, no_browser: bool, cache: Path | None) -> None:
    """Review DATASET's patches by hand in the browser (served on 127.0.0.1 only).

    Prints the page's URL, which holds this run's token, and opens it unless
    --no-browser. Decisions are saved at once, as by s2sr pairs decide. Ctrl-C stops.
    """
    setup_logging(False)
    try:
        from s2sr.review.server import ReviewServer
    except ImportError as err:
        raise UsageError(f"s2sr review needs the review extra ({err.name} is missing): "
                         "pip install 's2sr[review]'") from None
    server = ReviewServer(dataset, port, disk_cache=cache)
    click.echo(f"s2sr review: {len(server.catalog)} patches of {dataset}")
    click.echo(f"s2sr review: open {server.url}")
    click.echo("s2sr review: Ctrl-C stops the server", err=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    server.run()
    click.echo("s2sr review: stopped", err=True)
