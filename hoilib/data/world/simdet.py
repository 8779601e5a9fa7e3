"""A simulated object detector: ground-truth instances -> a detection cache with controlled errors.

The real path reads DETR detections from a cache; the built-in world makes the same cache from its ground truth,
so that detection quality is a parameter of the study (`DetectorSimConfig`):

- misses: each instance is dropped with probability `miss_rate`;
- box jitter: each corner moves by N(0, box_jitter * box width) in x and N(0, box_jitter * box height) in y;
- class confusion: a kept instance gets a uniformly random wrong label with probability `class_confusion`;
- false positives: Poisson(`false_positives`) random boxes per image (side 8-60% of the image, random
  position, uniformly random label);
- score calibration: correct detections score N(score_true, score_noise), confused labels and false positives
  N(score_false, score_noise), clipped to [0.001, 0.999].

Boxes are clipped to the image; every random draw comes from one generator seeded with `seed`, so a cache is
deterministic. Within an image, detections keep the order: ground-truth instances (in order), then false
positives. With every error set to zero the cache reproduces the ground-truth boxes exactly, scored score_true.
"""
from __future__ import annotations

import numpy as np

from ..annotations import HOIAnnotations
from ..detections import DetectionCache


def gt_instances(annotations: HOIAnnotations) -> tuple:
    """Unique ground-truth instances of every image: a box shared by several pairs (a person doing several
    things, an object used by several people, a person who is both a subject and a target) counts once.

    Returns (image_index [K] int64, boxes [K, 4] float32 continuous 0-based xyxy pixels, labels [K] int64),
    sorted by image, humans first, then objects, each in order of first appearance."""
    bh, bo = annotations.continuous_boxes()
    img = np.concatenate([annotations.image_index, annotations.image_index])
    boxes = np.concatenate([bh, bo]).astype(np.float32)
    labels = np.concatenate([np.zeros(annotations.num_pairs, np.int64), annotations.object])
    first = np.concatenate([np.arange(annotations.num_pairs), np.arange(annotations.num_pairs)])
    key = np.concatenate([img[:, None].astype(np.float64), boxes.astype(np.float64), labels[:, None]], 1)
    _, idx = np.unique(key, axis=0, return_index=True)
    # order: image, then humans (rows of boxes_h) before objects, then first appearance
    role = (np.arange(len(img)) >= annotations.num_pairs).astype(np.int64)
    idx = idx[np.lexsort((first[idx], role[idx], img[idx]))]
    return img[idx], boxes[idx], labels[idx]


