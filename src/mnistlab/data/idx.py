"""IDX files, the format MNIST and Fashion-MNIST are published in: big-endian; magic 0x803 for
images (then count, rows, columns), 0x801 for labels (then count); then the bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnistlab import files
from mnistlab.errors import MnistlabError
from mnistlab.text import plural

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


IMAGE_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions


LABEL_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def file_size(file: str, count: int) -> int:
    """The bytes of the IDX file `file` (one of FILES) holding `count` images or labels."""
    return 16 + count * 28 * 28 if "images" in file else 8 + count


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX file (big-endian header, then the bytes) that holds a uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX files here hold uint8, not {array.dtype}")
    magic = 0x0800 | array.ndim
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def decode_idx(raw: bytes | bytearray, name: str = "IDX data") -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes; `name` is used in error messages. The
    array is writable, as `keras.datasets` gives it: a view of `raw` when `raw` is a bytearray
    (no copy of the 47 MB of training images), else a copy."""
    header_size, shape = idx_layout(raw, name)
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)
    return array if array.flags.writeable else array.copy()


def idx_layout(raw: bytes | bytearray, name: str = "IDX data") -> tuple[int, tuple[int, ...]]:
    """The header size and array shape of an IDX file of unsigned bytes, checked against its
    length; `name` is used in error messages."""
    if len(raw) < 4:
        raise MnistlabError(
            f"{name} is truncated: {plural(len(raw), 'byte')}, not even an IDX header",
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
    # Python's integers: np.prod wraps around at 2**63, and a header of three dimensions of
    # 2**32 - 1 then "promised" a small or negative size, which reshape failed on.
    expected = header_size + math.prod(shape)
    if len(raw) < expected:
        raise MnistlabError(
            f"{name} is truncated: {len(raw):,} bytes where its header promises {expected:,}",
            "delete it and fetch the data again",
        )
    if len(raw) > expected:
        raise MnistlabError(
            f"{name} is corrupt: {plural(len(raw) - expected, 'byte')} past the end its header "
            "gives",
            "delete it and fetch the data again",
        )
    return header_size, shape


def read_into_memory(path: Path, limit: int | None = None) -> bytearray:
    """The bytes of a regular file as a bytearray, which `decode_idx` views without copying
    them; a file over `limit` bytes is refused before it is read."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise too_long(path, size, limit)
        raw = bytearray(size)
        del raw[f.readinto(raw) :]  # the file shrank while it was read
    return raw


def read_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a file, gunzipped when it is gzip (by content, whatever its name). Only a
    regular file is read: a device (/dev/zero) or a pipe is refused by name. With `limit`, at
    most `limit` bytes of content are read or inflated: a larger file, or a gzip file that
    inflates past it (a 1 MB decompression bomb took 2.1 GB before), is refused at `limit`."""
    with open_regular(path) as f:
        head = f.read(2)
        f.seek(0)
        if head != b"\x1f\x8b":
            size = os.fstat(f.fileno()).st_size
            if limit is not None and size > limit:
                raise too_long(path, size, limit)
            raw = f.read() if limit is None else f.read(limit + 1)
            if limit is not None and len(raw) > limit:  # it grew while it was read
                raise too_long(path, len(raw), limit)
            return raw
        return inflate(f, str(path), limit)


def inflate(compressed: BinaryIO, name: str, limit: int | None = None) -> bytes:
    """The content of a gzip stream; with `limit`, refused as soon as it inflates past it."""
    try:
        with gzip.GzipFile(fileobj=compressed) as unzipped:
            # GzipFile.read(n) inflates no more than n bytes, whatever the stream holds.
            raw = unzipped.read() if limit is None else unzipped.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise MnistlabError(
            f"{name} is not a valid gzip file (corrupt or truncated: {e})",
            "delete it and fetch the data again",
        ) from e
    if limit is not None and len(raw) > limit:
        raise MnistlabError(
            f"{name} is corrupt: it inflates to more than the {limit:,} bytes its file can hold "
            "(a decompression bomb?)",
            "use the data set's own files, or delete it and fetch the data again",
        )
    return raw


def too_long(path: Path, size: int, limit: int) -> MnistlabError:
    return MnistlabError(
        f"{path} is corrupt: {plural(size - limit, 'byte')} past the end of the {limit:,} "
        "bytes its file can hold",
        "delete it and fetch the data again",
    )


def open_regular(path: Path) -> io.BufferedReader:
    """files.open_regular, any OSError said in one line."""
    try:
        return files.open_regular(path, "a data file")
    except OSError as e:
        raise MnistlabError(f"cannot read {path}: {e.strerror}", "check the path") from e


def sha256(raw: bytes | bytearray) -> str:
    return hashlib.sha256(raw).hexdigest()
