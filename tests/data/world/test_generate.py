"""Splits (hoilib.data.world.generate): determinism, annotation consistency, the long tail, the validation split,
sizes and speed."""
from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest

from hoilib.config import WorldConfig
from hoilib.data.world import bench, generate_split, parse_caption, world_vocabulary

from _world_sample import render_split


@pytest.mark.parametrize("version", [1, 2])
def test_generation_is_deterministic(version):
    kw = {"version": version}
    _, a, ma, ann_a = render_split(25, **kw)
    _, b, mb, ann_b = render_split(25, **kw)
    assert np.array_equal(a, b)
    assert json.dumps(ann_a.to_dict()) == json.dumps(ann_b.to_dict())
    assert [r.caption for r in ma] == [r.caption for r in mb] and [r.scene for r in ma] == [r.scene for r in mb]
    _, c, mc, ann_c = render_split(25, seed=1, **kw)
    assert not np.array_equal(a, c)
    assert json.dumps(ann_a.to_dict()) != json.dumps(ann_c.to_dict())
    # the splits are different streams of the same world
    _, t, _, _ = render_split(25, split="test", **kw)
    assert not np.array_equal(a, t)


def test_validation_split_is_its_own_stream_of_the_training_distribution():
    """No image of the validation split appears in train or test; it is drawn like the training split (the
    same long tail, every class in its quota) and is deterministic."""
    _, tr, _, ann_tr = render_split(400)
    _, va, _, ann_va = render_split(400, split="val")
    _, te, _, _ = render_split(100, split="test")
    digest = lambda imgs: {img.tobytes() for img in imgs}  # noqa: E731
    assert len(digest(va)) == 400 and not digest(va) & (digest(tr) | digest(te))
    assert np.array_equal(render_split(30, split="val")[1], render_split(30, split="val")[1])
    assert (ann_va.class_counts() > 0).mean() >= 0.97  # a look_at may be lost to another entity in the way
    # same class distribution as training: the frequencies agree far better than with the caption pool's
    p_tr, p_va = ann_tr.class_counts() / ann_tr.num_pairs, ann_va.class_counts() / ann_va.num_pairs
    assert np.abs(p_tr - p_va).sum() < 0.35


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
    n_people = [int((np.asarray(r.labels) == 0).sum()) for r in meta]
    # version 2: min_people..max_people, unless a group found no place in the crowd (rare)
    assert np.mean([wc.min_people <= n for n in n_people]) >= 0.95
    assert set(n_people) >= set(range(wc.min_people, wc.max_people + 1))
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
    with pytest.raises(ValueError, match=r"world.min_people must lie in \[1, world.max_people = 2\], got 3"):
        generate_split(WorldConfig(min_people=3, max_people=2), "train", 2)
    generate_split(WorldConfig(version=1, min_people=3, max_people=2), "train", 2)  # version 1 ignores it


@pytest.mark.parametrize("version", [1, 2])
def test_other_sizes_and_limits(version):
    wc, images, meta, ann = render_split(30, image_size=96, version=version, min_people=1, max_people=1,
                                         max_objects=2)
    ann.validate()
    assert images.shape == (30, 96, 96, 3)
    for r in meta:
        labels = np.asarray(r.labels)
        assert (labels == 0).sum() == 1 and (labels != 0).sum() <= 2
    assert (ann.object != 0).all()  # with one person, a person is never a target


def test_bench_reports_speed():
    out = bench(n=20)
    assert out["images"] == 20 and out["images_per_s_cpu"] > 0 and math.isfinite(out["images_per_s_wall"])
    assert out["version"] == WorldConfig.version and bench(n=5, version=1)["version"] == 1
