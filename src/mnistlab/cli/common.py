"""What every command shares: the error style, output, and the options for data and specs.

Errors the user can fix (`MnistlabError`, and Click's usage errors) print one line,
`error: <problem>. <fix>`, on stderr and exit with code 2; Ctrl-C exits with 130. Status goes
to stderr, results to stdout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mnistlab.backend import BACKENDS
from mnistlab.errors import MnistlabError
from mnistlab.spec import ACTIVATIONS, OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, Spec, preset

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = Callable[..., Any]
COMPLETE_VAR = "_MNISTLAB_COMPLETE"  # Click's name for it: _{PROG_NAME}_COMPLETE
DATASETS = ("mnist", "fashion-mnist")  # data.DATASETS, without importing the data package
MAX_GRID = 400  # reports.figures.MAX_GRID, without importing matplotlib


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class Group(click.Group):
    """Turns `MnistlabError` into one line on stderr and exit code 2, Click's usage errors into
    the same style (with the command's --help named), and Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistlabError as e:
            raise UserError(str(e)) from e
        except OSError as e:
            # What no check before the work can foresee (a disk that fills, a file system
            # that turns read-only, a file removed meanwhile): one line, not a traceback.
            where = f"{e.filename}: " if e.filename is not None else ""
            raise UserError(
                f"{where}{e.strerror or e} ({type(e).__name__}). check the path, its "
                "permissions and the free space, then run the command again"
            ) from e
        except click.UsageError as e:
            # Click's parser raises some errors ("Option '--dataset' requires an argument")
            # without the context of the command it was parsing: name that command, so the
            # message points at its --help rather than the group's.
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            if e.ctx is None and command is not None:
                e.ctx = click.Context(command, parent=ctx, info_name=ctx.invoked_subcommand)
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted: nothing half-written was left behind", err=True)
            sys.exit(130)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
            if isinstance(result, int) and result:  # ctx.exit(code) comes back as a value
                sys.exit(result)
            return result
        except click.exceptions.NoArgsIsHelpError as e:  # a group with no command: its help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            command = e.ctx.command_path if e.ctx else "mnistlab"
            message = " ".join(e.format_message().split()).rstrip(".")  # on one line
            stop = "" if message.endswith("?") else "."  # "Did you mean '--epochs'?"
            click.echo(f"error: {message}{stop} See `{command} --help`", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("\ninterrupted: nothing half-written was left behind", err=True)
            sys.exit(130)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


class Argument(click.Argument):
    """An argument of several values named in errors as one of them, 'DATASET', rather than
    by its usage form '[DATASET]...'."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return repr((self.metavar or "").strip("[].") or (self.name or "").upper())


def shipped_experiments() -> list[str]:
    """experiments.names(), for --help and completion, without importing the experiments
    package (0.15 s of CPU with NumPy: `mnistlab experiment --help` took 0.2 s, not 0.06 s);
    a test holds the two equal."""
    grids = resources.files("mnistlab") / "experiments" / "grids"
    return sorted(f.name.removesuffix(".toml") for f in grids.iterdir() if f.name.endswith(".toml"))


def complete_experiment(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion for an experiment: the shipped names that start with what is typed,
    and files, which the shell completes. Where the file item goes matters to Click's scripts:
    bash's drops the items before it, so it goes first (bash then offers the names, or files
    where no name matches); zsh's misreads the items after an empty one, so there it goes
    last (zsh then offers both)."""
    from click.shell_completion import CompletionItem

    names = [CompletionItem(n) for n in shipped_experiments() if n.startswith(incomplete)]
    files = CompletionItem(incomplete, type="file")
    if os.environ.get(COMPLETE_VAR, "").startswith("zsh"):
        return [*names, files]
    return [files, *names]


class ExperimentCommand(click.Command):
    """A command whose help ends with the names of the shipped experiments."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(f"Shipped experiments: {', '.join(shipped_experiments())}.")


def log(message: str) -> None:
    """A status line, on stderr."""
    click.echo(message, err=True)


def say(message: Any = "") -> None:
    """A result, on stdout: text, or a `rich` renderable on a terminal."""
    if isinstance(message, str):
        click.echo(message)
        return
    from rich.console import Console

    Console().print(message)


def heading(title: str) -> None:
    say()
    say(click.style(title, bold=True))
    say("-" * len(title))


def on_terminal() -> bool:
    return sys.stdout.isatty()


class Folder(click.Path):
    """The folder an --out names: refused when its name is that of a file mnistlab writes
    (`--out p.png`), which is what a command that writes one file would take."""

    FILE_SUFFIXES = (".png", ".ipynb", ".html", ".json", ".csv", ".md", ".keras")

    def __init__(self) -> None:
        super().__init__(path_type=Path, file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if Path(os.fsdecode(path)).suffix.lower() in self.FILE_SUFFIXES:
            where = f"`{ctx.command_path}`" if ctx else "this command"
            self.fail(
                f"{str(value)!r} is the name of a file, and --out is the folder that {where} "
                "writes its files into: name a folder",
                param,
                ctx,
            )
        return path


def out_folder(help: str) -> Callable[[F], F]:
    """--out for a command that writes several files: the folder they go into."""
    return click.option("--out", type=Folder(), help=help)


def data_options(f: F) -> F:
    f = click.option(
        "--offline", is_flag=True, help="Skip the official downloads (registry copies still used)."
    )(f)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="A folder with the four IDX files (gzipped or not), or a Keras mnist.npz.",
    )(f)


def dataset_option(f: F) -> F:
    return click.option(
        "--dataset", type=click.Choice(DATASETS), default="mnist", show_default=True
    )(f)


def backend_option(f: F) -> F:
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        help="Keras backend (default: $KERAS_BACKEND, else jax).",
    )(f)


def spec_options(f: F) -> F:
    """A flag for every field of `Spec`: the preset, then changes to it."""
    f = backend_option(f)
    options = [
        click.option(
            "--preset",
            "preset_name",
            type=click.Choice(list(PRESETS)),
            default="lab",
            show_default=True,
            help="Starting recipe.",
        ),
        click.option("--conv", help="Filters of each convolution (3x3, then 2x2 pooling): 32,64."),
        click.option("--hidden", help="Hidden layer sizes, comma-separated, e.g. 256,64."),
        click.option(
            "--activation", type=click.Choice(ACTIVATIONS), help="Of the hidden layers (relu)."
        ),
        click.option("--dropout", type=float, help="Dropout rate after each hidden layer, [0, 1)."),
        click.option(
            "--batchnorm/--no-batchnorm",
            default=None,
            help="Batch normalisation before each hidden activation.",
        ),
        click.option(
            "--shift",
            type=int,
            help="Move training images by up to this many pixels, anew each epoch.",
        ),
        click.option(
            "--rotate", type=float, help="Turn training images by up to this many degrees."
        ),
        click.option(
            "--elastic",
            type=float,
            help="Elastic distortion of training images, Simard et al.'s alpha (e.g. 34).",
        ),
        click.option(
            "--flip/--no-flip",
            default=None,
            help="Mirror half the training images, anew each epoch (for clothes, not digits).",
        ),
        click.option(
            "--pen", type=int, help="Thicken or thin training strokes by up to this many pixels."
        ),
        click.option(
            "--blur", type=float, help="Blur training images by a Gaussian of up to this sigma."
        ),
        click.option(
            "--varied",
            type=float,
            help="Share of training images that --pen, --blur, --rotate, --elastic change (1).",
        ),
        click.option("--epochs", type=int, help="Passes over the training set (lab: 5)."),
        click.option("--batch-size", type=int, help="Images per step (lab: 32)."),
        click.option(
            "--validation-split",
            type=float,
            help="Fraction of training data held out (lab: 0.2; 0 holds out nothing).",
        ),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="The optimiser (adam)."),
        click.option("--lr", "learning_rate", type=float, help="Learning rate (adam: 0.001)."),
        click.option(
            "--schedule",
            type=click.Choice(SCHEDULES),
            help="Learning rate: constant (lab), or cosine decay to 0.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            help="Arithmetic: float32 (lab), or bfloat16 on float32 weights (mixed precision).",
        ),
        click.option(
            "--test-shifts",
            type=int,
            help="Answer with the mean over each image and 8 copies moved by this many pixels.",
        ),
        click.option("--seed", type=int, help="Random seed (default 1)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_spec(preset_name: str, hidden: str | None, **overrides: Any) -> Spec:
    overrides["hidden"] = sizes("--hidden", hidden)
    overrides["conv"] = sizes("--conv", overrides.get("conv"))
    return preset(preset_name, **{k: v for k, v in overrides.items() if v is not None})


def sizes(option: str, text: str | None) -> tuple[int, ...] | None:
    """`--hidden 256,64` -> (256, 64); an empty string is an empty list."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise MnistlabError(
            f"{option} {text!r} is not a list of sizes", "write it as e.g. 256,64"
        ) from None


def default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"


def load_data(name: str, data_dir: Path | None, offline: bool) -> Any:
    """The data set, its fetching reported on stderr."""
    from mnistlab import data

    return data.load(name, data_dir=data_dir, offline=offline, log=log)
