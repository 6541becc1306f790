"""The `mnistlab` command: each command parses its input, makes one call to the library and
prints the result (flax's `main.py`, "intentionally kept short").

Keras reads its backend once, at import, and the library imports it only when a command needs
it, so `mnistlab --help` and `--dry-run` start in a fraction of a second.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

import click

from mnistlab import backend
from mnistlab.cli import (
    bench,
    check,
    data,
    experiment,
    explain,
    export,
    finetune,
    read,
    report,
    serve,
    train,
    tune,
)
from mnistlab.cli.common import Group
from mnistlab.version import __version__


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="mnistlab")
def cli() -> None:
    """The MNIST lab with Keras: data, training, evaluation, prediction, experiments.

    --out is where a command writes what it makes. For the commands that make several files
    (train, lab, predict, experiment, compare, report, export, finetune) it is a folder, and
    their files go into it. For those that make one file whose kind is their point, it is
    that file: `data show --out FILE.png`, `explain --out FILE.png` and `notebook --out
    NAME.ipynb` (the notebook's runs and figures go beside it, in NAME-files/).

    Shell completion of commands, options, presets, data sets and experiments: add the line
    for your shell to the file named after it.

    \b
      bash  eval "$(_MNISTLAB_COMPLETE=bash_source mnistlab)"   ~/.bashrc
      zsh   eval "$(_MNISTLAB_COMPLETE=zsh_source mnistlab)"    ~/.zshrc, after compinit
      fish  _MNISTLAB_COMPLETE=fish_source mnistlab | source    ~/.config/fish/config.fish
    """


for module in (
    data,
    train,
    read,
    explain,
    experiment,
    tune,
    report,
    check,
    serve,
    export,
    finetune,
    bench,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    backend.own_process()  # Keras imports in half the time; JAX compiles once per machine
    # `kill` (SIGTERM) stops the command as Ctrl-C does: what was being written is removed,
    # finished work is kept, and the exit code is 130, rather than temporary files left behind.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        cli.main(prog_name="mnistlab")
    except SystemExit as e:
        if e.code != 130:
            raise
        # Interrupted: what was being written is already cleaned up. XLA may still be
        # compiling in its own threads, and the C++ teardown of a normal exit under them
        # aborted the process once here (an LLVM error, exit -6, not 130): leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    finally:
        # At exit Python's last garbage collections walk every object that Keras and JAX made:
        # 0.65 s of `mnistlab train --epochs 3` here. Frozen, they are left for the exit to free.
        gc.freeze()


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
