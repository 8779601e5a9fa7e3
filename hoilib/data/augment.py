"""Training augmentation of the official LAIN code (lain-reference.md §2) on numpy images and xyxy boxes.

The official training transform of the detector image is RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4), then
one of two branches with p = 0.5: a multi-scale resize, or a resize followed by RandomSizeCrop and the resize;
CLIP's image is taken after these, so both models see the same flip and crop. Here:
- flip and colour jitter are the official ones (torchvision's ColorJitter: brightness, contrast and saturation
  factors each uniform in [1 - s, 1 + s], applied in a random order);
- the crop branch is a window whose width and height are independent fractions in [min, max] of the image's,
  taken with p = 0.5 (`CROP_PROB`); the multi-scale resize itself has no counterpart: it only changes the scale of
  DETR's input, and CLIP's input is resized to S x S whatever the scale;
- the official code re-runs DETR on the augmented image; with cached detections, the boxes of the detections are
  transformed with the image instead (as the ground truth's are). Boxes are clipped to the crop; a box left empty
  is dropped, and with it every ground-truth pair it belongs to.

Every function is pure: the randomness is a `numpy.random.Generator` passed in, made by `item_rng(seed, epoch,
index)` in training, so that two runs with the same seed see the same augmented images (common random numbers)
and a resumed run sees what an uninterrupted one saw. Boxes are continuous 0-based xyxy pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_PROB = 0.5  # official: the crop branch is one of two, chosen with p = 0.5
FLIP_PROB = 0.5  # torchvision RandomHorizontalFlip's default
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Augmentation:
    """What to apply (the `train.augment_*` fields) and the run's seed.

    flip: random horizontal flip; color: jitter strength (0 = off); scale: (min, max) crop fraction ((1, 1) = off).
    """

    flip: bool = True
    color: float = 0.4
    scale: tuple = (0.5, 1.0)
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.flip or self.color > 0 or tuple(self.scale) != (1.0, 1.0)

    def __call__(self, image: np.ndarray, det_boxes: np.ndarray, gt_boxes_h: np.ndarray, gt_boxes_o: np.ndarray,
                 epoch: int, index: int) -> dict:
        """`augment_sample` with the generator of (seed, epoch, index)."""
        return augment_sample(image, det_boxes, gt_boxes_h, gt_boxes_o, item_rng(self.seed, epoch, index),
                              flip=self.flip, color=self.color, scale=self.scale)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training image in one epoch (numpy's SeedSequence keeps the three apart)."""
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed, epoch and index must be >= 0, got {seed}, {epoch}, {index}")
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an [H, W, C] image left-right and boxes [N, 4] with it (x -> W - x)."""
    w = image.shape[1]
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.ascontiguousarray(image[:, ::-1]), np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)


def color_jitter(image: np.ndarray, factors, order) -> np.ndarray:
    """Brightness, contrast and saturation of a uint8 RGB image [H, W, 3] (torchvision's ColorJitter arithmetic).

    factors: (brightness, contrast, saturation), 1 = unchanged; order: a permutation of (0, 1, 2) saying in which
    order the three are applied. Values are clipped to [0, 255] after each step and rounded at the end.
    """
    x = image.astype(np.float32)
    for op in order:
        f = float(factors[op])
        if op == 0:  # blend with black
            x = x * f
        elif op == 1:  # blend with the mean grey level of the image
            m = float((x @ _GRAY).mean())
            x = (x - m) * f + m
        else:  # blend with each pixel's grey level
            g = (x @ _GRAY)[..., None]
            x = (x - g) * f + g
        x = np.clip(x, 0.0, 255.0)
    return np.rint(x).astype(np.uint8)


def crop(image: np.ndarray, boxes: np.ndarray, window) -> tuple[np.ndarray, np.ndarray]:
    """Cut window (x0, y0, x1, y1) (whole pixels) out of an image; boxes [N, 4] move with it and are clipped to it
    (an empty box comes out with x2 <= x1 or y2 <= y1; see `nonempty`)."""
    x0, y0, x1, y1 = (int(v) for v in window)
    b = np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([x0, y0, x0, y0], np.float32)
    b = np.clip(b, 0.0, np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], np.float32))
    return np.ascontiguousarray(image[y0:y1, x0:x1]), b


def nonempty(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: boxes with positive width and height."""
    b = np.asarray(boxes).reshape(-1, 4)
    return (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])


def augment_sample(image: np.ndarray, det_boxes: np.ndarray, gt_boxes_h: np.ndarray, gt_boxes_o: np.ndarray,
                   rng: np.random.Generator, flip: bool = True, color: float = 0.4,
                   scale: tuple = (0.5, 1.0)) -> dict:
    """Flip, colour jitter and crop one training image with its detection and ground-truth boxes.

    Args:
        image: uint8 [H, W, 3]; det_boxes: [K, 4]; gt_boxes_h, gt_boxes_o: [M, 4] (continuous xyxy pixels).
        rng: the image's generator. Every decision is drawn, in a fixed order, whether or not its operation is on,
            so switching one operation off leaves the others' decisions as they were.
        flip, color, scale: as `Augmentation`.
    Returns:
        dict(image uint8 [H', W', 3], size (W', H'), det_boxes [K', 4], det_keep [K] bool, gt_boxes_h, gt_boxes_o
        [M', 4], gt_keep [M] bool): the kept rows (a detection whose box became empty is dropped; a ground-truth
        pair is dropped when either of its boxes did) in their original order.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image [H, W, 3], got {image.dtype} {tuple(image.shape)}")
    lo, hi = (float(v) for v in scale)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    h, w = image.shape[:2]
    det = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    gh = np.asarray(gt_boxes_h, np.float32).reshape(-1, 4)
    go = np.asarray(gt_boxes_o, np.float32).reshape(-1, 4)
    if len(gh) != len(go):
        raise ValueError(f"{len(gh)} human boxes but {len(go)} object boxes")
    # All decisions first, in a fixed order.
    do_flip = rng.random() < FLIP_PROB
    factors = rng.uniform(max(0.0, 1.0 - color), 1.0 + color, 3)
    order = rng.permutation(3)
    do_crop = rng.random() < CROP_PROB
    frac = rng.uniform(lo, hi, 2)  # width, height
    pos = rng.random(2)

    n_det, n_gt = len(det), len(gh)
    boxes = np.concatenate([det, gh, go])  # one array, so every box gets exactly the same transform
    if flip and do_flip:
        image, boxes = hflip(image, boxes)
    if color > 0:
        image = color_jitter(image, factors, order)
    if (lo, hi) != (1.0, 1.0) and do_crop:
        cw, ch = max(1, int(round(frac[0] * w))), max(1, int(round(frac[1] * h)))
        x0, y0 = int(pos[0] * (w - cw + 1)), int(pos[1] * (h - ch + 1))
        image, boxes = crop(image, boxes, (x0, y0, x0 + cw, y0 + ch))
    det, gh, go = boxes[:n_det], boxes[n_det:n_det + n_gt], boxes[n_det + n_gt:]
    det_keep = nonempty(det)
    gt_keep = nonempty(gh) & nonempty(go)
    return dict(image=image, size=(int(image.shape[1]), int(image.shape[0])), det_boxes=det[det_keep],
                det_keep=det_keep, gt_boxes_h=gh[gt_keep], gt_boxes_o=go[gt_keep], gt_keep=gt_keep)
