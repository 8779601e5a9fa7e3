"""Detections -> kept boxes -> human-object pairs, the layout grid, and ground-truth association.

Everything here follows the official LAIN code (lain-reference.md §3, §6, §9):

- `select_detections`: class-wise NMS (IoU 0.5), score >= 0.2, and 3..15 boxes per group (humans / others);
  kept boxes are ordered humans first, then the other boxes, each group by descending score.
- `make_pairs`: every ordered (x, y) with x a human and y any other kept box (objects and other humans).
- `paint_layout`: which kept box lies on top of every patch-grid cell (later boxes overwrite earlier ones).
- `assign_positives`: multi-label targets of each pair: class c is positive if some ground-truth pair of class c
  has min(IoU_h, IoU_o) >= 0.5.

Boxes are continuous xyxy in one common frame (the model uses the S x S CLIP input frame throughout).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ..kernels import pair_min_iou, pair_min_iou_reference

HUMAN = 0  # object index of "person" in every vocabulary of the study


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, *, nms_thresh: float = 0.5,
                      score_thresh: float = 0.2, min_instances: int = 3, max_instances: int = 15,
                      human: int = HUMAN) -> tuple[Tensor, int]:
    """Official LAIN region-proposal filtering (`prepare_region_proposals`).

    Args:
        boxes: [K, 4] xyxy; scores: [K]; labels: [K] int64 object classes.
    Returns:
        keep: [K'] int64 indices into the inputs, humans first then the other boxes, each by descending score.
        n_human: number of humans at the front of `keep`.
    When fewer than `min_instances` boxes of a group pass the score threshold, the top `min_instances` of that
    group after NMS are kept even below the threshold; more than `max_instances` are cut to the top ones.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1] or labels.shape != scores.shape:
        raise ValueError(f"expected boxes [K,4], scores [K], labels [K]; got {tuple(boxes.shape)}, "
                         f"{tuple(scores.shape)}, {tuple(labels.shape)}")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), 0
    keep = batched_nms(boxes.float(), scores.float(), labels, nms_thresh)
    # batched_nms returns descending scores; a stable re-sort makes the order of ties reproducible.
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    sc, is_h = scores[keep], labels[keep] == human
    groups = []
    for in_group in (is_h, ~is_h):
        members = keep[in_group]  # descending score
        n_pass = int((sc[in_group] >= score_thresh).sum())
        if n_pass < min_instances:
            members = members[:min_instances]
        elif n_pass > max_instances:
            members = members[:max_instances]
        else:
            members = members[sc[in_group] >= score_thresh]
        groups.append(members)
    return torch.cat(groups), int(groups[0].numel())


def make_pairs(n_human: int, n: int, device=None) -> Tensor:
    """[P, 2] int64 (x, y): every ordered pair of a human x (< n_human) and another kept box y != x, row-major in
    (x, y) like the official `torch.nonzero(logical_and(x != y, x < n_h))`."""
    if n_human == 0 or n <= 1:
        return torch.zeros(0, 2, dtype=torch.long, device=device)
    x, y = torch.meshgrid(torch.arange(n, device=device), torch.arange(n, device=device), indexing="ij")
    return torch.nonzero((x != y) & (x < n_human))


def make_pairs_batched(n_human: Tensor, n: Tensor) -> Tensor:
    """`make_pairs` of B images at once: n_human, n: [B] int64 -> [P, 3] int64 (image, x, y), image after image,
    each image's pairs in `make_pairs` order."""
    n_human = torch.where(n > 1, n_human, torch.zeros_like(n_human))
    cand = n_human * n  # candidates (x < n_human, any y) of each image, row-major
    img = torch.repeat_interleave(torch.arange(n.shape[0], device=n.device), cand)
    start = torch.cumsum(cand, 0) - cand
    i = torch.arange(img.shape[0], device=n.device) - start[img]
    x, y = i // n[img], i % n[img]
    keep = x != y
    return torch.stack([img[keep], x[keep], y[keep]], 1)


def scale_boxes(boxes: Tensor, from_size: tuple, to_size: tuple) -> Tensor:
    """Rescale xyxy boxes from a (W, H) frame to another (W', H') frame (axis-aligned, IoU-preserving)."""
    (w0, h0), (w1, h1) = from_size, to_size
    f = boxes.new_tensor([w1 / w0, h1 / h0, w1 / w0, h1 / h0])
    return boxes * f


