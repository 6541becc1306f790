"""Test accuracy and seconds per epoch of the compiled loop against `model.fit`, over seeds.

    python benchmarks/compiled_vs_fit.py                      # the lab's model, seeds 1-5
    python benchmarks/compiled_vs_fit.py --preset cnn --seeds 3

Both loops train the same spec on MNIST on the JAX backend, in this one process, alternating
seed by seed (the machine's load drifts: both see the same). They draw their own random numbers
(the order of the images, augmentation, dropout), so a seed's two runs differ: what must agree
is the spread over seeds (mean ± sample standard deviation). The test set only measures here;
nothing is chosen on it. Prints one line per run, then a Markdown table.
"""

import argparse
import statistics
import time

from mnistlab import backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="lab")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    args = parser.parse_args()
    backend.use("jax")

    from mnistlab import data
    from mnistlab.spec import preset
    from mnistlab.training import train

    mnist = data.load("mnist")
    changes = {"backend": "jax"} | ({"epochs": args.epochs} if args.epochs else {})
    found: dict[str, list[tuple[float, float]]] = {"fit": [], "compiled": []}
    for seed in range(1, args.seeds + 1):
        spec = preset(args.preset, seed=seed, **changes)
        for loop in found:
            start = time.perf_counter()
            run = train(spec, mnist, loop=loop)
            seconds = run.history["seconds"]
            later = statistics.mean(seconds[1:] or seconds)
            found[loop].append((run.accuracy, later))
            print(
                f"seed {seed} {loop:8}: test {run.accuracy:.2%}, val "
                f"{run.history['val_accuracy'][-1]:.2%}, epoch 1 {seconds[0]:.2f} s, later "
                f"{later:.2f} s, train {time.perf_counter() - start:.1f} s",
                flush=True,
            )
    print("\n| loop | seeds | test accuracy | seconds an epoch (after the first), median |")
    print("|---|---:|---:|---:|")
    for loop, results in found.items():
        accuracies = [100 * a for a, _ in results]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        median = statistics.median(s for _, s in results)
        print(
            f"| {loop} | {len(results)} | {statistics.mean(accuracies):.2f}% ± {spread:.2f} "
            f"| {median:.2f} |"
        )


if __name__ == "__main__":
    main()
