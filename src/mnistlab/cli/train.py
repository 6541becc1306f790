"""`mnistlab summary|train|evaluate|predict|lab`: one model, from its spec to its answers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mnistlab.cli.common import (
    backend_option,
    data_options,
    dataset_option,
    default_out,
    heading,
    load_data,
    log,
    make_spec,
    on_terminal,
    out_folder,
    say,
    sizes,
    spec_options,
)
from mnistlab.errors import MnistlabError
from mnistlab.files import check_new, check_writable
from mnistlab.spec import Spec
from mnistlab.text import plural

if TYPE_CHECKING:
    from mnistlab.data import Dataset
    from mnistlab.runs import Run


@click.command()
@spec_options
def summary(preset_name: str, hidden: str | None, **overrides: Any) -> None:
    """Print the Keras summary of the model a spec builds."""
    from mnistlab import models

    say(models.summary_text(models.build(make_spec(preset_name, hidden, **overrides))))


@click.command()
@dataset_option
@spec_options
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A TOML file of spec fields to start from instead of a preset (mnistlab tune's "
    "best-spec.toml); the other options change it.",
)
@out_folder(
    "Run folder to write (default: runs/DATASET-PRESET-TIME). Training keeps a checkpoint "
    "beside it (.NAME.checkpoint): the same command run again after a stop goes on from there."
)
@data_options
def train(
    dataset: str,
    preset_name: str,
    hidden: str | None,
    spec_file: Path | None,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
    **overrides: Any,
) -> None:
    """Train, evaluate on the test set, and save a run folder."""
    if spec_file is None:
        spec = make_spec(preset_name, hidden, **overrides)
    else:
        source = click.get_current_context().get_parameter_source("preset_name")
        if source == click.core.ParameterSource.COMMANDLINE:
            raise MnistlabError(
                "give --spec or --preset, not both", "the spec file is the starting recipe"
            )
        changes = {**overrides, "hidden": sizes("--hidden", hidden)}
        changes["conv"] = sizes("--conv", changes.get("conv"))
        given = {k: v for k, v in changes.items() if v is not None}
        spec = Spec.from_file(spec_file).replace(**given)
        preset_name = spec_file.stem
    out = out or default_out(f"{dataset}-{preset_name}")
    check_new(out)
    run_training(spec, load_data(dataset, data_dir, offline), out)


def run_training(spec: Spec, data: Dataset, out: Path) -> Run:
    """Train with Keras's progress shown (a bar on a terminal, a line per epoch otherwise),
    from and with a checkpoint beside `out`, save the run, say how it did."""
    from mnistlab import backend

    name = backend.use(spec.backend)  # first: the modules below import Keras
    from mnistlab.checkpoints import CheckpointWarning
    from mnistlab.runs import checkpoint_path
    from mnistlab.training import loop_for, train

    layers = f"conv {list(spec.conv)}, " if spec.conv else ""
    loop = {"compiled": "each epoch one compiled program", "fit": "Keras's model.fit"}
    say(
        f"Training on {data.name} with {name} ({backend.device()}): {layers}"
        f"hidden {list(spec.hidden)}, dropout {spec.dropout}, {plural(spec.epochs, 'epoch')}, "
        f"batch {spec.batch_size}, seed {spec.seed}; {loop[loop_for(spec)]}"
    )
    checkpoint = checkpoint_path(out)
    try:
        with warnings.catch_warnings():  # resuming, or a checkpoint not used: said at once
            warnings.simplefilter("always", CheckpointWarning)
            warnings.showwarning = lambda message, *args, **kwargs: log(str(message))
            run = train(spec, data, verbose=1 if on_terminal() else 2, checkpoint=checkpoint)
    except KeyboardInterrupt:
        if checkpoint.exists():
            log(f"\n{checkpoint} keeps the epochs done: the same command with --out {out} goes on")
        raise
    run.save(out)  # and removes the checkpoint
    say(
        f"Test accuracy: {run.accuracy:.2%}  (loss {run.metrics['loss']:.4f}; "
        f"trained in {run.seconds['train']:.1f} s)"
    )
    if spec.test_shifts:
        held_out = run.validation.get("accuracy")
        say(
            (f"Validation accuracy: {held_out:.2%}; " if held_out is not None else "")
            + f"each image answered with its 8 copies moved by {spec.test_shifts} px"
        )
    say(f"Saved run to {out}")
    return run


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@data_options
def evaluate(run_dir: Path, as_json: bool, data_dir: Path | None, offline: bool) -> None:
    """Test loss, accuracy and per-class accuracy of a saved run."""
    from mnistlab.runs import load

    run = load(run_dir)
    metrics = run.evaluate(load_data(run.dataset, data_dir, offline))
    if as_json:
        shown = {k: v for k, v in metrics.items() if k != "confusion_matrix"}
        say(
            json.dumps(
                shown | {"dataset": run.dataset, "class_names": list(run.class_names)}, indent=2
            )
        )
        return
    print_metrics(run.dataset, run.class_names, metrics)


def print_metrics(dataset: str, names: tuple[str, ...], metrics: dict[str, Any]) -> None:
    say(f"Test set of {dataset}: {plural(metrics['count'], 'image')}")
    say(f"Test loss:     {metrics['loss']:.4f}")
    say(f"Test accuracy: {metrics['accuracy']:.2%}")
    say("Per class:")
    for name, accuracy in zip(names, metrics["per_class_accuracy"], strict=True):
        say(f"  {name:12} {accuracy:7.2%}")


@click.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--index",
    type=click.IntRange(min=0),
    help="Index of a test-set image (instead of image files).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--engine",
    type=click.Choice(("keras", "onnx")),
    default="keras",
    show_default=True,
    help="onnx: ONNX Runtime alone, no Keras; RUN_DIR is then a run with an ONNX export "
    "(`mnistlab export RUN_DIR --format onnx`), an export folder or a MODEL.onnx.",
)
@out_folder(
    "Also write PNGs into this folder: with --index N, prediction-N.png (the image beside its "
    "probabilities); with image files, NAME-28x28.png for each (the image the model saw)."
)
@data_options
def predict(
    run_dir: Path,
    images: tuple[Path, ...],
    index: int | None,
    as_json: bool,
    engine: str,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Read image files (photos, scans, drawings of one digit each), or one test image.

    For each file: the three most likely classes with their probabilities. A file that cannot
    be read gets its own error line and the others are still read; the exit code is then 2.
    """
    if (index is None) == (not images):
        raise MnistlabError(
            "give either image files or --index N, not both" if images else "nothing to predict",
            "e.g. `mnistlab predict RUN_DIR photo.jpg` or `mnistlab predict RUN_DIR --index 0`",
        )
    if out is not None:
        check_writable(out, folder=True)  # before the run and the data are loaded
    model: Any
    shifts = 0  # the exported network answers alone (README: exports)
    if engine == "onnx":
        from mnistlab.exports import engine as onnx_engine

        model, class_names, dataset = onnx_engine.load(run_dir)
    else:
        from mnistlab.runs import load

        run = load(run_dir)
        model, class_names, dataset = run.model, run.class_names, run.dataset
        shifts = run.spec.test_shifts
    if index is not None:
        figure = out / f"prediction-{index}.png" if out is not None else None
        data = load_data(dataset, data_dir, offline)
        predict_one(model, class_names, data, index, as_json, figure, shifts)
        return
    from mnistlab.prediction import answer_files

    answers = answer_files(model, class_names, images, out, shifts)
    failed = [a for a in answers if "error" in a]
    for answer in answers:
        if "error" in answer:
            log(f"error: {answer['file']}: {answer['error']}. {answer['fix']}")
        elif not as_json:
            tops = ", ".join(f"{t['class_name']} {t['probability']:.1%}" for t in answer["top"])
            say(f"{answer['file']}: {tops}")
    if as_json:
        say(json.dumps(answers, indent=2))
    elif out is not None and len(failed) < len(answers):
        shown = len(answers) - len(failed)
        say(f"Wrote the {plural(shown, 'image')} the model saw (28x28) into {out}")
    if failed:
        raise MnistlabError(
            f"{len(failed)} of {plural(len(images), 'file')} could not be read",
            "see the lines above",
        )


