"""The `mnistlab` command: parse input, call the library, print the result.

Keras reads its backend once, at import, so modules that import Keras are imported inside the
commands, after `backend.use()`. Errors the user can fix print one line and exit with code 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mnistlab import backend
from mnistlab import data as datamod
from mnistlab.backend import BACKENDS
from mnistlab.errors import MnistlabError
from mnistlab.spec import PRESETS, SCHEDULES, Spec, preset

F = Callable[..., Any]
LONG_RUN_SECONDS = 60  # sweep runs expected to take longer show a line after each epoch


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class Group(click.Group):
    """Turns `MnistlabError` into one line on stderr and exit code 2; Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistlabError as e:
            raise UserError(str(e)) from e
        except KeyboardInterrupt:
            click.echo("\ninterrupted: nothing half-written was left behind", err=True)
            sys.exit(130)


def log(message: str) -> None:
    click.echo(message, err=True)


def say(message: str = "") -> None:
    click.echo(message)


def heading(title: str) -> None:
    say()
    say(click.style(title, bold=True))
    say("-" * len(title))


def data_options(f: F) -> F:
    f = click.option(
        "--offline", is_flag=True, help="Skip the official downloads (registry copies still used)."
    )(f)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="A folder with the four IDX files (gzipped or not), or a Keras mnist.npz.",
    )(f)


def spec_options(f: F) -> F:
    options = [
        click.option(
            "--preset",
            "preset_name",
            default="lab",
            show_default=True,
            help=f"Starting recipe: {', '.join(PRESETS)}.",
        ),
        click.option("--conv", help="Filters of each convolution (3x3, then 2x2 pooling): 32,64."),
        click.option("--hidden", help="Hidden layer sizes, comma-separated, e.g. 256,64."),
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
            "--flip/--no-flip",
            default=None,
            help="Mirror half the training images, anew each epoch (for clothes, not digits).",
        ),
        click.option(
            "--elastic",
            type=float,
            help="Elastic distortion of training images, Simard et al.'s alpha (e.g. 34).",
        ),
        click.option("--epochs", type=int, help="Passes over the training set (lab: 5)."),
        click.option("--batch-size", type=int, help="Images per step (lab: 32)."),
        click.option(
            "--validation-split", type=float, help="Fraction of training data held out (lab: 0.2)."
        ),
        click.option("--lr", "learning_rate", type=float, help="Learning rate (adam: 0.001)."),
        click.option(
            "--schedule",
            type=click.Choice(SCHEDULES),
            help="Learning rate: constant (lab), or cosine decay to 0.",
        ),
        click.option("--seed", type=int, help="Random seed (default 1)."),
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            help="Keras backend (default: $KERAS_BACKEND, else jax).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_spec(preset_name: str, hidden: str | None, **overrides: Any) -> Spec:
    spec = preset(preset_name)
    overrides["hidden"] = sizes("--hidden", hidden)
    overrides["conv"] = sizes("--conv", overrides.get("conv"))
    spec = spec.replace(**{k: v for k, v in overrides.items() if v is not None})
    backend.use(spec.backend)
    return spec


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


def load_data(name: str, data_dir: Path | None, offline: bool) -> datamod.Dataset:
    return datamod.load(name, data_dir=data_dir, offline=offline, log=log)


def check_index(index: int, count: int, what: str) -> None:
    if not 0 <= index < count:
        raise MnistlabError(
            f"index {index} is out of range: the {what} has {count:,} images",
            f"choose an index from 0 to {count - 1}",
        )


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mnistlab")
def cli() -> None:
    """The MNIST lab with Keras: data, training, evaluation and prediction."""


# ---------------------------------------------------------------------------------------------
# mnistlab data ...


@cli.group(cls=Group)
def data() -> None:
    """Fetch, check and look at the data sets."""


DATASET = click.argument("dataset", type=click.Choice(list(datamod.DATASETS)))


@data.command()
@DATASET
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@data_options
def info(dataset: str, as_json: bool, data_dir: Path | None, offline: bool) -> None:
    """The four array shapes, class counts, pixel range, source and checksums."""
    facts = datamod.summary(load_data(dataset, data_dir, offline))
    if as_json:
        say(json.dumps(facts, indent=2))
        return
    print_info(dataset, facts)


