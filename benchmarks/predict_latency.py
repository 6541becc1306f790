"""Prediction speed: single-image latency of mnistlab's path, an eager `model(x)` call and
`model.predict`, then batch throughput of mnistlab's path and `model.predict`.

    python benchmarks/predict_latency.py [--calls 1000] [--backend tensorflow]

Trains nothing: the lab's model with its initial weights costs the same to run as a trained one.
Prints the median and 99th percentile of each path over the same test images, and the images a
second of each path over the 10,000 test images (the best of 5 passes).
"""

import argparse
import time

from mnistlab import backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--backend", default=None)
    args = parser.parse_args()
    name = backend.use(args.backend)

    import keras
    import numpy as np

    from mnistlab import data
    from mnistlab.models import build
    from mnistlab.prediction import predict
    from mnistlab.spec import Spec

    keras.utils.set_random_seed(0)
    model = build(Spec(backend=name))
    images = data.load("mnist").test[0]
    paths = {
        "mnistlab predict": lambda i: predict(model, images[i : i + 1]),
        "model(x), eager": lambda i: keras.ops.convert_to_numpy(
            model(data.preprocess(images[i : i + 1]), training=False)
        ),
        "model.predict": lambda i: model.predict(data.preprocess(images[i : i + 1]), verbose=0),
    }
    print(f"backend {name}, {args.calls} single-image calls each")
    for label, call in paths.items():
        for i in range(10):  # warm up: tracing and compilation happen on the first calls
            call(i)
        times = []
        for i in range(args.calls):
            start = time.perf_counter()
            call(i % len(images))
            times.append(time.perf_counter() - start)
        ms = np.array(times) * 1000
        print(f"{label:32} median {np.median(ms):7.3f} ms   p99 {np.percentile(ms, 99):7.3f} ms")

    batches = {
        "mnistlab predict": lambda: predict(model, images),
        "model.predict": lambda: model.predict(data.preprocess(images), verbose=0),
    }
    print(f"the {len(images):,} test images at once, best of 5 passes")
    for label, call in batches.items():
        call()  # warm up
        seconds = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        print(f"{label:32} {len(images) / min(seconds):10,.0f} images/s")


if __name__ == "__main__":
    main()
