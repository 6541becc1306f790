"""Keras callbacks that mnistlab's fronts use: seconds per epoch, a line after each epoch, and
progress reports for a caller's own renderer.

Keras reads its backend once, at import: this module imports it, so it makes mnistlab's choice
first (`backend.use()`), as every module that imports Keras at its top does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from mnistlab import backend

backend.use()
import keras  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, validation included."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


class EpochLine(keras.callbacks.Callback):
    """A line after each epoch through `say`: "NAME: epoch 3/30, validation 99.12%, 37 s", or
    the training accuracy where nothing is held out."""

    def __init__(self, name: str, epochs: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self.name, self.epochs, self.say = name, epochs, say

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        part = "validation" if "val_accuracy" in logs else "training"
        accuracy = logs.get("val_accuracy", logs.get("accuracy", math.nan))
        self.say(
            f"{self.name}: epoch {epoch + 1}/{self.epochs}, {part} {accuracy:.2%}, "
            f"{time.perf_counter() - self.start:.0f} s"
        )
