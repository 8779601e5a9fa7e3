"""COCO box AP of detection caches: known answers by hand, HICO-DET's box convention, the fixture's DETR-like cache.

Hand-made answers follow COCO's rules: AP averages the 101-point interpolated precision over the IoU thresholds
0.50:0.05:0.95. One category with two ground-truth boxes, one found exactly (score 0.9) and one by a box shifted
2 px along x (IoU 8 / 12 = 0.667, score 0.8): both match at the four thresholds up to 0.65 (precision 1 at every
recall), only the exact one at the six others (precision 1 up to recall 0.5: 51 of the 101 points). AP =
(4 + 6 * 51 / 101) / 10 = 70.30%, AP50 = 100%, AP75 = 51 / 101 = 50.50%.
"""
from pathlib import Path

import numpy as np
import pytest

from hoilib.data.annotations import HOIAnnotations
from hoilib.data.detections import DetectionCache, DetectionCacheError, Detections
from hoilib.eval.coco import annotated_boxes, box_ap, coco_ground_truth

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"


def _cache(per_image: dict, num_classes: int = 1) -> DetectionCache:
    """{file name: [(x1, y1, x2, y2, score, label), ...]} -> DetectionCache."""
    dets = []
    for rows in per_image.values():
        a = np.asarray(rows, np.float64).reshape(-1, 6)
        dets.append(Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64)))
    return DetectionCache.from_list(list(per_image), dets, num_classes)


def _annotations(box_h, box_o, obj: int = 1) -> HOIAnnotations:
    """One 40 x 30 image with one pair; boxes as stored in a HICO-DET file (1-based inclusive)."""
    return HOIAnnotations(
        filenames=["a.jpg"], sizes=np.array([[40, 30]]), image_index=np.array([0]),
        boxes_h=np.array([box_h], np.float64), boxes_o=np.array([box_o], np.float64), hoi=np.array([0]),
        object=np.array([obj]), verb=np.array([0]), verbs=["ride"], objects=["person", "bicycle"],
        correspondence=np.array([[0, 1, 0]]))


GT = _cache({"a": [(0, 0, 10, 10, 1, 0), (20, 20, 30, 30, 1, 0)]})


def test_perfect_detections_score_100():
    r = box_ap(GT, _cache({"a": [(0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.8, 0)]}))
    assert (r["ap"], r["ap50"], r["ap75"]) == pytest.approx((100.0, 100.0, 100.0))
    assert r["per_category"] == pytest.approx({0: 100.0})
    assert (r["n_images"], r["n_gt"], r["n_det"]) == (1, 2, 2)


def test_one_shifted_box_gives_the_hand_computed_ap():
    r = box_ap(GT, _cache({"a": [(0, 0, 10, 10, 0.9, 0), (22, 20, 32, 30, 0.8, 0)]}))
    assert r["ap"] == pytest.approx((4 + 6 * 51 / 101) * 10)
    assert r["ap50"] == pytest.approx(100.0) and r["ap75"] == pytest.approx(100 * 51 / 101)
    # the shifted box ranked first instead: at the strict thresholds precision is 1/2 at recall 1/2
    r = box_ap(GT, _cache({"a": [(0, 0, 10, 10, 0.8, 0), (22, 20, 32, 30, 0.9, 0)]}))
    assert r["ap75"] == pytest.approx(100 * 0.5 * 51 / 101)


def test_hicodet_boxes_are_converted_as_the_hoi_evaluator_does():
    # stored [1, 1, 10, 10] (1-based inclusive) is the continuous box [0, 0, 10, 10]: 10 x 10, area 100
    ann = _annotations([1, 1, 10, 10], [21, 11, 40, 30])
    gt = annotated_boxes(ann)
    np.testing.assert_array_equal(gt.boxes, [[0, 0, 10, 10], [20, 10, 40, 30]])
    np.testing.assert_array_equal(gt.labels, [0, 1])
    d, evaluated = coco_ground_truth(gt, ann.sizes)
    assert evaluated == [0] and d["images"] == [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}]
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"], a["area"]) for a in d["annotations"]] == [
        (1, 1, 1, [0.0, 0.0, 10.0, 10.0], 100.0), (2, 1, 2, [20.0, 10.0, 20.0, 20.0], 400.0)]
    exact = _cache({"a.jpg": [(0, 0, 10, 10, 0.9, 0), (20, 10, 40, 30, 0.9, 1)]}, num_classes=2)
    assert box_ap(ann, exact)["ap"] == pytest.approx(100.0)
    # The stored numbers taken as continuous boxes are off by one pixel: the person's 9 x 9 inside 10 x 10 has IoU
    # 0.81, a match at the seven thresholds up to 0.80; the bicycle's 19 x 19 inside 20 x 20, IoU 0.9025, at nine.
    raw = _cache({"a.jpg": [(1, 1, 10, 10, 0.9, 0), (21, 11, 40, 30, 0.9, 1)]}, num_classes=2)
    r = box_ap(ann, raw)
    assert r["per_category"] == pytest.approx({0: 70.0, 1: 90.0}) and r["ap"] == pytest.approx(80.0)


