"""HICO-DET HOI detection mAP, exactly as the official toolkit computes it, vectorised over detections.

The protocol (official MATLAB toolkit `VOCevaldet_bboxpair.m`, reproduced in Python by UPT/LAIN through pocket's
`DetectionAPMeter` and `BoxPairAssociation`):

1. Per HOI class, the detections of all images are ranked by score, descending; ties by image index, then by row
   in the prediction file. The toolkit gathers the detections image by image and MATLAB's `sort` is stable, so this
   is its order however the file interleaves the images (for a file sorted by image it is plain file order; tied
   detections of one image keep their relative file order). A detection is compared only with the ground-truth
   pairs of its class in its image and takes the pair with the highest min(IoU_h, IoU_o) (the first one on ties).
   It is a true positive if that value passes the threshold and the pair is still unmatched, otherwise a false
   positive; it is never re-assigned.
2. Threshold: official >= 0.5 (`iou_rule="official"`), pocket > 0.5 (`iou_rule="pocket"`).
3. Ground-truth boxes are stored as 1-based inclusive pixel indices; predictions are continuous 0-based xyxy pixels
   and are compared with GT - [1, 1, 0, 0] by continuous IoU.
4. AP: VOC-2007 11-point interpolation at MATLAB's `0:0.1:1` (`MATLAB_11_POINTS`), recall = tp / n_gt in float64;
   or the all-point area under the precision envelope (`ap="area"`).
5. n_gt is every GT pair of the class; a class without detections has AP 0 and counts in every mean.
6. Rare = HOI classes with < 10 training pairs (the official 138 for HICO-DET), Non-rare = the rest.
7. Images without GT pairs: their detections are ignored (UPT/LAIN) unless `include_empty=True` (official toolkit:
   false positives).
8. No filtering (top-k, NMS) happens here.

Why it is fast: the greedy assignment never re-assigns a detection, and a detection only competes for its single best
GT pair, so a detection is a true positive iff its best value passes the threshold and it is the first detection in
rank order among those with the same best GT pair that pass. Precision only rises at true positives, so 11-point and
area AP need the precision at true-positive ranks only. Everything is then a few passes of numpy over the detections
(no loop over images or detections); see `evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoilib.data.annotations import HOIAnnotations
from hoilib.data.detections import read_npz
from hoilib.data.splits import hicodet_protocol, hicodet_rare

PRED_KEYS = ("image_index", "boxes_h", "boxes_o", "hoi", "score")
IOU_RULES = ("official", "pocket")
AP_METHODS = ("11p", "area")
# (detection, GT) rows expanded at once. Small chunks stay in cache: 5 M benchmark detections (10.5 M rows) took
# 1.25 s at 2**16 rows vs 1.5-1.8 s at 2**20 on the 2-core machine.
_CHUNK_ROWS = 1 << 16
# Above this many (class, image) cells (~130 MB of int64) the dense candidate table gives way to binary search,
# which is ~10x slower per lookup (0.48 s vs 0.02 s for 5 M lookups); HICO-DET has 600 x 9,658 = 5.8 M cells.
_MAX_TABLE = 1 << 24


class PredictionError(ValueError):
    """Malformed predictions; the message names the source, the array and the first offending entry."""


# ---- MATLAB-exact recall thresholds ------------------------------------------------------------------
def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """The float64 values of MATLAB's `a:d:b` (d > 0), element for element.

    MATLAB does not compute a + k*d: it fills the vector from both ends (a + k*d from the left, b - k*d from the right)
    and puts (a + b) / 2 in the middle when the count is odd (MATLAB Coder's `eml_float_colon`). For `0:0.1:1` this
    gives 0.30000000000000004 for 0.3 but exactly 0.6 and 0.7, unlike `np.arange` (0.6000000000000001, ...).
    """
    if not d > 0:
        raise ValueError(f"matlab_colon supports a positive step only, got {d}")
    ndbl = np.floor((b - a) / d + 0.5)
    apnd = a + ndbl * d
    cdiff = apnd - b
    if abs(cdiff) < 4.4408920985006262e-16 * max(abs(a), abs(b)):
        ndbl += 1
        apnd = b
    elif cdiff > 0:
        apnd = a + (ndbl - 1) * d
    else:
        ndbl += 1
    n = max(int(ndbl), 0)
    y = np.empty(n, np.float64)
    if n == 0:
        return y
    y[0] = a
    if n > 1:
        y[n - 1] = apnd
        half = (n - 1) // 2
        for k in range(half - 1):
            kd = (k + 1.0) * d
            y[k + 1] = a + kd
            y[n - k - 2] = apnd - kd
        if 2 * half == n - 1:
            y[half] = (a + apnd) / 2.0
        else:
            kd = half * d
            y[half] = a + kd
            y[half + 1] = apnd - kd
    return y


MATLAB_11_POINTS = matlab_colon(0.0, 0.1, 1.0)  # the toolkit's `for t = 0:0.1:1`


# ---- prediction files ---------------------------------------------------------------------------------
def validate_predictions(pred: dict, num_images: int | None = None, num_classes: int | None = None,
                         source: str = "predictions") -> dict:
    """Check a prediction dict and return it with canonical dtypes.

    Args:
        pred: mapping with `image_index` (M,) int, `boxes_h`/`boxes_o` (M, 4) xyxy continuous pixels, `hoi` (M,) int,
            `score` (M,) float. Extra keys are kept untouched.
        num_images / num_classes: when given, `image_index` / `hoi` must lie in [0, num_images) / [0, num_classes).
    Returns:
        dict with image_index int64, hoi int64, boxes float32 or float64 (kept), score float32 or float64 (kept).
    Raises:
        PredictionError naming `source`, the array and the first bad row (missing array, wrong shape or dtype,
        out-of-range index, non-finite score (NaN or +-inf), non-finite or inverted box).
    """
    missing = [k for k in PRED_KEYS if k not in pred]
    if missing:
        raise PredictionError(f"{source}: missing array(s) {missing}; a prediction file needs {list(PRED_KEYS)}")
    out = dict(pred)
    arrays = {k: np.asarray(pred[k]) for k in PRED_KEYS}
    m = arrays["score"].shape[0] if arrays["score"].ndim == 1 else None
    if m is None:
        raise PredictionError(f"{source}: 'score' must have shape (M,), got {arrays['score'].shape}")
    for k in PRED_KEYS:
        a = arrays[k]
        want = (m, 4) if k.startswith("boxes") else (m,)
        if a.shape != want:
            raise PredictionError(f"{source}: {k!r} has shape {a.shape}, expected {want} (M = {m} from 'score')")
        if k in ("image_index", "hoi"):
            if a.dtype.kind not in "iu":
                raise PredictionError(f"{source}: {k!r} must hold integers, got dtype {a.dtype}")
            if a.dtype == np.uint64 and m and a.max() > np.iinfo(np.int64).max:  # would wrap to a negative index
                r = int(np.argmax(a > np.iinfo(np.int64).max))
                raise PredictionError(f"{source}: {k}[{r}] = {int(a[r])} does not fit in int64")
            out[k] = a.astype(np.int64, copy=False)
        elif a.dtype.kind not in "fiu":
            raise PredictionError(f"{source}: {k!r} must be numeric, got dtype {a.dtype}")
        elif a.dtype.kind != "f":
            out[k] = a.astype(np.float64)
        else:
            out[k] = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    if m == 0:
        return out
    # No model outputs +-inf or NaN: they mark a bug upstream (log of 0, 0 / 0) rather than a confident rank.
    bad = ~np.isfinite(out["score"])
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise PredictionError(f"{source}: score[{r}] = {float(out['score'][r])} is not finite "
                              f"({int(bad.sum())} non-finite scores)")
    for k, hi, what in (("image_index", num_images, "images in the annotation file"),
                        ("hoi", num_classes, "HOI classes")):
        a = out[k]
        bad = a < 0 if hi is None else (a < 0) | (a >= hi)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            rng = "must be >= 0" if hi is None else f"out of range [0, {hi}) ({hi} {what})"
            raise PredictionError(f"{source}: {k}[{r}] = {int(a[r])} {rng}")
    for k in ("boxes_h", "boxes_o"):
        b = out[k]
        fin = np.isfinite(b).all(1)
        if not fin.all():
            r = int(np.flatnonzero(~fin)[0])
            raise PredictionError(f"{source}: {k}[{r}] = {b[r].tolist()} has a non-finite coordinate")
        inv = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if inv.any():
            r = int(np.flatnonzero(inv)[0])
            raise PredictionError(f"{source}: {k}[{r}] = {b[r].tolist()} has x2 < x1 or y2 < y1 (xyxy expected)")
    return out


def save_predictions(path: str | Path, **arrays) -> Path:
    """Write predictions as an uncompressed `.npz` (the CLI's format; see `validate_predictions` for the arrays).

    Required arrays are cast to image_index/hoi int64, boxes_h/boxes_o float32, score float32 (the file format);
    extra arrays are stored as given. Returns the path written.
    """
    pred = validate_predictions(arrays, source=str(path))
    pred["image_index"] = pred["image_index"].astype(np.int64)
    pred["hoi"] = pred["hoi"].astype(np.int64)
    for k in ("boxes_h", "boxes_o", "score"):
        pred[k] = pred[k].astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")  # np.savez appends .npz to other names
    np.savez(tmp, **pred)
    tmp.replace(path)
    return path


def load_predictions(path: str | Path, num_images: int | None = None, num_classes: int | None = None) -> dict:
    """Read a prediction `.npz` into a dict of arrays, checked by `validate_predictions` (image_index / hoi ranges
    too when num_images / num_classes are given; `evaluate` checks them anyway, without the file name).

    Raises FileNotFoundError, or PredictionError naming the file: not an .npz archive (a single .npy array, another
    kind of file), a truncated or damaged archive, an object array, or bad content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    return validate_predictions(read_npz(path, PredictionError), num_images, num_classes, source=str(path))


# ---- result ----------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-class AP and the reported means.

    Attributes:
        ap: [C] float64 AP per HOI class, fractions in [0, 1].
        num_gt: [C] GT pairs per class (the recall denominators); num_det: [C] detections scored per class;
        num_tp: [C] true positives per class.
        full, rare, non_rare: mAP in percent over all / rare / non-rare classes (None when the group is empty).
        unseen, seen: mAP in percent over the protocol's unseen / other classes; None without a protocol.
        rare_classes, unseen_classes: the class index lists used (unseen_classes None without a protocol).
        settings: iou_rule, ap, known_object, include_empty, num_detections (after the empty/known-object filter).
    """

    ap: np.ndarray
    num_gt: np.ndarray
    num_det: np.ndarray
    num_tp: np.ndarray
    full: float
    rare: float | None
    non_rare: float | None
    unseen: float | None
    seen: float | None
    rare_classes: np.ndarray
    unseen_classes: np.ndarray | None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: full, rare, non_rare, (unseen, seen with a protocol), per_class (AP in percent), num_gt,
        settings."""
        d = {"full": self.full, "rare": self.rare, "non_rare": self.non_rare}
        if self.unseen_classes is not None:
            d["unseen"], d["seen"] = self.unseen, self.seen
        d["per_class"] = [_percent(a) for a in self.ap]
        d["num_gt"] = self.num_gt.tolist()
        d["settings"] = dict(self.settings)
        return d

    def summary(self) -> str:
        """One line, e.g. 'Full 32.41 | Rare 29.10 | Non-rare 33.40 | Unseen 25.12 | Seen 34.01'."""
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        parts = [f"Full {fmt(self.full)}", f"Rare {fmt(self.rare)}", f"Non-rare {fmt(self.non_rare)}"]
        if self.unseen_classes is not None:
            parts += [f"Unseen {fmt(self.unseen)}", f"Seen {fmt(self.seen)}"]
        return " | ".join(parts)

    def __repr__(self) -> str:
        return f"EvalResult({self.summary()}; {len(self.ap)} classes, {self.settings})"


# ---- evaluation -----------------------------------------------------------------------------------------
def _class_list(x, C: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "b":
        if a.shape != (C,):
            raise ValueError(f"{name} mask has shape {a.shape}, expected ({C},)")
        return np.flatnonzero(a).astype(np.int64)
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be HOI class indices (integers) or a [C] bool mask, got dtype {a.dtype}")
    a = np.unique(a.astype(np.int64).ravel())
    if a.size and (a[0] < 0 or a[-1] >= C):
        raise ValueError(f"{name} has a class index outside [0, {C}): {a[a < 0].tolist() + a[a >= C].tolist()}")
    return a


def class_lists(C: int, rare, unseen, need_rare: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(rare classes, unseen classes or None) of an evaluation over C classes.

    rare=None means HICO-DET's rare list (600 classes; with other annotations an error when `need_rare`, else no
    rare classes); unseen: None, class ids, or a HICO-DET protocol name; an empty unseen list means None."""
    if rare is None:
        if C != 600 and need_rare:
            raise ValueError(f"rare=None means the HICO-DET rare list, which needs 600 classes; these annotations "
                             f"have {C}: pass rare= explicitly (e.g. rare_from_counts(train.class_counts()))")
        rare_cls = hicodet_rare() if C == 600 else np.zeros(0, np.int64)
    else:
        rare_cls = _class_list(rare, C, "rare")
    if isinstance(unseen, str):
        if C != 600:
            raise ValueError(f"protocol name {unseen!r} refers to HICO-DET's 600 classes; these annotations have {C}")
        unseen = hicodet_protocol(unseen)
    unseen_cls = None if unseen is None else _class_list(unseen, C, "unseen")
    if unseen_cls is not None and unseen_cls.size == 0:
        unseen_cls = None
    return rare_cls, unseen_cls


def _min_iou(det_h, det_o, gt_h, gt_o, gt_area_h, gt_area_o, c, rows):
    """min(IoU_h, IoU_o) of each expanded (detection, GT row) pair, continuous xyxy.

    The formula of `hoilib.kernels.pair_iou.box_iou` (the study's one definition), written out in place in numpy
    float64 for the evaluator's speed: through torch the same computation took 10-20x longer on the benchmark
    (3.7 s vs 0.18 s for 400 k detections). tests/eval/test_hoi_map.py checks the two agree bit for bit.
    det_h, det_o: [4, d] float64 box columns of d detections, each repeated c[i] times; gt_*: [4, G] columns and [G]
    areas of the sorted GT; rows: [E] GT row of each pair. Returns [E] float64. Columns are kept contiguous because
    strided [E, 4] slicing costs about twice as much here.
    """
    out = None
    for det, gcol, garea in ((det_h, gt_h, gt_area_h), (det_o, gt_o, gt_area_o)):
        x0, y0, x1, y1 = (np.repeat(det[i], c) for i in range(4))
        area = (x1 - x0) * (y1 - y0)
        iw = np.minimum(x1, gcol[2][rows])
        iw -= np.maximum(x0, gcol[0][rows])
        np.maximum(iw, 0.0, out=iw)
        ih = np.minimum(y1, gcol[3][rows])
        ih -= np.maximum(y0, gcol[1][rows])
        np.maximum(ih, 0.0, out=ih)
        iw *= ih  # intersection
        area += garea[rows]
        area -= iw  # union; > 0 because GT boxes have area >= 1 (inclusive pixel indices)
        iw /= area
        out = iw if out is None else np.minimum(out, iw, out=out)
    return out


def _best_match(det_h, det_o, gt_h, gt_o, lo, cnt):
    """For each detection, the GT pair (among rows lo..lo+cnt of the sorted GT) with the highest min(IoU_h, IoU_o).

    det_h, det_o: [D, 4] boxes of detections with cnt >= 1; gt_h, gt_o: [G, 4] sorted GT boxes; lo, cnt: [D].
    Returns (best value [D] float64, best GT row [D] int64); ties go to the first row (file order).
    """
    D = len(cnt)
    best_v = np.empty(D, np.float64)
    best_g = np.empty(D, np.int64)
    gt_h, gt_o = np.ascontiguousarray(gt_h.T), np.ascontiguousarray(gt_o.T)  # [4, G]
    gt_area_h = (gt_h[2] - gt_h[0]) * (gt_h[3] - gt_h[1])
    gt_area_o = (gt_o[2] - gt_o[0]) * (gt_o[3] - gt_o[1])
    ends = np.cumsum(cnt)
    a = 0
    while a < D:
        # Detections a..b expand to at most _CHUNK_ROWS rows (at least one detection per chunk).
        base = ends[a] - cnt[a]
        b = max(int(np.searchsorted(ends, base + _CHUNK_ROWS, "right")), a + 1)
        c = cnt[a:b]
        E = int(ends[b - 1] - base)
        starts = np.cumsum(c) - c  # [d] first row of each detection's segment
        rows = np.arange(E) + np.repeat(lo[a:b] - starts, c)  # [E] GT row
        v = _min_iou(np.ascontiguousarray(det_h[a:b].T, np.float64), np.ascontiguousarray(det_o[a:b].T, np.float64),
                     gt_h, gt_o, gt_area_h, gt_area_o, c, rows)
        seg_max = np.maximum.reduceat(v, starts)
        hit = np.flatnonzero(v == np.repeat(seg_max, c))
        # First maximal row per detection: hits are in row order, so keep each segment's first one.
        seg = np.searchsorted(starts, hit, "right")
        first = hit[np.r_[True, seg[1:] != seg[:-1]]]
        best_v[a:b] = seg_max
        best_g[a:b] = rows[first]
        a = b
    return best_v, best_g


def _score_key(score: np.ndarray) -> np.ndarray:
    """uint32 key [M] ordering scores descending (smaller key = higher score; equal scores get equal keys)."""
    if score.dtype == np.float32:
        u = (score + np.float32(0)).view(np.uint32)  # + 0 folds -0.0 into +0.0 (they tie in MATLAB's sort)
        asc = np.where(u >> np.uint32(31), ~u, u | np.uint32(1 << 31))  # IEEE bits -> order-preserving uint32
        return ~asc
    # float64: dense ranks fit 32 bits for any realistic M.
    uniq, inv = np.unique(score, return_inverse=True)
    return (len(uniq) - 1 - inv).astype(np.uint32)


def evaluate(gt: HOIAnnotations, pred: dict, *, rare=None, unseen=None, iou_rule: str = "official",
             ap: str = "11p", known_object: bool = False, include_empty: bool = False) -> EvalResult:
    """HICO-DET mAP of HOI detections (the protocol in the module docstring).

    Args:
        gt: test annotations (HICO-DET file conventions; boxes 1-based inclusive, compared as stored - [1, 1, 0, 0]).
        pred: dict of M detections: image_index (M,) int (position in gt's image lists), boxes_h / boxes_o (M, 4)
            continuous 0-based xyxy pixels of the original image, hoi (M,) int in [0, C), score (M,) float.
        rare: rare class indices (or a [C] bool mask); None = the official HICO-DET list, which needs C == 600.
        unseen: unseen class indices of a zero-shot protocol, a [C] mask, or a HICO-DET protocol name ("rf_uc", ...);
            None or empty = no protocol.
        iou_rule: "official" (min IoU >= 0.5) or "pocket" (> 0.5, UPT/LAIN).
        ap: "11p" (VOC-2007 11-point at MATLAB's 0:0.1:1) or "area" (all-point area under the precision envelope).
        known_object: Known-Object setting: class c scores only detections in images whose GT contains c's object.
        include_empty: count detections in images without GT pairs as false positives (default: ignore them).
    Returns:
        EvalResult (per-class AP fractions, means in percent).
    """
    if iou_rule not in IOU_RULES:
        raise ValueError(f"iou_rule must be one of {IOU_RULES}, got {iou_rule!r}")
    if ap not in AP_METHODS:
        raise ValueError(f"ap must be one of {AP_METHODS}, got {ap!r}")
    C = gt.num_classes
    rare_cls, unseen_cls = class_lists(C, rare, unseen)
    m = match_detections(gt, pred, iou_rule=iou_rule, known_object=known_object, include_empty=include_empty)
    num_gt = np.bincount(gt.hoi, minlength=C)
    num_det = np.bincount(m["hoi"], minlength=C)
    tp_cls, rank = m["hoi"][m["tp"]], m["rank"][m["tp"]]
    ap_c = _average_precision(tp_cls, rank, num_gt, C, ap)
    num_tp = np.bincount(tp_cls, minlength=C)

    mean = lambda idx: None if len(idx) == 0 else _percent(ap_c[idx].mean())  # noqa: E731
    non_rare = np.setdiff1d(np.arange(C), rare_cls)
    seen = None if unseen_cls is None else np.setdiff1d(np.arange(C), unseen_cls)
    return EvalResult(
        ap=ap_c, num_gt=num_gt, num_det=num_det, num_tp=num_tp,
        full=_percent(ap_c.mean()) if C else 0.0, rare=mean(rare_cls), non_rare=mean(non_rare),
        unseen=None if unseen_cls is None else mean(unseen_cls), seen=None if seen is None else mean(seen),
        rare_classes=rare_cls, unseen_classes=unseen_cls,
        settings=dict(iou_rule=iou_rule, ap=ap, known_object=bool(known_object), include_empty=bool(include_empty),
                      num_detections=int(num_det.sum())),
    )


def _percent(x) -> float:
    """A fraction in percent, rounded to 1e-10: drops float summation noise (the toolkit's 11 x p/11 with p = 1 sums
    to 1.0000000000000002) so perfect predictions read exactly 100.0; far below any reported digit."""
    return round(float(x) * 100.0, 10)


def _average_precision(tp_cls, rank, num_gt, C: int, method: str) -> np.ndarray:
    """Per-class AP from the true positives alone.

    tp_cls, rank: [T] class and 0-based rank (among that class's scored detections) of each true positive.
    Precision only rises at a true positive, so max precision over any recall >= t is attained at one; the k-th true
    positive of class c (in rank order) has precision k / (rank + 1) and recall k / n_gt[c], as MATLAB's
    tp ./ (fp + tp) and tp / npos compute them in float64.
    """
    order = np.lexsort((rank, tp_cls))
    c, r = tp_cls[order], rank[order]
    counts = np.bincount(c, minlength=C)
    k = np.arange(1, len(c) + 1) - np.repeat(np.cumsum(counts) - counts, counts)  # 1-based, within its class
    prec = k / (r + 1.0)
    rec = k / num_gt[c].astype(np.float64)
    ap = np.zeros(C, np.float64)
    if method == "11p":
        for t in MATLAB_11_POINTS:  # same accumulation order as the toolkit's `ap = ap + p/11`
            p = np.zeros(C, np.float64)
            np.maximum.at(p, c, np.where(rec >= t, prec, 0.0))
            ap = ap + p / 11
        return ap
    # All-point (VOC 2010+): sum over true positives of (rec_k - rec_{k-1}) * max precision at ranks >= this one.
    ends = np.cumsum(counts)
    for cc in np.flatnonzero(counts):
        sl = slice(int(ends[cc] - counts[cc]), int(ends[cc]))
        env = np.maximum.accumulate(prec[sl][::-1])[::-1]
        rc = rec[sl]
        ap[cc] = float(np.sum(np.diff(np.r_[0.0, rc]) * env))
    return ap


# ---- per-detection outcome (paired bootstrap over test images) --------------------------------------------------
def match_detections(gt: HOIAnnotations, pred: dict, *, iou_rule: str = "official", known_object: bool = False,
                     include_empty: bool = False) -> dict:
    """The matching and ranking of the protocol (module docstring), for every scored detection: the one
    implementation behind `evaluate` and the image bootstrap (`hoilib.eval.bootstrap`).

    Nothing here depends on other images, so resampling test images only changes how often each detection and GT
    pair counts. Returns a dict of [K] arrays over the K scored detections (after the empty-image / Known-Object
    filter), sorted by (class, rank): index (row in pred), hoi, image_index (int64), rank (0-based position among the
    class's scored detections: higher score first; ties by image index, then row), tp (bool).
    """
    if iou_rule not in IOU_RULES:
        raise ValueError(f"iou_rule must be one of {IOU_RULES}, got {iou_rule!r}")
    C, N = gt.num_classes, gt.num_images
    pred = validate_predictions(pred, N, C, source="predictions")
    img, cls, score = pred["image_index"], pred["hoi"], pred["score"]
    # Which detections are scored at all (rule 7 and the Known-Object setting).
    if known_object:
        has_obj = np.zeros((N, len(gt.objects)), bool)
        has_obj[gt.image_index, gt.object] = True
        kept = np.flatnonzero(has_obj[img, gt.hoi_to_object[cls]])
    elif not include_empty:
        nonempty = np.zeros(N, bool)
        nonempty[gt.image_index] = True
        kept = np.flatnonzero(nonempty[img])
    else:
        kept = np.arange(len(cls))

    # ---- ground truth, sorted by (class, image); file order kept inside a cell for "first on ties".
    gh, go = gt.continuous_boxes()
    gkey = gt.hoi * N + gt.image_index
    gorder = np.argsort(gkey, kind="stable")
    gkey_s = gkey[gorder]
    # ---- candidates: the GT rows of the detection's (class, image) cell. Filtered-out detections have none (an
    # image without GT pairs, or without c's object, has no GT pair of class c).
    dkey = cls * N + img
    if C * N <= _MAX_TABLE:
        start = np.zeros(C * N + 1, np.int64)
        np.cumsum(np.bincount(gkey_s, minlength=C * N), out=start[1:])
        lo = start[dkey]
        cnt = start[dkey + 1] - lo
    else:
        lo = np.searchsorted(gkey_s, dkey, "left")
        cnt = np.searchsorted(gkey_s, dkey, "right") - lo
    cand = np.flatnonzero(cnt)
    best_v, best_g = _best_match(pred["boxes_h"][cand], pred["boxes_o"][cand], gh[gorder].astype(np.float64),
                                 go[gorder].astype(np.float64), lo[cand], cnt[cand])

    # ---- true positives: per GT row, the first passing detection in rank order (highest score, then lowest row: the
    # detections competing for one GT row all lie in its image, so (image, row) order is row order here).
    ok = best_v >= 0.5 if iou_rule == "official" else best_v > 0.5
    p_idx, p_g = cand[ok], best_g[ok]
    key = (cls.astype(np.uint64) << np.uint64(32)) | _score_key(score).astype(np.uint64)  # (class, score desc)
    first = np.lexsort((p_idx, key[p_idx], p_g))
    win = first[np.r_[True, p_g[first][1:] != p_g[first][:-1]]] if len(first) else first
    tp = np.zeros(len(cls), bool)
    tp[p_idx[win]] = True

    # ---- rank order: (class, score desc), ties by (image, row). One sort by the key (any order inside a tie), then
    # only the tie groups are sorted by (image, row): ties are few unless scores are rounded.
    order = kept[np.argsort(key[kept])]
    ks = key[order]
    same = ks[1:] == ks[:-1]
    if same.any():
        t = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
        group = np.cumsum(np.r_[True, ks[t][1:] != ks[t][:-1]])
        order[t] = order[t][np.lexsort((order[t], img[order[t]], group))]
    hoi = cls[order]
    num = np.bincount(hoi, minlength=C)
    rank = np.arange(len(order)) - np.repeat(np.cumsum(num) - num, num)
    return dict(index=order, hoi=hoi, image_index=img[order], rank=rank, tp=tp[order])
