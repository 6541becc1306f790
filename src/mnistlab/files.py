"""Writing without losing anything: every file and folder mnistlab makes is written under a
temporary name beside its destination and renamed into place when complete, so a crash, a
full disk or Ctrl-C never leaves a half-written file, and never touches an existing one.

    write_bytes(path, raw); write_text(path, text); write_json(path, value)
    with new_folder(path) as tmp: ...   # renamed to `path` when the block ends well
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError


def write_bytes(path: Path, raw: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2) + "\n")


@contextlib.contextmanager
def writing(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary file name beside `path` for a writer that wants a name (matplotlib, Keras),
    renamed to `path` when the block ends well and removed when it does not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


TEXT_LIMIT = 1 << 20  # bytes: an experiment, spec or search space file takes a few hundred


def open_regular(path: Path, what: str = "a file") -> io.BufferedReader:
    """`path` opened for reading if it is a regular file; anything else (a folder, a device
    such as /dev/zero, which is read until memory runs out, a pipe, which waits for a writer)
    is refused by name. Opened without blocking and checked again, so that a pipe put in its
    place after the check does not wait either. An OSError (no such file) is the caller's."""
    kind = file_kind(os.stat(path).st_mode)
    if kind is None:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        f = os.fdopen(os.open(path, flags), "rb")
        kind = file_kind(os.fstat(f.fileno()).st_mode)
        if kind is None:
            return f
        f.close()
    raise MnistlabError(f"cannot read {path}: it is {kind}, not {what}", f"name {what}")


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a pipe" if stat.S_ISFIFO(mode) else "a special file"


def read_text(path: Path, what: str = "a file", limit: int = TEXT_LIMIT) -> str:
    """The text of a regular file of at most `limit` bytes, as UTF-8; anything else is refused
    by name before it is read (OSError and UnicodeDecodeError are the caller's)."""
    with open_regular(path, what) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise MnistlabError(
            f"cannot read {path}: it is over {limit:,} bytes, too large for {what}",
            f"name {what}",
        )
    return raw.decode()


def check_new(path: Path) -> None:
    """Refuse a destination folder that holds anything or cannot be made, before any work."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise MnistlabError(
            f"{path} already exists and is not empty", "choose another --out, or remove it"
        )
    check_writable(path, folder=True)


def check_writable(path: Path, folder: bool = False, option: str = "--out") -> None:
    """Refuse, before any work, a destination that cannot be written: under a file, in a
    folder without write permission, or (for a file) a folder itself. Writing makes the
    missing folders on the way, so the first one that exists must let us in. `option` names
    the option that chooses the place, in the fix."""
    why = unwritable(path, folder)
    if why:
        raise cannot_write(Path(path), why, option)


def unwritable(path: Path, folder: bool = False) -> str:
    """Why `path` (a folder if `folder`, else a file) cannot be written, or "" if it can."""
    path = Path(path).absolute()  # "." has no parent to walk up to
    if path.exists():
        if folder and not path.is_dir():
            return "it is a file, not a folder"
        if not folder and path.is_dir():
            return "it is a folder"
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return ""


def cannot_write(path: Path, why: str, option: str = "--out") -> MnistlabError:
    return MnistlabError(f"cannot write {path}: {why}", f"choose another place with {option}")


@contextlib.contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill, renamed to `path` when the block ends well
    and removed when it does not. Refuses a `path` that holds anything."""
    check_new(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.is_dir():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
