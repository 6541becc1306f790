"""Latency of `POST /api/predict` on the real server, from a second process on 127.0.0.1.

    python benchmarks/api_latency.py RUN_DIR [--requests 500] [--seconds 60] [--clients 1]

Starts `mnistlab serve RUN_DIR` on a free port of 127.0.0.1, waits for /healthz, then sends
two kinds of image, one after the other: a drawing as the page sends it (280x280 PNG, black
strokes on a transparent canvas) and a photo (800x600 JPEG, a dark digit on grey paper with
noise). Each kind gets at most `--requests` requests and at most `--seconds` seconds, from
`--clients` threads each holding one keep-alive connection. Prints the latency percentiles
(p50, p90, p99, max), requests a second and the errors (any answer but 200, or a failed
connection), then stops the server.
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
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def drawing() -> bytes:
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line(
        [(70, 56), (210, 56), (112, 238)], fill=(0, 0, 0, 255), width=18, joint="curve"
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def photo() -> bytes:
    rng = np.random.default_rng(0)
    grey = np.full((600, 800), 200.0) - np.linspace(0, 60, 800)[None, :]  # a shadow
    image = Image.fromarray(grey.astype(np.uint8))
    ImageDraw.Draw(image).line([(300, 150), (480, 150), (360, 420)], fill=40, width=14)
    noisy = np.asarray(image, np.float64) + rng.normal(0, 6, (600, 800))
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit("the server did not start in time")


def load(port: int, body: bytes, kind: str, requests: int, seconds: float, clients: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    sent = iter(range(requests))
    stop = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            with lock:
                if next(sent, None) is None:
                    break
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body, {"Content-Type": kind})
                response = connection.getresponse()
                answer = response.read()
                problem = None if response.status == 200 else f"HTTP {response.status}"
                if problem is None and "label" not in json.loads(answer):
                    problem = "no label in the answer"
            except (OSError, http.client.HTTPException) as e:
                problem = type(e).__name__
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            elapsed = time.perf_counter() - start
            with lock:
                if problem is None:
                    latencies.append(elapsed)
                else:
                    errors[problem] = errors.get(problem, 0) + 1
        connection.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ms = 1000 * np.array(latencies) if latencies else np.zeros(1)
    return {
        "ok": len(latencies),
        "errors": errors,
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "per_second": (len(latencies) + sum(errors.values())) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=500, help="at most, per kind of image")
    parser.add_argument("--seconds", type=float, default=60, help="at most, per kind of image")
    parser.add_argument("--clients", type=int, default=1, help="concurrent connections")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "serve", str(args.run_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(url, server)
        kinds = [
            ("drawing, 280x280 PNG", drawing(), "image/png"),
            ("photo, 800x600 JPEG", photo(), "image/jpeg"),
        ]
        print(f"POST /api/predict on {url}, {args.clients} client(s), run {args.run_dir}")
        print(f"{'image':24} {'bytes':>7} {'ok':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")
        for name, body, kind in kinds:
            load(port, body, kind, 5, 10, 1)  # warm-up: the first calls compile
            r = load(port, body, kind, args.requests, args.seconds, args.clients)
            print(
                f"{name:24} {len(body):7,} {r['ok']:5} {r['p50']:7.1f} {r['p90']:7.1f} "
                f"{r['p99']:7.1f}   max {r['max']:.1f} ms, {r['per_second']:.0f} requests/s, "
                f"errors: {r['errors'] or 'none'}"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
