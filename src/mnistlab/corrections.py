"""Corrections: pictures a model misread, each with the label a person says it has, kept in a
folder for `finetune` to learn from.

    save(folder, pixels, label, class_names, raw=png_bytes)   # -> folder/NAME
    read(folder)                                               # -> Corrections

Each correction is a folder of its own, `NAME/`: `image.png` (the 28x28 image the model saw,
white on black, as MNIST's), `correction.json` (the label, its class name, when, and what the
model had said) and, when given, `raw.EXT` (the picture as uploaded or drawn, to prepare again
if preprocessing changes). It is written in a temporary folder and renamed into place, so a
correction is there whole or not at all; NAME is the time to the microsecond, the label and
random letters, and an existing name is never written over. The folder is bounded by `Limits`:
a correction past its count or its total size is refused (`Full`), nothing is removed.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.files import new_folder, write_bytes, write_json
from mnistlab.text import plural

IMAGE = "image.png"
META = "correction.json"
RAW = "raw"  # raw.png, raw.jpg ...: the picture as it came
LOCK = ".lock"
SIDE = 28


@dataclass(frozen=True)
class Limits:
    """How much a corrections folder may hold: a correction that would pass either is refused."""

    count: int = 5_000  # corrections; 5,000 is half an MNIST class's test images, ample to learn
    total_bytes: int = 256 * 2**20  # all files; a drawn correction takes about 10 kB, a photo
    # up to the upload limit (16 MiB)


class Full(MnistlabError):
    """The corrections folder holds as much as its limits allow."""


@dataclass(frozen=True)
class Corrections:
    """A corrections folder's contents: uint8 images (N, 28, 28) as MNIST stores them, their
    labels (N,), and each correction's name, oldest first."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def usage(folder: Path) -> tuple[int, int]:
    """The corrections in `folder` and the bytes their files take."""
    count = size = 0
    if not Path(folder).is_dir():
        return 0, 0
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        count += 1
        for f in os.scandir(entry.path):
            if f.is_file(follow_symlinks=False):
                size += f.stat().st_size
    return count, size


def save(
    folder: Path,
    pixels: np.ndarray,
    label: int,
    class_names: Sequence[str],
    raw: bytes | None = None,
    said: dict[str, Any] | None = None,
    limits: Limits = Limits(),  # noqa: B008 (frozen)
) -> Path:
    """Keep one correction in `folder`: `pixels` the 28x28 image the model saw (floats in
    [0, 1] or uint8), `label` the class a person says it is, `raw` the picture's file as it
    came (any format `images.decode` reads), `said` what the model answered. Returns the
    correction's folder. Refused with `Full` past `limits`, nothing written."""
    from filelock import FileLock

    from mnistlab.images import decode, png

    image = as_image(pixels)
    if not (isinstance(label, int | np.integer) and 0 <= label < len(class_names)):
        raise MnistlabError(
            f"label {label!r} is not a class", f"give a class from 0 to {len(class_names) - 1}"
        )
    suffix = ""
    if raw is not None:
        suffix = "." + (decode(raw).format or "bin").lower().replace("jpeg", "jpg")
    encoded = png(image.astype(np.float32) / 255)
    meta = {
        "label": int(label),
        "class_name": class_names[label],
        "created": datetime.now(UTC).isoformat(timespec="microseconds"),
        "said": said or {},
        "raw": f"{RAW}{suffix}" if raw is not None else None,
    }
    adding = len(encoded) + len(json.dumps(meta)) + 200 + (len(raw) if raw is not None else 0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / LOCK, timeout=30):  # one writer at a time counts and adds
        count, size = usage(folder)
        if count >= limits.count:
            raise Full(
                f"the corrections folder {folder} is full: it holds "
                f"{plural(count, 'correction')}, its limit",
                "fine-tune on them (`mnistlab finetune`), then move them elsewhere",
            )
        if size + adding > limits.total_bytes:
            raise Full(
                f"the corrections folder {folder} is full: {size:,} bytes of its "
                f"{limits.total_bytes:,}, and this correction takes {adding:,}",
                "fine-tune on them (`mnistlab finetune`), then move them elsewhere",
            )
        while True:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
            path = folder / f"{stamp}-{label}-{secrets.token_hex(4)}"
            if not path.exists():
                break
        with new_folder(path) as tmp:
            write_bytes(tmp / IMAGE, encoded)
            if raw is not None:
                write_bytes(tmp / f"{RAW}{suffix}", raw)
            write_json(tmp / META, meta)
    return path


def as_image(pixels: Any) -> np.ndarray:
    """A 28x28 image as uint8, from floats in [0, 1] or 0-255 integers."""
    try:
        array = np.asarray(pixels)
    except (ValueError, TypeError):
        array = np.zeros(0)
    if array.shape != (SIDE, SIDE) or not np.issubdtype(array.dtype, np.number):
        raise MnistlabError(
            f"the image is not 28x28 numbers (shape {array.shape})",
            "send the 28x28 image the model saw, as rows of 0-255 values",
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise MnistlabError("float pixels must lie in [0, 1]", "divide by 255")
        return np.round(array * 255).astype(np.uint8)
    if array.min() < 0 or array.max() > 255:
        raise MnistlabError("pixels must lie in 0-255", "send 8-bit grey levels")
    return array.astype(np.uint8)


def read(folder: Path, class_count: int = 10) -> Corrections:
    """Every correction in `folder`, oldest first; a clear error for a folder that is missing
    or empty, and for a damaged correction (named, with its fix)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise MnistlabError(
            f"no corrections folder at {folder}",
            "pass the folder `mnistlab serve` keeps corrections in (--corrections)",
        )
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise MnistlabError(
            f"the corrections folder {folder} holds no corrections",
            "correct some answers on the page first (the 'wrong? it's a …' buttons)",
        )
    images, labels = [], []
    for path in found:
        try:
            meta = json.loads((path / META).read_text())
            label = meta["label"]
            with Image.open(io.BytesIO((path / IMAGE).read_bytes()), formats=["PNG"]) as picture:
                image = np.asarray(picture.convert("L"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise damaged(path, f"{type(e).__name__}: {e}") from None
        if not isinstance(label, int) or not 0 <= label < class_count:
            raise damaged(path, f"its label {label!r} is not a class")
        if image.shape != (SIDE, SIDE):
            raise damaged(path, f"its {IMAGE} is {image.shape[1]}x{image.shape[0]}, not 28x28")
        images.append(image)
        labels.append(label)
    return Corrections(np.stack(images), np.asarray(labels, np.uint8), tuple(p.name for p in found))


def damaged(path: Path, why: str) -> MnistlabError:
    return MnistlabError(
        f"the correction {path} is damaged ({why})", f"remove {path}, or move it elsewhere"
    )
