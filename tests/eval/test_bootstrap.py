"""Paired bootstrap over test images: all-ones weights reproduce `evaluate`, integer weights reproduce `evaluate` on an
explicitly duplicated test set, and toy intervals reasoned out by hand."""
import numpy as np
import pytest

from hoilib.data.annotations import HOIAnnotations
from hoilib.eval import evaluate
from hoilib.eval.bench import synthetic_predictions
from hoilib.eval.bootstrap import class_means, gt_counts, paired_bootstrap, prepare_arm, weighted_ap
from hoilib.eval.hoi_map import match_detections
from hoilib.stats import verdict, verdict_line

OBJECTS = ["person", "ball", "cup"]
VERBS = ["hold", "kick", "look_at", "no_interaction"]
# (hoi, object, verb): 8 classes over 3 objects.
CORR = [[0, 1, 0], [1, 1, 1], [2, 1, 2], [3, 2, 0], [4, 2, 2], [5, 2, 3], [6, 0, 2], [7, 1, 3]]


def random_gt(n_images=40, seed=0, max_pairs=4) -> HOIAnnotations:
    """Random pairs (some images empty) on 100 x 80 images, in the file's 1-based inclusive box convention."""
    rng = np.random.default_rng(seed)
    ann = []
    for _ in range(n_images):
        a = {k: [] for k in ("boxes_h", "boxes_o", "hoi", "object", "verb")}
        for _ in range(rng.integers(0, max_pairs + 1)):
            h = int(rng.integers(0, len(CORR)))
            for k in ("boxes_h", "boxes_o"):
                x0, y0 = rng.integers(1, 50), rng.integers(1, 40)
                a[k].append([int(x0), int(y0), int(x0 + rng.integers(5, 50)), int(y0 + rng.integers(5, 40))])
            a["hoi"].append(h)
            a["object"].append(CORR[h][1])
            a["verb"].append(CORR[h][2])
        ann.append(a)
    return HOIAnnotations.from_dict({
        "filenames": [f"img_{i:03d}.jpg" for i in range(n_images)], "size": [[100, 80]] * n_images,
        "annotation": ann, "objects": OBJECTS, "verbs": VERBS, "correspondence": CORR})


def tied_predictions(gt, n, seed):
    """`synthetic_predictions` with scores rounded to 0.1 steps, so that many detections tie."""
    pred = synthetic_predictions(gt, n, seed=seed, same_class=0.6)
    pred["score"] = (np.round(pred["score"] * 10) / 10).astype(np.float32)
    return pred


def tied_across_images(gt, n, seed):
    """`tied_predictions` whose ties all lie across images: within an image, equal (class, score) detections are
    nudged apart. A replicate puts each detection's copies at consecutive ranks; `evaluate` orders tied detections
    by (image, row), so with ties inside an image the two orders (and their AP) could differ."""
    pred = tied_predictions(gt, n, seed)
    order = np.lexsort((np.arange(len(pred["score"])), pred["score"], pred["hoi"], pred["image_index"]))
    key = np.stack([pred["image_index"], pred["hoi"], pred["score"].view(np.int32)], 1)[order]
    dup = np.r_[False, (key[1:] == key[:-1]).all(1)]
    run = np.cumsum(~dup)
    within = np.arange(len(order)) - np.flatnonzero(~dup)[run - 1]  # position inside a run of equal keys
    pred["score"] = pred["score"].copy()
    pred["score"][order] -= (within * 1e-4).astype(np.float32)
    return pred


def duplicate(gt: HOIAnnotations, pred: dict, w: np.ndarray):
    """Image i present w[i] times (new image indices), each detection's copies listed one after the other."""
    new = []  # new[i] = indices of image i's copies
    k = 0
    for i in range(gt.num_images):
        new.append(list(range(k, k + w[i])))
        k += w[i]
    src = [i for i in range(gt.num_images) for _ in range(w[i])]
    rows = [r for i in range(gt.num_images) for _ in range(w[i]) for r in np.flatnonzero(gt.image_index == i)]
    img = [c for i in range(gt.num_images) for c in new[i] for _ in np.flatnonzero(gt.image_index == i)]
    rows = np.asarray(rows, np.int64)
    dgt = HOIAnnotations(
        filenames=[f"copy_{j}" for j in range(k)], sizes=gt.sizes[src], image_index=np.asarray(img, np.int64),
        boxes_h=gt.boxes_h[rows], boxes_o=gt.boxes_o[rows], hoi=gt.hoi[rows], object=gt.object[rows],
        verb=gt.verb[rows], verbs=gt.verbs, objects=gt.objects, correspondence=gt.correspondence)
    det = [j for j in range(len(pred["score"])) for _ in range(w[pred["image_index"][j]])]
    det_img = [c for j in range(len(pred["score"])) for c in new[pred["image_index"][j]]]
    dpred = {key: np.asarray(pred[key])[det] for key in ("boxes_h", "boxes_o", "hoi", "score")}
    dpred["image_index"] = np.asarray(det_img, np.int64)
    return dgt, dpred


