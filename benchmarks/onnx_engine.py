"""`predict --engine onnx` beside the Keras path, in one run: single-image latency in process,
then the whole `mnistlab predict` process from start to exit, alternating the two engines.

    python benchmarks/onnx_engine.py RUN_DIR [--calls 1000] [--starts 5]

RUN_DIR needs its ONNX export where `mnistlab export RUN_DIR --format onnx` puts it
(RUN_DIR/exports/onnx). Latency: the median and 99th percentile of `classify` (the one path
both engines share) on one image that `read_image` prepared, over --calls calls after 10 to warm
up; Keras runs the backend `$KERAS_BACKEND` names, else JAX. Start-up: the wall and CPU seconds
of `mnistlab predict [--engine onnx] RUN_DIR picture.png`, --starts times each, alternating.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def latency(call, pixels: np.ndarray, calls: int) -> np.ndarray:
    for _ in range(10):  # warm up: the first calls trace, compile or allocate
        call(pixels)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(pixels)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def whole_process(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one command, from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def other_formats(folder: Path) -> dict:
    """One image through each other export found in `folder` (RUN_DIR/exports), by its own
    runtime, as `exports.checks` runs it."""
    found = {}
    small = folder / "onnx" / "model.int8.onnx"
    if small.is_file():
        from mnistlab.exports.engine import OnnxModel

        found["onnx int8"] = OnnxModel(small).predict_on_batch
    for name in ("model.tflite", "model.int8.tflite"):
        if (folder / "litert" / name).is_file():
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(folder / "litert" / name))
            interpreter.allocate_tensors()  # batch 1, as converted
            given = interpreter.get_input_details()[0]["index"]
            answer = interpreter.get_output_details()[0]["index"]

            def run_litert(x, interpreter=interpreter, given=given, answer=answer):
                interpreter.set_tensor(given, x.reshape(1, -1))
                interpreter.invoke()
                return interpreter.get_tensor(answer)

            found["litert" + (" int8" if "int8" in name else "")] = run_litert
    if (folder / "saved_model" / "saved_model").is_dir():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(folder / "saved_model" / "saved_model"))
        serve = loaded.signatures["serving_default"]
        (key,) = serve.structured_input_signature[1]
        found["saved_model (TF)"] = lambda x: serve(**{key: tf.constant(x.reshape(1, -1))})
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image

    from mnistlab import backend, data
    from mnistlab.exports import engine
    from mnistlab.images import read_image
    from mnistlab.prediction import classify
    from mnistlab.runs import load

    folder = Path(tempfile.mkdtemp(prefix="onnx-engine-"))
    picture = folder / "seven.png"
    Image.fromarray(255 - data.load("mnist").test[0][0]).save(picture)  # dark on paper
    pixels = read_image(picture).pixels.reshape(1, -1)

    onnx_model, _, _ = engine.load(args.run_dir)
    run = load(args.run_dir)
    engines = {
        "onnx (ONNX Runtime)": lambda x: classify(onnx_model, x),
        f"keras ({backend.running()})": lambda x: classify(run.model, x),
    }
    engines |= other_formats(args.run_dir / "exports")
    print(
        f"single-image latency, {args.calls} calls each: onnx and keras through mnistlab's "
        "classify(), the others by their runtime's own call"
    )
    for name, call in engines.items():
        ms = latency(call, pixels, args.calls)
        print(f"  {name:22} median {np.median(ms):7.3f} ms   p99 {np.percentile(ms, 99):7.3f} ms")

    mnistlab = [sys.executable, "-m", "mnistlab", "predict"]
    commands = {
        "onnx": [*mnistlab, "--engine", "onnx", str(args.run_dir), str(picture)],
        "keras": [*mnistlab, str(args.run_dir), str(picture)],
    }
    for command in commands.values():
        whole_process(command)  # once each first: files into the page cache, JAX's programs
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.starts):
        for name, command in commands.items():
            found[name].append(whole_process(command))
    print(f"whole process, `mnistlab predict [--engine onnx] RUN_DIR seven.png`, {args.starts}x")
    for name, times in found.items():
        wall, cpu = np.array(times).T
        print(
            f"  {name:6} wall {wall.min():.2f} to {wall.max():.2f} s (median {np.median(wall):.2f})"
            f"   CPU {cpu.min():.2f} to {cpu.max():.2f} s (median {np.median(cpu):.2f})"
        )


if __name__ == "__main__":
    main()