def simulate_detections(annotations: HOIAnnotations, cfg, seed: int, instances: DetectionCache | None = None,
                        num_classes: int | None = None, return_sources: bool = False):
    """Detections of every image of `annotations`.

    Args:
        annotations: the split (filenames and image sizes; its unique pair boxes are the ground truth unless
            `instances` is given).
        cfg: DetectorSimConfig (box_jitter, miss_rate, false_positives, class_confusion, score_true, score_false,
            score_noise).
        seed: random seed.
        instances: optional full ground truth per image (a DetectionCache; scores ignored), e.g. the world's every
            drawn instance, including objects nobody interacts with.
        num_classes: label space (default: len(annotations.objects)).
        return_sources: also return sources [D] int64: the row of the ground-truth instance each detection comes
            from (in `gt_instances` order, or the rows of `instances`), -1 for a false positive.
    Returns:
        DetectionCache (boxes continuous 0-based xyxy pixels, no feats) [, sources].
    """
    for name in ("box_jitter", "miss_rate", "false_positives", "class_confusion", "score_noise"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"detector.{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("miss_rate", "class_confusion", "score_true", "score_false"):
        if getattr(cfg, name) > 1:
            raise ValueError(f"detector.{name} must be <= 1, got {getattr(cfg, name)}")
    n_img = annotations.num_images
    K = int(num_classes if num_classes is not None else len(annotations.objects))
    if instances is not None:
        if instances.num_images != n_img:
            raise ValueError(f"instances cover {instances.num_images} images, annotations {n_img}")
        img = np.repeat(np.arange(n_img), np.diff(instances.offsets))
        boxes, labels = instances.boxes.astype(np.float64), instances.labels.astype(np.int64)
    else:
        img, boxes, labels = gt_instances(annotations)
        boxes = boxes.astype(np.float64)
    rng = np.random.default_rng(seed)
    n = len(img)
    W = annotations.sizes[:, 0].astype(np.float64)
    H = annotations.sizes[:, 1].astype(np.float64)
    # ---- ground-truth instances: misses, jitter, confusion, scores
    keep = rng.random(n) >= cfg.miss_rate
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    noise = rng.standard_normal((n, 4)) * cfg.box_jitter * np.concatenate([wh, wh], 1)
    det = boxes + noise
    confused = rng.random(n) < cfg.class_confusion
    shift = rng.integers(1, max(K, 2), size=n)  # a uniformly random *other* label
    det_labels = np.where(confused, (labels + shift) % K, labels) if K > 1 else labels.copy()
    wrong = det_labels != labels
    score = np.where(wrong, cfg.score_false, cfg.score_true) + cfg.score_noise * rng.standard_normal(n)
    # ---- false positives
    n_fp = rng.poisson(cfg.false_positives, size=n_img) if cfg.false_positives > 0 else np.zeros(n_img, np.int64)
    fp_img = np.repeat(np.arange(n_img), n_fp)
    m = len(fp_img)
    side = rng.uniform(0.08, 0.6, size=(m, 2)) * np.stack([W[fp_img], H[fp_img]], 1)
    x0 = rng.uniform(0, 1, size=m) * (W[fp_img] - side[:, 0])
    y0 = rng.uniform(0, 1, size=m) * (H[fp_img] - side[:, 1])
    fp_boxes = np.stack([x0, y0, x0 + side[:, 0], y0 + side[:, 1]], 1)
    fp_labels = rng.integers(0, K, size=m)
    fp_score = cfg.score_false + cfg.score_noise * rng.standard_normal(m)
    # ---- assemble per image (ground truth first, then false positives), clip to the image
    all_img = np.concatenate([img[keep], fp_img])
    all_boxes = np.concatenate([det[keep], fp_boxes])
    all_labels = np.concatenate([det_labels[keep], fp_labels]).astype(np.int64)
    all_scores = np.concatenate([score[keep], fp_score])
    sources = np.concatenate([np.flatnonzero(keep), np.full(m, -1, np.int64)])
    order = np.lexsort((np.concatenate([np.zeros(keep.sum()), np.ones(m)]), all_img))  # stable within groups
    all_img, all_boxes, all_labels, all_scores, sources = (a[order] for a in
                                                          (all_img, all_boxes, all_labels, all_scores, sources))
    w, h = W[all_img], H[all_img]
    x0 = np.clip(all_boxes[:, 0], 0, w)
    y0 = np.clip(all_boxes[:, 1], 0, h)
    x1 = np.clip(all_boxes[:, 2], 0, w)
    y1 = np.clip(all_boxes[:, 3], 0, h)
    # a box that jitter turned inside out becomes a thin box at its centre instead of an invalid one
    x0, x1 = np.minimum(x0, x1), np.maximum(x0, x1)
    y0, y1 = np.minimum(y0, y1), np.maximum(y0, y1)
    out_boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
    out_scores = np.clip(all_scores, 0.001, 0.999).astype(np.float32)
    counts = np.bincount(all_img, minlength=n_img)
    cache = DetectionCache(filenames=list(annotations.filenames),
                           offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), boxes=out_boxes,
                           scores=out_scores, labels=all_labels, num_classes=K, source=f"simulated(seed={seed})")
    cache.validate(annotations.sizes)
    return (cache, sources) if return_sources else cache
