"""Training speed, side by side: the lab's recipe exactly as the lab writes it, and mnistlab's
default path, on the same data, the same model, batch size, optimiser and split.

Keras picks its backend once per process, so each path runs in a process of its own:

    python -m mnistlab.bench plain|mnistlab EPOCHS   # prints one JSON line
    python -m mnistlab.bench to-99 0                 # seconds to 99% test accuracy

`mnistlab bench` starts both and prints the comparison: seconds per epoch, and the whole
process from its start to its exit (imports, data, compiling, training, the test evaluation), as
someone running the lab's cells as a script or `mnistlab train` waits for it. mnistlab's process
starts as the `mnistlab` command does (`backend.own_process`). `mnistlab bench --to-99` runs the
third.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from mnistlab import backend
from mnistlab.errors import MnistlabError

PATHS = ("plain", "mnistlab")


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


def to_99(target: float = 0.99) -> dict[str, Any]:
    """Train preset `fast`, measuring test accuracy after each epoch, and stop at the first
    epoch that reaches `target`. Seconds are training only (the validation pass of each epoch
    included, the test evaluation not), summed up to that epoch."""
    import keras

    from mnistlab import data
    from mnistlab.evaluation import evaluate
    from mnistlab.spec import preset
    from mnistlab.training import train

    mnist = data.load("mnist")
    accuracies: list[float] = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            accuracies.append(float(evaluate(self.model, *mnist.test)["accuracy"]))
            self.model.stop_training = accuracies[-1] >= target

    spec = preset("fast")
    run = train(spec, mnist, callbacks=[Probe()])
    history = run.history
    reached = accuracies[-1] >= target
    return {
        "path": "to-99",
        "backend": keras.backend.backend(),
        "loop": run.info["loop"],
        "device": backend.device(),
        "spec": spec.to_dict(),
        "target": target,
        "reached": reached,
        "epochs": len(accuracies),
        "test_accuracies": accuracies,
        "seconds": history["seconds"],
        "seconds_to_target": sum(history["seconds"]) if reached else None,
    }


def run(path: str, epochs: int = 0) -> dict[str, Any]:
    """`measure` (or `to_99`) in a fresh process, so each path gets the backend it asks for;
    with `process_seconds`, the wall time of that process from its start to its exit."""
    from mnistlab.spec import PRESETS

    env = dict(os.environ)
    if path == "plain":
        env["KERAS_BACKEND"] = "tensorflow"
    elif path == "to-99":
        env["KERAS_BACKEND"] = PRESETS["fast"]["backend"]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mnistlab.bench", path, str(epochs)],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MnistlabError(f"the {path} benchmark failed: {tail}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1])) | {"process_seconds": seconds}


def steady(seconds: list[float]) -> float:
    """Mean seconds of the epochs after the first (which pays for tracing and compiling);
    the one epoch there is when only one ran."""
    rest = seconds[1:] or seconds
    return sum(rest) / len(rest)


def main() -> None:
    path, epochs = sys.argv[1], int(sys.argv[2])
    if path != "plain":
        backend.own_process()  # as the mnistlab command starts; plain is a script of the cells
    backend.use()
    print(json.dumps(to_99() if path == "to-99" else measure(path, epochs)), flush=True)
    if path != "plain":
        gc.freeze()  # and as it exits (cli.main)


if __name__ == "__main__":
    main()