def test_match_detections_agrees_with_evaluate_counts():
    gt = random_gt(seed=3)
    pred = tied_predictions(gt, 600, seed=3)
    m = match_detections(gt, pred)
    r = evaluate(gt, pred, rare=[])
    assert np.array_equal(np.bincount(m["hoi"][m["tp"]], minlength=8), r.num_tp)
    assert np.array_equal(np.bincount(m["hoi"], minlength=8), r.num_det)
    # Sorted by (class, rank); ranks 0..n-1 per class, scores non-increasing along them.
    assert np.all(np.diff(m["hoi"]) >= 0)
    s = pred["score"][m["index"]]
    same = m["hoi"][1:] == m["hoi"][:-1]
    assert np.all(s[1:][same] <= s[:-1][same]) and np.all(m["rank"][1:][same] == m["rank"][:-1][same] + 1)
    ties = same & (s[1:] == s[:-1])
    img, row = m["image_index"], m["index"]
    later = (img[1:] > img[:-1]) | ((img[1:] == img[:-1]) & (row[1:] > row[:-1]))
    assert ties.sum() > 50 and np.all(later[ties])  # ties in (image, row) order


@pytest.mark.parametrize("ap", ["11p", "area"])
@pytest.mark.parametrize("iou_rule", ["official", "pocket"])
def test_all_ones_equals_evaluate_exactly(ap, iou_rule):
    gt = random_gt(n_images=60, seed=1)
    unseen = [1, 4, 6]
    for seed in range(3):
        pred = tied_predictions(gt, 900, seed=seed)
        r = evaluate(gt, pred, rare=[0, 7], unseen=unseen, ap=ap, iou_rule=iou_rule)
        arm = prepare_arm(gt, pred, iou_rule=iou_rule)
        a = weighted_ap(arm, gt_counts(gt), np.ones((1, gt.num_images)), ap)
        assert np.array_equal(a[0], r.ap)
        means = class_means(a, {"full": np.arange(8), "unseen": np.array(unseen), "rare": np.array([0, 7])})
        assert (means["full"][0], means["unseen"][0], means["rare"][0]) == (r.full, r.unseen, r.rare)


def test_all_ones_equals_evaluate_on_real_annotations(hico_test_json):
    gt = HOIAnnotations.from_json(hico_test_json).select_images(np.arange(300))
    pred = synthetic_predictions(gt, 30_000, seed=0)
    for ap in ("11p", "area"):
        r = evaluate(gt, pred, unseen="rf_uc", ap=ap, iou_rule="pocket")
        a = weighted_ap(prepare_arm(gt, pred, iou_rule="pocket"), gt_counts(gt), np.ones((1, gt.num_images)), ap)
        assert np.array_equal(a[0], r.ap)
        m = class_means(a, {"full": np.arange(600), "unseen": r.unseen_classes})
        assert (m["full"][0], m["unseen"][0]) == (r.full, r.unseen)


@pytest.mark.parametrize("ap", ["11p", "area"])
@pytest.mark.parametrize("setting", [{}, {"include_empty": True}, {"known_object": True, "iou_rule": "pocket"}])
def test_weights_equal_an_explicitly_duplicated_set(ap, setting):
    gt = random_gt(n_images=30, seed=2)
    pred = tied_across_images(gt, 500, seed=5)
    iou_rule = setting.get("iou_rule", "official")
    flags = {k: v for k, v in setting.items() if k != "iou_rule"}
    arm = prepare_arm(gt, pred, iou_rule=iou_rule, **flags)
    rng = np.random.default_rng(7)
    without_class_0 = np.where(np.isin(np.arange(30), gt.image_index[gt.hoi == 0]), 0, 2)
    w = np.stack([rng.multinomial(30, np.full(30, 1 / 30)) for _ in range(4)]
                 + [np.r_[np.zeros(15), np.full(15, 3)], without_class_0]).astype(np.int64)
    got = weighted_ap(arm, gt_counts(gt), w, ap)
    for k in range(len(w)):
        dgt, dpred = duplicate(gt, pred, w[k])
        ref = evaluate(dgt, dpred, rare=[], ap=ap, iou_rule=iou_rule, **flags).ap
        # A class with test-set GT but none among the drawn images is left out (NaN); evaluate gives it 0.
        absent = (np.bincount(dgt.hoi, minlength=8) == 0) & (np.bincount(gt.hoi, minlength=8) > 0)
        assert np.array_equal(np.isnan(got[k]), absent)
        np.testing.assert_allclose(got[k][~absent], ref[~absent], rtol=0, atol=1e-9)
    assert (w == 0).any() and (w >= 3).any() and np.isnan(got).any()  # the cases above did occur


def test_identical_arms_give_a_zero_interval():
    gt = random_gt(seed=4)
    pred = tied_predictions(gt, 400, seed=1)
    out = paired_bootstrap(gt, pred, pred, iou_rule="official", ap="11p", unseen=[1, 4], n_boot=200, seed=0)
    assert set(out) == {"full", "unseen"}
    for iv in out.values():
        assert (iv.mean, iv.low, iv.high) == (0.0, 0.0, 0.0)
        assert iv.n_boot == 200 and np.all(iv.diffs == 0.0)
        assert verdict(iv) == "inconclusive"


