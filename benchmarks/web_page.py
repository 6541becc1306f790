"""The web export's page in headless Chromium: the milliseconds of its preparation (prepare.js)
and of ONNX Runtime Web's `session.run` for one drawn seven, and the page's start (from opening
it to the model ready), served by a plain static server on 127.0.0.1.

    python benchmarks/web_page.py WEB_DIR [--calls 50]

WEB_DIR is what `mnistlab export RUN_DIR --format web` wrote. Needs Debian's chromium and
Playwright, as the tests do.
"""

import argparse
import functools
import http.server
import threading
import time
from pathlib import Path

MEASURE = """async ([calls]) => {
    const canvas = document.getElementById('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    Object.assign(ctx, { lineWidth: 18, lineCap: 'round', lineJoin: 'round' });
    ctx.beginPath(); ctx.moveTo(70, 56); ctx.lineTo(210, 56); ctx.lineTo(112, 238); ctx.stroke();
    const prepareMs = [], runMs = [];
    let answer = null;
    for (let i = 0; i < calls; i++) {
        let t = performance.now();
        const { pixels } = mnistlabPrepare.prepare(ctx.getImageData(0, 0, 280, 280));
        prepareMs.push(performance.now() - t);
        const input = new ort.Tensor('float32', pixels, [1, 784]);
        t = performance.now();
        const result = await session.run({ [session.inputNames[0]]: input });
        runMs.push(performance.now() - t);
        const p = Array.from(result[session.outputNames[0]].data);
        answer = p.indexOf(Math.max(...p));
    }
    const median = v => v.sort((a, b) => a - b)[v.length >> 1];
    return { prepare: median(prepareMs), run: median(runMs), answer };
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("web_dir", type=Path)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {".mjs": "text/javascript", ".wasm": "application/wasm"}

        def log_message(self, format, *more):
            pass

    handler = functools.partial(Quiet, directory=str(args.web_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === 'yes'", timeout=60_000)
        ready = time.perf_counter() - start
        found = page.evaluate(MEASURE, [args.calls])
        browser.close()
    server.shutdown()
    print(f"page open to model ready: {ready * 1000:.0f} ms")
    print(
        f"one drawing, median of {args.calls}: prepare.js {found['prepare']:.1f} ms, "
        f"session.run {found['run']:.2f} ms; read as {found['answer']}"
    )


if __name__ == "__main__":
    main()
