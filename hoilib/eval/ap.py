"""Average precision of a ranking: the one definition used outside HOI detection (CLIP probes, image-level HOI
recognition). HOI detection AP (11-point or area, with box matching) is `hoi_map.evaluate`.
"""
from __future__ import annotations

import numpy as np


def ranking_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """Non-interpolated AP of ranking items by `scores` (descending; ties keep input order): the mean, over the
    positive items, of the precision at their rank. NaN when nothing is positive.

    Args:
        scores: [N] float; positive: [N] bool.
    """
    positive = np.asarray(positive, bool)
    if positive.shape != np.shape(scores):
        raise ValueError(f"scores {np.shape(scores)} and positive {positive.shape} differ in shape")
    if not positive.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = positive[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())
