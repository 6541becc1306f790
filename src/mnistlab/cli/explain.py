"""`mnistlab explain`: what a run's model saw in one picture, what it said, and why."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from mnistlab.cli.common import data_options, load_data, say
from mnistlab.errors import MnistlabError


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option(
    "--index", type=click.IntRange(min=0), help="Explain this data set image instead of a file."
)
@click.option(
    "--dataset-split",
    "split",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="Which split --index counts in.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The PNG to write (default: runs/explain-NAME-TIME.png).",
)
@data_options
def explain(
    run_dir: Path,
    image: Path | None,
    index: int | None,
    split: str,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Draw the 28x28 image the model saw, a saliency map of its answer (integrated
    gradients: which pixels pushed towards it) and every class's probability.

    IMAGE is a picture file of one digit (photo, scan, drawing), or give --index N.
    """
    if (index is None) == (image is None):
        raise MnistlabError(
            "give either an image file or --index N, not both" if image else "nothing to explain",
            "e.g. `mnistlab explain RUN_DIR photo.jpg` or `mnistlab explain RUN_DIR --index 0`",
        )
    name = image.stem if image is not None else f"{split}-{index}"
    out = out or Path("runs") / f"explain-{name}-{datetime.now():%Y%m%d-%H%M%S}.png"
    if out.suffix.lower() != ".png":
        raise MnistlabError(f"{out} does not end in .png", "name a .png file with --out")
    from mnistlab import explaining as ex
    from mnistlab.files import check_writable
    from mnistlab.reports import figures
    from mnistlab.runs import load

    check_writable(out)
    run = load(run_dir)
    label = None
    if index is not None:
        picture, label = ex.pick(load_data(run.dataset, data_dir, offline), index, split)
        explanation = ex.explain(run, picture)
        title = f"{split} image {index}, label {run.class_names[label]}"
    else:
        assert image is not None
        explanation = ex.explain(run, image)
        title = f"{image.name}: what the model saw"
    say(f"Model prediction: {explanation.class_name} ({explanation.probability:.1%})")
    if label is not None:
        say(f"Actual label: {run.class_names[label]}")
    order = explanation.probabilities.argsort()[::-1][:3]
    say(
        "Probabilities: "
        + ", ".join(f"{run.class_names[c]} {explanation.probabilities[c]:.1%}" for c in order)
    )
    change = explanation.probability - explanation.baseline_probability
    say(
        f"Saliency: integrated gradients from a black image over {explanation.steps} steps; "
        f"they add up to {explanation.saliency.sum():+.4f} of the {change:+.4f} change in "
        f"probability"
    )
    say(f"Wrote {figures.explanation(explanation, title, out)}")


COMMANDS = [explain]
