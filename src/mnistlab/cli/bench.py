"""`mnistlab bench`: training speed side by side, and time to 99% test accuracy."""

from __future__ import annotations

import json
from typing import Any

import click

from mnistlab.cli.common import log, say
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

TARGET = 9.0  # per-epoch ratio mnistlab aims at on 2 CPU cores (issue 18)


@click.command("bench")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Epochs of each path.",
)
@click.option(
    "--to-99",
    "to_99",
    is_flag=True,
    help="Instead: seconds of training to 99% test accuracy (preset fast).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def bench(epochs: int, to_99: bool, as_json: bool) -> None:
    """Seconds per epoch, and of the whole process, of the lab's recipe as the lab writes it
    (TensorFlow, plain model.fit) and of mnistlab's default path, on the same data; and both
    test accuracies."""
    from mnistlab import bench as benchmarks

    if to_99:
        log("Training preset fast until its test accuracy reaches 99.0% ...")
        print_to_99(benchmarks.run("to-99"), as_json)
        return
    results = []
    for path in benchmarks.PATHS:
        log(f"Training the lab's model for {plural(epochs, 'epoch')}: {path} path ...")
        results.append(benchmarks.run(path, epochs))
    plain, fast = results
    ratio = benchmarks.steady(plain["seconds"]) / benchmarks.steady(fast["seconds"])
    process_ratio = plain["process_seconds"] / fast["process_seconds"]
    if as_json:
        say(
            json.dumps({"paths": results, "ratio": ratio, "process_ratio": process_ratio}, indent=2)
        )
        return
    say(
        f"{'path':10} {'backend':11} {'loop':9} {'device':24} {'epoch 1':>8} {'later':>8} "
        f"{'process':>8} {'test acc':>9}"
    )
    for r in results:
        say(
            f"{r['path']:10} {r['backend']:11} {r['loop']:9} {r['device'][:24]:24} "
            f"{r['seconds'][0]:7.2f}s "
            f"{benchmarks.steady(r['seconds']):7.2f}s {r['process_seconds']:7.2f}s "
            f"{r['test_accuracy']:9.2%}"
        )
    say(
        f"Ratio (plain / mnistlab, seconds per epoch after the first): {ratio:.1f}x "
        f"(target {TARGET:.0f}x)"
    )
    say(
        f"Ratio (plain / mnistlab, whole process of {plural(epochs, 'epoch')}, start to exit): "
        f"{process_ratio:.1f}x"
    )
    say("Same model (101,770 parameters), batch 32, adam, validation split 0.2; one process each.")
    say(
        "A process: imports, data, compiling, training, test evaluation. mnistlab's starts as the "
        "mnistlab command does, with the programs JAX compiled in an earlier run, if any."
    )


def print_to_99(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        say(json.dumps(result, indent=2))
        return
    elapsed = 0.0
    say(
        f"{'epoch':>5} {'seconds':>8} {'total':>8} {'test acc':>9}   "
        f"({result['backend']}, {result['loop']} loop, {result['device']})"
    )
    for epoch, (seconds, accuracy) in enumerate(
        zip(result["seconds"], result["test_accuracies"], strict=True), start=1
    ):
        elapsed += seconds
        say(f"{epoch:5} {seconds:7.1f}s {elapsed:7.1f}s {accuracy:9.2%}")
    if result["reached"]:
        say(
            f"Time to 99.0%: {result['seconds_to_target']:.1f} s of training "
            f"({plural(result['epochs'], 'epoch')}; test evaluations not counted)"
        )
    else:
        raise MnistlabError(
            f"preset fast did not reach 99.0% in {plural(result['epochs'], 'epoch')} "
            f"(best {max(result['test_accuracies']):.2%})",
            "this is a measurement, not a guarantee: run it again or report the figure",
        )


COMMANDS = [bench]