def print_info(dataset: str, facts: dict[str, Any]) -> None:
    shapes = facts["shapes"]
    say(f"Data set: {dataset}")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        say(f"{key + ' shape:':16}{tuple(shapes[key])}")
    low, high = facts["pixel_range"]
    say(
        f"Pixel values:   {facts['dtype']} from {low} to {high} "
        f"(mean / 255 = {facts['mean_pixel']})"
    )
    names = facts["class_names"]
    if names != [str(i) for i in range(len(names))]:
        say("Classes:        " + ", ".join(f"{i} {n}" for i, n in enumerate(names)))
    else:
        say(f"Classes:        the digits 0 to {len(names) - 1}")
    say(f"Train counts:   {facts['train_counts']}")
    say(f"Test counts:    {facts['test_counts']}")
    say(f"Source:         {facts['source']}")
    say(f"Checksums:      {facts['checksums']}")


@data.command()
@DATASET
@click.option("--index", type=int, default=0, show_default=True, help="Which image.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--grid", type=int, help="Save the first K images (from --index) in a grid.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The PNG file to write.",
)
@data_options
def show(
    dataset: str,
    index: int,
    split: str,
    grid: int | None,
    out: Path,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Save an image with its label in the title (or a grid of them) as PNG."""
    from mnistlab import report

    loaded = load_data(dataset, data_dir, offline)
    images, labels = loaded.train if split == "train" else loaded.test
    check_index(index, len(images), f"{split} set")
    names = loaded.class_names
    if grid is None:
        report.image(images[index], f"label {names[labels[index]]}", out)
    else:
        if grid < 1:
            raise MnistlabError(f"--grid {grid} is out of range", "ask for at least 1 image")
        chosen = slice(index, min(index + grid, len(images)))
        titles = [f"{i}: {names[y]}" for i, y in enumerate(labels[chosen], start=index)]
        report.grid(images[chosen], titles, out)
    say(f"Wrote {out}")


@data.command()
@click.argument("datasets", nargs=-1, type=click.Choice(list(datamod.DATASETS)))
def verify(datasets: tuple[str, ...]) -> None:
    """Re-check the cached files against their published SHA-256 (all data sets by default)."""
    bad = 0
    say(f"Cache: {datamod.cache_dir()}")
    for status in datamod.verify_cache(datasets or tuple(datamod.DATASETS)):
        bad += status.status == "bad"
        say(
            f"{status.status:8}{status.dataset}/{status.file}"
            + (f"  {status.detail}" if status.status == "bad" else "")
        )
    if bad:
        raise MnistlabError(
            f"{bad} cached file(s) failed their check",
            "run `mnistlab data info DATASET`: it moves them aside and fetches them again",
        )


# ---------------------------------------------------------------------------------------------
# mnistlab summary / train / evaluate / predict / lab


@cli.command()
@spec_options
def summary(preset_name: str, hidden: str | None, **overrides: Any) -> None:
    """Print the Keras summary of the model a spec builds."""
    spec = make_spec(preset_name, hidden, **overrides)
    from mnistlab import models

    say(models.summary_text(models.build(spec)))


@cli.command()
@click.option(
    "--dataset", type=click.Choice(list(datamod.DATASETS)), default="mnist", show_default=True
)
@spec_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder to write (default: runs/DATASET-PRESET-TIME).",
)
@data_options
def train(
    dataset: str,
    preset_name: str,
    hidden: str | None,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
    **overrides: Any,
) -> None:
    """Train, evaluate on the test set, and save a run folder."""
    spec = make_spec(preset_name, hidden, **overrides)
    out = out or default_out(f"{dataset}-{preset_name}")
    run_training(spec, dataset, load_data(dataset, data_dir, offline), out)


def run_training(spec: Spec, dataset: str, loaded: datamod.Dataset, out: Path) -> dict[str, Any]:
    from mnistlab import runs
    from mnistlab.train import train_and_save

    runs.check_new(out)
    say(
        f"Training on {dataset} with {spec.backend} ({backend.device()}): "
        f"hidden {list(spec.hidden)}, dropout {spec.dropout}, {spec.epochs} epochs, "
        f"batch {spec.batch_size}, seed {spec.seed}"
    )
    metrics = train_and_save(spec, loaded, dataset, out, verbose=1 if sys.stdout.isatty() else 2)
    seconds = runs.read_meta(out)["seconds"]["train"]
    say(
        f"Test accuracy: {metrics['accuracy']:.2%}  (loss {metrics['loss']:.4f}; "
        f"trained in {seconds:.1f} s)"
    )
    say(f"Saved run to {out}")
    return metrics


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@data_options
def evaluate_command(run_dir: Path, as_json: bool, data_dir: Path | None, offline: bool) -> None:
    """Test loss, accuracy and per-class accuracy of a saved run."""
    backend.use()
    from mnistlab import runs
    from mnistlab.evaluate import evaluate

    run = runs.load(run_dir)
    loaded = load_data(run.dataset, data_dir, offline)
    metrics = evaluate(run.model, *loaded.test)
    if as_json:
        say(
            json.dumps(
                {k: v for k, v in metrics.items() if k != "confusion_matrix"}
                | {"dataset": run.dataset, "class_names": run.class_names},
                indent=2,
            )
        )
        return
    print_metrics(run.dataset, run.class_names, metrics)


def print_metrics(dataset: str, names: list[str], metrics: dict[str, Any]) -> None:
    say(f"Test set of {dataset}: {metrics['count']:,} images")
    say(f"Test loss:     {metrics['loss']:.4f}")
    say(f"Test accuracy: {metrics['accuracy']:.2%}")
    say("Per class:")
    for name, accuracy in zip(names, metrics["per_class_accuracy"], strict=True):
        say(f"  {name:12} {accuracy:7.2%}")


@cli.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--index", type=int, help="Index of a test-set image (instead of image files).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --index: also save the image and its probabilities as PNG.",
)
@click.option(
    "--show",
    type=click.Path(path_type=Path, file_okay=False),
    help="With image files: save the 28x28 image the model saw for each, as PNG, in this folder.",
)
@data_options
def predict_command(
    run_dir: Path,
    images: tuple[Path, ...],
    index: int | None,
    as_json: bool,
    out: Path | None,
    show: Path | None,
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
    if images and out is not None:
        raise MnistlabError("--out goes with --index", "use --show DIR with image files")
    if index is not None and show is not None:
        raise MnistlabError("--show goes with image files", "use --out FILE.png with --index")
    backend.use()
    from mnistlab import runs

    run = runs.load(run_dir)
    if index is not None:
        loaded = load_data(run.dataset, data_dir, offline)
        predict_one(run, loaded, index, as_json, out)
        return
    failed = predict_files(run, images, as_json, show)
    if failed:
        raise MnistlabError(
            f"{failed} of {len(images)} file(s) could not be read", "see the lines above"
        )


def predict_files(run: Any, images: tuple[Path, ...], as_json: bool, show: Path | None) -> int:
    """Predict each file, print a line (or a JSON list) for each; return how many failed."""
    from mnistlab import predict as pr

    answers: list[dict[str, Any]] = []
    failed = 0
    written: set[str] = set()
    for path in images:
        try:
            prepared = pr.prepare_bytes(pr.read_file(path))
        except MnistlabError as e:
            failed += 1
            answers.append({"file": str(path), "error": e.problem, "fix": e.fix})
            log(f"error: {path}: {e}")
            continue
        probabilities = pr.classify(run.model, prepared.pixels[None])[0]
        answer = {"file": str(path)} | pr.describe(probabilities, run.class_names)
        answer["inverted"] = prepared.inverted
        if show is not None:
            name = unique_name(f"{path.stem}-28x28", written)
            datamod.atomic_write(show / f"{name}.png", pr.png(prepared.pixels))
            answer["shown"] = str(show / f"{name}.png")
        answers.append(answer)
        if not as_json:
            say(
                f"{path}: "
                + ", ".join(f"{t['class_name']} {t['probability']:.1%}" for t in answer["top"])
            )
    if as_json:
        say(json.dumps(answers, indent=2))
    return failed


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3` ... if two input files share a name."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def predict_one(
    run: Any, loaded: datamod.Dataset, index: int, as_json: bool, out: Path | None
) -> None:
    from mnistlab import report
    from mnistlab.predict import predict

    images, labels = loaded.test
    check_index(index, len(images), "test set")
    names = run.class_names
    probabilities = predict(run.model, images[index : index + 1])[0]
    guess, actual = int(probabilities.argmax()), int(labels[index])
    if out is not None:
        title = f"predicted {names[guess]}, actual {names[actual]}"
        report.probabilities(images[index], probabilities, names, title, out)
    if as_json:
        say(
            json.dumps(
                {
                    "index": index,
                    "prediction": guess,
                    "prediction_name": names[guess],
                    "label": actual,
                    "label_name": names[actual],
                    "probabilities": [round(float(p), 6) for p in probabilities],
                },
                indent=2,
            )
        )
        return
    say(f"Model prediction: {names[guess]}")
    say(f"Actual label: {names[actual]}")
    say(
        "Probabilities: "
        + ", ".join(
            f"{names[c]} {p:.1%}"
            for c, p in sorted(enumerate(probabilities), key=lambda cp: -cp[1])[:3]
        )
    )
    if out is not None:
        say(f"Wrote {out}")


@cli.command("serve")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve_command(run_dir: Path, host: str, port: int) -> None:
    """Serve a run: a page to draw on or open a photo, and an HTTP API (docs at /docs)."""
    backend.use()
    from mnistlab import serve

    app = serve.create_app(run_dir)
    serve.check_port(host, port)
    log(f"Serving {run_dir} on http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    serve.serve(app, host, port)


@cli.command()
@click.option(
    "--dataset", type=click.Choice(list(datamod.DATASETS)), default="mnist", show_default=True
)
@click.option(
    "--backend",
    "backend_name",
    type=click.Choice(BACKENDS),
    help="Keras backend (default: $KERAS_BACKEND, else jax).",
)
@click.option("--epochs", type=int, help="Override the lab's 5 epochs (e.g. 1 for a quick look).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for everything the lab writes (default: runs/lab-DATASET-TIME).",
)
@data_options
def lab(
    dataset: str,
    backend_name: str | None,
    epochs: int | None,
    out: Path | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """The whole lab: data, a first look, the model, training, evaluation, a prediction."""
    spec = make_spec("lab", None, backend=backend_name, epochs=epochs)
    out = out or default_out(f"lab-{dataset}")
    from mnistlab import models, report, runs

    runs.check_new(out)
    heading(f"1. The data: {dataset}")
    loaded = load_data(dataset, data_dir, offline)
    print_info(dataset, datamod.summary(loaded))

    heading("2. A first look")
    (x_train, y_train), _ = loaded.train, loaded.test
    names = loaded.class_names
    first = report.image(x_train[0], f"label {names[y_train[0]]}", out / "first-image.png")
    samples = report.grid(x_train[:25], [names[y] for y in y_train[:25]], out / "samples.png")
    say(f"The first training image is a {names[y_train[0]]}: {first}")
    say(f"The first 25 images: {samples}")
    x = datamod.preprocess(x_train[:1])
    say(
        f"After scaling, pixels run from {x.min():.1f} to {x.max():.1f}; "
        f"each image is flattened to {x.shape[1]} values"
    )

    heading("3. The model")
    say(models.summary_text(models.build(spec)))

    heading("4. Training")
    run_training(spec, dataset, loaded, out / "run")

    heading("5. Evaluation")
    run = runs.load(out / "run")
    print_metrics(dataset, run.class_names, run.meta["metrics"])

    heading("6. Prediction")
    predict_one(run, loaded, 0, False, out / "prediction.png")

    heading("Written")
    for path, what in (
        (first, "the first training image"),
        (samples, "25 training images"),
        (out / "run", "the run: model.keras, run.json, history.csv/.json"),
        (out / "prediction.png", "test image 0 with its probabilities"),
    ):
        say(f"{str(path):40} {what}")
    say(f"\nNext: mnistlab evaluate {out / 'run'}   |   mnistlab predict {out / 'run'} --index 1")


# ---------------------------------------------------------------------------------------------
# mnistlab experiment / compare


@cli.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--seeds", "seed_count", type=int, help="Run this many seeds instead of the file's.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Sweep folder (default: runs/experiments/NAME); rerun to resume.",
)
@click.option("--dry-run", is_flag=True, help="List the runs and a rough time; train nothing.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one run after another here; ray: each run a Ray task (pip install mnistlab[ray]).",
)
@click.option(
    "--address",
    help="With --engine ray: join the Ray cluster there (HOST:PORT); default: start Ray here.",
)
@click.option(
    "--cpus-per-run",
    type=float,
    help="With --engine ray: CPUs each run reserves (default 1).",
)
@click.option(
    "--retries",
    type=int,
    help="With --engine ray: times a run is started again when its worker dies (default 1).",
)
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write TensorBoard logs of every run there.",
)
@click.option(
    "--mlflow",
    "mlflow_uri",
    help="Also log every run to this MLflow tracking URI (pip install mnistlab[mlflow]).",
)
@data_options
def experiment(
    file: Path,
    seed_count: int | None,
    out: Path | None,
    dry_run: bool,
    engine: str,
    address: str | None,
    cpus_per_run: float | None,
    retries: int | None,
    tensorboard_dir: Path | None,
    mlflow_uri: str | None,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Train every variant of an experiment file on every seed, then tabulate and plot."""
    from mnistlab import experiments as ex

    plan = ex.read(file)
    backends = {v.spec.backend for v in plan.variants}
    if len(backends) > 1:
        raise MnistlabError(
            f"variants use several backends ({', '.join(sorted(backends))})",
            "Keras runs one backend per process: split the file, or set one backend in [base]",
        )
    backend_name = backend.use(backends.pop())
    ray_options = {"--address": address, "--cpus-per-run": cpus_per_run, "--retries": retries}
    given = [name for name, value in ray_options.items() if value is not None]
    if engine != "ray" and given:
        raise MnistlabError(f"{given[0]} is an option of the Ray engine", "add --engine ray")
    if cpus_per_run is not None and cpus_per_run <= 0:
        raise MnistlabError(f"--cpus-per-run {cpus_per_run} is out of range", "give more than 0")
    if retries is not None and retries < 0:
        raise MnistlabError(f"--retries {retries} is out of range", "give 0 or more")
    if engine == "ray" and not dry_run:
        from mnistlab import ray_engine

        ray_engine.ray_module()  # installed? Said before the data is loaded
    from mnistlab.models import multiply_adds
    from mnistlab.train import EpochLine, train_and_save

    if seed_count is not None:
        plan = plan.with_seeds(seed_count)
    out = out or Path("runs") / "experiments" / plan.name
    runs_planned = plan.plan()
    say(
        f"Experiment {plan.name}: {plural(len(plan.variants), 'variant')} x "
        f"{plural(len(plan.seeds), 'seed')} "
        f"{list(plan.seeds)} on {plan.dataset} = {len(runs_planned)} runs, into {out}"
    )
    estimates = [ex.estimate_seconds(v.spec, multiply_adds(v.spec)) for v, _ in runs_planned]
    if dry_run:
        total = 0.0
        for (variant, seed), estimate in zip(runs_planned, estimates, strict=True):
            done = (ex.run_folder(out, variant.name, seed) / "run.json").is_file()
            total += 0 if done else estimate
            say(
                f"  {variant.name:24} seed {seed:<4} {variant.spec.backend:10} "
                + ("finished" if done else f"~{estimate:5.0f} s")
            )
        say(f"Rough estimate for what is left: {ex.format_duration(total)} on 2 cores")
        return
    from mnistlab import tracking

    trackers = tracking.open_trackers(tensorboard_dir, mlflow_uri, plan.name, out)
    loaded = load_data(plan.dataset, data_dir, offline)
    with contextlib.ExitStack() as stack:
        if engine == "ray":
            from mnistlab import ray_engine

            where = f"joining the cluster at {address}" if address else "starting on this machine"
            log(f"Ray: {where}")
            stack.enter_context(ray_engine.connect(address, backend_name))
            runner = ray_engine.engine(
                loaded, plan.dataset, cpus_per_run or 1, 1 if retries is None else retries
            )
        else:

            def train_run(spec: Spec, data: datamod.Dataset, folder: Path) -> dict[str, Any]:
                # A run expected to take minutes says how it goes after each epoch
                long = ex.estimate_seconds(spec, multiply_adds(spec)) >= LONG_RUN_SECONDS
                name = f"  {folder.parent.name} seed {spec.seed}"
                lines = [EpochLine(name, spec.epochs, say)] if long else []
                return train_and_save(spec, data, plan.dataset, folder, callbacks=lines)

            runner = ex.local(loaded, train_run)
        progress = Progress(estimates)

        def report(event: ex.Event) -> None:
            progress.report(event)
            if event.status != "failed":
                track(trackers, ex.run_folder(out, event.variant, event.seed), event)

        events = ex.sweep(plan, out, runner, report)
    failed = [e for e in events if e.status == "failed"]
    write_results(plan, out)
    if tensorboard_dir is not None:
        say(f"TensorBoard logs in {tensorboard_dir}: tensorboard --logdir {tensorboard_dir}")
    if mlflow_uri is not None:
        say(
            f"MLflow experiment {plan.name!r} at {mlflow_uri}: "
            f"mlflow ui --backend-store-uri {mlflow_uri}"
        )
    if failed:
        raise MnistlabError(
            f"{len(failed)} of {len(events)} runs failed (see {out / 'failed'})",
            "fix the cause and run the same command again: finished runs are kept",
        )


class Progress:
    """One line per run as it ends, with a counter and the time left: the rough estimates of
    the runs still to come, scaled by the wall-clock time of this session's runs against their
    own estimates, so that runs made side by side by the Ray engine count as faster."""

    def __init__(self, estimates: list[float]) -> None:
        self.estimates = estimates
        self.reported = 0
        self.left = sum(estimates)
        self.expected = 0.0
        self.start = time.perf_counter()

    def report(self, event: Any) -> None:
        from mnistlab import experiments as ex

        self.reported += 1
        estimate = self.estimates[event.index - 1]
        self.left -= estimate
        if event.status != "skipped":
            self.expected += estimate
        eta = ""
        if self.left > 0 and self.expected:
            elapsed = time.perf_counter() - self.start
            eta = f"; about {ex.format_duration(self.left * elapsed / self.expected)} left"
        where = f"[{self.reported}/{event.total}] {event.variant} seed {event.seed}"
        if event.status == "failed":
            say(f"{where}: FAILED after {event.seconds:.1f} s: {event.error}{eta}")
        elif event.status == "skipped":
            say(f"{where}: {event.accuracy:.2%} (finished earlier, kept)")
        else:
            say(f"{where}: {event.accuracy:.2%} in {event.seconds:.1f} s{eta}")


def track(trackers: list[Any], folder: Path, event: Any) -> None:
    for tracker in trackers:
        try:
            tracker.record(folder, event.variant, event.seed)
        except Exception as e:  # the run is safe in its folder, and a rerun logs it
            log(
                f"warning: {tracker.name} could not record {event.variant} seed {event.seed} "
                f"({type(e).__name__}: {e}); run the command again to retry"
            )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def write_results(plan: Any, out: Path) -> None:
    from mnistlab import experiments as ex

    groups = ex.collect(plan, out)
    if not any(groups.values()):
        raise MnistlabError(f"no finished runs in {out}", "run the experiment first")
    rows = ex.compare(groups, plan.baseline)
    facts = ex.facts(groups, plan.dataset, list(plan.seeds))
    say()
    say(ex.write_results(rows, plan.baseline, f"Experiment {plan.name}", facts, out))
    say(f"Wrote {out / 'results.md'}, results.csv, results.json and accuracy.png")


@cli.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write results.md/.csv/.json and accuracy.png there.",
)
def compare_command(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """The experiment table for runs made by hand: runs that differ only in seed are grouped,
    and the first group is the baseline."""
    from mnistlab import experiments as ex

    groups, dataset = ex.group_runs(run_dirs)
    baseline = next(iter(groups))
    rows = ex.compare(groups, baseline)
    facts = ex.facts(
        groups, dataset, sorted({m["spec"]["seed"] for ms in groups.values() for m in ms})
    )
    if out is None:
        say(
            ex.markdown(rows, baseline, "Comparison", [f"Data set {dataset}; {facts['runs']} runs"])
        )
    else:
        say(ex.write_results(rows, baseline, "Comparison", facts, out))
        say(f"Wrote {out / 'results.md'}, results.csv, results.json and accuracy.png")


# ---------------------------------------------------------------------------------------------
# mnistlab report / notebook


@cli.command("report")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the figures and index.html (default: FOLDER/report).",
)
@data_options
def report_command(folder: Path, out: Path | None, data_dir: Path | None, offline: bool) -> None:
    """Figures and one self-contained HTML page for a run folder or a sweep folder."""
    backend.use()
    from mnistlab import report

    out = out or folder / "report"
    page, figures = report.make(folder, out, lambda name: load_data(name, data_dir, offline))
    for figure in figures:
        say(f"Wrote {figure}")
    say(f"Wrote {page}")


