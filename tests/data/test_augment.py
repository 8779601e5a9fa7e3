"""Training augmentation: flip round trip, boxes that follow the pixels through flip, colour jitter and crop,
determinism in (seed, epoch, index), the off switch, consistent dropping of boxes, and min-IoU 1 of a ground-truth
pair with itself (so the positives a detection gets are the ones it had)."""
import numpy as np
import pytest
import torch

from hoilib.data.augment import (Augmentation, augment_sample, color_jitter, crop, hflip, item_rng, nonempty)
from hoilib.models.pairs import assign_positives

ON = dict(flip=True, color=0.4, scale=(0.5, 1.0))


def scene(w=48, h=40):
    """Black image with a white box at integer pixels (x 10..22, y 5..20) and a grey one (x 30..44, y 24..38)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[5:20, 10:22] = 255
    img[24:38, 30:44] = 120
    return img, np.array([[10, 5, 22, 20]], np.float32), np.array([[30, 24, 44, 38]], np.float32)


def test_flip_twice_is_identity():
    img, a, b = scene()
    boxes = np.concatenate([a, b, [[0.5, 1.25, 47.5, 39.0]]])
    once_img, once = hflip(img, boxes)
    assert not np.array_equal(once_img, img) and once[0].tolist() == [26, 5, 38, 20]
    twice_img, twice = hflip(once_img, once)
    assert np.array_equal(twice_img, img) and np.allclose(twice, boxes)


def test_boxes_follow_the_pixels():
    """The white box's pixels, found again after augmentation, are exactly the transformed box."""
    img, white, grey = scene()
    flips = crops = 0
    for index in range(40):
        out = augment_sample(img, white, white, grey, item_rng(3, 0, index), **ON)
        aug = out["image"].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        if not out["det_keep"][0]:
            continue
        # The jitter maps every pixel through the same increasing function (greys have no saturation), so the
        # white box stays the one brightest region.
        bright = aug == aug.max()
        x1, y1, x2, y2 = out["det_boxes"][0]
        expect = np.zeros_like(bright)
        expect[int(y1):int(y2), int(x1):int(x2)] = True
        assert np.array_equal(bright, expect), index
        if out["gt_keep"][0]:  # (the pair goes when the grey box leaves the crop)
            assert out["det_boxes"][0].tolist() == out["gt_boxes_h"][0].tolist()  # detection and GT moved alike
        flips += x1 != 10 and out["size"][0] == 48
        crops += out["size"] != (48, 40)
    assert flips > 3 and crops > 3  # both transforms were exercised


def test_crop_clips_and_drops_consistently():
    img, white, grey = scene()
    # A window that holds part of the white box and none of the grey one.
    cut, boxes = crop(img, np.concatenate([white, grey]), (14, 0, 28, 22))
    assert cut.shape == (22, 14, 3)
    assert boxes[0].tolist() == [0, 5, 8, 20]  # clipped at the window's left edge
    assert nonempty(boxes).tolist() == [True, False]
    # Pairs lose their row when either box empties; detections are kept or dropped with their own box.
    dets = np.concatenate([white, grey, white])
    out = None
    for index in range(200):
        out = augment_sample(img, dets, np.concatenate([white, white]), np.concatenate([white, grey]),
                             item_rng(0, 0, index), flip=False, color=0.0, scale=(0.2, 0.3))
        if out["det_keep"].tolist() == [True, False, True]:
            break
    assert out["det_keep"].tolist() == [True, False, True]
    assert out["gt_keep"].tolist() == [True, False] and len(out["gt_boxes_h"]) == len(out["gt_boxes_o"]) == 1
    assert len(out["det_boxes"]) == 2 and nonempty(out["det_boxes"]).all()


def test_same_seed_epoch_index_same_output():
    img, white, grey = scene()
    aug = Augmentation(**ON, seed=5)
    a = aug(img, white, white, grey, epoch=2, index=7)
    b = aug(img, white, white, grey, epoch=2, index=7)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["det_boxes"], b["det_boxes"])
    others = [aug(img, white, white, grey, epoch=e, index=i)["image"] for e, i in ((3, 7), (2, 8))]
    others.append(Augmentation(**ON, seed=6)(img, white, white, grey, epoch=2, index=7)["image"])
    assert all(o.shape != a["image"].shape or not np.array_equal(o, a["image"]) for o in others)
    with pytest.raises(ValueError, match=">= 0"):
        item_rng(-1, 0, 0)


def test_off_is_identity():
    img, white, grey = scene()
    off = Augmentation(flip=False, color=0.0, scale=(1.0, 1.0))
    assert not off.active and Augmentation().active
    out = off(img, np.concatenate([white, grey]), white, grey, epoch=0, index=0)
    assert np.array_equal(out["image"], img) and out["size"] == (48, 40)
    assert np.array_equal(out["det_boxes"], np.concatenate([white, grey])) and out["det_keep"].all()
    assert np.array_equal(out["gt_boxes_h"], white) and np.array_equal(out["gt_boxes_o"], grey)
    # Switching one operation off leaves the others' draws alone: flip and crop as with the jitter on.
    on, no_color = (augment_sample(img, white, white, grey, item_rng(1, 0, i), flip=True, color=c, scale=(0.5, 1.0))
                    for c, i in ((0.4, 4), (0.0, 4)))
    assert np.array_equal(on["det_boxes"], no_color["det_boxes"]) and on["size"] == no_color["size"]


def test_color_jitter_arithmetic():
    img = np.array([[[100, 50, 200]]], np.uint8)
    assert np.array_equal(color_jitter(img, (1.0, 1.0, 1.0), (0, 1, 2)), img)
    assert color_jitter(img, (1.2, 1.0, 1.0), (0, 1, 2)).tolist() == [[[120, 60, 240]]]
    grey = 0.299 * 100 + 0.587 * 50 + 0.114 * 200
    assert color_jitter(img, (1.0, 1.0, 0.0), (2, 0, 1)).tolist() == [[[round(grey)] * 3]]  # saturation 0: grey
    # Contrast blends with the mean grey level of the whole image (here one pixel: its own grey).
    assert color_jitter(img, (1.0, 0.0, 1.0), (1, 0, 2)).tolist() == [[[round(grey)] * 3]]


def test_a_gt_pair_keeps_min_iou_one_with_itself():
    """Detections equal to the GT boxes before augmentation still match them exactly after it: the positives a
    detected pair gets are the ones it had."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    h = np.array([[5, 5, 30, 50], [40, 10, 70, 55]], np.float32)
    o = np.array([[20, 30, 45, 58], [2, 40, 25, 59]], np.float32)
    checked = 0
    for index in range(30):
        out = augment_sample(img, np.concatenate([h, o]), h, o, item_rng(9, 1, index), **ON)
        dk, gk = out["det_keep"], out["gt_keep"]
        det = out["det_boxes"]
        rows = np.cumsum(dk) - 1  # position of each kept detection
        for m in np.flatnonzero(gk):
            assert dk[m] and dk[2 + m]  # a kept pair's boxes are kept detections
            dh, do = torch.as_tensor(det[rows[m]])[None], torch.as_tensor(det[rows[2 + m]])[None]
            g = int(np.flatnonzero(gk).tolist().index(m))
            labels = assign_positives(dh, do, torch.as_tensor(out["gt_boxes_h"]), torch.as_tensor(out["gt_boxes_o"]),
                                      torch.arange(int(gk.sum())), int(gk.sum()), fg_iou=1.0)
            assert labels[0, g] == 1  # min(IoU_h, IoU_o) >= 1
            checked += 1
    assert checked > 30