def paint_layout(boxes: Tensor, grid: tuple, image_size: tuple) -> tuple[Tensor, Tensor]:
    """Paint kept boxes onto the patch grid, in order, later boxes on top (official `get_prior`).

    Args:
        boxes: [K, 4] xyxy in the (W, H) = `image_size` frame, in kept order (humans first).
        grid: (Gh, Gw) patch grid.
    Returns:
        index: [Gh, Gw] int64, the box on top of each cell, K where no box covers it ("nothing").
        grid_boxes: [K, 4] the boxes in grid units with +0.5 on x2 and y2 (the per-cell layout feature).
    Cells covered are rows round(y1):round(y2+0.5) and columns round(x1):round(x2+0.5) (end exclusive;
    torch.round, i.e. half to even, as in the official code).
    """
    gh, gw = grid
    w, h = image_size
    k = boxes.shape[0]
    g = boxes * boxes.new_tensor([gw / w, gh / h, gw / w, gh / h])
    g = torch.cat([g[:, :2], g[:, 2:] + 0.5], 1)
    r = torch.round(g).long()
    ys = torch.arange(gh, device=boxes.device)[None, :, None]
    xs = torch.arange(gw, device=boxes.device)[None, None, :]
    cover = ((ys >= r[:, 1, None, None]) & (ys < r[:, 3, None, None])
             & (xs >= r[:, 0, None, None]) & (xs < r[:, 2, None, None]))  # [K, Gh, Gw]
    order = torch.arange(k, device=boxes.device)[:, None, None]
    # The last box painted wins = the highest index among the boxes covering the cell.
    top = torch.where(cover, order, torch.full_like(order, -1)).amax(0) if k else \
        torch.full((gh, gw), -1, dtype=torch.long, device=boxes.device)
    index = torch.where(top < 0, torch.full_like(top, k), top)
    return index, g


def assign_positives_batched(boxes_h: Tensor, boxes_o: Tensor, pair_img: Tensor, gt_boxes_h: Tensor,
                             gt_boxes_o: Tensor, gt_classes: Tensor, gt_img: Tensor, num_classes: int,
                             fg_iou: float = 0.5, impl: str = "auto") -> Tensor:
    """`assign_positives` of a whole batch at once: pairs and ground truth of all images, each with its image index
    (pair_img [P], gt_img [M]); a pair only matches ground truth of its own image. The min-IoU matrix comes from
    `kernels.pair_min_iou` (Triton on CUDA with impl "auto"/"triton"), equal to `assign_positives`'s.
    Returns [P, num_classes] float 0/1."""
    labels = torch.zeros(boxes_h.shape[0], num_classes, device=boxes_h.device)
    if boxes_h.shape[0] == 0 or gt_boxes_h.shape[0] == 0:
        return labels
    if int(gt_classes.min()) < 0 or int(gt_classes.max()) >= num_classes:
        raise ValueError(f"ground-truth class out of range [0, {num_classes}): "
                         f"{int(gt_classes.min())}..{int(gt_classes.max())}")
    iou = pair_min_iou(boxes_h.float(), boxes_o.float(), gt_boxes_h.float(), gt_boxes_o.float(), impl=impl)
    p, m = torch.nonzero((iou >= fg_iou) & (pair_img[:, None] == gt_img[None, :])).unbind(1)
    labels[p, gt_classes[m]] = 1
    return labels


def assign_positives(boxes_h: Tensor, boxes_o: Tensor, gt_boxes_h: Tensor, gt_boxes_o: Tensor,
                     gt_classes: Tensor, num_classes: int, fg_iou: float = 0.5) -> Tensor:
    """Multi-label targets [P, num_classes] (float 0/1) of P detected pairs (official `associate_with_ground_truth`).

    Pair p is positive for class gt_classes[m] when min(IoU(boxes_h[p], gt_boxes_h[m]),
    IoU(boxes_o[p], gt_boxes_o[m])) >= fg_iou. All boxes xyxy in one frame.
    """
    labels = torch.zeros(boxes_h.shape[0], num_classes, device=boxes_h.device)
    if boxes_h.shape[0] == 0 or gt_boxes_h.shape[0] == 0:
        return labels
    if gt_classes.numel() and (int(gt_classes.min()) < 0 or int(gt_classes.max()) >= num_classes):
        raise ValueError(f"ground-truth class out of range [0, {num_classes}): "
                         f"{int(gt_classes.min())}..{int(gt_classes.max())}")
    iou = pair_min_iou_reference(boxes_h.float(), boxes_o.float(), gt_boxes_h.float(), gt_boxes_o.float())
    p, m = torch.nonzero(iou >= fg_iou).unbind(1)
    labels[p, gt_classes[m]] = 1
    return labels
