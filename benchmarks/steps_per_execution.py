"""Seconds per epoch of the lab's recipe for several settings of `steps_per_execution`.

    python benchmarks/steps_per_execution.py --backend jax 1 100 1500

Same model, batch 32, adam, validation split 0.2, seed 1; 3 epochs each, the first of which
pays for tracing and compiling. Prints each epoch's seconds, wall clock and CPU time, and the
test accuracy. A setting may be given more than once, to alternate them against a machine whose
load drifts.

What a progress bar costs (training.steps_per_call): Keras draws it between calls, so compare
a call per bar update (1500 / BAR_UPDATES steps) with a call per epoch, bar drawn, on a
terminal (`script` makes one):

    script -q -c "python benchmarks/steps_per_execution.py --verbose 1 75 1500 75 1500" log
"""

import argparse
import time

from mnistlab import backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--verbose", type=int, default=0, help="Keras's: 1 draws the bar")
    parser.add_argument("settings", type=int, nargs="+")
    args = parser.parse_args()
    name = backend.use(args.backend)

    import keras

    from mnistlab import data
    from mnistlab.callbacks import EpochTimer
    from mnistlab.evaluation import evaluate
    from mnistlab.models import build
    from mnistlab.spec import Spec

    class CpuTimer(keras.callbacks.Callback):
        """CPU seconds of this process in each epoch, all threads: on a machine that others
        load, a steadier measure of the work than the wall clock."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.start = time.process_time()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            self.seconds.append(time.process_time() - self.start)

    mnist = data.load("mnist")
    x, y = data.preprocess(mnist.train[0]), mnist.train[1]
    for steps in args.settings:
        keras.utils.set_random_seed(1)
        model = build(Spec(backend=name), steps_per_execution=steps)
        timer, cpu = EpochTimer(), CpuTimer()
        model.fit(
            x,
            y,
            epochs=args.epochs,
            batch_size=32,
            validation_split=0.2,
            verbose=args.verbose,
            callbacks=[timer, cpu],
        )
        accuracy = evaluate(model, *mnist.test)["accuracy"]
        epochs = " ".join(f"{s:5.2f}" for s in timer.seconds)
        cpus = " ".join(f"{s:5.2f}" for s in cpu.seconds)
        print(
            f"{name:10} steps_per_execution {steps:5}: epochs {epochs} s (cpu {cpus} s)   "
            f"test {accuracy:.2%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
