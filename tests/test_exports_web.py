"""The web export in a real browser: its JavaScript preparation gives the 28x28 image the Python
path gives, and the static page, served by a plain static server, reads a seven drawn with the
mouse with no request leaving the machine.

The browser is Debian's `chromium`, driven headless by Playwright, as in tests/test_browser.py
(`./run-tests` installs it when missing).
"""

import base64
import functools
import http.server
import threading
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from mnistlab.images import read_image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIDE = 280  # the page's canvas
# Drawings as the page makes them (black strokes on a transparent canvas): a pen width, then
# strokes in fractions of the canvas. A seven, a one, a thin square, two thick strokes in a
# corner, a small off-centre mark, a thin zero, and one stroke almost too faint to see.
DRAWINGS = [
    (18, "#000", [[(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]]),
    (18, "#000", [[(0.5, 0.15), (0.5, 0.85)]]),
    (4, "#000", [[(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7), (0.3, 0.3)]]),
    (30, "#000", [[(0.1, 0.1), (0.3, 0.2)], [(0.2, 0.5), (0.25, 0.9)]]),
    (10, "#000", [[(0.6, 0.6), (0.8, 0.65), (0.7, 0.95)]]),
    (2, "#000", [[(0.5, 0.2), (0.3, 0.5), (0.5, 0.8), (0.7, 0.5), (0.5, 0.2)]]),
    (12, "#333", [[(0.2, 0.8), (0.8, 0.2)]]),
]
DRAW = """([width, colour, strokes, side]) => {
    const canvas = document.getElementById('canvas');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.clearRect(0, 0, side, side);
    Object.assign(ctx, { lineWidth: width, lineCap: 'round', lineJoin: 'round' });
    ctx.strokeStyle = colour;
    for (const stroke of strokes) {
        ctx.beginPath();
        ctx.moveTo(stroke[0][0] * side, stroke[0][1] * side);
        for (const [x, y] of stroke.slice(1)) ctx.lineTo(x * side, y * side);
        ctx.stroke();
    }
    let prepared = null, error = null;
    try {
        prepared = mnistlabPrepare.prepare(ctx.getImageData(0, 0, side, side));
    } catch (e) { error = e.message; }
    return {
        png: canvas.toDataURL('image/png'),
        pixels: prepared && Array.from(prepared.pixels),
        inverted: prepared && prepared.inverted,
        error,
    };
}"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_the_javascript_preparation_gives_pythons_28x28(browser):
    script = (resources.files("mnistlab.exports") / "page" / "prepare.js").read_text()
    page = browser.new_page()
    page.set_content(f'<canvas id="canvas" width="{SIDE}" height="{SIDE}"></canvas>')
    page.add_script_tag(content=script)
    for width, colour, strokes in DRAWINGS:
        drawn = page.evaluate(DRAW, [width, colour, strokes, SIDE])
        assert drawn["error"] is None, (width, strokes, drawn["error"])
        # The same drawing as a PNG file, as the server's page sends it, read by Python
        python = read_image(base64.b64decode(drawn["png"].split(",", 1)[1]))
        javascript = np.array(drawn["pixels"], np.float64).reshape(28, 28)
        assert np.abs(javascript - python.pixels).max() * 255 <= 1.0, (width, strokes)
        assert javascript.sum() > 10  # something was drawn and kept
        assert drawn["inverted"] is python.inverted is True  # dark ink on a light page

    blank = page.evaluate(DRAW, [10, "#000", [], SIDE])
    assert blank["error"].startswith("no ink found")
    page.close()


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A plain static server on 127.0.0.1, as any static host would serve the folder."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {".mjs": "text/javascript", ".wasm": "application/wasm"}

        def log_message(self, format, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def web_export(tmp_path_factory):
    """The lab's model trained for 2 epochs on MNIST (about 96%), exported as a web page."""
    from mnistlab import data, exports
    from mnistlab.spec import preset
    from mnistlab.training import train

    folder = tmp_path_factory.mktemp("web")
    run = train(preset("lab", epochs=2), data.load("mnist"))
    run.save(folder / "run")
    report = exports.export(folder / "run", "web", folder / "page")
    assert report.passed
    assert report.float_model.check.images == 10_000
    return report


@pytest.mark.realdata
def test_the_static_page_reads_a_seven_without_leaving_the_machine(web_export, browser):
    out = web_export.out
    assert sorted(p.name for p in out.iterdir()) == [
        "export.json",
        "index.html",
        "model.onnx",
        "onnxruntime-web-LICENSE.txt",
        "ort-wasm-simd-threaded.mjs",
        "ort-wasm-simd-threaded.wasm",
        "ort.wasm.min.js",
        "prepare.js",
    ]
    assert "MIT License" in (out / "onnxruntime-web-LICENSE.txt").read_text()
    server, url = serve_folder(out)
    context = browser.new_context()
    asked, blocked, failed = [], [], []

    def route(route):
        host = urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("request", lambda request: asked.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    try:
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === 'yes'", timeout=60_000)
        assert page.locator("#title").text_content() == "Draw a digit"
        box = page.locator("#canvas").bounding_box()
        # a seven with the mouse: a bar, then a slanted stem
        for x, y in [(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)]:
            px, py = box["x"] + x * box["width"], box["y"] + y * box["height"]
            if (x, y) == (0.25, 0.2):
                page.mouse.move(px, py)
                page.mouse.down()
            else:
                page.mouse.move(px, py, steps=12)
        page.mouse.up()
        page.wait_for_function(
            "!inFlight && !dirty && document.getElementById('answer').textContent !== ''",
            timeout=60_000,
        )
        assert page.locator("#answer").text_content() == "7"
        assert page.locator("#status").text_content() == ""
        seen = page.evaluate(
            "Array.from(document.getElementById('preview').getContext('2d')"
            ".getImageData(0, 0, 28, 28).data).reduce((a, b) => a + b, 0)"
        )
        assert seen > 28 * 28 * 255  # opaque black, plus the white strokes
    finally:
        context.close()
        server.shutdown()
    assert blocked == [] and failed == []
    assert asked and all(urlsplit(u).hostname == "127.0.0.1" for u in asked)
    assert any(u.endswith(".wasm") for u in asked)  # the runtime came from the folder
