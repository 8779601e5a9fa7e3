"""HICO-DET evaluator: hand-computed cases for each rule of the protocol, a naive reference, the real test file, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoilib.data.annotations import HOIAnnotations
from hoilib.data.splits import hicodet_protocol as hicodet_unseen
from hoilib.data.splits import hicodet_rare, rare_from_counts
from hoilib.eval import MATLAB_11_POINTS, PredictionError, evaluate, load_predictions, matlab_colon, save_predictions
from hoilib.eval import hoi_map
from hoilib.eval.__main__ import main as cli_main
from hoilib.eval.bench import synthetic_predictions

# A 4-class toy vocabulary: (hoi, object, verb) rows.
OBJECTS = ["person", "ball", "cup"]
VERBS = ["hold", "kick", "no_interaction"]
CORR = [[0, 1, 0], [1, 1, 1], [2, 2, 0], [3, 2, 2]]  # hold ball, kick ball, hold cup, no_interaction cup
H2O = {h: o for h, o, _ in CORR}
H2V = {h: v for h, _, v in CORR}
BOX = [0.0, 0.0, 10.0, 10.0]  # continuous xyxy used all over
OBOX = [20.0, 20.0, 40.0, 30.0]


def make_gt(images, size=(100, 100)) -> HOIAnnotations:
    """images: per image a list of (hoi, box_h, box_o) with CONTINUOUS boxes; stored as the file's 1-based indices."""
    ann = []
    for pairs in images:
        a = {k: [] for k in ("boxes_h", "boxes_o", "hoi", "object", "verb")}
        for h, bh, bo in pairs:
            a["boxes_h"].append([bh[0] + 1, bh[1] + 1, bh[2], bh[3]])
            a["boxes_o"].append([bo[0] + 1, bo[1] + 1, bo[2], bo[3]])
            a["hoi"].append(h)
            a["object"].append(H2O[h])
            a["verb"].append(H2V[h])
        ann.append(a)
    d = {"filenames": [f"img_{i:03d}.jpg" for i in range(len(images))], "size": [list(size)] * len(images),
         "annotation": ann, "empty": [i for i, p in enumerate(images) if not p], "objects": OBJECTS, "verbs": VERBS,
         "correspondence": CORR}
    return HOIAnnotations.from_dict(d)


def make_pred(dets) -> dict:
    """dets: list of (image, hoi, box_h, box_o, score)."""
    if not dets:
        return dict(image_index=np.zeros(0, np.int64), boxes_h=np.zeros((0, 4), np.float32),
                    boxes_o=np.zeros((0, 4), np.float32), hoi=np.zeros(0, np.int64), score=np.zeros(0, np.float32))
    i, h, bh, bo, s = zip(*dets)
    return dict(image_index=np.array(i, np.int64), boxes_h=np.array(bh, np.float32),
                boxes_o=np.array(bo, np.float32), hoi=np.array(h, np.int64), score=np.array(s, np.float32))


def ev(gt, dets, **kw):
    kw.setdefault("rare", [])
    return evaluate(gt, make_pred(dets), **kw)


def ap11(prec, rec, thresholds=MATLAB_11_POINTS):
    """The toolkit's loop, written out: ap = ap + max(prec(rec >= t)) / 11."""
    prec, rec = np.asarray(prec, float), np.asarray(rec, float)
    ap = 0.0
    for t in thresholds:
        m = rec >= t
        ap = ap + (prec[m].max() if m.any() else 0.0) / 11
    return ap


