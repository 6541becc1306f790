"""Peak memory of the real server under many large uploads at once, from a second process on
127.0.0.1.

    python benchmarks/upload_memory.py RUN_DIR [--clients 20] [--seconds 15] [--requests 200]

For each kind of upload, starts `mnistlab serve RUN_DIR` afresh on a free port of 127.0.0.1
(so one kind's memory does not carry into the next), waits for /healthz, sends one small
picture (the first request compiles the model's forward pass), then has `--clients` threads
send that upload over and over, each on a connection of its own, for at most `--seconds`
seconds and `--requests` requests in all. Prints, for each kind, the server's peak resident
memory once warm and at the end (VmHWM from /proc/PID/status, which counts every moment, not
samples), the difference, and the answers by HTTP status; then stops the server.

The uploads are the largest the server takes, as each limit is reached:

- `raw 16 MiB PNG` and `form 16 MiB PNG`: a 4000x4000 grey PNG of noise, just under the
  16 MiB upload limit, as the body and as a multipart form's file (it shows no ink: 422);
- `16-bit PNG 7000x7000`: 120 KB on the wire, 49 megapixels (under the 50-megapixel limit)
  of 16-bit grey, 98 MB once decoded;
- `16-bit PNG 5790x5790` and `RGBA PNG 4096x4096`: the largest 16-bit and RGBA pictures within
  the 64 MiB budget of decoded pixels.

On the 2-core, 24 GB development machine, 20 clients, 15 s a kind (MiB added over the warm
server's 475):

    upload                  before   after
    raw 16 MiB PNG            1429      97
    form 16 MiB PNG           1575      96
    16-bit PNG 7000x7000      2591       1   (now refused from its header: 422)
    16-bit PNG 5790x5790      1669     188
    RGBA PNG 4096x4096         407     151

Linux only: it reads the server's memory from /proc.
"""

import argparse
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MIB = 2**20


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def seven(size: tuple[int, int], mode: str, ink: int | tuple[int, ...]) -> Image.Image:
    image = Image.new(mode, size, 0)
    w, h = size
    ImageDraw.Draw(image).line(
        [(w // 4, h // 5), (3 * w // 4, h // 5), (w // 2, 4 * h // 5)], fill=ink, width=w // 20
    )
    return image


def noise(side: int) -> bytes:
    """A grey PNG of random pixels: incompressible, so `side` sets the file's size."""
    rng = np.random.default_rng(0)
    return png(Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)))


def deep(side: int) -> bytes:
    """A 16-bit grey PNG of a seven: a few hundred kilobytes for millions of pixels."""
    light = seven((side, side), "L", 255)
    return png(Image.fromarray(np.asarray(light).astype(np.uint16) * 257))


def multipart(data: bytes, boundary: str = "mnistlab-upload-memory") -> tuple[bytes, str]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"'
        "\r\nContent-Type: image/png\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def start(run_dir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "serve", str(run_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server, port
        except OSError:
            time.sleep(0.3)
    server.kill()
    sys.exit("the server did not start in time")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def post(port: int, body: bytes, kind: str) -> str:
    """One request on a connection of its own: the HTTP status, or the exception's name."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/api/predict", body, {"Content-Type": kind})
        response = connection.getresponse()
        response.read()
        return str(response.status)
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        connection.close()


def load(port: int, body: bytes, kind: str, clients: int, requests: int, seconds: float) -> Counter:
    answers: Counter = Counter()
    lock = threading.Lock()
    left = iter(range(requests))
    stop_at = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if next(left, None) is None:
                    return
            answer = post(port, body, kind)
            with lock:
                answers[answer] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--clients", type=int, default=20, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=15, help="at most, per kind of upload")
    parser.add_argument("--requests", type=int, default=200, help="at most, per kind of upload")
    parser.add_argument("--only", help="run only the kinds whose name contains this")
    args = parser.parse_args()

    big = noise(4000)
    form, form_type = multipart(big)
    kinds = [
        ("raw 16 MiB PNG", big, "image/png"),
        ("form 16 MiB PNG", form, form_type),
        ("16-bit PNG 7000x7000", deep(7000), "image/png"),
        ("16-bit PNG 5790x5790", deep(5790), "image/png"),
        ("RGBA PNG 4096x4096", png(seven((4096, 4096), "RGBA", (0, 0, 0, 255))), "image/png"),
    ]
    small = png(seven((280, 280), "L", 255))
    print(
        f"POST /api/predict, {args.clients} clients, at most {args.seconds:g} s and "
        f"{args.requests} requests a kind, run {args.run_dir}"
    )
    print(f"{'upload':22} {'bytes':>11} {'warm MiB':>9} {'peak MiB':>9} {'added':>7}  answers")
    for name, body, kind in kinds:
        if args.only and args.only not in name:
            continue
        server, port = start(args.run_dir)
        try:
            assert post(port, small, "image/png") == "200"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model") as response:
                limits = json.load(response).get("limits", {})
            warm = memory(server.pid)["VmHWM"]
            answers = load(port, body, kind, args.clients, args.requests, args.seconds)
            peak = memory(server.pid)["VmHWM"]
        finally:
            stop(server)
        print(
            f"{name:22} {len(body):11,} {warm / MIB:9.0f} {peak / MIB:9.0f} "
            f"{(peak - warm) / MIB:7.0f}  {dict(sorted(answers.items()))}"
        )
    print(f"limits: {json.dumps(limits)}")


if __name__ == "__main__":
    main()
