from __future__ import annotations

import numpy as np

from experiments.grounded_reference import auc


def test_auc_counts_ordered_pairs_and_half_ties():
    # pairs (3,2) (3,0) (1,0) ordered, (1,2) not: 3 of 4
    assert auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == 0.75
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 0.0