# ---- naive reference: the MATLAB loop, one detection at a time ---------------------------------------------------
def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_ap(gt, pred, iou_rule="official", ap="11p", known_object=False, include_empty=False):
    C = gt.num_classes
    gh, go = gt.continuous_boxes()
    img, cls = pred["image_index"], pred["hoi"]
    bh, bo = pred["boxes_h"].astype(float), pred["boxes_o"].astype(float)
    score = pred["score"]
    nonempty = set(gt.image_index.tolist())
    objs = {(int(i), int(o)) for i, o in zip(gt.image_index, gt.object)}
    h2o = gt.hoi_to_object
    out = np.zeros(C)
    for c in range(C):
        npos = int((gt.hoi == c).sum())
        dets = [d for d in range(len(cls)) if cls[d] == c]
        if known_object:
            dets = [d for d in dets if (int(img[d]), int(h2o[c])) in objs]
        elif not include_empty:
            dets = [d for d in dets if int(img[d]) in nonempty]
        # The toolkit gathers detections image by image, then MATLAB's stable sort by score: ties go by (image,
        # row). Python's sort is stable too.
        dets.sort(key=lambda d: (-float(score[d]), int(img[d])))
        matched, tp = set(), []
        for d in dets:
            ov_max, j_max = -np.inf, None
            for j in np.flatnonzero((gt.hoi == c) & (gt.image_index == img[d])):
                v = min(_iou(bh[d], gh[j]), _iou(bo[d], go[j]))
                if v > ov_max:
                    ov_max, j_max = v, j
            ok = ov_max >= 0.5 if iou_rule == "official" else ov_max > 0.5
            tp.append(1 if ok and j_max not in matched else 0)
            if tp[-1]:
                matched.add(j_max)
        tp = np.cumsum(tp, dtype=float)
        fp = np.arange(1, len(tp) + 1) - tp
        rec, prec = tp / npos if npos else np.full(len(tp), np.nan), tp / (fp + tp)
        if ap == "11p":
            out[c] = ap11(prec, rec)
        elif len(tp):
            mrec, mpre = np.r_[0.0, rec, 1.0], np.r_[0.0, prec, 0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            i = np.flatnonzero(mrec[1:] != mrec[:-1])
            out[c] = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]) if npos else 0.0
    return out


