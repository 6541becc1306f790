"""Test-set metrics, computed from `predict` so that evaluation and prediction agree exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mnistlab.prediction import predict

if TYPE_CHECKING:
    import keras

EPSILON = 1e-7  # Keras clips probabilities the same way before taking the log


def evaluate(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, shifts: int = 0
) -> dict[str, Any]:
    """Loss (sparse categorical cross-entropy), accuracy, per-class accuracy and the confusion
    matrix (rows: true class, columns: predicted) for uint8 images and their labels; with
    `shifts`, of the probabilities averaged over shifted copies (`prediction.classify`)."""
    return metrics(predict(model, images, shifts), labels)


def metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The metrics of `evaluate` from probabilities already predicted."""
    classes = probabilities.shape[1]
    picked = probabilities[np.arange(len(labels)), labels]
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "loss": float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0)))),
        "accuracy": float(np.mean(predicted == labels)),
        "per_class_accuracy": [float(a) for a in per_class],
        "confusion_matrix": confusion.tolist(),
        "count": int(len(labels)),
    }
