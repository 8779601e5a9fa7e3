"""The AP of a plain ranking (CLIP probes, image-level recognition)."""
import numpy as np
import pytest

from hoilib.eval import ranking_ap


def test_average_precision_known_answer():
    # ranks: pos, neg, pos -> precisions at the positives 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert ranking_ap(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1], bool)) == pytest.approx(5 / 6)
    assert np.isnan(ranking_ap(np.array([0.1]), np.array([0], bool)))
