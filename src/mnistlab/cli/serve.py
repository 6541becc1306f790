"""`mnistlab serve`: a page to draw on and an HTTP API over a trained run."""

from __future__ import annotations

from pathlib import Path

import click

from mnistlab.cli.common import log


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Answer requests for this host name too (a reverse proxy's; *.example.com for its "
    "subdomains); repeatable. Requests for names other than these and this machine's get 400.",
)
@click.option(
    "--corrections",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the page's corrections in this folder (default: RUN_DIR/corrections, or beside "
    "the reading model), for `mnistlab finetune`.",
)
def serve(
    run_dir: Path | None,
    host: str,
    port: int,
    allow_hosts: tuple[str, ...],
    corrections: Path | None,
) -> None:
    """Serve a run (by default the reading model, trained once on first use): a page to draw
    a digit or a number on or open a photo, and an HTTP API (docs at /docs)."""
    from mnistlab import web

    names = web.host_names(host, allow_hosts)
    web.check_port(host, port)  # before a first use's training
    app = web.create_app(run_dir, allowed_hosts=names, log=log, corrections=corrections)
    web.check_port(host, port)
    what = run_dir if run_dir is not None else "the reading model"
    log(f"Serving {what} on http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    web.serve(app, host, port)


COMMANDS = [serve]
