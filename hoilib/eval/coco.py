"""Box AP of a detection cache in COCO's terms (pycocotools), the number detection users know.

The HOI evaluator scores pairs; this scores the boxes the pairs are built from. The ground truth of a split is every
annotated human and object box, once per image (`annotated_boxes`), with the object class as category (0 = person).
HICO-DET annotates only the people and objects of an interaction, so a correct detection of a bystander counts as a
false positive here, on HICO-DET and in the built-in world alike (whose full ground truth, every drawn instance,
can be given instead as a `DetectionCache`).

Conventions, as `COCOeval` wants them:
- boxes go in as xywh in continuous 0-based pixels: annotation files store HICO-DET's 1-based inclusive indices, so
  the ground truth is converted as the HOI evaluator converts it (stored - [1, 1, 0, 0], then w = x2 - x1);
- area = w * h of that box (the detections' area is computed the same way by `COCO.loadRes`);
- image, category and annotation ids start at 1: `COCOeval` marks "unmatched" with id 0, so a ground-truth id of 0
  would turn its true positives into false positives;
- AP is COCO's: 101-point interpolated precision, averaged over the IoU thresholds 0.50:0.05:0.95 (AP), at 0.50
  (AP50) and at 0.75 (AP75), over the categories that have ground truth, at most 100 detections per image (the
  top-scoring ones; DETR has 100 queries), all areas.
Images without any ground-truth box are left out, as the HOI evaluator leaves out images without pairs: their
boxes were not annotated, which is not the same as absent.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hoilib.data.annotations import HOIAnnotations
from hoilib.data.detections import DetectionCache, DetectionCacheError, Detections
from hoilib.data.world.simdet import gt_instances

__all__ = ["annotated_boxes", "box_ap", "coco_ground_truth"]


def annotated_boxes(annotations: HOIAnnotations) -> DetectionCache:
    """The ground-truth boxes of a split: every annotated human and object box once per image (a box shared by
    several pairs, or a person who is both a subject and a target, counts once; `simdet.gt_instances`).

    Returns a DetectionCache over the annotation file's images: boxes [K, 4] continuous 0-based xyxy pixels, labels
    [K] object class (humans 0), scores 1."""
    img, boxes, labels = gt_instances(annotations)
    bounds = np.searchsorted(img, np.arange(annotations.num_images + 1))
    dets = [Detections(boxes[lo:hi], np.ones(hi - lo, np.float32), labels[lo:hi])
            for lo, hi in zip(bounds[:-1], bounds[1:])]
    out = DetectionCache.from_list(annotations.filenames, dets, num_classes=len(annotations.objects))
    out.source = f"annotated boxes of {annotations.source}"
    return out


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] xyxy -> [K, 4] xywh (float64)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def coco_ground_truth(gt: DetectionCache, sizes: np.ndarray | None = None) -> tuple[dict, list]:
    """The COCO-format ground truth of the images of `gt` that hold at least one box.

    Args:
        gt: ground-truth boxes (continuous 0-based xyxy pixels; scores ignored).
        sizes: optional [N, 2] (width, height) per image of `gt`; 0 when not given (COCOeval does not read them).
    Returns:
        (dataset dict with "images", "annotations", "categories" for `COCO`, the positions in `gt` of the
        evaluated images; image i has COCO id position + 1, label c has category id c + 1).
    """
    counts = np.diff(gt.offsets)
    keep = np.flatnonzero(counts > 0)
    images, anns = [], []
    for i in keep.tolist():
        w, h = (int(v) for v in sizes[i]) if sizes is not None else (0, 0)
        images.append({"id": i + 1, "file_name": gt.filenames[i], "width": w, "height": h})
        d = gt[i]
        for box, label in zip(_xywh(d.boxes).tolist(), d.labels.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    cats = [{"id": c + 1, "name": str(c)} for c in range(gt.num_classes)]
    return {"images": images, "annotations": anns, "categories": cats}, keep.tolist()


def box_ap(gt, detections: DetectionCache) -> dict:
    """COCO box AP of a detection cache (module docstring for the conventions).

    Args:
        gt: HOIAnnotations (its annotated boxes, `annotated_boxes`) or a DetectionCache of ground-truth boxes
            (e.g. the world's every drawn instance); categories are object classes.
        detections: a DetectionCache holding every evaluated image (rows matched by file name; other images are
            ignored), with the same label space as `gt`.
    Returns:
        dict(ap, ap50, ap75: percent; per_category: {object class: AP in percent} for the classes with ground truth;
        n_images: images evaluated; n_gt: ground-truth boxes; n_det: detections on the evaluated images).
    Raises:
        DetectionCacheError naming an evaluated image the cache lacks; ValueError when the label spaces differ or
        there is no ground-truth box.
    """
    sizes = gt.sizes if isinstance(gt, HOIAnnotations) else None
    source = gt.source
    if isinstance(gt, HOIAnnotations):
        gt = annotated_boxes(gt)
    if gt.num_classes != detections.num_classes:
        raise ValueError(f"box_ap: {source} has {gt.num_classes} object classes but the detections "
                         f"({detections.source}) {detections.num_classes}")
    dataset, evaluated = coco_ground_truth(gt, sizes)
    if not evaluated:
        raise ValueError(f"box_ap: {source} has no ground-truth box")
    row = {f: r for r, f in enumerate(detections.filenames)}
    results = []
    for i in evaluated:
        name = gt.filenames[i]
        if name not in row:
            raise DetectionCacheError(f"{detections.source}: no detections for image {i} ({name}) of {source}")
        d = detections[row[name]]
        results += [{"image_id": i + 1, "category_id": int(c) + 1, "bbox": b, "score": float(s)}
                    for b, s, c in zip(_xywh(d.boxes).tolist(), d.scores.tolist(), d.labels.tolist())]
    with_gt = sorted({a["category_id"] for a in dataset["annotations"]})
    out = dict(n_images=len(evaluated), n_gt=len(dataset["annotations"]), n_det=len(results))
    if not results:  # COCO.loadRes cannot take an empty list; nothing detected is AP 0 everywhere
        return dict(ap=0.0, ap50=0.0, ap75=0.0, per_category={c - 1: 0.0 for c in with_gt}, **out)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.params.imgIds = [i + 1 for i in evaluated]
        ev.evaluate()
        ev.accumulate()
    # precision [T iou thresholds, R recall points, K categories, A areas, M maxDets]; -1 = no ground truth
    prec = ev.eval["precision"][:, :, :, 0, -1]
    iou = ev.params.iouThrs
    k = [ev.params.catIds.index(c) for c in with_gt]

    def mean(p: np.ndarray) -> float:
        return float(p[p > -1].mean() * 100) if (p > -1).any() else float("nan")

    return dict(ap=mean(prec[:, :, k]), ap50=mean(prec[np.isclose(iou, 0.5)][:, :, k]),
                ap75=mean(prec[np.isclose(iou, 0.75)][:, :, k]),
                per_category={c - 1: mean(prec[:, :, kk]) for c, kk in zip(with_gt, k)}, **out)