# ---- rule 4: MATLAB's 0:0.1:1 ------------------------------------------------------------------------------------
def test_matlab_thresholds_pinned():
    assert MATLAB_11_POINTS.tolist() == [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert MATLAB_11_POINTS[3] != 0.3 and MATLAB_11_POINTS[6] == 0.6 and MATLAB_11_POINTS[7] == 0.7
    # np.arange builds a + k*d, which differs exactly where MATLAB fills from the right end.
    arange = np.arange(0, 1.1, 0.1)
    assert np.flatnonzero(arange != MATLAB_11_POINTS).tolist() == [6, 7]
    assert matlab_colon(1.0, 0.5, 4.0).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert matlab_colon(0.0, 0.1, 0.95).tolist() == MATLAB_11_POINTS[:10].tolist()
    assert len(matlab_colon(1.0, 0.1, 0.5)) == 0


def _first_k_true(k, npos=10, extra_fp=3):
    """Class 0 with npos GT pairs (one per image); k true positives ranked first, then extra_fp false positives."""
    gt = make_gt([[(0, BOX, OBOX)] for _ in range(npos)])
    dets = [(i, 0, BOX, OBOX, 1.0 - 0.01 * i) for i in range(k)]
    dets += [(npos - 1, 0, [50, 50, 60, 60], OBOX, 0.5 - 0.01 * j) for j in range(extra_fp)]
    return ev(gt, dets)


def test_11p_recall_0_6_counts_at_t_0_6():
    # recall 6/10 == 0.6 passes MATLAB's t = 0.6 (np.arange's 0.6000000000000001 would not): 7 of 11 points.
    res = _first_k_true(6)
    assert res.ap[0] == ap11([1.0] * 6, np.arange(1, 7) / 10)
    assert res.ap[0] == pytest.approx(7 / 11, abs=1e-15)
    assert ap11([1.0], [0.6], np.arange(0, 1.1, 0.1)) == pytest.approx(6 / 11)


def test_11p_recall_0_3_misses_t_0_3():
    # 3/10 = 0.29999999999999998 < 0.30000000000000004: only t = 0, 0.1, 0.2 are reached.
    res = _first_k_true(3)
    assert res.ap[0] == pytest.approx(3 / 11, abs=1e-15)


def test_area_ap_hand_computed():
    gt = make_gt([[(0, BOX, OBOX), (0, OBOX, BOX)]])
    dets = [(0, 0, BOX, OBOX, 0.9), (0, 0, [60, 60, 70, 70], OBOX, 0.8), (0, 0, OBOX, BOX, 0.7)]
    # tp, fp, tp: prec 1, 1/2, 2/3 at rec 1/2, 1/2, 1 -> 0.5 * 1 + 0.5 * 2/3.
    assert ev(gt, dets, ap="area").ap[0] == pytest.approx(5 / 6, abs=1e-15)
    assert ev(gt, dets).ap[0] == pytest.approx(6 / 11 + 5 * (2 / 3) / 11, abs=1e-15)


# ---- rule 1: ranking and greedy matching -------------------------------------------------------------------------
def test_duplicate_detection_is_false_positive():
    gt = make_gt([[(0, BOX, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 0, BOX, OBOX, 0.8)])
    assert res.num_tp[0] == 1 and res.num_det[0] == 2
    assert res.ap[0] == pytest.approx(1.0)  # the FP comes after recall 1
    # Ranking is by score, not file order: the later, higher-scored detection takes the pair.
    res = ev(gt, [(0, 0, [0.0, 0.0, 10.0, 12.0], OBOX, 0.5), (0, 0, BOX, OBOX, 0.9)])
    assert res.num_tp[0] == 1 and res.ap[0] == pytest.approx(1.0)


def test_lower_scored_match_after_false_positive():
    gt = make_gt([[(0, BOX, OBOX)]])
    res = ev(gt, [(0, 0, [50, 50, 60, 60], OBOX, 0.9), (0, 0, BOX, OBOX, 0.8)])
    assert res.ap[0] == pytest.approx(0.5)  # precision 1/2 at recall 1, at all 11 points


def test_never_reassigned_to_second_best_pair():
    # GT A = BOX, GT B = box shifted by 2 (IoU(A, B) ~ 0.67). Both detections sit exactly on A: the second one is a
    # false positive even though it would pass the threshold with B.
    b = [2.0, 0.0, 12.0, 10.0]
    gt = make_gt([[(0, BOX, OBOX), (0, b, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 0, BOX, OBOX, 0.8)])
    assert res.num_tp[0] == 1
    assert res.ap[0] == pytest.approx(6 / 11, abs=1e-15)  # recall 1/2 with precision 1


def test_best_pair_ties_go_to_first_gt_pair():
    # Two identical GT pairs: a detection on them takes the first, so the second detection finds it matched.
    gt = make_gt([[(0, BOX, OBOX), (0, BOX, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 0, BOX, OBOX, 0.8)])
    assert res.num_tp[0] == 1 and res.ap[0] == pytest.approx(6 / 11, abs=1e-15)


def test_best_pair_is_min_of_human_and_object_iou():
    h1, o0 = [0.0, 0.0, 10.0, 14.0], [20.0, 20.0, 40.0, 36.0]  # IoU(BOX, h1) = 100/140, IoU(OBOX, o0) = 200/320
    gt = make_gt([[(0, BOX, o0), (0, h1, OBOX)]])
    # Detection 1 = (BOX, OBOX): GT0 gives min(1, 0.625), GT1 gives min(0.714, 1), so it takes GT1 (a human-IoU
    # rule would take GT0). Detection 2 sits exactly on GT1, finds it matched, and is a false positive.
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 0, h1, OBOX, 0.8)])
    assert res.num_tp[0] == 1 and res.ap[0] == pytest.approx(6 / 11, abs=1e-15)


def test_tied_scores_in_one_image_keep_file_order():
    gt = make_gt([[(0, BOX, OBOX)]])
    fp, tp = (0, 0, [50, 50, 60, 60], OBOX, 0.5), (0, 0, BOX, OBOX, 0.5)
    assert ev(gt, [fp, tp]).ap[0] == pytest.approx(0.5)  # FP ranked first
    assert ev(gt, [tp, fp]).ap[0] == pytest.approx(1.0)


def test_only_same_class_same_image_pairs():
    gt = make_gt([[(0, BOX, OBOX)], [(1, BOX, OBOX)]])
    res = ev(gt, [(0, 1, BOX, OBOX, 0.9),  # class 1 boxes on image 0: image 0 has no class-1 pair
                  (1, 0, BOX, OBOX, 0.9)])  # class 0 on image 1
    assert res.num_tp.tolist() == [0, 0, 0, 0] and res.ap.tolist() == [0.0, 0.0, 0.0, 0.0]
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (1, 1, BOX, OBOX, 0.9)])
    assert res.ap[:2].tolist() == pytest.approx([1.0, 1.0])