@cli.command("notebook")
@click.option(
    "--dataset", type=click.Choice(list(datamod.DATASETS)), default="mnist", show_default=True
)
@click.option(
    "--experiments",
    "experiments_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Experiment file for the experiments part (default: experiments/lab.toml, or "
    "fashion.toml for fashion-mnist).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("lab.ipynb"),
    show_default=True,
    help="The notebook to write; its figures and runs go to NAME-files/ beside it.",
)
@click.option("--html", is_flag=True, help="Also export it as NAME.html.")
@click.option("--quick", is_flag=True, help="Fewer epochs and seeds: runs in a few minutes.")
@click.option(
    "--sample-data",
    type=click.Path(path_type=Path, file_okay=False),
    help="A folder with mnist/ and fashion-mnist/ sample IDX files, used unverified "
    "(for a fast try or a test).",
)
def notebook_command(
    dataset: str,
    experiments_file: Path | None,
    out: Path,
    html: bool,
    quick: bool,
    sample_data: Path | None,
) -> None:
    """Write the lab's notebook, run every cell headless, and write its results into its text."""
    from mnistlab import notebook

    path = experiments_file or notebook.default_experiments(dataset)
    try:
        experiments_text = path.read_text()
    except OSError as e:
        raise MnistlabError(
            f"cannot read the experiment file {path} ({e.strerror})",
            "pass --experiments FILE (see experiments/lab.toml for the format)",
        ) from e
    settings = notebook.Settings(
        dataset=dataset,
        experiments=experiments_text,
        experiments_name=path.name,
        quick=quick,
        sample=sample_data.resolve() if sample_data else None,
        work=f"{out.stem}-files",
    )
    settings.plan()  # refuse a bad experiment file or path before starting a kernel
    notebook.check_out(out)
    log(f"Running {out} in a fresh kernel{' (quick version)' if quick else ''} ...")
    for written in notebook.make(settings, out, html=html):
        say(f"Wrote {written}")


