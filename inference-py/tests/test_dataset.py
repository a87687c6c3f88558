from __future__ import annotations

import numpy as np

from tandem_inference.dataset import heldout, split


def test_split_is_fixed_and_disjoint() -> None:
    s = split()
    assert s.x_train.shape == (1437, 64)
    assert s.x_heldout.shape == (360, 64)
    assert s.x_heldout.dtype == np.float32
    assert s.x_heldout.min() == 0
    assert s.x_heldout.max() == 16
    # Stratified: every digit is held out 35 or 36 times.
    assert set(np.bincount(s.y_heldout)) <= {35, 36, 37}
    x, y = heldout()
    np.testing.assert_array_equal(x, s.x_heldout)
    np.testing.assert_array_equal(y, s.y_heldout)
    np.testing.assert_array_equal(heldout()[0], x)
