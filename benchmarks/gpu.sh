#!/usr/bin/env bash
# mnistlab's figures on an NVIDIA GPU, in under 10 minutes on one card: `mnistlab bench`
# (the plain recipe on TensorFlow's CPU build against mnistlab's JAX path on the GPU), the
# time to 99.0% test accuracy with preset fast on JAX, and one seed of preset cnn on JAX.
#
#     .venv/bin/pip install -e ".[gpu]" -c constraints.txt   # JAX's CUDA 12 build
#     bash benchmarks/gpu.sh [OUT_DIR]                       # default gpu-bench/
#
# It refuses to run when JAX does not compute on a GPU (QUICK=1 runs it on the CPU, with one
# epoch of each, to check the script). Each step has its own time limit; the results are kept
# in OUT_DIR as JSON and a run folder, and the summary is printed at the end.
set -euo pipefail

out=${1:-gpu-bench}
mnistlab=${MNISTLAB:-.venv/bin/mnistlab}
python=${PYTHON:-.venv/bin/python}
quick=${QUICK:-}
mkdir -p "$out"

card=$(KERAS_BACKEND=jax "$python" -c 'import jax; d = jax.devices()[0]; print(d.platform, d.device_kind)')
echo "JAX computes on: $card"
if [[ $card != gpu* && -z $quick ]]; then
    echo "error: JAX does not see a GPU. install the gpu extra (pip install -e \".[gpu]\"), or QUICK=1 to check the script on the CPU" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.csv" 2>/dev/null || true

epochs=3 cnn_epochs=25
[[ -n $quick ]] && epochs=1 cnn_epochs=1
step() {  # step SECONDS NAME COMMAND...: run it under a time limit, keeping what it wrote
    local limit=$1 name=$2
    shift 2
    echo "== $name (at most ${limit} s)" >&2
    local start=$SECONDS
    timeout "$limit" "$@" || echo "== $name failed or ran out of time (exit $?)" >&2
    echo "== $name: $((SECONDS - start)) s" >&2
}
step 150 bench "$mnistlab" bench --epochs "$epochs" --json >"$out/bench.json"
step 120 to-99 "$mnistlab" bench --to 99.0 --seeds 1 --backend jax --json >"$out/to-99.json"
rm -rf "$out/cnn"
step 300 cnn "$mnistlab" train --preset cnn --backend jax --epochs "$cnn_epochs" --out "$out/cnn"

"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def read(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
bench, to99 = read("bench.json"), read("to-99.json")
if bench:
    for p in bench["paths"]:
        later = p["seconds"][1:] or p["seconds"]
        print(f"bench {p['path']:9} {p['backend']:10} {p['device']:28} epoch 1 {p['seconds'][0]:.2f} s, "
              f"later {sum(later) / len(later):.2f} s an epoch, process {p['process_seconds']:.1f} s")
    print(f"bench ratio {bench['ratio']:.1f}x an epoch, {bench['process_ratio']:.1f}x whole process")
if to99:
    r = to99["runs"][0]
    print(f"to 99.0%: {r['test_accuracy']:.2%} after {r['train_seconds']:.2f} s of training on "
          f"{r['device']} (epoch 1, which compiles: {r['seconds'][0]:.2f} s; the later epochs "
          f"{sum(r['seconds'][1:]):.2f} s)")
run = read("cnn/run.json")
if run:
    print(f"cnn seed 1: {run['metrics']['accuracy']:.2%} in {run['seconds']['train']:.1f} s of "
          f"training on {run.get('device', '?')}")
PY
