"""The web app: a drawing page and an HTTP API over one trained run, for `mnistlab serve`.

`create_app(run_dir, allowed_hosts=...)` loads the run's model once, when the app is made, and
returns a FastAPI app; uvicorn serves it in one process. Every picture goes through the same
path as the command line's (`images.read_image`), so the page, the API and `mnistlab predict`
give the same answer for the same file.

- `GET /`: the page (a package file, `web/static/index.html`): a canvas to draw on with a mouse, a
  pen or a finger, the prediction updated as you draw, a bar for each class, the 28x28 image the
  model saw, and a file picker for a photo.
- `POST /api/predict`: an image as the request body (Content-Type image/... or
  application/octet-stream) or as the one file of a multipart/form-data form. Answers the
  label, class name, probabilities and the preprocessed image.
- `POST /api/read`: the same kinds of body; reads a number: every digit, left to right, with
  its probability, its box in the picture and the 28x28 image the model saw
  (`reading.read_picture`, as `mnistlab read` does).
- `GET /api/model`: the run's spec, data set, class names, metrics and the limits below.
- `POST /api/explain`, `POST /api/corrections`: a saliency map of the answer for the 28x28
  image the model saw, and a correction kept for `mnistlab finetune`.
- `GET /healthz`; OpenAPI docs at `/docs` (Swagger UI) and `/redoc`, their files served
  from here so that they work offline; the schema at `/openapi.json`.

Bad requests get a 4xx answer with a JSON body `{"error": ..., "fix": ...}`: 400 for an empty
or malformed request or a Host header the server does not answer to, 408 for an upload that
takes longer than UPLOAD_SECONDS, 413 over the size limit (checked from Content-Length and
again while reading, so a client that does not declare its size cannot send more), 415 for a
content type that is not an image, 422 for a file that is not a readable image, would take too
much memory to decode, or shows no ink.

Memory is bounded per request and in all: an upload streams into a temporary file (its first
SPOOL bytes in memory), a form's file too, never copied whole into memory; UPLOADS requests
at once are read and decoded, others wait with their body unread; DECODERS pictures at once
are decoded, on threads of their own, each within `images.MAX_DECODED`
(benchmarks/upload_memory.py measures it). A client that leaves mid-upload is one line in the
log.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from tempfile import SpooledTemporaryFile
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnistlab import corrections as corrections_module
from mnistlab import images as im
from mnistlab import prediction as pr
from mnistlab import reading, runs
from mnistlab.errors import MnistlabError
from mnistlab.version import __version__

FORM_OVERHEAD = 64 * 1024  # a multipart form's boundaries, headers and fields, beyond its file
RAW_TYPES = ("application/octet-stream",)  # besides image/*
DECODERS = 2  # pictures decoded and prepared at once: the machine's cores
UPLOADS = 8  # requests whose upload is read, waits for a decoder or is decoded, at once
SPOOL = 2**20  # bytes of an upload kept in memory; the rest goes to a temporary file
UPLOAD_SECONDS = 60  # the longest an upload may take to arrive once its reading starts
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")  # the names of this machine, as Host headers
log = logging.getLogger("mnistlab.serve")

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": f"One image of at most {im.size_text(im.MAX_BYTES)}, "
        f"{im.MAX_PIXELS:,} pixels and {im.size_text(im.MAX_DECODED)} decoded: {im.FORMATS}.",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


class ApiError(Exception):
    """A bad request: its HTTP status, what is wrong and what to do about it."""

    def __init__(self, status: int, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.status, self.problem, self.fix = status, problem, fix


def error_response(status: int, problem: str, fix: str = "") -> JSONResponse:
    return JSONResponse({"error": problem, "fix": fix}, status_code=status)


def create_app(
    run_dir: Path | None = None,
    allowed_hosts: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    corrections: Path | None = None,
) -> FastAPI:
    """The app over the run at `run_dir`, its model loaded once, here; with no run, over the
    default reading model (trained once on first use, `log` hearing how). With `allowed_hosts`
    (`host_names` makes them for an address), a request whose Host header names another host
    is refused; without, any Host is answered, for tests and for embedding the app behind
    something that checks it. `mnistlab serve` always gives them. `corrections` is the folder
    the page's corrections go to (default: the run folder's `corrections/`)."""
    from mnistlab.reading import reader

    return build_app(reader(run_dir, log=log), allowed_hosts, corrections)


def build_app(
    run: runs.Run,
    allowed_hosts: Sequence[str] | None = None,
    corrections: Path | None = None,
) -> FastAPI:
    page = resources.files("mnistlab.web").joinpath("static/index.html").read_text(encoding="utf-8")
    names = run.class_names
    # Keras builds a model's compiled forward pass on its first call: one at a time, and once
    # here rather than in the first visitor's request.
    lock = threading.Lock()
    # Pictures are decoded and prepared two at a time (the machine's cores), each within
    # images.MAX_DECODED, on two threads of their own: glibc gives each thread that allocates
    # an arena of its own and keeps what was freed there, so decoding two at a time on anyio's
    # 40 worker threads grew the server by 777 MiB where two threads of its own grew it by 97
    # (benchmarks/upload_memory.py, 16 MiB PNGs). A request holds an upload slot from reading
    # its body to its answer, so that those waiting for a decoder hold a bounded number of
    # bodies, and the rest wait with theirs unread (uvicorn stops reading a connection's body
    # at 64 KiB until asked).
    decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="mnistlab-decoder")
    uploads = anyio.CapacityLimiter(UPLOADS)
    pr.classify(run.model, np.zeros((1, im.SIDE, im.SIDE), np.float32))

    run_name = run.path.name if run.path else "unsaved"
    # FastAPI's docs pages with Swagger UI and ReDoc served from here rather than a CDN
    app = FastAPIOffline(
        title="mnistlab",
        version=__version__,
        summary=f"Reads handwritten {'digits' if run.dataset == 'mnist' else 'pictures'} "
        f"with the run {run_name} ({run.dataset}).",
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.problem, e.fix)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        fix = "see /docs for the API" if e.status_code in (404, 405) else ""
        return JSONResponse(
            {"error": str(e.detail), "fix": fix}, status_code=e.status_code, headers=e.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(422, f"invalid request: {e.errors()}", "see /docs for the API")

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, e: ClientDisconnect) -> Response:
        # Not the server's fault, and nobody to answer: one line instead of uvicorn's traceback.
        client = f"{request.client.host}:{request.client.port}" if request.client else "-"
        log.info(
            "%s - client disconnected mid-upload (%s %s)", client, request.method, request.url.path
        )
        return Response(status_code=400)

    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed_hosts=allowed_hosts)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The server is up and its model loaded."""
        return {"status": "ok"}

    @app.get("/api/model")
    async def model() -> dict[str, Any]:
        """The run being served: data set, class names, spec, metrics, and the upload limits."""
        meta = run.meta
        return {
            "run": run_name,
            "dataset": run.dataset,
            "class_names": names,
            "spec": meta["spec"],
            "parameters": meta.get("parameters"),
            "metrics": meta.get("metrics", {}),
            "backend": meta.get("backend"),
            "created": meta.get("created"),
            # mnistlab's version only: the others tell an attacker which flaws to try
            "versions": {"mnistlab": meta.get("versions", {}).get("mnistlab")},
            "limits": {
                "max_bytes": im.MAX_BYTES,
                "max_pixels": im.MAX_PIXELS,
                "max_decoded_bytes": im.MAX_DECODED,
                "formats": list(im.PILLOW_FORMATS),
                "content_types": ["image/*", *RAW_TYPES, "multipart/form-data"],
                "upload_seconds": UPLOAD_SECONDS,
                "uploads_at_once": UPLOADS,
                "decodes_at_once": DECODERS,
            },
            "corrections": corrections_info(),
        }

    @app.post("/api/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> dict[str, Any]:
        """Read one image: the label, its class name, the probabilities of every class, and
        the 28x28 image the model saw (as rows of 0-255 values and as a PNG data URL)."""
        form = upload_kind(request)
        async with uploads:
            upload = await receive_upload(request, form)
            try:

                def work() -> dict[str, Any]:
                    prepared = im.read_image(upload.file)
                    with lock:
                        probabilities = pr.classify(
                            run.model, prepared.pixels[None], run.spec.test_shifts
                        )[0]
                    return answer(prepared, probabilities, names)

                return await asyncio.get_running_loop().run_in_executor(decoders, work)
            except MnistlabError as e:
                raise ApiError(422, e.problem, e.fix) from None
            finally:
                await upload.close()

    @app.post("/api/read", openapi_extra=PREDICT_BODY)
    async def read(request: Request) -> dict[str, Any]:
        """Read a number: every digit in the image, left to right, each with its label,
        probability, box (top, left, bottom, right, in the picture's pixels) and the 28x28
        image the model saw (a PNG data URL); `text` is the number."""
        if run.dataset != "mnist":
            raise ApiError(
                400,
                f"this run reads {run.dataset}, not digits",
                "serve a run trained on mnist to read numbers; /api/predict reads one picture",
            )
        form = upload_kind(request)
        async with uploads:
            upload = await receive_upload(request, form)
            try:

                def work() -> dict[str, Any]:
                    result = reading.read_picture(Locked(run.model, lock), upload.file)
                    out = result.to_dict() | {"inverted": result.inverted}
                    for digit, shown in zip(out["digits"], result.digits, strict=True):
                        png = base64.b64encode(im.png(shown.pixels)).decode()
                        digit["image"] = f"data:image/png;base64,{png}"
                    return out

                return await asyncio.get_running_loop().run_in_executor(decoders, work)
            except MnistlabError as e:
                raise ApiError(422, e.problem, e.fix) from None
            finally:
                await upload.close()

    corrections_info = add_explain_and_corrections(app, run, lock, decoders, uploads, corrections)
    return app


class Locked:
    """A model whose forward pass runs one call at a time (Keras's compiled call is not
    made for threads), as `prediction.classify` calls it."""

    def __init__(self, model: Any, lock: threading.Lock) -> None:
        self.inner, self.lock = model, lock
        self.output_shape = model.output_shape

    def predict_on_batch(self, x: np.ndarray) -> Any:
        with self.lock:
            return self.inner.predict_on_batch(x)


def answer(
    prepared: im.Prepared, probabilities: np.ndarray, names: Sequence[str]
) -> dict[str, Any]:
    png = base64.b64encode(im.png(prepared.pixels)).decode()
    return pr.describe(probabilities, names) | {
        "inverted": prepared.inverted,
        "ink_box": list(prepared.ink_box),
        "image": {
            "width": im.SIDE,
            "height": im.SIDE,
            "pixels": prepared.as_uint8().tolist(),
            "png": f"data:image/png;base64,{png}",
        },
    }


def upload_kind(request: Request) -> bool:
    """Whether the request carries a form (else the image is the body), after refusing, from
    its headers alone, a content type that is not an image and a declared size over the
    limit."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = media == "multipart/form-data"
    if not (form or media.startswith("image/") or media in RAW_TYPES):
        raise ApiError(
            415,
            f"content type {media or '(none)'!r} is not an image",
            "send the image as the body with Content-Type image/png (or image/jpeg, ...), "
            "or as the file of a multipart/form-data form",
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > im.MAX_BYTES + (FORM_OVERHEAD if form else 0):
            raise too_large()
    return form


def too_large() -> ApiError:
    limit_error = im.too_large(None)
    return ApiError(413, limit_error.problem, limit_error.fix)


async def receive_upload(request: Request, form: bool) -> UploadFile:
    """The image file a request carries, as the body or as a form's one file, streamed into a
    temporary file (in memory up to SPOOL bytes) and cut off past the limit or the time."""
    limit = im.MAX_BYTES + (FORM_OVERHEAD if form else 0)
    received = 0

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal received
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large()
            yield chunk

    try:
        with anyio.fail_after(UPLOAD_SECONDS):
            upload = await (form_file(request, body()) if form else spool(body()))
    except TimeoutError:
        raise ApiError(
            408,
            f"the upload took longer than {UPLOAD_SECONDS} s",
            "send a smaller image, or from a faster connection",
        ) from None
    except ApiError as e:
        if e.status == 400 and received == 0:
            raise ApiError(400, "the request has no body", "send an image") from None
        raise
    if received == 0:
        await upload.close()
        raise ApiError(400, "the request has no body", "send an image")
    return upload


async def spool(chunks: AsyncIterator[bytes]) -> UploadFile:
    file = SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (closed with the upload)
    upload = UploadFile(file, size=0)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            await upload.write(chunk)
        await upload.seek(0)
    except BaseException:
        await upload.close()
        raise
    return upload


async def form_file(request: Request, chunks: AsyncGenerator[bytes, None]) -> UploadFile:
    # Starlette's parser writes a file part into a SpooledTemporaryFile of 1 MiB as it arrives.
    parser = MultiPartParser(
        request.headers, chunks, max_files=1, max_fields=10, max_part_size=FORM_OVERHEAD
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise ApiError(400, f"the form cannot be read: {e.message}", "send one file") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    try:
        if not files:
            raise ApiError(400, "the form holds no file", "send the image as a form field `file`")
        kind = (files[0].content_type or "").split(";")[0].strip().lower()
        if kind and not (kind.startswith("image/") or kind in RAW_TYPES):
            raise ApiError(415, f"the form's file is {kind!r}, not an image", "send an image")
        if (files[0].size or 0) > im.MAX_BYTES:
            raise too_large()
    except ApiError:
        await form.close()
        raise
    return files[0]


class HostCheck:
    """Starlette's TrustedHostMiddleware, its refusal answered in the API's JSON style: a web
    page whose name was pointed at this machine (DNS rebinding) gets a 400, not the API."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        async def allowed(scope: Scope, receive: Receive, send: Send) -> None:
            scope[HOST_ALLOWED] = True
            await app(scope, receive, send)

        self.check = TrustedHostMiddleware(allowed, allowed_hosts, www_redirect=False)
        self.names = ", ".join(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def relay(message: Message) -> None:
            if scope.get(HOST_ALLOWED):  # the app's answer; TrustedHost's own is dropped
                await send(message)

        await self.check(scope, receive, relay)
        if scope["type"] == "http" and not scope.get(HOST_ALLOWED):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            refused = error_response(
                400,
                f"this server does not answer to the Host {host!r}",
                f"open it by one of its names ({self.names}); a reverse proxy's name is "
                "allowed with `mnistlab serve --allow-host NAME`",
            )
            await refused(scope, receive, send)


HOST_ALLOWED = "mnistlab.host_allowed"  # set in a request's scope once its Host is allowed


def host_names(host: str, also: Sequence[str] = ()) -> list[str]:
    """The Host header names a server listening on `host` answers to: this machine's loopback
    names, `host` itself (an IPv6 address in brackets, as Host headers write it), the machine's
    name when it listens on every address, and `also` (a reverse proxy's name, `*.example.com`
    for its subdomains, `*` for any name). The port is not compared (TrustedHostMiddleware
    compares names): a rebinding attack changes the name, not the port."""
    names = list(LOOPBACK)
    if host in ("0.0.0.0", "::", ""):
        names.append(socket.gethostname())
    else:
        names.append(f"[{host}]" if ":" in host else host)
    for name in also:
        if name != "*" and ("*" in name[1:] or (name[:1] == "*" and name[:2] != "*.")):
            raise MnistlabError(
                f"--allow-host {name!r} is not a name", "give a name, or *.example.com"
            )
        names.append(name)
    return list(dict.fromkeys(name.lower() for name in names))


def check_port(host: str, port: int) -> None:
    """Refuse, with a clear message, an address that cannot be listened on."""
    try:
        socket.create_server((host, port)).close()
    except OSError as e:
        raise MnistlabError(
            f"cannot listen on {host}:{port} ({e.strerror or e})",
            "choose another --port (or --host), or stop what is using it",
        ) from None


def serve(app: FastAPI, host: str, port: int) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    # mnistlab's lines (a client that left mid-upload) in the server's log, as uvicorn's are
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mnistlab"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(app, host=host, port=port, log_level="info", log_config=config)


# --- See inside, and learn from corrections (POST /api/explain, POST /api/corrections) ---

SEEN_BYTES = 64 * 1024  # a 28x28 image as JSON rows of 0-255 values takes about 3 KiB
CORRECTIONS_DIR = "corrections"  # in the run folder, unless `--corrections DIR`
CORRECTION_LIMITS = corrections_module.Limits()  # the count and total size a folder may hold

EXPLAIN_BODY = {
    "requestBody": {
        "required": True,
        "description": "The 28x28 image the model saw, as /api/predict answers it "
        "(`image.pixels`).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"pixels": {"type": "array", "items": {"type": "array"}}},
                    "required": ["pixels"],
                }
            }
        },
    }
}
CORRECTION_BODY = {
    "requestBody": {
        "required": True,
        "description": "A form: `label` (the class it is), and `pixels` (the 28x28 image the "
        "model saw, JSON rows of 0-255 values) or `raw` (the picture's file), or both.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "integer"},
                        "pixels": {"type": "string"},
                        "raw": {"type": "string", "format": "binary"},
                    },
                    "required": ["label"],
                }
            }
        },
    }
}


