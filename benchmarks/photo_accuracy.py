"""How well a trained run reads photos of handwritten digits on paper.

    python benchmarks/photo_accuracy.py RUN_DIR [--count 500] [--seed 0] [--save DIR]

Makes `count` "photos" from MNIST's first test digits (tests/photos.py: each digit enlarged,
rotated a little, written dark on an uneven, noisy, shadowed sheet of 400 to 900 pixels), half as
PNG and half as JPEG (quality 85), reads each through mnistlab's one preprocessing path, and
prints the accuracy on them beside the accuracy on the same digits as MNIST stores them.
`--save DIR` also writes the files, with the true label in each name, for the command line.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()

    from mnistlab import backend

    backend.use()
    import numpy as np
    from photos import encode, photo

    from mnistlab import data, runs
    from mnistlab.images import read_image
    from mnistlab.prediction import classify, predict

    run = runs.load(args.run_dir)
    images, labels = data.load(run.dataset).test
    images, labels = images[: args.count], labels[: args.count]
    rng = np.random.default_rng(args.seed)
    pixels, formats, seconds = [], [], 0.0
    for i, digit in enumerate(images):
        fmt = "JPEG" if i % 2 else "PNG"
        file = encode(photo(digit, rng), fmt, **({"quality": 85} if fmt == "JPEG" else {}))
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            name = f"{i:04d}-label-{labels[i]}.{'jpg' if fmt == 'JPEG' else 'png'}"
            (args.save / name).write_bytes(file)
        start = time.perf_counter()
        pixels.append(read_image(file).pixels)
        seconds += time.perf_counter() - start
        formats.append(fmt)
    guessed = classify(run.model, np.stack(pixels)).argmax(axis=1)
    direct = predict(run.model, images).argmax(axis=1)
    right = guessed == labels
    fmt_array = np.array(formats)
    print(
        f"run {args.run_dir} ({run.dataset}, test accuracy {run.meta['metrics']['accuracy']:.2%})"
    )
    print(f"{len(labels)} photos, seed {args.seed}")
    print(f"  read correctly:      {right.mean():.2%}")
    for fmt in ("PNG", "JPEG"):
        print(f"    {fmt:4}:             {right[fmt_array == fmt].mean():.2%}")
    print(f"  the same digits as MNIST stores them: {(direct == labels).mean():.2%}")
    print(f"  preprocessing: {1000 * seconds / len(labels):.0f} ms a photo (decoding included)")


if __name__ == "__main__":
    main()
