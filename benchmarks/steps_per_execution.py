"""Seconds per epoch of the lab's recipe for several settings of `steps_per_execution`.

    python benchmarks/steps_per_execution.py --backend jax 1 100 1500

Same model, batch 32, adam, validation split 0.2, seed 1; 3 epochs each, the first of which
pays for tracing and compiling. Prints each epoch's seconds and the test accuracy. A setting may
be given more than once, to alternate them against a machine whose load drifts.

What a progress bar costs (training.steps_per_call): Keras draws it between calls, so compare
a call per bar update (1500 / BAR_UPDATES steps) with a call per epoch, bar drawn, on a
terminal (`script` makes one):

    script -q -c "python benchmarks/steps_per_execution.py --verbose 1 75 1500 75 1500" log
"""

import argparse

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

    mnist = data.load("mnist")
    x, y = data.preprocess(mnist.train[0]), mnist.train[1]
    for steps in args.settings:
        keras.utils.set_random_seed(1)
        model = build(Spec(backend=name), steps_per_execution=steps)
        timer = EpochTimer()
        model.fit(
            x,
            y,
            epochs=args.epochs,
            batch_size=32,
            validation_split=0.2,
            verbose=args.verbose,
            callbacks=[timer],
        )
        accuracy = evaluate(model, *mnist.test)["accuracy"]
        epochs = " ".join(f"{s:5.2f}" for s in timer.seconds)
        print(
            f"{name:10} steps_per_execution {steps:5}: epochs {epochs} s   test {accuracy:.2%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