def add_explain_and_corrections(
    app: FastAPI,
    run: runs.Run,
    lock: threading.Lock,
    decoders: ThreadPoolExecutor,
    uploads: anyio.CapacityLimiter,
    folder: Path | None,
) -> Callable[[], dict[str, Any]]:
    """`POST /api/explain`: the saliency map (integrated gradients) of the model's answer for
    the 28x28 image it saw. `POST /api/corrections`: keep a correction, atomically, in
    `folder` (default: the run folder's `corrections/`), within `corrections.Limits`; a full
    folder is refused with 507. Returns what `GET /api/model` says of them (`corrections`)."""
    import json

    from mnistlab import corrections as corr
    from mnistlab.explaining import Explainer
    from mnistlab.files import check_writable

    explainer = Explainer(run.model)
    names = run.class_names
    run_name = run.path.name if run.path else "unsaved"
    limits = CORRECTION_LIMITS
    if folder is not None:
        check_writable(folder, folder=True)
    elif run.path is not None:
        folder = run.path / CORRECTIONS_DIR
        try:
            check_writable(folder, folder=True)
        except MnistlabError as e:
            log.warning("corrections are off: %s; serve with --corrections DIR", e.problem)
            folder = None

    def describe() -> dict[str, Any]:
        count, size = corr.usage(folder) if folder is not None else (0, 0)
        return {
            "enabled": folder is not None,
            "count": count,
            "bytes": size,
            "max_count": limits.count,
            "max_bytes": limits.total_bytes,
            "max_upload_bytes": im.MAX_BYTES,
        }

    @app.post("/api/explain", openapi_extra=EXPLAIN_BODY)
    async def explain(request: Request) -> dict[str, Any]:
        """Why the model said what it said of a 28x28 image: its answer, and the saliency map
        of the predicted class (integrated gradients from a black image: 28x28 rows whose
        values add up to the probability's change), as `mnistlab explain` draws it."""
        values = await small_json(request)
        pixels = values.get("pixels") if isinstance(values, dict) else None
        try:
            image = corr.as_image(pixels)
        except MnistlabError as e:
            raise ApiError(422, e.problem, e.fix) from None

        def work() -> dict[str, Any]:
            with lock:
                e = explainer(image.astype(np.float32) / 255, names)
            return pr.describe(e.probabilities, names) | {
                "saliency": np.round(e.saliency, 6).tolist(),
                "baseline_probability": round(e.baseline_probability, 6),
                "steps": e.steps,
            }

        return await asyncio.get_running_loop().run_in_executor(decoders, work)

    @app.post("/api/corrections", status_code=201, openapi_extra=CORRECTION_BODY)
    async def corrections(request: Request) -> dict[str, Any]:
        """Keep a correction: the 28x28 image the model saw and the class a person says it
        is, with the picture as drawn or uploaded; `mnistlab finetune` learns from them."""
        if folder is None:
            raise ApiError(503, "this server keeps no corrections", "serve with --corrections DIR")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise ApiError(
                415,
                f"content type {media or '(none)'!r} is not a form",
                "send multipart/form-data with `label`, and `pixels` or `raw`",
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > im.MAX_BYTES + FORM_OVERHEAD:
            raise too_large()
        async with uploads:
            form = await correction_form(request, media == "multipart/form-data")
            try:
                label_text = form.get("label")
                if not isinstance(label_text, str) or not label_text.strip().isdigit():
                    raise ApiError(
                        422,
                        f"label {label_text!r} is not a class number",
                        f"send label=0 to {len(names) - 1}",
                    )
                label = int(label_text)
                raw_file = form.get("raw")
                raw = await raw_file.read() if isinstance(raw_file, UploadFile) else None
                pixels_text = form.get("pixels")
                if raw is None and not isinstance(pixels_text, str):
                    raise ApiError(422, "the form has neither `pixels` nor `raw`", "send one")

                def work() -> dict[str, Any]:
                    if isinstance(pixels_text, str):
                        try:
                            pixels = json.loads(pixels_text)
                        except ValueError:
                            raise MnistlabError(
                                "`pixels` is not JSON", "send 28 rows of 28 values 0-255"
                            ) from None
                    else:
                        assert raw is not None
                        pixels = im.read_image(raw).pixels
                    return {"pixels": pixels}

                loop = asyncio.get_running_loop()
                try:
                    seen = await loop.run_in_executor(decoders, work)
                    saved = await loop.run_in_executor(
                        decoders,
                        lambda: corr.save(
                            folder, seen["pixels"], label, names, raw, {"run": run_name}, limits
                        ),
                    )
                except corr.Full as e:
                    raise ApiError(507, e.problem, e.fix) from None
                except MnistlabError as e:
                    raise ApiError(422, e.problem, e.fix) from None
            finally:
                await form.close()
        count, size = corr.usage(folder)
        return {
            "saved": saved.name,
            "label": label,
            "class_name": names[label],
            "count": count,
            "bytes": size,
            "max_count": limits.count,
            "max_bytes": limits.total_bytes,
        }

    return describe


async def small_json(request: Request) -> Any:
    """A JSON body of at most SEEN_BYTES."""
    import json

    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > SEEN_BYTES:
            raise ApiError(413, "the request is too large", "send one 28x28 image as JSON")
    try:
        return json.loads(received)
    except ValueError:
        raise ApiError(
            400, "the request is not JSON", 'send {"pixels": 28 rows of 28 values 0-255}'
        ) from None


async def correction_form(request: Request, multipart: bool) -> Any:
    """A correction's form, its file streamed into a temporary file and cut off past the
    upload limit or time, as /api/predict's are. Without a file it may be URL-encoded."""
    received = 0

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal received
        async for chunk in request.stream():
            received += len(chunk)
            if received > im.MAX_BYTES + FORM_OVERHEAD:
                raise too_large()
            yield chunk

    parser: MultiPartParser | FormParser = (
        MultiPartParser(
            request.headers, body(), max_files=1, max_fields=4, max_part_size=FORM_OVERHEAD
        )
        if multipart
        else FormParser(request.headers, body())
    )
    try:
        with anyio.fail_after(UPLOAD_SECONDS):
            return await parser.parse()
    except TimeoutError:
        raise ApiError(408, f"the upload took longer than {UPLOAD_SECONDS} s") from None
    except MultiPartException as e:
        raise ApiError(400, f"the form cannot be read: {e.message}", "send a form") from None
