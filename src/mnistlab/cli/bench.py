"""`mnistlab bench`: training speed side by side, and time to 99.0, 99.5 or 99.65% test
accuracy."""

from __future__ import annotations

import json
from typing import Any

import click

from mnistlab.bench import TARGETS
from mnistlab.cli.common import backend_option, log, say
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
    "--to",
    "target",
    type=click.Choice(list(TARGETS)),
    help="Instead: train the preset chosen to reach this test accuracy (%) soonest, once per "
    "seed, and print its seconds of training and test accuracy.",
)
@click.option("--to-99", "to_99", is_flag=True, help="The same as --to 99.0.")
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Run both paths this many times, alternated, and give the median ratios.",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="With --to: seeds 1 to N, each in a process of its own.",
)
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def bench(
    epochs: int,
    target: str | None,
    to_99: bool,
    rounds: int,
    seeds: int,
    backend: str | None,
    as_json: bool,
) -> None:
    """Seconds per epoch, and of the whole process, of the lab's recipe as the lab writes it
    (TensorFlow, plain model.fit) and of mnistlab's default path, on the same data; and both
    test accuracies. With --rounds, both paths again and again, alternated, and the median
    ratios. With --to, the seconds of training to a test accuracy instead, on the
    preset's backend or --backend's (JAX on a GPU)."""
    from mnistlab import bench as benchmarks

    target = "99.0" if to_99 and target is None else target
    if target is not None:
        name, budget = TARGETS[target]
        runs = []
        for seed in range(1, seeds + 1):
            log(f"Training preset {name} (for {target}%), seed {seed} of {seeds} ...")
            runs.append(benchmarks.run("to", target, seed, *([backend] if backend else [])))
        print_to_accuracy(target, runs, as_json)
        return
    if backend:
        raise MnistlabError(
            "--backend applies to --to only",
            "the speed comparison runs the plain recipe on TensorFlow and mnistlab's path on "
            "$KERAS_BACKEND (default jax)",
        )
    compared = benchmarks.compare(epochs, rounds, log)
    if as_json:
        say(json.dumps(compared, indent=2))
        return
    say(
        f"{'path':10} {'backend':11} {'loop':9} {'device':24} {'epoch 1':>8} {'later':>8} "
        f"{'process':>8} {'test acc':>9}"
    )
    for r in compared["paths"]:
        say(
            f"{r['path']:10} {r['backend']:11} {r['loop']:9} {r['device'][:24]:24} "
            f"{r['seconds'][0]:7.2f}s "
            f"{benchmarks.steady(r['seconds']):7.2f}s {r['process_seconds']:7.2f}s "
            f"{r['test_accuracy']:9.2%}"
        )
    say(
        "Ratio (plain / mnistlab, seconds per epoch after the first): "
        f"{ratios(compared, 'ratio')} (target {TARGET:.0f}x)"
    )
    say(
        f"Ratio (plain / mnistlab, whole process of {plural(epochs, 'epoch')}, start to exit): "
        f"{ratios(compared, 'process_ratio')}"
    )
    say("Same model (101,770 parameters), batch 32, adam, validation split 0.2; one process each.")
    say(
        "A process: imports, data, compiling, training, test evaluation. mnistlab's starts as the "
        "mnistlab command does, with the programs JAX compiled in an earlier run, if any."
    )


def ratios(compared: dict[str, Any], key: str) -> str:
    """The ratio `key` as "8.7x", or over rounds as "10.3x, median of 3 rounds (8.7x, ...)"."""
    line = f"{compared[key]:.1f}x"
    if len(compared["rounds"]) > 1:
        each = ", ".join(f"{r[key]:.1f}x" for r in compared["rounds"])
        line += f", median of {len(compared['rounds'])} rounds ({each})"
    return line


def print_to_accuracy(target: str, runs: list[dict[str, Any]], as_json: bool) -> None:
    """Each seed's seconds of training and accuracies, then their means against the targets;
    an error (exit 2) when the mean test accuracy falls short of `target`."""
    from statistics import fmean, stdev

    name, budget = TARGETS[target]
    accuracy = fmean(r["test_accuracy"] for r in runs)
    seconds = fmean(r["train_seconds"] for r in runs)
    spread = stdev(r["test_accuracy"] for r in runs) if len(runs) > 1 else 0.0
    reached = accuracy >= float(target) / 100
    if as_json:
        summary = {"target": target, "preset": name, "budget_seconds": budget}
        say(
            json.dumps(
                summary
                | {
                    "mean_test_accuracy": accuracy,
                    "mean_train_seconds": seconds,
                    "reached": reached,
                    "runs": runs,
                },
                indent=2,
            )
        )
    else:
        first = runs[0]
        shifts = first["spec"].get("test_shifts", 0)
        answered = f", test shifts of {shifts} px" if shifts else ""
        say(
            f"{'seed':>4} {'epochs':>6} {'epoch 1':>8} {'training':>9} {'val acc':>8} "
            f"{'test acc':>9} {'evaluate':>9}   "
            f"(preset {name}: {first['backend']}, {first['loop']} loop, {first['device']}"
            f"{answered})"
        )
        for r in runs:
            validation = r["validation_accuracy"]
            say(
                f"{r['seed']:4} {len(r['seconds']):6} {r['seconds'][0]:7.1f}s "
                f"{r['train_seconds']:8.1f}s "
                f"{format(validation, '8.2%') if validation is not None else '       -'} "
                f"{r['test_accuracy']:9.2%} {r['evaluate_seconds']:8.1f}s"
            )
        say(
            f"Mean of {plural(len(runs), 'seed')}: {accuracy:.2%} ± {spread:.2%} test accuracy "
            f"(target {target}%) in {seconds:.1f} s of training (target {budget:.0f} s; "
            "validation passes counted, the test evaluation not; epoch 1 pays for compiling)"
        )
    if not reached:
        raise MnistlabError(
            f"preset {name} reached {accuracy:.2%}, short of {target}%, over "
            f"{plural(len(runs), 'seed')}",
            "this is a measurement, not a guarantee: report the figure",
        )


COMMANDS = [bench]