# ---- rule 2: threshold -------------------------------------------------------------------------------------------
def test_threshold_official_vs_pocket_at_exactly_half():
    gt = make_gt([[(0, BOX, OBOX)]])
    half = [0.0, 0.0, 5.0, 10.0]  # IoU with BOX = 50 / 100 = 0.5 exactly
    dets = [(0, 0, half, OBOX, 0.9)]
    assert ev(gt, dets).ap[0] == pytest.approx(1.0)
    assert ev(gt, dets, iou_rule="pocket").ap[0] == 0.0
    just_below = [(0, 0, [0.0, 0.0, 4.99, 10.0], OBOX, 0.9)]
    assert ev(gt, just_below).ap[0] == 0.0


# ---- rule 3: box conventions -------------------------------------------------------------------------------------
def test_gt_boxes_shifted_to_continuous():
    # A 2x2-pixel GT stored as [1, 1, 2, 2] is continuous [0, 0, 2, 2].
    gt = make_gt([[(0, [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0])]])
    assert gt.boxes_h[0].tolist() == [1.0, 1.0, 2.0, 2.0]
    assert ev(gt, [(0, 0, [0, 0, 2, 2], [0, 0, 2, 2], 0.9)]).ap[0] == pytest.approx(1.0)
    # The stored numbers read as continuous boxes overlap 1 of 4 pixels: IoU 0.25.
    assert ev(gt, [(0, 0, [1, 1, 2, 2], [1, 1, 2, 2], 0.9)]).ap[0] == 0.0
    # Continuous IoU of [0, 0, 1, 2] with [0, 0, 2, 2] is 0.5 (the +1-pixel formula on shifted boxes agrees).
    assert ev(gt, [(0, 0, [0, 0, 1, 2], [0, 0, 2, 2], 0.9)]).ap[0] == pytest.approx(1.0)
    assert ev(gt, [(0, 0, [0, 0, 1, 2], [0, 0, 2, 2], 0.9)], iou_rule="pocket").ap[0] == 0.0


