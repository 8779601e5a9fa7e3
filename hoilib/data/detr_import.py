"""Detections of a real detector into hoilib's cache (`hoilib.data.detections`): import and caching.

Two-stage HOI methods run a HICO-DET-fine-tuned DETR once and reuse its boxes. Two routes lead to a cache:

1. `import_detection_dir`: per-image JSON files as the two-stage community writes them. What the public code does
   (short commit hashes in brackets):
   - fredzzhang/hicodet `detections/h_detr_cache.py` [48d63da]: one file per image, named like the image with
     `jpg` replaced by `json`, holding `dict(boxes, scores, labels, size)`: `boxes` xyxy pixels from DETR's
     `PostProcess` at `size` = `target["size"]` = [height, width] of the frame the detector saw (DETR's transforms
     resize the image to a shorter side of 800, so boxes may be in that frame, not the original one), `labels`
     0..79 (the COCO-91 head is cut to 80 classes with a `keep` list, i.e. COCO-80 contiguous), `scores` >=
     `--thresh` (0.1).
   - fredzzhang/hicodet `detections/preprocessing.py` [7da5b23] and fredzzhang/upt `hicodet/preprocessing.py`
     (torchvision Faster R-CNN): keys `boxes`, `scores`, `labels`; labels are mapped from COCO category ids through
     `coco91tohico80.json` / `OBJECT_CORR` into the then alphabetical HICO object order (person = 49), unmapped ids
     dropped. `generate_gt_detections.py` [30674d2] writes ground-truth boxes as detections, copied from the
     annotation file (1-based pixel indices), `human_idx=49`, scores 1.
   - readers, fredzzhang/upt `utils.py` `CustomisedDataset` [02cb0a8]: `os.path.join(detection_dir,
     filename.replace('jpg', 'json'))`, keys `boxes`, `labels`, `scores`, a configurable `human_idx`.
   - OreoChocolate/LAIN `models/LAIN.py` [4cd75ac] runs DETR inside the model instead of caching: the
     post-processor gets `{'pred_logits', 'pred_boxes', 'feats': hs[-1]}` (256-d last decoder states), so
     per-detection features are called `feats`; `hidden_states` and `feat` are accepted as aliases. LAIN filters
     (class-wise NMS 0.5, score 0.2, 3..15 per group) after the detector, so a cache should keep every query above
     a low floor.
   Label conventions are therefore an argument (`label_space`): "coco80" (DETR caches, LAIN; the default),
   "hico_alphabetical" (older Faster R-CNN / ground-truth caches), "coco91" (raw COCO category ids).
2. `cache_detections`: run any detector callable over the images and write the cache; `detr_postprocess` turns raw
   DETR outputs into the per-image dicts it expects. DETR itself is not part of hoilib.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .annotations import HOIAnnotations
from .detections import DetectionCache, DetectionCacheError, Detections
from .hicodet import _categories

LABEL_SPACES = ("coco80", "hico_alphabetical", "coco91")
FEATURE_KEYS = ("feats", "hidden_states", "feat")  # first one found is used


def label_map(label_space: str) -> np.ndarray:
    """int64 lookup table: file label -> COCO-80 object index (hoilib's order), -1 where the label has no class.

    "coco80": identity over 0..79. "hico_alphabetical": alphabetical HICO object index (airplane = 0, person = 49).
    "coco91": COCO category id 0..90 (ids of the 11 unused COCO categories and 0 map to -1).
    """

    conv = _categories()["object_index_conventions"]
    if label_space == "coco80":
        return np.arange(80, dtype=np.int64)
    if label_space == "hico_alphabetical":
        out = np.full(80, -1, np.int64)
        out[np.asarray(conv["hico_alphabetical_index"])] = np.arange(80)
        return out
    if label_space == "coco91":
        out = np.full(91, -1, np.int64)
        out[np.asarray(conv["coco_category_id"])] = np.arange(80)
        return out
    raise ValueError(f"label_space must be one of {LABEL_SPACES}, got {label_space!r}")


def detection_file(det_dir: str | Path, filename: str) -> Path:
    """`<det_dir>/<image stem>.json` (the community's `filename.replace('jpg', 'json')`)."""
    return Path(det_dir) / (Path(filename).stem + ".json")


def read_detection_json(path: str | Path, width: int, height: int, *, num_classes: int = 80,
                        label_space: str = "coco80", one_based: bool = False, score_floor: float = 0.0,
                        clip_tolerance: float = 0.05) -> Detections:
    """Read one per-image detection file into `Detections` in hoilib's conventions.

    Args:
        path: the JSON file: {"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...], optional
            "size": [height, width] of the frame the boxes are in, optional "feats" / "hidden_states" / "feat": [K, F]}.
        width, height: size of the original image (from the annotation file).
        num_classes: size of hoilib's label space (80 for HICO-DET).
        label_space: how the file numbers the objects (see `label_map`); labels without a class ("coco91" gaps)
            are dropped, labels outside the table are an error.
        one_based: the boxes are 1-based pixel indices (ground-truth caches): x1, y1 are shifted by -1.
        score_floor: keep detections with score >= score_floor.
        clip_tolerance: boxes overflowing the image by at most this fraction of its width / height are clipped to
            it (DETR's boxes are not clipped); further out is an error (usually boxes of another frame).

    Returns:
        `Detections`: boxes float32 [K, 4] continuous 0-based xyxy pixels of the original image, scores float32 [K],
        labels int64 [K] (COCO-80), feats float32 [K, F] or None.
    Raises DetectionCacheError naming the file and the first bad detection.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, too deep
        raise DetectionCacheError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(d, dict) or any(k not in d for k in ("boxes", "scores", "labels")):
        raise DetectionCacheError(f"{path}: expected a JSON object with keys 'boxes', 'scores', 'labels'")
    boxes = _json_numbers(path, "boxes", d["boxes"], 4)
    scores = _json_numbers(path, "scores", d["scores"])
    raw_labels = _json_numbers(path, "labels", d["labels"])
    k = len(scores)
    if len(boxes) != k or len(raw_labels) != k:
        raise DetectionCacheError(f"{path}: {len(boxes)} boxes, {k} scores and {len(raw_labels)} labels")
    fkey = next((key for key in FEATURE_KEYS if key in d), None)
    feats = None
    if fkey is not None:
        rows = d[fkey]
        dim = len(rows[0]) if type(rows) is list and rows and type(rows[0]) is list else 0
        feats = _json_numbers(path, fkey, rows, dim).astype(np.float32)
        if len(feats) != k or (k and feats.ndim != 2):
            raise DetectionCacheError(f"{path}: {fkey!r} has shape {feats.shape}, expected ({k}, F)")
        if k == 0:
            feats = feats.reshape(0, 0)

    def fail(j: int, what: str):
        raise DetectionCacheError(f"{path}: detection {j}: {what}")

    bad = np.flatnonzero(~np.isfinite(boxes).all(1) | ~np.isfinite(scores) | ~np.isfinite(raw_labels))
    if bad.size:
        fail(int(bad[0]), "non-finite box, score or label")
    bad = np.flatnonzero((scores < 0) | (scores > 1))
    if bad.size:
        fail(int(bad[0]), f"score {scores[bad[0]]} outside [0, 1]")
    # Labels may arrive as JSON floats (`.tolist()` of a float tensor); only whole numbers are labels.
    bad = np.flatnonzero(raw_labels != np.round(raw_labels))
    if bad.size:
        fail(int(bad[0]), f"label {raw_labels[bad[0]]} is not an integer")
    if label_space == "coco80":
        table = np.arange(num_classes, dtype=np.int64)  # labels are already hoilib's object indices
    elif num_classes == 80:
        table = label_map(label_space)
    else:
        raise ValueError(f"label_space {label_space!r} describes HICO-DET's 80 objects, but num_classes={num_classes}")
    raw = raw_labels.astype(np.int64)
    bad = np.flatnonzero((raw < 0) | (raw >= len(table)))
    if bad.size:
        fail(int(bad[0]), f"label {int(raw[bad[0]])} out of range [0, {len(table)}) ({label_space} labels)")
    labels = table[raw]
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        fail(int(bad[0]), f"box {boxes[bad[0]].tolist()} has x2 < x1 or y2 < y1")

    if one_based:
        boxes = boxes - np.array([1.0, 1.0, 0.0, 0.0])
    if "size" in d:  # DETR convention: [height, width] of the frame the detector's boxes refer to
        size = _json_numbers(path, "size", d["size"])
        if size.shape != (2,):
            raise DetectionCacheError(f"{path}: 'size' must be [height, width], got {d['size']!r}")
        fh, fw = (float(v) for v in size)
        if fh <= 0 or fw <= 0 or abs((fw / fh) / (width / height) - 1) > 0.02:
            raise DetectionCacheError(
                f"{path}: 'size' {d['size']} ([height, width], DETR's target['size']) is not a resize of the "
                f"{width}x{height} image")
        boxes = boxes * np.array([width / fw, height / fh, width / fw, height / fh])
    tol_x, tol_y = clip_tolerance * width, clip_tolerance * height
    bad = np.flatnonzero((boxes[:, 0] < -tol_x) | (boxes[:, 1] < -tol_y) | (boxes[:, 2] > width + tol_x)
                         | (boxes[:, 3] > height + tol_y))
    if bad.size:
        fail(int(bad[0]), f"box {boxes[bad[0]].round(2).tolist()} lies outside the {width}x{height} image (are the "
                          f"boxes in another frame? give its [height, width] as 'size')")
    boxes = np.clip(boxes, 0, [width, height, width, height])

    # Unmapped labels (COCO-91 ids of the 11 unused categories) are dropped, as the community scripts do.
    keep = (labels >= 0) & (scores >= score_floor)
    return Detections(boxes=boxes[keep].astype(np.float32), scores=scores[keep].astype(np.float32),
                      labels=labels[keep], feats=None if feats is None else feats[keep])


def _json_numbers(path: Path, key: str, value, width: int = 0) -> np.ndarray:
    """A JSON list of numbers ([K], width 0) or of lists of `width` numbers ([K, width]) as float64.

    JSON ints and floats are numbers; anything else (strings, booleans, null, a flat list where rows are expected, an
    integer beyond float64) is a DetectionCacheError naming the file, the key and the first bad entry.
    """
    def number(v) -> bool:
        return type(v) is float or (type(v) is int and abs(v) < 1 << 1023)

    def problem(x) -> str | None:
        if width:
            if type(x) is not list or len(x) != width:
                return f"{x!r} is not a list of {width} numbers"
            return next((f"{x!r}: {v!r} is not a number" for v in x if not number(v)), None)
        return None if number(x) else f"{x!r} is not a number"

    if type(value) is not list:
        raise DetectionCacheError(f"{path}: {key!r} must be a list, got {value!r}")
    for j, x in enumerate(value):
        p = problem(x)
        if p:
            raise DetectionCacheError(f"{path}: {key}[{j}]: {p}")
    return np.asarray(value, np.float64).reshape((-1, width) if width else -1)


def import_detection_dir(det_dir: str | Path, annotations: HOIAnnotations, num_classes: int = 80, *,
                         label_space: str = "coco80", one_based: bool = False, score_floor: float = 0.0,
                         clip_tolerance: float = 0.05, missing: str = "error", path: str | Path | None = None,
                         progress: bool = False) -> DetectionCache:
    """Build a detection cache from a folder of per-image JSON files (one per annotated image).

    Args:
        det_dir: folder with `<image stem>.json` for every file name of `annotations` (format: `read_detection_json`).
        annotations: the split's annotations (file names and image sizes; the cache follows their order).
        num_classes, label_space, one_based, score_floor, clip_tolerance: see `read_detection_json`.
        missing: "error" (a missing file raises FileNotFoundError naming it) or "empty" (no detections).
        path: when given, the cache is also written there (atomically).
        progress: show a tqdm bar.

    Returns a `DetectionCache` (continuous 0-based xyxy boxes in original-image pixels; feats when the files have them).
    """
    if missing not in ("error", "empty"):
        raise ValueError(f"missing must be 'error' or 'empty', got {missing!r}")
    det_dir = Path(det_dir)
    if not det_dir.is_dir():
        raise FileNotFoundError(f"detection folder not found: {det_dir}")
    dets = []
    first = None  # (file, has feats, feature width) of the first file with detections: all must agree
    for i in tqdm(range(annotations.num_images), desc="import detections", disable=not progress):
        fname = annotations.filenames[i]
        file = detection_file(det_dir, fname)
        w, h = (int(v) for v in annotations.sizes[i])
        if not file.is_file():
            if missing == "error":
                raise FileNotFoundError(f"detection file for image {i} ({fname}) not found: {file}")
            dets.append(None)
            continue
        det = read_detection_json(file, w, h, num_classes=num_classes, label_space=label_space,
                                  one_based=one_based, score_floor=score_floor, clip_tolerance=clip_tolerance)
        if len(det):
            this = (det.feats is not None, None if det.feats is None else int(det.feats.shape[1]))
            if first is None:
                first = (file, *this)
            elif this != first[1:]:
                say = lambda t: f"feature vectors of size {t[1]}" if t[0] else "no feature vectors"  # noqa: E731
                raise DetectionCacheError(f"{file}: {say(this)}, but {first[0].name} has {say(first[1:])}")
        dets.append(det)
    # Feature vectors are all-or-none in a cache: give images without detections an empty (0, F) block.
    has_feats, dim = (False, None) if first is None else first[1:]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                       np.zeros((0, dim), np.float32) if has_feats else None)
    dets = [d if d is not None and len(d) else empty for d in dets]
    cache = DetectionCache.from_list(annotations.filenames, dets, num_classes)
    cache.source = str(det_dir)
    cache.validate(annotations.sizes)
    if path is not None:
        cache.save(path)
        cache.source = str(path)
    return cache


def export_detection_dir(cache: DetectionCache, det_dir: str | Path, feature_key: str = "feats") -> None:
    """Write a cache as per-image JSON files (`boxes`, `scores`, `labels`[, `feature_key`]): the inverse of
    `import_detection_dir` with the default arguments (float32 values survive JSON exactly)."""
    det_dir = Path(det_dir)
    det_dir.mkdir(parents=True, exist_ok=True)
    for i, fname in enumerate(cache.filenames):
        d = cache[i]
        out = dict(boxes=d.boxes.astype(np.float64).tolist(), scores=d.scores.astype(np.float64).tolist(),
                   labels=d.labels.tolist())
        if d.feats is not None:
            out[feature_key] = d.feats.astype(np.float64).tolist()
        detection_file(det_dir, fname).write_text(json.dumps(out))


def detr_postprocess(pred_logits, pred_boxes, sizes, hidden_states=None, clip: bool = True) -> list:
    """DETR's `PostProcess` for caching: raw outputs -> one dict per image in original-image pixels.

    Args:
        pred_logits: [B, Q, C+1] class logits, last column = no-object (HICO-DET DETR: C = 80).
        pred_boxes: [B, Q, 4] normalised (cx, cy, w, h) in [0, 1].
        sizes: B (width, height) of the original images.
        hidden_states: optional [B, Q, F] last decoder states (LAIN's `hs[-1]`, F = 256).
        clip: clip boxes to the image (DETR does not; the cache requires boxes inside the image, and clipping only
            removes area outside every ground-truth box).

    Returns:
        list of B dicts: boxes float32 [Q, 4] xyxy pixels, scores float32 [Q] (max softmax probability over the C
        classes), labels int64 [Q] (its argmax), feats float32 [Q, F] or None.
    """
    logits, boxes = _numpy(pred_logits).astype(np.float64), _numpy(pred_boxes).astype(np.float64)
    hs = None if hidden_states is None else _numpy(hidden_states).astype(np.float32)
    if logits.ndim != 3 or boxes.shape != logits.shape[:2] + (4,):
        raise ValueError(f"pred_logits [B, Q, C+1] and pred_boxes [B, Q, 4] expected, got {logits.shape} and "
                         f"{boxes.shape}")
    if len(sizes) != len(logits):
        raise ValueError(f"{len(sizes)} image sizes for a batch of {len(logits)}")
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)  # [B, Q, C+1]
    scores, labels = prob[..., :-1].max(-1), prob[..., :-1].argmax(-1)  # [B, Q]
    cx, cy, bw, bh = np.moveaxis(boxes, -1, 0)
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)  # [B, Q, 4], normalised
    out = []
    for b, (w, h) in enumerate(sizes):
        bx = xyxy[b] * np.array([w, h, w, h], np.float64)
        if clip:
            bx = np.clip(bx, 0, [w, h, w, h])
        out.append(dict(boxes=bx.astype(np.float32), scores=scores[b].astype(np.float32),
                        labels=labels[b].astype(np.int64), feats=None if hs is None else hs[b]))
    return out


def cache_detections(model_fn, images, filenames: list, batch_size: int = 8, *, path: str | Path | None = None,
                     score_floor: float = 0.0, num_classes: int = 80, progress: bool = True) -> DetectionCache:
    """Run a detector over a split and cache its detections.

    Args:
        model_fn: callable, list of B uint8 [H, W, 3] RGB images -> list of B dicts with `boxes` [K, 4] xyxy pixels
            of that image (continuous, 0-based, inside the image), `scores` [K] in [0, 1], `labels` [K] in
            [0, num_classes), optional `feats` [K, F] (numpy arrays or torch tensors, any device). Typically DETR
            followed by `detr_postprocess`. It runs under `torch.no_grad()`.
        images: an `ImageSource` (`FileImages`, `ArrayImages`) in the order of `filenames`.
        filenames: the image file names the cache is keyed by.
        batch_size: images per call of `model_fn`.
        path: where to write the `.npz` cache (atomically: a run that fails leaves no file); None = do not write.
        score_floor: keep detections with score >= score_floor; nothing else is filtered (no NMS, no top-k):
            LAIN's own filtering happens in the model.
        num_classes: size of the label space.
        progress: show a tqdm bar.

    Raises DetectionCacheError naming the image and detection when the detector returns malformed output.
    """

    if len(images) != len(filenames):
        raise ValueError(f"{len(images)} images but {len(filenames)} file names")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dets = []
    bar = tqdm(total=len(filenames), desc="detections", disable=not progress)
    for lo in range(0, len(filenames), batch_size):
        idx = range(lo, min(lo + batch_size, len(filenames)))
        batch = [images.load(i) for i in idx]
        with torch.no_grad():  # inference only; also keeps DETR's activations from piling up
            out = model_fn(batch)
        if len(out) != len(batch):
            raise DetectionCacheError(f"the detector returned {len(out)} results for a batch of {len(batch)} images "
                                      f"({filenames[idx[0]]} ...)")
        for i, img, res in zip(idx, batch, out):
            dets.append(_checked(res, img.shape[1], img.shape[0], num_classes, score_floor, f"image {i} "
                                 f"({filenames[i]})"))
        bar.update(len(batch))
    bar.close()
    cache = DetectionCache.from_list(list(filenames), dets, num_classes)
    if path is not None:
        cache.save(path)
        cache.source = str(path)
    return cache


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _checked(res, width: int, height: int, num_classes: int, score_floor: float, where: str) -> Detections:
    """One detector result -> `Detections` after the score floor, with every check of the cache format."""
    try:
        boxes = _numpy(res["boxes"]).astype(np.float32).reshape(-1, 4)
        scores = _numpy(res["scores"]).astype(np.float32).reshape(-1)
        labels = _numpy(res["labels"]).reshape(-1)
        feats = res.get("feats")
        feats = None if feats is None else _numpy(feats).astype(np.float32)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise DetectionCacheError(f"{where}: the detector must return dict(boxes [K, 4], scores [K], labels [K], "
                                  f"feats [K, F] optional): {type(e).__name__}: {e}") from None
    k = len(scores)
    if len(boxes) != k or len(labels) != k or (feats is not None and (feats.ndim != 2 or len(feats) != k)):
        raise DetectionCacheError(f"{where}: {len(boxes)} boxes, {k} scores, {len(labels)} labels"
                                  + ("" if feats is None else f", feats of shape {feats.shape}"))
    if not np.issubdtype(labels.dtype, np.integer):
        if (labels != np.round(labels)).any():
            raise DetectionCacheError(f"{where}: labels must be integers")
    labels = labels.astype(np.int64)

    def fail(j: int, what: str):
        raise DetectionCacheError(f"{where}, detection {j}: {what}")

    bad = np.flatnonzero(~np.isfinite(boxes).all(1) | ~np.isfinite(scores))
    if bad.size:
        fail(int(bad[0]), "non-finite box or score")
    bad = np.flatnonzero((scores < 0) | (scores > 1))
    if bad.size:
        fail(int(bad[0]), f"score {float(scores[bad[0]])} outside [0, 1]")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        fail(int(bad[0]), f"label {int(labels[bad[0]])} out of range [0, {num_classes})")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        fail(int(bad[0]), f"box {boxes[bad[0]].tolist()} has x2 < x1 or y2 < y1")
    # Same half-pixel slack as DetectionCache.validate.
    bad = np.flatnonzero((boxes[:, 0] < -0.5) | (boxes[:, 1] < -0.5) | (boxes[:, 2] > width + 0.5)
                         | (boxes[:, 3] > height + 0.5))
    if bad.size:
        fail(int(bad[0]), f"box {boxes[bad[0]].tolist()} lies outside the {width}x{height} image")
    keep = scores >= score_floor
    return Detections(boxes[keep], scores[keep], labels[keep], None if feats is None else feats[keep])
