"""Validation and test accuracy of saved runs, each answered alone and with test shifts.

    python benchmarks/shifts_gain.py RUN_DIR [RUN_DIR ...] [--shifts 1]

For each run folder: the accuracy of its network on the held-out images (the last
`validation_split` of its data set's training images, as training held them out) and on the
test set, answering each image alone, then with the mean over it and its 8 copies moved by
`--shifts` pixels (what `test_shifts` in a spec does). Then the means over the runs given, as
docs/results.md lists them for the presets' candidates. Choose on the validation columns.
"""

import argparse
import statistics
from pathlib import Path

import numpy as np

from mnistlab import data
from mnistlab.prediction import predict
from mnistlab.runs import load, read_meta
from mnistlab.spec import Spec
from mnistlab.training import split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--shifts", type=int, default=1)
    args = parser.parse_args()

    columns = ("validation, alone", "validation, shifts", "test, alone", "test, shifts")
    found: list[tuple[float, ...]] = []
    print(f"{'run':30} " + " ".join(f"{c:>18}" for c in columns))
    for path in args.runs:
        meta = read_meta(path)  # before Keras: the run names its backend
        run = load(path)
        dataset = data.load(meta["dataset"])
        x_train, y_train = dataset.train
        fitted = split(Spec.from_dict(meta["spec"]), len(x_train))
        sets = [(x_train[fitted:], y_train[fitted:]), dataset.test]
        row = tuple(
            float(np.mean(predict(run.model, images, shifts).argmax(axis=1) == labels))
            if len(labels)
            else float("nan")  # trained with nothing held out
            for images, labels in sets
            for shifts in (0, args.shifts)
        )
        found.append(row)
        print(f"{path.name:30} " + " ".join(f"{a:18.2%}" for a in row), flush=True)
    means = [statistics.fmean(column) for column in zip(*found, strict=True)]
    print(f"{'mean of ' + str(len(found)):30} " + " ".join(f"{a:18.2%}" for a in means))


if __name__ == "__main__":
    main()