# ---- rule 5: denominators and classes without detections ----------------------------------------------------------
def test_near_duplicate_gt_pairs_all_count():
    gt = make_gt([[(0, BOX, OBOX), (0, [0.0, 0.0, 10.0, 11.0], OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9)])
    assert res.num_gt[0] == 2 and res.ap[0] == pytest.approx(6 / 11, abs=1e-15)


def test_class_without_detections_counts_in_every_mean():
    gt = make_gt([[(0, BOX, OBOX), (1, BOX, OBOX), (2, BOX, OBOX), (3, BOX, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 2, BOX, OBOX, 0.9)], rare=[0, 1], unseen=[1, 2])
    assert res.ap.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert res.full == pytest.approx(50.0)
    assert res.rare == pytest.approx(50.0) and res.non_rare == pytest.approx(50.0)
    assert res.unseen == pytest.approx(50.0) and res.seen == pytest.approx(50.0)
    assert res.num_det.tolist() == [1, 0, 1, 0]


def test_class_without_gt_has_ap_zero():
    gt = make_gt([[(0, BOX, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9), (0, 3, BOX, OBOX, 0.9)])
    assert res.num_gt.tolist() == [1, 0, 0, 0] and res.ap.tolist() == pytest.approx([1.0, 0, 0, 0])


# ---- rule 6: rare / non-rare ---------------------------------------------------------------------------------------
def test_rare_lists():
    rare = hicodet_rare()
    assert len(rare) == 138 and rare.dtype == np.int64 and np.all(np.diff(rare) > 0)
    assert rare_from_counts(np.array([9, 10, 0, 25])).tolist() == [0, 2]
    gt = make_gt([[(0, BOX, OBOX), (1, BOX, OBOX)]])
    res = ev(gt, [(0, 0, BOX, OBOX, 0.9)], rare=[1])
    assert res.rare == 0.0 and res.non_rare == pytest.approx(100 / 3)
    assert res.rare_classes.tolist() == [1]
    assert ev(gt, [], rare=np.array([True, False, False, False])).rare_classes.tolist() == [0]
    with pytest.raises(ValueError, match="needs 600 classes"):
        evaluate(gt, make_pred([]))
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        ev(gt, [], rare=[4])
    with pytest.raises(ValueError, match="600 classes"):
        ev(gt, [], unseen="rf_uc")


def test_hicodet_protocol_lists():
    assert [len(hicodet_unseen(p)) for p in ("rf_uc", "nf_uc", "uo", "uv", "uc0", "uc4")] == [120, 120, 100, 84,
                                                                                                120, 120]
    assert np.array_equal(hicodet_unseen("rare_first"), hicodet_unseen("rf_uc"))
    assert set(hicodet_unseen("rf_uc").tolist()) <= set(hicodet_rare().tolist())
    assert len(hicodet_unseen("supervised")) == 0
    with pytest.raises(ValueError, match="unknown protocol"):
        hicodet_unseen("rf-uc")


# ---- rule 7: images without annotations ----------------------------------------------------------------------------
def test_empty_images_ignored_or_false_positives():
    gt = make_gt([[(0, BOX, OBOX)], []])
    dets = [(1, 0, BOX, OBOX, 0.95), (0, 0, BOX, OBOX, 0.9)]
    res = ev(gt, dets)
    assert res.ap[0] == pytest.approx(1.0) and res.settings["num_detections"] == 1
    res = ev(gt, dets, include_empty=True)
    assert res.ap[0] == pytest.approx(0.5) and res.settings["num_detections"] == 2


# ---- rule 8: no filtering ------------------------------------------------------------------------------------------
def test_every_detection_is_scored():
    gt = make_gt([[(0, BOX, OBOX)]])
    dets = [(0, 0, [50, 50, 60, 60], OBOX, 0.9 - 1e-4 * j) for j in range(499)] + [(0, 0, BOX, OBOX, 0.5)]
    res = ev(gt, dets)
    assert res.num_det[0] == 500 and res.ap[0] == pytest.approx(1 / 500)


# ---- Known-Object setting ------------------------------------------------------------------------------------------
def test_known_object_scores_only_images_with_the_object():
    # Image 0 has a ball (class 0 = hold ball); image 1 has only a cup. A class-0 detection on image 1 is a false
    # positive in the Default setting and not scored in Known-Object. Class 1 (kick ball) on image 0 is scored in both.
    gt = make_gt([[(0, BOX, OBOX), (1, OBOX, BOX)], [(2, BOX, OBOX)]])
    dets = [(1, 0, BOX, OBOX, 0.95), (0, 0, BOX, OBOX, 0.9), (0, 1, [50, 50, 60, 60], BOX, 0.9),
            (0, 1, OBOX, BOX, 0.8)]
    d, ko = ev(gt, dets), ev(gt, dets, known_object=True)
    assert d.ap[0] == pytest.approx(0.5) and ko.ap[0] == pytest.approx(1.0)
    assert d.ap[1] == ko.ap[1] == pytest.approx(0.5)
    assert ko.num_gt.tolist() == d.num_gt.tolist() == [1, 1, 1, 0]
    assert ko.num_det.tolist() == [1, 2, 0, 0]


# ---- invariants and the reference ----------------------------------------------------------------------------------
_coord = st.integers(0, 24).map(float)


@st.composite
def _box(draw):
    x0, y0 = draw(_coord), draw(_coord)
    return [x0, y0, x0 + draw(st.integers(1, 12)), y0 + draw(st.integers(1, 12))]


@st.composite
def scenes(draw, tied_scores=True):
    n_img = draw(st.integers(1, 4))
    images = [draw(st.lists(st.tuples(st.integers(0, 3), _box(), _box()), max_size=4)) for _ in range(n_img)]
    gt_rows = [(i, p) for i, ps in enumerate(images) for p in ps]
    n_det = draw(st.integers(0, 25))
    dets = []
    for _ in range(n_det):
        if gt_rows and draw(st.booleans()):  # near a GT pair, maybe shifted by a pixel or two
            i, (h, bh, bo) = draw(st.sampled_from(gt_rows))
            dx = draw(st.integers(-2, 2))
            bh = [bh[0] + dx, bh[1], bh[2] + dx, bh[3]]
            h = h if draw(st.booleans()) else draw(st.integers(0, 3))
        else:
            i, h, bh, bo = draw(st.integers(0, n_img - 1)), draw(st.integers(0, 3)), draw(_box()), draw(_box())
        dets.append([i, h, bh, bo])
    if tied_scores:
        scores = draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=n_det, max_size=n_det))
    else:
        scores = draw(st.lists(st.floats(0, 1, width=32), min_size=n_det, max_size=n_det, unique=True))
    return make_gt(images), make_pred([(*d, s) for d, s in zip(dets, scores)])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes(), iou_rule=st.sampled_from(["official", "pocket"]), ap=st.sampled_from(["11p", "area"]),
       ko=st.booleans(), empty=st.booleans())
