"""The digits data set and its one fixed split into training and held-out rows.

scikit-learn's bundled 8x8 digits (1,797 images, no download), pixel values 0-16 as
scikit-learn gives them. The split is `train_test_split(test_size=0.2,
random_state=0, stratify=labels)`: 1,437 rows to train on, 360 held out. Anyone
can reproduce it, so tests and benchmarks measure on rows the model never saw.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


class Split(NamedTuple):
    x_train: np.ndarray
    x_heldout: np.ndarray
    y_train: np.ndarray
    y_heldout: np.ndarray


def split() -> Split:
    """The fixed split: pixels FP32 [n, 64] (values 0-16), labels int64 [n]."""
    pixels, labels = load_digits(return_X_y=True)
    parts = train_test_split(
        pixels.astype(np.float32),
        labels.astype(np.int64),
        test_size=HELDOUT_FRACTION,
        random_state=SPLIT_SEED,
        stratify=labels,
    )
    return Split(*(np.ascontiguousarray(p) for p in parts))


def heldout() -> tuple[np.ndarray, np.ndarray]:
    """The held-out rows: (pixels FP32 [360, 64], labels int64 [360])."""
    s = split()
    return s.x_heldout, s.y_heldout
