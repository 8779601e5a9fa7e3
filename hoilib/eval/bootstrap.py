"""Paired bootstrap over test images: how much of a difference in mAP between two prediction sets is test-set luck.

Both arms are scored on the same resamples of the test images (drawn with replacement), and the percentile interval
of the difference b - a is reported. This interval describes the finite test set only, for two fixed trained models;
the spread over training seeds is `hoilib.stats.paired_interval`'s business.

Why it is fast. `evaluate` matches a detection only against the GT pairs of its own image, so an image drawn w times
is w independent copies of the same outcome: which detections are true positives never changes, only how often each
detection and GT pair counts. `hoi_map.match_detections` is therefore run once per arm, and a replicate is a
weighted AP computed from per-image multiplicities w: for class c and its k-th true positive (in rank order),

    TP_k = sum of w over the true positives ranked <= k,    D_k = sum of w over all detections ranked <= k,
    precision_k = TP_k / D_k,    recall_k = TP_k / (sum of w over class c's GT pairs).

D_k is a sparse [T, N] (true positive x image) count matrix times w, cumulated within the class, so a replicate
costs one sparse product over the detections ranked above the class's last true positive.

Exactness. A resample is scored as `evaluate` would score the explicitly duplicated set (image i present w_i times,
each detection's w copies listed one after the other, so that they take consecutive ranks). Inside a block of w
tied true-positive copies precision (T + m) / (D + m) rises with m and so does recall, so the block's last copy
dominates every earlier one: it has at least their recall and at least their precision. The 11-point AP (max
precision over recall >= t) and the area AP (recall steps times the precision envelope, which is the same for every
copy of a block) therefore need the block ends only, which are the rows above. A true positive whose image was not
drawn (w = 0) adds no recall and no precision above its predecessor's, so it changes neither AP.

Classes. A class with GT pairs in the test set but none among a replicate's images has no AP in that replicate and is
left out of that replicate's means, for both arms alike (the GT is shared); a class without any GT pair in the test
set scores 0 in every replicate, as in `evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hoilib.data.annotations import HOIAnnotations
from hoilib.eval.hoi_map import AP_METHODS, MATLAB_11_POINTS, _percent, class_lists, match_detections

METRICS = ("full", "rare", "non_rare", "unseen", "seen")
_CHUNK = 128  # replicates per block: [128, T] float64 arrays stay small for world- and HICO-sized sets


@dataclass(frozen=True)
class ArmMatches:
    """One arm's true positives, ready for weighting.

    tp_hoi, tp_image: [T] class and image of each true positive, sorted by (class, rank).
    runs: [T, N] sparse counts: detections of each image ranked after the class's previous true positive and up to
        this one (inclusive); detections after a class's last true positive never change its AP and are dropped.
    classes, starts, sizes: [Ct] classes with true positives, their first row in the T rows, and their row counts.
    """

    tp_hoi: np.ndarray
    tp_image: np.ndarray
    runs: sp.csr_matrix
    classes: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


def prepare_arm(gt: HOIAnnotations, pred: dict, *, iou_rule: str, known_object: bool = False,
                include_empty: bool = False) -> ArmMatches:
    """Match one prediction set once (`hoi_map.match_detections`) and group its detections by true positive."""
    m = match_detections(gt, pred, iou_rule=iou_rule, known_object=known_object, include_empty=include_empty)
    C, N = gt.num_classes, gt.num_images
    hoi, tp = m["hoi"], m["tp"]
    last = np.full(C, -1, np.int64)
    np.maximum.at(last, hoi[tp], m["rank"][tp])
    useful = m["rank"] <= last[hoi]
    # Rows arrive sorted by (class, rank), so a detection's run is the number of true positives before it.
    run = np.cumsum(tp) - tp
    runs = sp.csr_matrix((np.ones(int(useful.sum())), (run[useful], m["image_index"][useful])),
                         shape=(int(tp.sum()), N))
    runs.sum_duplicates()
    tp_hoi = hoi[tp]
    classes, starts, sizes = np.unique(tp_hoi, return_index=True, return_counts=True)
    return ArmMatches(tp_hoi=tp_hoi, tp_image=m["image_index"][tp], runs=runs, classes=classes, starts=starts,
                      sizes=sizes)


def gt_counts(gt: HOIAnnotations) -> sp.csr_matrix:
    """[C, N] sparse number of GT pairs per (class, image)."""
    return sp.csr_matrix((np.ones(gt.num_pairs), (gt.hoi, gt.image_index)), shape=(gt.num_classes, gt.num_images))


def weighted_ap(arm: ArmMatches, gt_cn: sp.csr_matrix, weights, ap: str) -> np.ndarray:
    """Per-class AP of each replicate, as `evaluate` scores the duplicated test set.

    Args:
        arm: `prepare_arm` output; gt_cn: `gt_counts(gt)` [C, N].
        weights: [B, N] image multiplicities (non-negative integers); all ones gives `evaluate(...).ap` exactly.
        ap: "11p" or "area" (as in `evaluate`).
    Returns:
        [B, C] float64 AP fractions; NaN where a class has GT pairs in the test set but none in the replicate.
    """
    if ap not in AP_METHODS:
        raise ValueError(f"ap must be one of {AP_METHODS}, got {ap!r}")
    w = np.asarray(weights, np.float64)
    if w.ndim != 2 or w.shape[1] != gt_cn.shape[1]:
        raise ValueError(f"weights must have shape [B, {gt_cn.shape[1]}] (one multiplicity per image), "
                         f"got {w.shape}")
    wt = np.ascontiguousarray(w.T)  # [N, B]
    n_gt = np.ascontiguousarray((gt_cn @ wt).T)  # [B, C]; integers, exact in float64
    out = np.zeros_like(n_gt)
    out[(n_gt == 0) & (gt_cn.getnnz(axis=1) > 0)] = np.nan
    if len(arm.tp_hoi) == 0:
        return out

    def cum_in_class(x):  # [B, T] -> running sums restarting at each class
        c = np.cumsum(x, axis=1)
        before = np.concatenate([np.zeros((len(c), 1)), c], axis=1)[:, arm.starts]
        return c - np.repeat(before, arm.sizes, axis=1)

    d = cum_in_class(np.ascontiguousarray((arm.runs @ wt).T))
    t = cum_in_class(w[:, arm.tp_image])
    g = n_gt[:, arm.tp_hoi]
    # Precision and recall as MATLAB computes them (tp / (fp + tp), tp / npos); a row with TP_k = 0 (nothing drawn
    # yet in its class) is a 0-precision point at recall 0, which raises no maximum.
    prec = np.divide(t, d, out=np.zeros_like(t), where=t > 0)
    rec = np.divide(t, g, out=np.zeros_like(t), where=g > 0)
    res = np.zeros((len(w), len(arm.classes)))
    if ap == "11p":
        for thr in MATLAB_11_POINTS:  # the toolkit's accumulation order, as in `evaluate`
            res = res + np.maximum.reduceat(np.where(rec >= thr, prec, 0.0), arm.starts, axis=1) / 11
    else:
        for k, (s, n) in enumerate(zip(arm.starts, arm.sizes)):
            p, r = prec[:, s:s + n], rec[:, s:s + n]
            env = np.maximum.accumulate(p[:, ::-1], axis=1)[:, ::-1]
            res[:, k] = np.sum(np.diff(r, axis=1, prepend=0.0) * env, axis=1)
    nan = np.isnan(out[:, arm.classes])
    out[:, arm.classes] = np.where(nan, np.nan, res)
    return out


def class_means(ap_bc: np.ndarray, groups: dict) -> dict:
    """{metric: [B] mean AP in percent over the metric's classes}, skipping NaN classes (see the module docstring).

    groups: {metric: class indices}. A replicate without any class of the group gets NaN. Percent as `evaluate`
    reports them (`hoi_map._percent`), so all-ones weights reproduce its Full, Rare, ... exactly."""
    out = {}
    for name, idx in groups.items():
        x = ap_bc[:, idx]
        ok = ~np.isnan(x)
        n = ok.sum(axis=1)
        total = np.where(ok, x, 0.0).sum(axis=1)
        mean = np.divide(total, n, out=np.full(len(x), np.nan), where=n > 0)
        out[name] = np.array([_percent(v) if v == v else np.nan for v in mean])
    return out


@dataclass(frozen=True)
class BootstrapInterval:
    """Percentile interval of mAP(b) - mAP(a) over image resamples (percent points).

    mean: the observed difference on the test set itself (not the mean of the replicates); low, high: percentiles
    (1 - level) / 2 and (1 + level) / 2 of the replicate differences; a, b: observed mAP of each arm; n_boot:
    replicates used (those where the metric's classes had GT pairs); n_images: images resampled per replicate;
    diffs: [n_boot] replicate differences.
    """

    mean: float
    low: float
    high: float
    a: float
    b: float
    level: float
    n_boot: int
    n_images: int
    diffs: np.ndarray = field(repr=False, compare=False)

    @property
    def basis(self) -> str:
        """What the interval rests on, for `stats.verdict_line`."""
        return f"{self.n_images:,d} test images, {self.n_boot:,d} paired resamples"


def paired_bootstrap(gt: HOIAnnotations, pred_a: dict, pred_b: dict, *, iou_rule: str, ap: str, rare=None,
                     unseen=None, known_object: bool = False, include_empty: bool = False, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95, metrics=None, progress: bool = False) -> dict:
    """Paired bootstrap over test images of mAP(pred_b) - mAP(pred_a).

    Args:
        gt, pred_a, pred_b, iou_rule, ap, rare, unseen, known_object, include_empty: as in `evaluate` (both arms
            scored with the same settings).
        n_boot: replicates; seed: numpy Generator seed of the resamples (the same for every comparison, so that
            comparisons sharing an arm see the same resamples).
        metrics: names among full, rare, non_rare, unseen, seen; None = full, plus unseen when `unseen` is given.
        level: coverage of the percentile interval.
    Resampled images: those with GT pairs (detections elsewhere are ignored), or all images with include_empty.
    Returns:
        {metric: BootstrapInterval}.
    """
    C = gt.num_classes
    rare_cls, unseen_cls = class_lists(C, rare, unseen,
                                       need_rare=metrics is not None and bool({"rare", "non_rare"} & set(metrics)))
    metrics = (("full",) if unseen_cls is None else ("full", "unseen")) if metrics is None else tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {METRICS}")
    if unseen_cls is None and {"unseen", "seen"} & set(metrics):
        raise ValueError(f"metrics {metrics} need unseen classes: pass unseen= (class indices or a protocol name)")
    all_cls = np.arange(C)
    groups = {"full": all_cls, "rare": rare_cls, "non_rare": np.setdiff1d(all_cls, rare_cls)}
    if unseen_cls is not None:
        groups.update(unseen=unseen_cls, seen=np.setdiff1d(all_cls, unseen_cls))
    groups = {m: groups[m] for m in metrics}
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")

    kw = dict(iou_rule=iou_rule, known_object=known_object, include_empty=include_empty)
    arms = [prepare_arm(gt, pred_a, **kw), prepare_arm(gt, pred_b, **kw)]
    gt_cn = gt_counts(gt)
    units = np.arange(gt.num_images) if include_empty else gt.nonempty_images()
    n = len(units)
    if n == 0:
        raise ValueError("the annotations have no image with GT pairs: nothing to resample")

    def means(w_units):
        w = np.zeros((len(w_units), gt.num_images))
        w[:, units] = w_units
        return [class_means(weighted_ap(arm, gt_cn, w, ap), groups) for arm in arms]

    obs_a, obs_b = means(np.ones((1, n)))
    rng = np.random.default_rng(seed)
    diffs = {m: [] for m in metrics}
    for lo in tqdm(range(0, n_boot, _CHUNK), desc="bootstrap", disable=not progress, unit="block"):
        w_units = rng.multinomial(n, np.full(n, 1.0 / n), size=min(_CHUNK, n_boot - lo)).astype(np.float64)
        ma, mb = means(w_units)
        for m in metrics:
            diffs[m].append(mb[m] - ma[m])
    out = {}
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    for m in metrics:
        d = np.concatenate(diffs[m])
        d = d[~np.isnan(d)]
        low, high = np.percentile(d, q) if len(d) else (np.nan, np.nan)
        out[m] = BootstrapInterval(mean=float(obs_b[m][0] - obs_a[m][0]), low=float(low), high=float(high),
                                   a=float(obs_a[m][0]), b=float(obs_b[m][0]), level=level, n_boot=len(d),
                                   n_images=n, diffs=d)
    return out
