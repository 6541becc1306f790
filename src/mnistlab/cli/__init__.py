"""The `mnistlab` command: each command parses its input, makes one call to the library and
prints the result (flax's `main.py`, "intentionally kept short").

Keras reads its backend once, at import, and the library imports it only when a command needs
it, so `mnistlab --help` and `--dry-run` start in a fraction of a second.
"""

from __future__ import annotations

import click

from mnistlab.cli import bench, data, experiment, report, serve, train, tune
from mnistlab.cli.common import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mnistlab")
def cli() -> None:
    """The MNIST lab with Keras: data, training, evaluation, prediction, experiments.

    Shell completion: eval "$(_MNISTLAB_COMPLETE=bash_source mnistlab)" in ~/.bashrc
    (zsh_source for zsh, fish_source for fish).
    """


for module in (data, train, experiment, tune, report, serve, bench):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli.main(prog_name="mnistlab")
