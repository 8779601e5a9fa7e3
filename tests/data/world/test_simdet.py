"""The simulated detector (hoilib.data.world.simdet)."""
from __future__ import annotations

import numpy as np
import pytest

from hoilib.config import DetectorSimConfig
from hoilib.data.annotations import HOIAnnotations
from hoilib.data.detections import DetectionCache, Detections
from hoilib.data.world import world_vocabulary
from hoilib.data.world.simdet import gt_instances, simulate_detections

ZERO = dict(box_jitter=0.0, miss_rate=0.0, false_positives=0.0, class_confusion=0.0, score_noise=0.0)


def _annotations(n_images=500, size=400, seed=0):
    """Per image two people and one object, three pairs: A looks at the object, B stands next to it
    (no_interaction), A looks at B. Boxes are shared between pairs (B is a human and a target), so there are
    exactly three unique instances per image; all lie well inside a large image."""
    v = world_vocabulary()
    rs = np.random.RandomState(seed)
    lut, look, noi = v.object_verb_to_hoi, v.verbs.index("look_at"), v.no_interaction
    rows = []
    for i in range(n_images):
        x, y = rs.uniform(100, 200, 2)
        a = [x, y, x + rs.uniform(30, 80), y + rs.uniform(60, 120)]
        b = [x + 90, y, x + 130, y + 100]
        o = int(rs.randint(1, v.num_objects))
        bo = [x + 20, y + 130, x + 70, y + 170]
        rows += [(i, a, bo, o, look), (i, b, bo, o, noi), (i, a, b, 0, look)]
    ann = HOIAnnotations(
        filenames=[f"img{i}.png" for i in range(n_images)], sizes=np.full((n_images, 2), size),
        image_index=np.array([r[0] for r in rows]), boxes_h=np.round(np.array([r[1] for r in rows])),
        boxes_o=np.round(np.array([r[2] for r in rows])), hoi=np.array([lut[r[3], r[4]] for r in rows]),
        object=np.array([r[3] for r in rows]), verb=np.array([r[4] for r in rows]), verbs=list(v.verbs),
        objects=list(v.objects), correspondence=v.correspondence)
    ann.validate()
    return ann


@pytest.fixture(scope="module")
def ann():
    return _annotations()


def test_gt_instances_dedupes_shared_boxes(ann):
    img, boxes, labels = gt_instances(ann)
    assert len(img) == 3 * ann.num_images
    assert np.array_equal(np.bincount(img), np.full(ann.num_images, 3))
    # per image: the two humans first (label 0), then the object
    assert (labels.reshape(-1, 3)[:, :2] == 0).all() and (labels.reshape(-1, 3)[:, 2] > 0).all()
    bh, bo = ann.continuous_boxes()
    assert np.allclose(boxes[0], bh[0]) and np.allclose(boxes[2], bo[0])


def test_zero_noise_reproduces_ground_truth(ann):
    cfg = DetectorSimConfig(**ZERO)
    det = simulate_detections(ann, cfg, seed=0)
    img, boxes, labels = gt_instances(ann)
    assert np.array_equal(det.offsets, np.arange(0, 3 * ann.num_images + 1, 3))
    assert np.array_equal(det.boxes, boxes) and np.array_equal(det.labels, labels)
    assert np.allclose(det.scores, cfg.score_true)
    assert det.filenames == ann.filenames and det.feats is None and det.num_classes == len(ann.objects)


