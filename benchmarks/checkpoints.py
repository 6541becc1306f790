"""What a checkpoint at the end of every epoch costs: seconds per epoch without and with, and the
milliseconds of each checkpoint (gathering the variables into an .npz, writing it atomically).

    python benchmarks/checkpoints.py --preset lab --epochs 3
    KERAS_BACKEND=tensorflow python benchmarks/checkpoints.py --preset cnn --epochs 2

On the real MNIST training set, the preset's recipe and backend (start the process with its
backend: `cnn` runs on TensorFlow); the first epoch pays for tracing and compiling. Each
checkpoint is written, whatever `checkpoints.CHECKPOINT_SECONDS` says.
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from mnistlab import backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="lab")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from mnistlab import checkpoints, data
    from mnistlab.spec import preset
    from mnistlab.training import train

    spec = preset(args.preset, epochs=args.epochs)
    name = backend.use(spec.backend)
    mnist = data.load("mnist")
    checkpoints.CHECKPOINT_SECONDS = 0.0
    spent: dict[str, list[float]] = {"fingerprint": [], "encode": [], "write": []}
    sizes: list[int] = []

    def timed(key: str, f: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[key].append(time.perf_counter() - start)

        return wrapper

    checkpoints.fingerprint = timed("fingerprint", checkpoints.fingerprint)
    checkpoints.encode = timed("encode", checkpoints.encode)
    write = checkpoints.File.write

    def write_and_measure(self: Any, raw: bytes) -> None:
        sizes.append(len(raw))
        timed("write", write)(self, raw)

    checkpoints.File.write = write_and_measure  # type: ignore[method-assign]

    plain = train(spec, mnist)
    with tempfile.TemporaryDirectory() as tmp:
        kept = train(spec, mnist, checkpoint=Path(tmp) / "run.checkpoint")
    for label, run in (("without", plain), ("with", kept)):
        epochs = " ".join(f"{s:6.2f}" for s in run.history["seconds"])
        print(f"{args.preset} on {name}, {label:7} checkpoints: epochs {epochs} s")
    ms = {k: 1000 * sum(v) / max(len(v), 1) for k, v in spent.items()}
    print(
        f"each checkpoint: {ms['encode']:.1f} ms to gather and encode, {ms['write']:.1f} ms to "
        f"write, {sizes[0] / 1e6:.2f} MB; fingerprint of the data, once a run: "
        f"{ms['fingerprint']:.1f} ms"
    )


if __name__ == "__main__":
    main()
