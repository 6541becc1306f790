"""Seconds an epoch of augmented training on TensorFlow, batches handed over from Python (a
`PyDataset`, as `model.fit` feeds one) against batches from TensorFlow's graph
(`AugmentedImages.feed`, what `training.fit` uses), side by side in one process.

    python benchmarks/augmented_feed.py fast-99.65 [--rounds 3] [--change '{"epochs": 10}']

One model of the preset (`--change` alters its spec, as JSON), MNIST's first 48,000 training
images. The two feeds take turns, one epoch at a time, after one epoch each of tracing and
compiling, against a machine whose load drifts. Each call of `fit` varies the images of two
epochs in both (Keras starts a data set's epoch over as `fit` begins, and draws the next as
it ends). Prints the seconds of every timed epoch and the median of each feed.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mnistlab import backend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("--change", default="{}", help="spec fields to change, as JSON")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend.use("tensorflow")
    import keras

    from mnistlab import data
    from mnistlab.augment import AugmentedImages
    from mnistlab.models import build
    from mnistlab.spec import preset
    from mnistlab.training import seed_everything, split

    spec = preset(args.preset, **json.loads(args.change))
    x, y = data.load("mnist").train
    fitted = split(spec, len(x))
    python_fed = AugmentedImages(x[:fitted], y[:fitted], spec)
    graph_fed = AugmentedImages(x[:fitted], y[:fitted], spec)
    batches, next_epoch = graph_fed.feed()
    feeds = {
        "from Python": (python_fed, []),
        "from the graph": (batches, [next_epoch]),
    }
    seed_everything(spec)
    steps = len(python_fed)
    model = build(spec, steps, steps_per_execution=steps)
    seconds: dict[str, list[float]] = {name: [] for name in feeds}
    for round_ in range(args.rounds + 1):
        for name, (feed, callbacks) in feeds.items():
            start = time.perf_counter()
            model.fit(feed, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
            took = time.perf_counter() - start
            if round_:  # the first pays for tracing and compiling
                seconds[name].append(took)
                print(f"{name:15} {took:6.2f} s", flush=True)
    print(f"{spec.conv} conv, {spec.precision}, batch {spec.batch_size}, Keras {keras.__version__}")
    for name, values in seconds.items():
        print(f"{name:15} median {statistics.median(values):6.2f} s an epoch")


if __name__ == "__main__":
    main()