def test_a_box_shared_by_pairs_or_roles_counts_once():
    # a person who rides a bicycle and is hugged by another: the hugged person is subject and target
    ann = _annotations([1, 1, 10, 10], [21, 11, 40, 30])
    ann.image_index, ann.hoi, ann.verb = np.array([0, 0, 0]), np.array([0, 0, 0]), np.array([0, 0, 0])
    ann.boxes_h = np.array([[1, 1, 10, 10], [1, 1, 10, 10], [31, 1, 40, 10]], np.float64)
    ann.boxes_o = np.array([[21, 11, 40, 30], [21, 11, 40, 30], [1, 1, 10, 10]], np.float64)
    ann.object = np.array([1, 1, 0])
    gt = annotated_boxes(ann)
    assert len(gt.boxes) == 3 and sorted(gt.labels.tolist()) == [0, 0, 1]


def test_the_fixture_cache_finds_every_annotated_box():
    ann = HOIAnnotations.from_json(FIX / "instances_test2015.json")
    dets = DetectionCache.load(FIX / "detections_test2015.npz")
    r = box_ap(ann, dets)
    # its detections repeat every annotated box exactly; the others are of classes without ground truth (9, 47,
    # 49, 55) or on test image 1, which has no pairs and is left out (class 74)
    assert r["ap"] == pytest.approx(100.0) and r["ap50"] == pytest.approx(100.0)
    assert sorted(r["per_category"]) == [0, 1, 17, 41, 53, 56]
    assert (r["n_images"], r["n_gt"], r["n_det"]) == (4, 13, 17)

    # a person of image 0 missed: 4 of the 5 people found at precision 1 -> 81 of 101 recall points
    keep = np.ones(len(dets.scores), bool)
    keep[0] = False  # image 0, detection 0: the person [3, 3, 24, 46]
    lo = np.concatenate([[0], np.cumsum([keep[a:b].sum() for a, b in zip(dets.offsets[:-1], dets.offsets[1:])])])
    missed = DetectionCache(dets.filenames, lo.astype(np.int64), dets.boxes[keep], dets.scores[keep],
                            dets.labels[keep], dets.num_classes)
    r = box_ap(ann, missed)
    assert r["per_category"][0] == pytest.approx(100 * 81 / 101)
    assert r["ap"] == pytest.approx((5 * 100 + 100 * 81 / 101) / 6)

    # a confident person on the image without pairs changes nothing: that image is not evaluated
    rows = [Detections(d.boxes, d.scores, d.labels) for d in (dets[i] for i in range(dets.num_images))]
    rows[1] = Detections(np.array([[1, 1, 30, 30]], np.float32), np.array([0.99], np.float32), np.array([0]))
    assert box_ap(ann, DetectionCache.from_list(dets.filenames, rows, 80))["ap"] == pytest.approx(100.0)


def test_no_detections_score_zero_and_bad_input_is_named():
    r = box_ap(GT, _cache({"a": []}))
    assert r["ap"] == 0.0 and r["per_category"] == {0: 0.0} and r["n_det"] == 0
    with pytest.raises(DetectionCacheError, match="no detections for image 0 \\(a\\)"):
        box_ap(GT, _cache({"b": [(0, 0, 10, 10, 0.9, 0)]}))
    with pytest.raises(ValueError, match="1 object classes but the detections .* 2"):
        box_ap(GT, _cache({"a": [(0, 0, 10, 10, 0.9, 0)]}, num_classes=2))
    with pytest.raises(ValueError, match="no ground-truth box"):
        box_ap(_cache({"a": []}), _cache({"a": []}))