def test_matches_naive_reference(scene, iou_rule, ap, ko, empty):
    gt, pred = scene
    got = evaluate(gt, pred, rare=[], iou_rule=iou_rule, ap=ap, known_object=ko, include_empty=empty).ap
    want = reference_ap(gt, pred, iou_rule, ap, ko, empty)
    if ap == "11p":
        assert got.tolist() == want.tolist()  # bit-exact
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(scene=scenes(tied_scores=False), seed=st.integers(0, 2**31))
def test_prediction_order_does_not_matter_for_untied_scores(scene, seed):
    gt, pred = scene
    perm = np.random.default_rng(seed).permutation(len(pred["score"]))
    a = evaluate(gt, pred, rare=[])
    b = evaluate(gt, {k: v[perm] for k, v in pred.items()}, rare=[])
    assert a.ap.tolist() == b.ap.tolist() and a.num_tp.tolist() == b.num_tp.tolist()


def test_chunking_and_binary_search_paths_agree(monkeypatch, hico_test_json):
    gt = HOIAnnotations.from_json(hico_test_json)
    pred = synthetic_predictions(gt, 4000, seed=1)
    base = evaluate(gt, pred)
    monkeypatch.setattr(hoi_map, "_CHUNK_ROWS", 7)
    monkeypatch.setattr(hoi_map, "_MAX_TABLE", 0)
    other = evaluate(gt, pred)
    assert base.ap.tolist() == other.ap.tolist() and base.full == other.full
    # float64 scores take the dense-rank path; same order, same result.
    assert evaluate(gt, {**pred, "score": pred["score"].astype(np.float64)}).ap.tolist() == base.ap.tolist()


def test_score_key_orders_like_descending_sort():
    s = np.array([0.5, -0.0, 0.0, np.inf, -np.inf, -1.5, 1e-30, 0.5, 1.0, -1e-30], np.float32)
    k = hoi_map._score_key(s)
    assert np.array_equal(np.argsort(k, kind="stable"), np.argsort(-s.astype(np.float64), kind="stable"))
    assert k[1] == k[2] and k[0] == k[7]  # -0.0 ties with 0.0
    k64 = hoi_map._score_key(s.astype(np.float64))
    assert np.array_equal(np.argsort(k64, kind="stable"), np.argsort(k, kind="stable"))


