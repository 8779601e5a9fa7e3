"""Qualitative results (notebook 08): which predictions to show and whether each is right."""
from __future__ import annotations

import numpy as np
import torch

from ..data.annotations import HOIAnnotations
from ..kernels import pair_min_iou_reference

def prediction_correct(annotations: HOIAnnotations, pred: dict, rows: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For prediction rows `rows`: True where a ground-truth pair of the same image and HOI class overlaps the
    predicted pair with min(IoU_h, IoU_o) >= iou (GT boxes converted to continuous coordinates)."""
    bh, bo = annotations.continuous_boxes()
    out = np.zeros(len(rows), bool)
    for j, r in enumerate(np.asarray(rows)):
        i, c = int(pred["image_index"][r]), int(pred["hoi"][r])
        g = annotations.pairs_of(i)
        g = g[annotations.hoi[g] == c]
        if len(g):
            t = lambda a: torch.as_tensor(np.asarray(a, np.float32).reshape(-1, 4))  # noqa: E731
            v = pair_min_iou_reference(t(pred["boxes_h"][r]), t(pred["boxes_o"][r]), t(bh[g]), t(bo[g]))
            out[j] = bool((v >= iou).any())
    return out


def top_predictions(pred: dict, image: int, top: int) -> np.ndarray:
    """Rows of the `top` highest-scoring predictions of one image (stable order on ties)."""
    rows = np.flatnonzero(pred["image_index"] == image)
    return rows[np.argsort(-pred["score"][rows], kind="stable")[:top]]


def pick_qualitative_images(annotations: HOIAnnotations, pred: dict, unseen, n: int = 8) -> list:
    """The first `n` test images (in file order) that contain an unseen class and have predictions; padded with
    other predicted images when fewer exist."""
    unseen = set(np.asarray(unseen, np.int64).tolist())
    has_pred = set(np.unique(pred["image_index"]).tolist())
    with_unseen = [i for i in annotations.nonempty_images().tolist()
                   if i in has_pred and unseen & set(annotations.hoi[annotations.pairs_of(i)].tolist())]
    rest = [i for i in sorted(has_pred) if i not in set(with_unseen)]
    return (with_unseen + rest)[:n]


def qualitative_picks(annotations: HOIAnnotations, pred: dict, indices, top: int = 3) -> dict:
    """{image: (rows of its `top` highest-scoring predictions, whether each is right)} for `plotting.plot_qualitative`."""
    out = {}
    for i in indices:
        rows = top_predictions(pred, int(i), top)
        out[int(i)] = (rows, prediction_correct(annotations, pred, rows))
    return out