def test_toy_bootstrap_by_hand():
    # Two images, one GT pair each: image 0 of class 0, image 1 of class 1. Arm a finds both pairs, arm b only image
    # 0's. A resample of the two images takes them (1, 1), (2, 0) or (0, 2) times with probability 1/2, 1/4, 1/4.
    # Classes 2..7 have no GT anywhere and count 0 in every mean (as in evaluate); a class whose only image was not
    # drawn is left out. Full of b - a: (1, 1): 1/8 - 2/8 = -12.5 %; (2, 0): class 1 left out, 1/7 - 1/7 = 0;
    # (0, 2): class 0 left out, 0/7 - 1/7 = -14.29 %. Percentiles 2.5 / 97.5: [-100/7, 0]; observed -12.5.
    gt = HOIAnnotations.from_dict({
        "filenames": ["a.jpg", "b.jpg"], "size": [[100, 80]] * 2, "objects": OBJECTS, "verbs": VERBS,
        "correspondence": CORR,
        "annotation": [{"boxes_h": [[1, 1, 10, 10]], "boxes_o": [[21, 21, 40, 30]], "hoi": [0], "object": [1],
                        "verb": [0]},
                       {"boxes_h": [[1, 1, 10, 10]], "boxes_o": [[21, 21, 40, 30]], "hoi": [1], "object": [1],
                        "verb": [1]}]})
    box_h, box_o = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]

    def pred(rows):
        n = len(rows)
        return dict(image_index=np.array([r[0] for r in rows]), hoi=np.array([r[1] for r in rows]),
                    boxes_h=np.array([box_h] * n, np.float32), boxes_o=np.array([box_o] * n, np.float32),
                    score=np.full(n, 0.9, np.float32))

    out = paired_bootstrap(gt, pred([(0, 0), (1, 1)]), pred([(0, 0)]), iou_rule="official", ap="11p", rare=[],
                           metrics=("full",), n_boot=4000, seed=3)["full"]
    assert (out.a, out.b, out.mean) == (25.0, 12.5, -12.5)
    values, counts = np.unique(np.round(out.diffs, 9), return_counts=True)
    assert values.tolist() == [round(-100 / 7, 9), -12.5, 0.0]
    np.testing.assert_allclose(counts / 4000, [0.25, 0.5, 0.25], atol=0.03)
    assert (out.low, out.high) == (pytest.approx(-100 / 7), 0.0)
    assert out.n_images == 2 and verdict(out) == "inconclusive"
    assert verdict_line(out).startswith("inconclusive: -12.50 [-14.29, +0.00] mAP, 2 test images, 4,000 paired")


def test_paired_bootstrap_is_paired_and_reproducible():
    gt = random_gt(n_images=80, seed=6)
    a, b = tied_predictions(gt, 1200, seed=1), tied_predictions(gt, 1200, seed=2)
    kw = dict(iou_rule="official", ap="area", rare=[], metrics=("full", "rare", "non_rare"), n_boot=300)
    one = paired_bootstrap(gt, a, b, **kw, seed=11)
    two = paired_bootstrap(gt, a, b, **kw, seed=11)
    assert np.array_equal(one["full"].diffs, two["full"].diffs)
    ra, rb = evaluate(gt, a, rare=[], ap="area"), evaluate(gt, b, rare=[], ap="area")
    assert (one["full"].a, one["full"].b) == (ra.full, rb.full)
    assert one["full"].mean == pytest.approx(rb.full - ra.full, abs=1e-12)
    assert one["full"].low <= np.median(one["full"].diffs) <= one["full"].high
    assert one["full"].n_images == len(gt.nonempty_images())
    # Swapping the arms mirrors every replicate difference.
    swapped = paired_bootstrap(gt, b, a, **kw, seed=11)
    np.testing.assert_allclose(swapped["full"].diffs, -one["full"].diffs, atol=1e-9)


def test_paired_bootstrap_errors():
    gt = random_gt(seed=0)
    pred = tied_predictions(gt, 100, seed=0)
    with pytest.raises(ValueError, match="need unseen classes"):
        paired_bootstrap(gt, pred, pred, iou_rule="official", ap="11p", metrics=("unseen",))
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(gt, pred, pred, iou_rule="official", ap="11p", metrics=("map",))
    with pytest.raises(ValueError, match="refers to HICO-DET's 600 classes"):
        paired_bootstrap(gt, pred, pred, iou_rule="official", ap="11p", unseen="rf_uc")
    with pytest.raises(ValueError, match="needs 600 classes"):
        paired_bootstrap(gt, pred, pred, iou_rule="official", ap="11p", metrics=("rare",))
    with pytest.raises(ValueError, match=r"weights must have shape \[B, 40\]"):
        weighted_ap(prepare_arm(gt, pred, iou_rule="official"), gt_counts(gt), np.ones(40), "11p")
