"""The web app through FastAPI's test client: the page, the API, and bad requests, each of
which gets a 4xx answer with a JSON error while the server goes on serving; its limits on
uploads at once and their time through the app's ASGI interface; `mnistlab serve`'s hosts
through Click's runner; and, on the real server (`mnistlab serve` in a process of its own),
clients that leave mid-upload and Host headers."""

import base64
import http.client
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import anyio
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from photos import encode, seven, strokes
from PIL import Image

from mnistlab import cli, runs, web
from mnistlab import images as pr
from mnistlab.errors import MnistlabError
from mnistlab.prediction import classify
from mnistlab.web import app as web_app
from mnistlab.web import create_app, host_names

SEVEN = encode(strokes((300, 300), seven(50, 50, 200), 14))
EPS = encode(strokes((100, 100), seven(20, 20, 60), 8), "EPS")  # Pillow would run Ghostscript


@pytest.fixture(scope="module")
def client(tiny_run):
    with TestClient(create_app(tiny_run), raise_server_exceptions=False) as client:
        yield client


def test_health_model_page_and_docs(client, tiny_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    model = client.get("/api/model").json()
    meta = runs.read_meta(tiny_run)
    assert model["dataset"] == "mnist"
    assert model["class_names"] == [str(d) for d in range(10)]
    assert model["spec"] == meta["spec"]
    assert model["metrics"]["accuracy"] == meta["metrics"]["accuracy"]
    assert model["limits"] == {
        "max_bytes": pr.MAX_BYTES,
        "max_pixels": pr.MAX_PIXELS,
        "max_decoded_bytes": pr.MAX_DECODED,
        "formats": ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"],
        "content_types": ["image/*", "application/octet-stream", "multipart/form-data"],
        "upload_seconds": web_app.UPLOAD_SECONDS,
        "uploads_at_once": web_app.UPLOADS,
        "decodes_at_once": web_app.DECODERS,
    }
    # mnistlab's version only: the others would tell which known flaws to try
    assert model["versions"] == {"mnistlab": meta["versions"]["mnistlab"]}
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert '<canvas id="canvas"' in page.text and 'id="file"' in page.text
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI's and ReDoc's files come from this server, so the docs work offline
    files = re.findall(r'(?:src|href)="([^"]+)"', docs.text + client.get("/redoc").text)
    assert len(files) >= 4 and all(f.startswith("/") for f in files), files
    for f in set(files):
        answer = client.get(f)
        assert answer.status_code == 200 and len(answer.content) > 500
    assert set(client.get("/openapi.json").json()["paths"]) == {
        "/healthz",
        "/api/model",
        "/api/predict",
        "/api/explain",
        "/api/corrections",
        "/api/read",
    }


def check_answer(answer: dict, expected_pixels: np.ndarray, tiny_run) -> None:
    assert len(answer["probabilities"]) == 10
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert answer["label"] == int(np.argmax(answer["probabilities"]))
    assert answer["class_name"] == str(answer["label"])
    assert [t["label"] for t in answer["top"]][0] == answer["label"]
    assert answer["inverted"] is True
    pixels = np.array(answer["image"]["pixels"])
    assert pixels.shape == (28, 28)
    assert np.array_equal(pixels, np.round(expected_pixels * 255))
    png = answer["image"]["png"].removeprefix("data:image/png;base64,")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(png)))), pixels)


def test_predict_as_body_and_as_form_agree_with_the_command_line_path(client, tiny_run):
    expected = pr.read_image(SEVEN).pixels
    model = runs.load(tiny_run).model
    probabilities = classify(model, expected[None])[0]
    for response in (
        client.post("/api/predict", content=SEVEN, headers={"Content-Type": "image/png"}),
        client.post(
            "/api/predict", content=SEVEN, headers={"Content-Type": "application/octet-stream"}
        ),
        client.post("/api/predict", files={"file": ("seven.png", SEVEN, "image/png")}),
    ):
        assert response.status_code == 200, response.text
        answer = response.json()
        check_answer(answer, expected, tiny_run)
        assert answer["probabilities"] == pytest.approx(probabilities, abs=1e-5)