# ---- the real test annotations -------------------------------------------------------------------------------------
def test_gt_as_predictions_gives_100(hico_test_json):
    gt = HOIAnnotations.from_json(hico_test_json)
    h, o = gt.continuous_boxes()
    pred = dict(image_index=gt.image_index, boxes_h=h.astype(np.float32), boxes_o=o.astype(np.float32), hoi=gt.hoi,
                score=np.ones(gt.num_pairs, np.float32))
    res = evaluate(gt, pred, unseen="rf_uc")
    assert res.full == 100.0 and res.rare == 100.0 and res.non_rare == 100.0
    assert res.unseen == 100.0 and res.seen == 100.0
    assert len(res.ap) == 600 and len(res.rare_classes) == 138 and len(res.unseen_classes) == 120
    assert res.num_gt.sum() == 33405 and res.num_tp.sum() == 33405
    for kw in (dict(known_object=True), dict(iou_rule="pocket"), dict(ap="area"), dict(include_empty=True)):
        assert evaluate(gt, pred, **kw).full == 100.0
    # Dropping every class-0 detection: class 0 scores 0 and still counts.
    keep = pred["hoi"] != 0
    res = evaluate(gt, {k: v[keep] for k, v in pred.items()})
    assert res.ap[0] == 0.0 and res.full == pytest.approx(100 * 599 / 600)


def test_real_boxes_match_reference(hico_test_json):
    gt = HOIAnnotations.from_json(hico_test_json).select_images(np.arange(150))
    pred = synthetic_predictions(gt, 1500, seed=3)
    for kw in (dict(), dict(iou_rule="pocket", known_object=True)):
        got = evaluate(gt, pred, **kw).ap
        assert got.tolist() == reference_ap(gt, pred, **kw).tolist()
        assert 0 < got.max() <= 1.0 + 1e-15


# ---- prediction files and the CLI ----------------------------------------------------------------------------------
def test_save_load_roundtrip(tmp_path):
    pred = make_pred([(0, 1, BOX, OBOX, 0.25), (2, 3, OBOX, BOX, 0.75)])
    path = save_predictions(tmp_path / "p.npz", **{**pred, "score": pred["score"].astype(np.float64)})
    back = load_predictions(path)
    assert set(back) == set(pred)
    for k in pred:
        assert np.array_equal(back[k], pred[k]) and back[k].dtype == pred[k].dtype
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("score"), r"missing array\(s\) \['score'\]"),
    (lambda p: p.update(boxes_h=p["boxes_h"][:, :3]), r"'boxes_h' has shape \(2, 3\), expected \(2, 4\)"),
    (lambda p: p.update(hoi=p["hoi"][:1]), r"'hoi' has shape \(1,\), expected \(2,\)"),
    (lambda p: p.update(score=np.array([0.5, np.nan], np.float32)), r"score\[1\] = nan is not finite"),
    (lambda p: p.update(image_index=np.array([0, 5])), r"image_index\[1\] = 5 out of range \[0, 1\)"),
    (lambda p: p.update(hoi=np.array([0, -1])), r"hoi\[1\] = -1 out of range \[0, 4\)"),
    (lambda p: p.update(hoi=np.array([0.0, 1.0])), r"'hoi' must hold integers"),
    (lambda p: p.update(boxes_o=np.array([OBOX, [5, 5, 4, 9]], np.float32)), r"boxes_o\[1\] .* x2 < x1"),
    (lambda p: p.update(boxes_o=np.array([OBOX, [5, 5, np.inf, 9]], np.float32)), r"boxes_o\[1\] .* non-finite"),
])
def test_bad_predictions_have_clear_errors(mutate, message):
    gt = make_gt([[(0, BOX, OBOX)]])
    pred = make_pred([(0, 0, BOX, OBOX, 0.9), (0, 1, BOX, OBOX, 0.8)])
    mutate(pred)
    with pytest.raises(PredictionError, match=message):
        evaluate(gt, pred, rare=[])


