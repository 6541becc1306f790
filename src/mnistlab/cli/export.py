"""`mnistlab export`: a run as ONNX, LiteRT, a TensorFlow SavedModel or a static web page,
each model checked against Keras on the whole test set."""

from __future__ import annotations

from pathlib import Path

import click

from mnistlab.cli.common import Folder, data_options, log, say

FORMATS = ("onnx", "litert", "saved_model", "web")  # exports.FORMATS, tested equal


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(FORMATS), required=True)
@click.option(
    "--out",
    type=Folder(),
    help="The folder to write (new or empty). Default: RUN_DIR/exports/FORMAT, where "
    "`predict --engine onnx RUN_DIR` finds an ONNX model.",
)
@click.option(
    "--quantize",
    is_flag=True,
    help="Also write an int8 model (onnx, litert), with its size and test accuracy.",
)
@data_options
def export(
    run_dir: Path,
    format_: str,
    out: Path | None,
    quantize: bool,
    data_dir: Path | None,
    offline: bool,
) -> None:
    """Export a run's model for use without Python's Keras, and check it.

    Every model written is run by its own runtime (ONNX Runtime, LiteRT, TensorFlow) on the
    whole test set and compared with Keras: a float model must choose Keras's class for every
    image, or the command exits with 1. export.json beside the model says what input it takes
    and how to prepare it. `--format web` writes a page that reads digits drawn in the browser,
    with ONNX Runtime Web from the npm registry (fetched once, then cached).
    """
    from mnistlab.exports import check_request, export

    check_request(format_, quantize)
    out = out if out is not None else run_dir / "exports" / format_
    data = None
    if data_dir is not None or offline:
        from mnistlab.data import load
        from mnistlab.runs import read_meta

        data = load(read_meta(run_dir)["dataset"], data_dir, offline, log=log)
    report = export(run_dir, format_, out, quantize, data, progress=log)
    say(f"Exported {run_dir} as {format_} to {out}: {size_text(report.folder_bytes)} in all")
    for model in report.models:
        check = model.check
        say(
            f"  {model.path.name}: {size_text(model.bytes)}; {check.runtime} on "
            f"{check.images:,} test images: {check.differing} with another class than Keras, "
            f"largest probability difference {check.max_difference:.2g}; "
            f"accuracy {check.accuracy:.2%} (Keras {check.keras_accuracy:.2%})"
        )
    targets = report.quantize_targets()
    small = report.int8_model
    if targets is not None and small is not None:
        ratio = report.float_model.bytes / small.bytes
        lost = 100 * (report.float_model.check.accuracy - small.check.accuracy)
        verdict = (
            "meets both targets"
            if all(targets)
            else "misses: "
            + ", ".join(
                what
                for what, met in zip(("3x smaller", "0.1 points"), targets, strict=True)
                if not met
            )
        )
        say(f"  int8: {ratio:.1f}x smaller, accuracy {-lost:+.2f} points; {verdict}")
    if report.extra.get("runtime"):
        say(f"  runtime: {report.extra['runtime']} (its licence in {report.extra['licence']})")
    if format_ == "web":
        say(f"  serve the folder from any static host, e.g. python -m http.server -d {out}")
    failed = [m for m in report.models if not m.passed]
    if failed:
        model = failed[0]
        log(
            f"error: {model.path.name} chose another class than Keras for "
            f"{model.check.differing} of {model.check.images:,} test images: the export is not "
            f"to be trusted (its files are left in {out} to look into)"
        )
        raise SystemExit(1)


def size_text(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


COMMANDS = [export]
