"""Training speed, side by side: the lab's recipe exactly as the lab writes it, and mnistlab's
default path, on the same data, the same model, batch size, optimiser and split.

Keras picks its backend once per process, so each path runs in a process of its own:

    python -m mnistlab.bench plain|mnistlab EPOCHS   # prints one JSON line
    python -m mnistlab.bench to 99.5 SEED            # the preset for 99.5%, trained once

`mnistlab bench` starts both (`compare`; with `--rounds N`, N times, alternated, for the median
ratios) and prints the comparison: seconds per epoch, and the whole process from its start to its
exit (imports, data, compiling, training, the test evaluation), as
someone running the lab's cells as a script or `mnistlab train` waits for it. mnistlab's process
starts as the `mnistlab` command does (`backend.own_process`). `mnistlab bench --to 99.5` runs
the third: the preset chosen for a test accuracy, once per seed.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from mnistlab import backend
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

PATHS = ("plain", "mnistlab")
# Test accuracy (%) -> the preset that reaches it in the fewest seconds of training found here,
# and the seconds of training aimed at on 2 CPU cores (issue 18). Each preset was chosen on
# validation accuracy among the candidates docs/results.md lists; its test accuracy is then
# measured once, by `mnistlab bench --to`.
TARGETS: dict[str, tuple[str, float]] = {
    "99.0": ("fast", 8.0),
    "99.5": ("fast-99.5", 120.0),
    "99.65": ("fast-99.65", 600.0),
}


def measure(path: str, epochs: int) -> dict[str, Any]:
    """Train the lab's model for `epochs` by `path` and time each epoch. Call after
    `backend.use()`: "plain" wants TensorFlow, "mnistlab" the default backend."""
    import keras

    from mnistlab import data
    from mnistlab.callbacks import EpochTimer
    from mnistlab.spec import preset
    from mnistlab.training import train

    mnist = data.load("mnist")
    spec = preset("lab").replace(epochs=epochs, backend=keras.backend.backend())
    timer = EpochTimer()
    if path == "plain":  # the lab's cells, word for word
        keras.utils.set_random_seed(spec.seed)
        (x_train, y_train), (x_test, y_test) = mnist.train, mnist.test
        x_train = x_train.reshape(-1, 784) / 255.0
        x_test = x_test.reshape(-1, 784) / 255.0
        model = keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(
            x_train,
            y_train,
            epochs=epochs,
            batch_size=32,
            validation_split=0.2,
            verbose=0,
            callbacks=[timer],
        )
        accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
        parameters, loop = model.count_params(), "fit"
    else:
        run = train(spec, mnist, callbacks=[timer])
        accuracy, parameters, loop = run.accuracy, run.model.count_params(), run.info["loop"]
    return {
        "path": path,
        "backend": keras.backend.backend(),
        "loop": loop,
        "device": backend.device(),
        "parameters": parameters,
        "seconds": timer.seconds,
        "test_accuracy": accuracy,
    }


def to_accuracy(target: str, seed: int, backend_name: str | None = None) -> dict[str, Any]:
    """Train the preset chosen for `target` (a key of TARGETS) with `seed` (on `backend_name`,
    else the preset's), its whole schedule, and measure its test accuracy once, at the end.
    Seconds are training only (each epoch's validation pass included, the test evaluation
    not); `evaluate_seconds` the test evaluation's, and with test shifts the validation's."""
    import keras

    from mnistlab import data
    from mnistlab.spec import preset
    from mnistlab.training import train

    name, budget = TARGETS[target]
    spec = preset(name, seed=seed)
    run = train(spec.replace(backend=backend_name or spec.backend), data.load("mnist"))
    return {
        "path": "to",
        "target": target,
        "preset": name,
        "budget_seconds": budget,
        "seed": seed,
        "backend": keras.backend.backend(),
        "loop": run.info["loop"],
        "device": backend.device(),
        "spec": run.spec.to_dict(),
        "seconds": run.history["seconds"],
        "train_seconds": sum(run.history["seconds"]),
        "evaluate_seconds": run.seconds["evaluate"],
        "validation_accuracy": run.validation.get("accuracy"),
        "test_accuracy": run.accuracy,
    }


def run(path: str, *arguments: str | int) -> dict[str, Any]:
    """`measure(path, epochs)` (or `to_accuracy(target, seed[, backend])` for path "to") in a
    fresh process, so each path gets the backend it asks for; with `process_seconds`, the wall
    time of that process from its start to its exit."""
    from mnistlab.spec import PRESETS

    env = dict(os.environ)
    if path == "plain":
        env["KERAS_BACKEND"] = "tensorflow"
    elif path == "to":
        chosen = arguments[2] if len(arguments) > 2 else None
        env["KERAS_BACKEND"] = str(chosen or PRESETS[TARGETS[str(arguments[0])][0]]["backend"])
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mnistlab.bench", path, *map(str, arguments)],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MnistlabError(f"the {path} benchmark failed: {tail}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1])) | {"process_seconds": seconds}


def compare(
    epochs: int, rounds: int = 1, progress: Callable[[str], None] = lambda line: None
) -> dict[str, Any]:
    """Both paths trained for `epochs`, each in a process of its own (`run`), alternated for
    `rounds` rounds: plain, mnistlab, plain, mnistlab... Returns `paths` (every process's
    result, in that order), each round's `ratio` (plain's seconds per epoch after the first
    over mnistlab's) and `process_ratio` (whole processes), and their medians as `ratio` and
    `process_ratio`: the plain recipe's epochs vary by a fifth from one process to the next
    here, mnistlab's by a tenth, so one round can land either side of a target."""
    from statistics import median

    paths, ratios = [], []
    for number in range(1, rounds + 1):
        pair = []
        for path in PATHS:
            of = f", round {number} of {rounds}" if rounds > 1 else ""
            progress(f"Training the lab's model for {plural(epochs, 'epoch')}: {path} path{of} ...")
            pair.append(run(path, epochs))
        plain, fast = pair
        paths += pair
        ratios.append(
            {
                "ratio": steady(plain["seconds"]) / steady(fast["seconds"]),
                "process_ratio": plain["process_seconds"] / fast["process_seconds"],
            }
        )
    return {
        "paths": paths,
        "rounds": ratios,
        "ratio": median(r["ratio"] for r in ratios),
        "process_ratio": median(r["process_ratio"] for r in ratios),
    }


def steady(seconds: list[float]) -> float:
    """Mean seconds of the epochs after the first (which pays for tracing and compiling);
    the one epoch there is when only one ran."""
    rest = seconds[1:] or seconds
    return sum(rest) / len(rest)


def main() -> None:
    path, arguments = sys.argv[1], sys.argv[2:]
    if path != "plain":
        backend.own_process()  # as the mnistlab command starts; plain is a script of the cells
    backend.use()
    if path == "to":
        result = to_accuracy(arguments[0], int(arguments[1]), *arguments[2:])
    else:
        result = measure(path, int(arguments[0]))
    print(json.dumps(result), flush=True)
    if path != "plain":
        gc.freeze()  # and as it exits (cli.main)


if __name__ == "__main__":
    main()
