"""The page in a real browser shows the saliency of its answer and takes a correction: a digit
drawn with the mouse, its saliency map drawn beside the answer, then "wrong? it's a …" clicked
and the correction found in the server's corrections folder.

The model is the tiny synthetic run (it cannot read digits, but answers as any run does), so
this needs no real data; the server is `mnistlab serve` in a process of its own and the browser
Debian's `chromium`, driven headless by Playwright, as in tests/test_browser.py.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """`mnistlab serve RUN --corrections DIR`; its URL and the folder."""
    port = free_port()
    folder = tmp_path_factory.mktemp("kept") / "corrections"
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "mnistlab", "serve", str(tiny_run), "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--corrections", str(folder)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the server stopped: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the server did not start: {log.read_text()}"
            time.sleep(0.3)
        yield url, folder
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 900, "height": 800})
        finally:
            browser.close()


def draw(page, stroke: list[tuple[float, float]]) -> None:
    box = page.locator("#canvas").bounding_box()
    x, y = stroke[0]
    page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
    page.mouse.up()


def test_the_page_shows_the_saliency_and_keeps_a_correction(server, page, tmp_path):
    url, folder = server
    page.goto(url)
    page.wait_for_function("document.getElementById('about').textContent.includes('accuracy')")
    assert page.locator("#correct").is_hidden()

    draw(page, [(0.25, 0.2), (0.75, 0.2), (0.4, 0.85)])  # a seven
    page.wait_for_function(
        "!inFlight && !dirty && !explaining && document.getElementById('answer').textContent"
        " !== '' && document.getElementById('saliency').dataset.label"
        " === document.getElementById('answer').dataset.label",
        timeout=30_000,
    )
    said = page.locator("#answer").get_attribute("data-label")
    pixels = page.evaluate(
        "Array.from(document.getElementById('saliency').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data)"
    )
    rgba = np.array(pixels).reshape(28, 28, 4)
    assert (rgba[..., 3] == 255).all()  # drawn everywhere
    coloured = (rgba[..., 0] != rgba[..., 2]).sum()  # red or blue: pixels that counted
    assert coloured > 20, coloured
    page.screenshot(path=str(tmp_path / "page.png"))

    assert page.locator("#correct").is_visible()
    assert page.locator("#choices button").count() == 10
    assert page.locator(f"#choices button[data-cls='{said}']").is_disabled()
    label = 7 if said != "7" else 1
    page.click(f"#choices button[data-cls='{label}']")
    page.wait_for_function(
        "document.getElementById('thanks').textContent.startsWith('Kept')", timeout=30_000
    )
    assert f"Kept as {label}" in page.locator("#thanks").text_content()

    kept = [p for p in folder.iterdir() if p.is_dir()]
    assert len(kept) == 1
    files = sorted(f.name for f in kept[0].iterdir())
    assert files == ["correction.json", "image.png", "raw.png"]
    meta = json.loads((kept[0] / "correction.json").read_text())
    assert meta["label"] == label
    assert Image.open(kept[0] / "raw.png").size == (280, 280)  # the canvas as drawn
    seen = np.asarray(Image.open(kept[0] / "image.png"))
    assert seen.shape == (28, 28) and seen.max() == 255  # the 28x28 the model saw

    page.click("#clear")
    assert page.locator("#correct").is_hidden()