def test_bad_prediction_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="prediction file not found"):
        load_predictions(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(PredictionError, match="junk.npz: not an .npz archive"):
        load_predictions(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", image_index=np.zeros(1, np.int64), score=np.zeros(1, np.float32))
    with pytest.raises(PredictionError, match=r"partial.npz: missing array\(s\) \['boxes_h', 'boxes_o', 'hoi'\]"):
        load_predictions(tmp_path / "partial.npz")


def _gt_file(tmp_path):
    gt = make_gt([[(0, BOX, OBOX), (1, OBOX, BOX)], [(2, BOX, OBOX)], []])
    gt.to_json(tmp_path / "gt.json")
    return gt


def test_cli_toy_vocabulary(tmp_path, capsys):
    _gt_file(tmp_path)
    save_predictions(tmp_path / "p.npz", **make_pred([(0, 0, BOX, OBOX, 0.9), (1, 2, BOX, OBOX, 0.8)]))
    (tmp_path / "rare.json").write_text("[1]")
    (tmp_path / "unseen.json").write_text("[2, 3]")
    args = ["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "p.npz"), "--rare", str(tmp_path / "rare.json")]
    assert cli_main(args + ["--unseen", str(tmp_path / "unseen.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["full"] == 50.0 and out["rare"] == 0.0 and out["non_rare"] == pytest.approx(200 / 3)
    assert out["unseen"] == 50.0 and out["seen"] == 50.0 and out["per_class"] == [100.0, 0.0, 100.0, 0.0]
    assert cli_main(args + ["--known-object"]) == 0
    assert capsys.readouterr().out.startswith("Known-Object (2 detections, iou official, ap 11p): Full 50.00 | Rare")
    # Rare from a training file: classes with < 10 pairs there (all four here).
    assert cli_main(args[:4] + ["--train-gt", str(tmp_path / "gt.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["non_rare"] is None
    # Errors: one line on stderr, exit status 2.
    assert cli_main(args[:4]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "needs 600 classes, but" in err and "--train-gt" in err
    assert cli_main(args + ["--protocol", "rf_uc"]) == 2
    assert "use --unseen FILE" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", **{**make_pred([(7, 0, BOX, OBOX, 0.9)])})
    assert cli_main(args[:2] + ["--pred", str(tmp_path / "bad.npz")] + args[4:]) == 2
    assert "image_index[0] = 7 out of range [0, 3)" in capsys.readouterr().err


def test_cli_json_on_real_annotations(tmp_path, hico_test_json):
    gt = HOIAnnotations.from_json(hico_test_json)
    h, o = gt.continuous_boxes()
    save_predictions(tmp_path / "gt_pred.npz", image_index=gt.image_index, boxes_h=h, boxes_o=o, hoi=gt.hoi,
                     score=np.ones(gt.num_pairs))
    run = subprocess.run([sys.executable, "-m", "hoilib.eval", "--gt", str(hico_test_json), "--pred",
                          str(tmp_path / "gt_pred.npz"), "--protocol", "rf_uc", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {"full", "rare", "non_rare", "unseen", "seen", "per_class"} <= set(out)
    assert len(out["per_class"]) == 600 and out["full"] == 100.0 and out["unseen"] == 100.0
    run = subprocess.run([sys.executable, "-m", "hoilib.eval", "--gt", str(hico_test_json), "--pred",
                          str(tmp_path / "gt_pred.npz"), "--json"], capture_output=True, text=True, timeout=120)
    assert "unseen" not in json.loads(run.stdout)


def test_min_iou_is_the_kernels_formula():
    """The evaluator's in-place numpy min-IoU equals `kernels.pair_iou.box_iou` (float64) bit for bit."""
    import torch

    from hoilib.kernels.pair_iou import pair_min_iou_reference

    rng = np.random.default_rng(0)

    def boxes(n):
        xy = rng.uniform(0, 90, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(0.5, 40, (n, 2))], 1)

    dh, do, gh, go = boxes(37), boxes(37), boxes(11), boxes(11)
    gh[:5], go[:5] = dh[:5], do[:5]  # some exact matches, IoU 1
    c = np.full(37, 11)  # every detection against every GT row
    rows = np.tile(np.arange(11), 37)
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    v = hoi_map._min_iou(np.ascontiguousarray(dh.T), np.ascontiguousarray(do.T), np.ascontiguousarray(gh.T),
                         np.ascontiguousarray(go.T), area(gh.T), area(go.T), c, rows)
    ref = pair_min_iou_reference(*(torch.from_numpy(b) for b in (dh, do, gh, go))).numpy().reshape(-1)
    assert np.array_equal(v, ref) and (v == 1.0).sum() >= 5