def form(body: bytes, boundary: str = "XyZ") -> dict:
    return {
        "content": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "not an image"),
        ({"content": SEVEN, "headers": {"Content-Type": ""}}, 415, "content type '(none)'"),
        ({"json": {"image": "seven"}}, 415, "'application/json' is not an image"),
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "has no body"),
        ({"content": b"GIF89a...", "headers": {"Content-Type": "image/gif"}}, 422, "not an image"),
        ({"content": EPS, "headers": {"Content-Type": "image/x-eps"}}, 422, "not an image"),
        (
            {"content": SEVEN[:200], "headers": {"Content-Type": "image/png"}},
            422,
            "damaged or truncated",
        ),
        (
            {
                "content": encode(strokes((80, 80), [], 1)),
                "headers": {"Content-Type": "image/png"},
            },
            422,
            "no ink found",
        ),
        ({"files": {"file": ("a.txt", b"hi", "text/plain")}}, 415, "'text/plain', not an image"),
        ({"data": {"name": "seven"}, "files": {"": ("", b"")}}, 400, "the form holds no file"),
        (form(b'--XyZ\r\nContent-Disposition: form-data; name="f"\r\n\r\n'), 400, "form"),
        (
            {
                "files": [
                    ("a", ("a.png", SEVEN, "image/png")),
                    ("b", ("b.png", SEVEN, "image/png")),
                ]
            },
            400,
            "Too many files",
        ),
    ],
    ids=[
        "text",
        "no-type",
        "json",
        "empty",
        "not-an-image",
        "eps",
        "truncated",
        "blank",
        "form-text-file",
        "form-without-file",
        "malformed-form",
        "two-files",
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_error(client, request_args, status, message):
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["error"]
    assert set(body) == {"error", "fix"}
    assert client.get("/healthz").status_code == 200  # still serving


def test_uploads_over_the_limit_are_refused(client, monkeypatch):
    monkeypatch.setattr(pr, "MAX_BYTES", 1000)
    response = client.post("/api/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert "over the limit of 1,000 bytes" in response.json()["error"]

    # A client that sends no Content-Length (chunked) is cut off while reading.
    def chunks():
        for _ in range(10):
            yield b"\0" * 500

    response = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    response = client.post("/api/predict", files={"file": ("big.png", b"\0" * 70_000)})
    assert response.status_code == 413
    # A form may be FORM_OVERHEAD larger than its file, not its file larger than the limit.
    response = client.post("/api/predict", files={"file": ("big.png", b"\0" * 2000)})
    assert response.status_code == 413, response.text
    assert "over the limit of 1,000 bytes" in response.json()["error"]
    response = client.post(
        "/api/predict",
        content=SEVEN,
        headers={"Content-Type": "image/png", "Content-Length": "lots"},
    )
    assert response.status_code == 400


def test_a_decompression_bomb_is_refused_without_decoding(client):
    bomb = encode(Image.new("1", (10_000, 6_000)))
    response = client.post("/api/predict", content=bomb, headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    assert "10000x6000 pixels, over the limit" in response.json()["error"]


def test_unknown_paths_and_methods_are_json_errors(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"
    response = client.get("/api/predict")
    assert response.status_code == 405
    assert "error" in response.json()


def test_a_fashion_mnist_run_answers_with_class_names(tmp_path, tiny):
    from mnistlab.data import Dataset
    from mnistlab.spec import Spec
    from mnistlab.training import train

    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    names += ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    fashion = Dataset(tiny.train, tiny.test, names, "synthetic", "fashion-mnist")
    train(Spec(epochs=1, hidden=(16,)), fashion).save(tmp_path / "run")
    with TestClient(create_app(tmp_path / "run")) as client:
        model = client.get("/api/model").json()
        assert model["dataset"] == "fashion-mnist"
        assert model["class_names"] == list(names)
        answer = client.post(
            "/api/predict", content=SEVEN, headers={"Content-Type": "image/png"}
        ).json()
        assert answer["class_name"] == names[answer["label"]]
        assert [t["class_name"] for t in answer["top"]] == [
            names[t["label"]] for t in answer["top"]
        ]


def test_a_picture_too_large_to_decode_is_refused(client):
    deep = encode(Image.fromarray(np.zeros((6000, 6000), np.uint16)))  # 69 MB decoded
    response = client.post("/api/predict", content=deep, headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    assert response.json()["error"] == (
        "the image has 6000x6000 pixels in mode I;16, 68.7 MiB to decode, over the limit of "
        "64.0 MiB"
    )


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("localhost:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST", 200),
        ("proxy.example", 200),
        ("evil.example:8000", 400),
        ("127.0.0.1.evil.example", 400),
        ("", 400),
    ],
)
def test_only_the_hosts_it_serves_get_answers(hosts_client, host, status):
    # A page on evil.example whose name now points at 127.0.0.1 (DNS rebinding) sends its own
    # name as the Host; only this machine's names and those allowed are answered.
    response = hosts_client.get("/api/model", headers={"Host": host})
    assert response.status_code == status, response.text
    if status == 400:
        assert set(response.json()) == {"error", "fix"}
        assert f"does not answer to the Host {host!r}" in response.json()["error"]
        assert "--allow-host NAME" in response.json()["fix"]


@pytest.fixture(scope="module")
def hosts_client(tiny_run):
    app = create_app(tiny_run, allowed_hosts=host_names("127.0.0.1", ["proxy.example"]))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_host_names():
    assert host_names("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert host_names("::1", ["Proxy.Example", "*.lab.example"]) == [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "proxy.example",
        "*.lab.example",
    ]
    assert host_names("192.168.1.5")[-1] == "192.168.1.5"
    assert host_names("0.0.0.0")[-1] == socket.gethostname().lower()
    with pytest.raises(MnistlabError, match="--allow-host 'lab.\\*' is not a name"):
        host_names("127.0.0.1", ["lab.*"])


def test_the_serve_command_answers_to_this_machine_and_the_hosts_allowed(tiny_run, monkeypatch):
    def invoke(*args):
        return CliRunner().invoke(cli.cli, ["serve", str(tiny_run), *args])

    served = []
    monkeypatch.setattr(web, "serve", lambda app, host, port: served.append(app))
    with socket.create_server(("127.0.0.1", 0)) as free:
        port = free.getsockname()[1]
    args = ["--port", str(port), "--allow-host", "proxy.example", "--allow-host", "*.lab.example"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    with TestClient(served[0], base_url=f"http://127.0.0.1:{port}") as client:
        for host, status in [
            (f"127.0.0.1:{port}", 200),
            ("proxy.example", 200),
            ("a.lab.example", 200),
            ("lab.example.evil.example", 400),
        ]:
            assert client.get("/healthz", headers={"Host": host}).status_code == status, host
    result = invoke("--allow-host", "lab.*")
    assert result.exit_code == 2
    assert "error: --allow-host 'lab.*' is not a name" in result.output


async def call(app, receive, content_type: str = "image/png") -> tuple[int, dict]:
    """One POST /api/predict through the app's ASGI interface, its body from `receive`."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = []

    async def send(message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_uploads_are_read_a_few_at_a_time_and_for_a_limited_time(tiny_run, monkeypatch):
    # Five clients that send a little and stall: two are read at once, the others wait with
    # their body unread; each is cut off after UPLOAD_SECONDS.
    monkeypatch.setattr(web_app, "UPLOADS", 2)
    monkeypatch.setattr(web_app, "UPLOAD_SECONDS", 0.5)
    app = create_app(tiny_run)
    reading: list[int] = []
    answers: list[tuple[int, dict]] = []

    async def client(number: int) -> None:
        async def receive() -> dict:
            if number not in reading:
                reading.append(number)
                return {"type": "http.request", "body": SEVEN[:100], "more_body": True}
            await anyio.sleep(30)  # a client that stalls
            return {"type": "http.disconnect"}

        answers.append(await call(app, receive))

    async def main() -> None:
        async with anyio.create_task_group() as clients:
            for number in range(5):
                clients.start_soon(client, number)
            await anyio.sleep(0.3)
            assert len(reading) == 2

    began = time.monotonic()
    anyio.run(main)
    assert len(reading) == 5
    assert [status for status, _ in answers] == [408] * 5
    assert answers[0][1]["error"] == "the upload took longer than 0.5 s"
    assert time.monotonic() - began < 10


def test_pictures_are_decoded_on_threads_of_their_own(tiny_run, monkeypatch):
    # On anyio's 40 worker threads, each thread's malloc arena kept what a decode freed.
    app = create_app(tiny_run)
    threads: set[str] = set()
    read_image = pr.read_image

    def spy(source):
        threads.add(threading.current_thread().name)
        return read_image(source)

    monkeypatch.setattr(pr, "read_image", spy)
    answers: list[int] = []

    async def client() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": SEVEN, "more_body": False}

        answers.append((await call(app, receive))[0])

    async def main() -> None:
        async with anyio.create_task_group() as clients:
            for _ in range(8):
                clients.start_soon(client)

    anyio.run(main)
    assert answers == [200] * 8
    assert 1 <= len(threads) <= web_app.DECODERS
    assert all(name.startswith("mnistlab-decoder") for name in threads), threads


def test_a_picture_is_decoded_from_where_its_upload_was_spooled(tiny_run, monkeypatch):
    # An upload larger than SPOOL goes to a temporary file, a form's file too; both are read
    # as the bytes would be.
    monkeypatch.setattr(web_app, "SPOOL", 1000)
    app = create_app(tiny_run)
    expected = pr.read_image(SEVEN).pixels

    def receive_in_chunks(body: bytes):
        chunks = [body[i : i + 700] for i in range(0, len(body), 700)]

        async def receive() -> dict:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

        return receive

    form = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="seven.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + SEVEN + b"\r\n--XyZ--\r\n"
    )
    for body, kind in [(SEVEN, "image/png"), (form, "multipart/form-data; boundary=XyZ")]:
        status, answer = anyio.run(call, app, receive_in_chunks(body), kind)
        assert status == 200, answer
        assert np.array_equal(np.array(answer["image"]["pixels"]), np.round(expected * 255))


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """`mnistlab serve RUN --port P` in a process of its own: its port and its log."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mnistlab", "serve", str(tiny_run), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "the server stopped"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        yield port, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def leave_mid_upload(port: int, content_type: str, start: bytes) -> None:
    """A client that says it sends 100,000 bytes, sends `start`, and hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n".encode()
            + start
        )
        time.sleep(0.1)


def test_a_client_that_leaves_mid_upload_is_one_line_in_the_log(server):
    port, log = server
    form_start = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    for _ in range(3):
        leave_mid_upload(port, "image/png", SEVEN[:1000])
        leave_mid_upload(port, "multipart/form-data; boundary=XyZ", form_start + SEVEN[:1000])
    deadline = time.monotonic() + 15
    while log.read_text().count("client disconnected mid-upload") < 6:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    text = log.read_text()
    lines = [line for line in text.splitlines() if "client disconnected mid-upload" in line]
    assert len(lines) == 6
    assert all(line.endswith("(POST /api/predict)") for line in lines), lines
    assert "Traceback" not in text and "Exception in ASGI application" not in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200  # still serving


def test_the_real_server_answers_only_to_its_own_names(server):
    port, _ = server
    for host, status in [
        (f"127.0.0.1:{port}", 200),
        (f"localhost:{port}", 200),
        (f"[::1]:{port}", 200),
        (f"rebound.example:{port}", 400),
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.putrequest("GET", "/healthz", skip_host=True)
            connection.putheader("Host", host)
            connection.endheaders()
            response = connection.getresponse()
            body = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == status, (host, body)
        assert set(body) == ({"status"} if status == 200 else {"error", "fix"})