# ---------------------------------------------------------------------------------------------
# mnistlab bench


@cli.command("bench")
@click.option("--epochs", type=int, default=3, show_default=True, help="Epochs of each path.")
@click.option(
    "--to-99",
    "to_99",
    is_flag=True,
    help="Instead: seconds of training to 99% test accuracy (preset fast).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def bench_command(epochs: int, to_99: bool, as_json: bool) -> None:
    """Seconds per epoch of the lab's recipe as the lab writes it (TensorFlow, plain
    model.fit) and of mnistlab's default path, on the same data; and both test accuracies."""
    from mnistlab import bench

    if to_99:
        log("Training preset fast until its test accuracy reaches 99.0% ...")
        print_to_99(bench.run("to-99"), as_json)
        return
    if epochs < 1:
        raise MnistlabError(f"--epochs {epochs} is out of range", "ask for at least 1 epoch")
    results = []
    for path in bench.PATHS:
        log(f"Training the lab's model for {epochs} epochs: {path} path ...")
        results.append(bench.run(path, epochs))
    plain, fast = results
    ratio = bench.steady(plain["seconds"]) / bench.steady(fast["seconds"])
    if as_json:
        say(json.dumps({"paths": results, "ratio": ratio}, indent=2))
        return
    say(f"{'path':10} {'backend':11} {'device':24} {'epoch 1':>8} {'later':>8} {'test acc':>9}")
    for r in results:
        say(
            f"{r['path']:10} {r['backend']:11} {r['device'][:24]:24} {r['seconds'][0]:7.2f}s "
            f"{bench.steady(r['seconds']):7.2f}s {r['test_accuracy']:9.2%}"
        )
    say(f"Ratio (plain / mnistlab, seconds per epoch after the first): {ratio:.1f}x")
    say("Same model (101,770 parameters), batch 32, adam, validation split 0.2; one process each.")


def print_to_99(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        say(json.dumps(result, indent=2))
        return
    elapsed = 0.0
    say(f"{'epoch':>5} {'seconds':>8} {'total':>8} {'test acc':>9}   ({result['device']})")
    for epoch, (seconds, accuracy) in enumerate(
        zip(result["seconds"], result["test_accuracies"], strict=True), start=1
    ):
        elapsed += seconds
        say(f"{epoch:5} {seconds:7.1f}s {elapsed:7.1f}s {accuracy:9.2%}")
    if result["reached"]:
        say(
            f"Time to 99.0%: {result['seconds_to_target']:.1f} s of training "
            f"({result['epochs']} epochs; test evaluations not counted)"
        )
    else:
        raise MnistlabError(
            f"preset fast did not reach 99.0% in {result['epochs']} epochs "
            f"(best {max(result['test_accuracies']):.2%})",
            "this is a measurement, not a guarantee: run it again or report the figure",
        )


def main() -> None:
    cli(prog_name="mnistlab")
