"""Splits (hoilib.data.world.generate): determinism, annotation consistency, the long tail, sizes and speed."""
from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest

from hoilib.config import WorldConfig
from hoilib.data.world import bench, generate_split, parse_caption, world_vocabulary

from _world_sample import render_split


def test_generation_is_deterministic():
    _, a, ma, ann_a = render_split(25)
    _, b, mb, ann_b = render_split(25)
    assert np.array_equal(a, b)
    assert json.dumps(ann_a.to_dict()) == json.dumps(ann_b.to_dict())
    assert [r.caption for r in ma] == [r.caption for r in mb]
    _, c, mc, ann_c = render_split(25, seed=1)
    assert not np.array_equal(a, c)
    assert json.dumps(ann_a.to_dict()) != json.dumps(ann_c.to_dict())
    # the splits are different streams of the same world
    _, t, _, _ = render_split(25, split="test")
    assert not np.array_equal(a, t)


def test_annotations_validate_and_are_consistent(sample):
    wc, images, meta, ann = sample
    v = world_vocabulary()
    ann.validate()
    S = wc.image_size
    assert images.shape == (len(meta), S, S, 3) and images.dtype == np.uint8
    assert (ann.sizes == S).all()
    lut = v.object_verb_to_hoi
    assert (lut[ann.object, ann.verb] == ann.hoi).all()  # every pair's verb is valid for its object
    for b in (ann.boxes_h, ann.boxes_o):  # 1-based inclusive, inside the image
        assert (b[:, :2] >= 1).all() and (b[:, 2:] <= S).all() and (b[:, 2:] >= b[:, :2]).all()
    assert len(ann.nonempty_images()) >= 0.97 * len(meta)
    for i, r in enumerate(meta):
        labels = np.asarray(r.labels)
        people, things = int((labels == 0).sum()), int((labels != 0).sum())
        assert 1 <= people <= wc.max_people, (i, people)
        assert things <= wc.max_objects, (i, things)
        targets = {t for h, t, vb in r.pairs}
        assert things + sum(labels[t] == 0 for t in targets) >= 1
        for h, t, vb in r.pairs:
            assert labels[h] == 0 and h != t
        # no_interaction excludes every other verb of the same pair
        per_pair = collections.defaultdict(set)
        for h, t, vb in r.pairs:
            per_pair[(h, t)].add(vb)
        assert all(vs == {v.no_interaction} or v.no_interaction not in vs for vs in per_pair.values())


def test_long_tail_and_caption_coverage():
    """Rare classes exist at a few hundred images already; the flatter caption pool covers every class."""
    v = world_vocabulary()
    _, _, _, ann = render_split(400)
    counts = ann.class_counts()
    assert (counts > 0).all()  # quotas: every class appears in the training split
    assert counts.max() >= 5 * np.median(counts) and (counts < 10).sum() >= 30
    _, _, meta, _ = render_split(250, split="caption")
    seen = collections.Counter(c for r in meta for c in parse_caption(r.caption) if r.pairs)
    assert len(seen) == v.num_classes


def test_bad_split_config():
    with pytest.raises(ValueError, match="image_size"):
        generate_split(WorldConfig(image_size=8), "train", 2)


def test_other_sizes_and_limits():
    wc, images, meta, ann = render_split(30, image_size=96, max_people=1, max_objects=2)
    ann.validate()
    assert images.shape == (30, 96, 96, 3)
    for r in meta:
        labels = np.asarray(r.labels)
        assert (labels == 0).sum() == 1 and (labels != 0).sum() <= 2
    assert (ann.object != 0).all()  # with one person, a person is never a target


def test_bench_reports_speed():
    out = bench(n=20)
    assert out["images"] == 20 and out["images_per_s_cpu"] > 0 and math.isfinite(out["images_per_s_wall"])