def predict_one(
    model: Any,
    names: tuple[str, ...],
    data: Dataset,
    index: int,
    as_json: bool,
    figure: Path | None = None,
    shifts: int = 0,
) -> None:
    """Test image `index`: the prediction, the label and the three most likely classes; with
    `figure`, the image beside its probabilities written there."""
    from mnistlab.prediction import answer_test_image

    answer = answer_test_image(model, names, data, index, shifts)
    if figure is not None:
        from mnistlab.reports import figures

        picture = data.test[0][index]
        answer["shown"] = str(figures.answer(picture, answer, names, figure))
    if as_json:
        say(json.dumps(answer, indent=2))
        return
    say(f"Model prediction: {answer['prediction_name']}")
    say(f"Actual label: {answer['label_name']}")
    tops = sorted(enumerate(answer["probabilities"]), key=lambda cp: -cp[1])[:3]
    say("Probabilities: " + ", ".join(f"{names[c]} {p:.1%}" for c, p in tops))
    if "shown" in answer:
        say(f"Wrote {answer['shown']}")


@click.command()
@dataset_option
@backend_option
@click.option("--epochs", type=int, help="Override the lab's 5 epochs (e.g. 1 for a quick look).")
@out_folder("Folder for everything the lab writes (default: runs/lab-DATASET-TIME).")
@data_options
def lab(
    dataset: str,
    backend: str | None,
    epochs: int | None,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """The whole lab: data, a first look, the model, training, evaluation, a prediction."""
    spec = make_spec("lab", None, backend=backend, epochs=epochs)
    out = out or default_out(f"lab-{dataset}")
    check_new(out)
    from mnistlab import models
    from mnistlab.cli.data import print_info
    from mnistlab.data import preprocess, summary
    from mnistlab.reports import figures

    heading(f"1. The data: {dataset}")
    data = load_data(dataset, data_dir, offline)
    print_info(dataset, summary(data))

    heading("2. A first look")
    (x_train, y_train), _ = data
    names = data.class_names
    first = figures.show_images(data, out / "first-image.png")
    samples = figures.grid(x_train[:25], [names[y] for y in y_train[:25]], out / "samples.png")
    say(f"The first training image is a {names[y_train[0]]}: {first}")
    say(f"The first 25 images: {samples}")
    x = preprocess(x_train[:1])
    say(
        f"After scaling, pixels run from {x.min():.1f} to {x.max():.1f}; "
        f"each image is flattened to {x.shape[1]} values"
    )

    heading("3. The model")
    say(models.summary_text(models.build(spec)))

    heading("4. Training")
    run = run_training(spec, data, out / "run")

    heading("5. Evaluation")
    print_metrics(dataset, run.class_names, run.metrics)

    heading("6. Prediction")
    predict_one(run.model, run.class_names, data, 0, False, out / "prediction.png")

    heading("Written")
    for path, what in (
        (first, "the first training image"),
        (samples, "25 training images"),
        (out / "run", "the run: model.keras, run.json, history.csv/.json"),
        (out / "prediction.png", "test image 0 with its probabilities"),
    ):
        say(f"{str(path):40} {what}")
    say(f"\nNext: mnistlab evaluate {out / 'run'}   |   mnistlab predict {out / 'run'} --index 1")


COMMANDS = [summary, train, evaluate, predict, lab]