def test_error_statistics(ann):
    cfg = DetectorSimConfig(box_jitter=0.05, miss_rate=0.2, false_positives=1.5, class_confusion=0.1,
                            score_true=0.8, score_false=0.3, score_noise=0.05)
    det, src = simulate_detections(ann, cfg, seed=1, return_sources=True)
    img, boxes, labels = gt_instances(ann)
    n_gt, n_img = len(img), ann.num_images
    kept = src[src >= 0]
    assert len(np.unique(kept)) == len(kept)
    tol = lambda p, n: 4 * np.sqrt(p * (1 - p) / n)  # noqa: E731  (4 binomial standard deviations)
    assert abs((1 - len(kept) / n_gt) - 0.2) < tol(0.2, n_gt)
    n_fp = int((src < 0).sum())
    assert abs(n_fp / n_img - 1.5) < 4 * np.sqrt(1.5 / n_img)
    confused = det.labels[src >= 0] != labels[kept]
    assert abs(confused.mean() - 0.1) < tol(0.1, len(kept))
    # corner jitter relative to box size (boxes lie far from the borders: no clipping)
    gt = boxes[kept].astype(np.float64)
    wh = np.concatenate([gt[:, 2:] - gt[:, :2]] * 2, 1)
    rel = (det.boxes[src >= 0] - gt) / wh
    assert abs(rel.std() - 0.05) < 0.004 and abs(rel.mean()) < 0.003
    # score calibration
    s = det.scores[src >= 0]
    assert abs(s[~confused].mean() - 0.8) < 0.01 and abs(s[confused].mean() - 0.3) < 0.02
    assert abs(det.scores[src < 0].mean() - 0.3) < 0.01 and abs(s[~confused].std() - 0.05) < 0.005
    # false positives: random labels over the whole label space, boxes inside the image
    assert len(np.unique(det.labels[src < 0])) == len(ann.objects)
    det.validate(ann.sizes)


def test_boxes_clipped_and_valid_under_heavy_jitter():
    ann = _annotations(60, size=380)
    det = simulate_detections(ann, DetectorSimConfig(box_jitter=0.8, false_positives=3.0), seed=2)
    assert (det.boxes[:, :2] >= 0).all() and (det.boxes[:, 2] <= 380).all() and (det.boxes[:, 3] <= 380).all()
    assert (det.boxes[:, 2:] >= det.boxes[:, :2]).all()
    assert ((det.scores > 0) & (det.scores < 1)).all()


def test_deterministic_and_round_trip(ann, tmp_path):
    cfg = DetectorSimConfig()
    a, b = simulate_detections(ann, cfg, seed=5), simulate_detections(ann, cfg, seed=5)
    for k in ("offsets", "boxes", "scores", "labels"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    c = simulate_detections(ann, cfg, seed=6)
    assert len(c.boxes) != len(a.boxes) or not np.array_equal(c.boxes, a.boxes)
    a.save(tmp_path / "det.npz")
    r = DetectionCache.load(tmp_path / "det.npz", sizes=ann.sizes)
    for k in ("offsets", "boxes", "scores", "labels"):
        assert np.array_equal(getattr(a, k), getattr(r, k))
    assert r.filenames == a.filenames and r.num_classes == a.num_classes
    assert len(r[3]) == int(a.offsets[4] - a.offsets[3])


def test_explicit_instances_and_errors(ann):
    # unannotated instances (e.g. objects nobody uses) are detected too when passed explicitly
    dets = [Detections(np.array([[10, 10, 50, 50], [60, 60, 90, 99]], np.float32), np.ones(2, np.float32),
                       np.array([3, 5])) for _ in range(ann.num_images)]
    inst = DetectionCache.from_list(ann.filenames, dets, num_classes=len(ann.objects))
    det = simulate_detections(ann, DetectorSimConfig(**ZERO), seed=0, instances=inst)
    assert np.array_equal(det.boxes, inst.boxes) and np.array_equal(det.labels, inst.labels)
    with pytest.raises(ValueError, match="miss_rate"):
        simulate_detections(ann, DetectorSimConfig(miss_rate=1.5), seed=0)
    with pytest.raises(ValueError, match="box_jitter"):
        simulate_detections(ann, DetectorSimConfig(box_jitter=-0.1), seed=0)
    with pytest.raises(ValueError, match="cover"):
        simulate_detections(ann.select_images(np.arange(3)), DetectorSimConfig(), seed=0, instances=inst)
