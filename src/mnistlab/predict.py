"""Images in, class probabilities out: the one path that evaluation and prediction share.

The model is called directly rather than through `model.predict`, which builds a data pipeline
on every call and costs tens of milliseconds even for one image (see README, "Prediction").
"""

import keras
import numpy as np

from mnistlab.data import preprocess

BATCH = 1000  # images per call when predicting many


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Probabilities of shape (N, classes) for uint8 images of shape (N, 28, 28)."""
    x = preprocess(images)
    parts = [
        keras.ops.convert_to_numpy(model(x[i : i + BATCH], training=False))
        for i in range(0, len(x), BATCH)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def top(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most likely classes of one image, most likely first."""
    order = np.argsort(probabilities)[::-1][:k]
    return [(int(c), float(probabilities[c])) for c in order]
