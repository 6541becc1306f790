"""`mnistlab finetune`: learn from the corrections people made on the page."""

from __future__ import annotations

from pathlib import Path

import click

from mnistlab.cli.common import Folder, data_options, load_data, log, say


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--corrections",
    type=click.Path(path_type=Path),
    required=True,
    help="The corrections folder (`mnistlab serve` keeps them in RUN_DIR/corrections).",
)
@click.option(
    "--out", type=Folder(), help="The new run folder (default: RUN_DIR-finetuned-TIME beside it)."
)
@click.option("--epochs", type=click.IntRange(1, 100), default=3, show_default=True, help="Passes.")
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.25,
    show_default=True,
    help="Share of the corrections held out, never trained on, to test on.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Which are held out, etc.")
@data_options
def finetune(
    run_dir: Path,
    corrections: Path,
    out: Path | None,
    epochs: int,
    holdout: float,
    seed: int,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Fine-tune a run on corrections mixed with its training data, into a new run folder,
    and print the accuracies before and after: on the test set, and on corrections held out
    from the fine-tuning."""
    from mnistlab import corrections as corr
    from mnistlab import finetuning as ft
    from mnistlab import runs
    from mnistlab.files import check_new

    meta = runs.read_meta(run_dir)  # the folder and the corrections checked before any work
    corr.read(corrections, len(meta["class_names"]))
    if out is not None:
        check_new(out)
    data = load_data(meta["dataset"], data_dir, offline)
    log(f"Fine-tuning {run_dir} on the corrections in {corrections} ...")
    result = ft.finetune(
        run_dir,
        corrections,
        out,
        epochs=epochs,
        holdout=holdout,
        seed=seed,
        data=data,
        progress=lambda line: log(f"  {line}"),
    )
    width = max(len(name) for name, _, _ in result.rows())
    say(f"{'accuracy':{width}}   before    after")
    for name, before, after in result.rows():
        say(f"{name:{width}}  {before:7.2%}  {after:7.2%}")
    say(f"Wrote {result.path} ({result.seconds:.1f} s)")


COMMANDS = [finetune]
