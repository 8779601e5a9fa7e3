"""The built-in HOI world: vocabulary, determinism, label consistency, captions, caching, plotting."""
from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest

from hoilib.config import ExperimentConfig, WorldConfig
from hoilib.data import world as W
from hoilib.data.annotations import HOIAnnotations
from hoilib.data.world import build_world, generate_split, make_caption, parse_caption, world_vocabulary


def _split(n=60, split="train", **kw):
    wc = WorldConfig(**kw)
    images, meta = generate_split(wc, split, n)
    return wc, images, meta, W._annotations(meta, split, wc.image_size, world_vocabulary())


@pytest.fixture(scope="module")
def sample():
    """150 default training images (shared by the consistency tests)."""
    return _split(150)


# ---- vocabulary -------------------------------------------------------------------------------------------------
def test_vocabulary_is_shaped_like_hicodet():
    v = world_vocabulary()
    assert v.name == "world" and v.objects[0] == "person"
    assert 12 <= v.num_objects <= 20 and 10 <= v.num_verbs <= 16
    assert 60 <= v.num_classes <= 120
    assert v.verbs[v.no_interaction] == "no_interaction"
    hc = v.hoi_classes
    assert hc.shape == (v.num_classes, 2) and len({tuple(r) for r in hc.tolist()}) == v.num_classes
    # grouped by object (HICO-DET order), every object has a no_interaction class, person is also a target
    assert np.all(np.diff(hc[:, 1]) >= 0)
    lut = v.object_verb_to_hoi
    assert (lut[:, v.no_interaction] >= 0).all()
    assert (lut[0] >= 0).sum() >= 5
    assert len(v.verb_prompts) == v.num_verbs and len(v.hoi_prompts) == v.num_classes
    assert v.verb_prompts[v.verbs.index("ride")] == "a photo of a person is riding the object"
    assert v.object_prompts[-1] == "a photo of nothing" and len(v.object_prompts) == v.num_objects + 1
    assert v.object_prompts[v.objects.index("apple")] == "a photo of an apple"
    assert v.hoi_prompts[lut[v.objects.index("horse"), v.verbs.index("ride")]] == "a photo of a person riding a horse"
    assert v.hoi_prompts[lut[v.objects.index("dog"), v.no_interaction]] == "a photo of a person and a dog"


def test_caption_round_trip():
    v = world_vocabulary()
    ride, sit, horse = v.verbs.index("ride"), v.verbs.index("sit_on"), v.objects.index("horse")
    cup = v.objects.index("cup")
    cap = make_caption([[(ride, horse), (sit, horse)], [(v.no_interaction, cup)]])
    assert cap == "a photo of a person riding a horse and sitting on a horse, a person and a cup"
    lut = v.object_verb_to_hoi
    assert sorted(parse_caption(cap)) == sorted([lut[horse, ride], lut[horse, sit], lut[cup, v.no_interaction]])
    with pytest.raises(ValueError, match="unknown phrase"):
        parse_caption("a photo of a person juggling a horse")


def test_hico_box_convention():
    # continuous [x0, y0, x1, y1] -> 1-based inclusive pixels covering it, clipped to the image
    assert W._hico_box([3.2, 4.0, 10.5, 12.0], 64) == [4.0, 5.0, 11.0, 12.0]
    assert W._hico_box([-2.0, -1.0, 70.0, 64.4], 64) == [1.0, 1.0, 64.0, 64.0]
    assert W._hico_box([5.1, 5.1, 5.2, 5.2], 64) == [6.0, 6.0, 6.0, 6.0]


# ---- determinism -------------------------------------------------------------------------------------------------
def test_generation_is_deterministic():
    _, a, ma, ann_a = _split(25)
    _, b, mb, ann_b = _split(25)
    assert np.array_equal(a, b)
    assert json.dumps(ann_a.to_dict()) == json.dumps(ann_b.to_dict())
    assert [r.caption for r in ma] == [r.caption for r in mb]
    _, c, mc, ann_c = _split(25, seed=1)
    assert not np.array_equal(a, c)
    assert json.dumps(ann_a.to_dict()) != json.dumps(ann_c.to_dict())
    # the splits are different streams of the same world
    _, t, _, _ = _split(25, split="test")
    assert not np.array_equal(a, t)


# ---- labels ------------------------------------------------------------------------------------------------------
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


def test_label_rules_hold(sample):
    """The multi-label rules the renderer obeys: carry/eat/drink_with imply hold; riding a horse or a bicycle
    implies sitting on it; each person looks at one thing at most."""
    _, _, meta, _ = sample
    v = world_vocabulary()
    V = {name: i for i, name in enumerate(v.verbs)}
    bike, horse = v.objects.index("bicycle"), v.objects.index("horse")
    n_multi = 0
    for r in meta:
        per_pair = collections.defaultdict(set)
        for h, t, vb in r.pairs:
            per_pair[(h, t)].add(vb)
        looks = collections.Counter(h for (h, t), vs in per_pair.items() if V["look_at"] in vs)
        assert all(n == 1 for n in looks.values())
        for (h, t), vs in per_pair.items():
            n_multi += len(vs) > 1
            for verb in ("carry", "eat", "drink_with"):
                if V[verb] in vs and v.object_verb_to_hoi[r.labels[t], V["hold"]] >= 0:
                    assert V["hold"] in vs
            if V["ride"] in vs and r.labels[t] in (bike, horse):
                assert V["sit_on"] in vs
    assert n_multi > 10  # multi-label pairs exist, as in HICO-DET


def test_captions_name_exactly_the_interactions(sample):
    _, _, meta, ann = sample
    for i, r in enumerate(meta):
        expected = sorted(ann.hoi[ann.pairs_of(i)].tolist())
        got = sorted(parse_caption(r.caption)) if r.pairs else []
        assert got == expected, (i, r.caption)


def test_people_do_different_things():
    """Several people per image, often sharing an object with a different verb."""
    _, _, meta, _ = _split(200)
    multi = sum(1 for r in meta if len({h for h, t, vb in r.pairs}) >= 2)
    shared = 0
    for r in meta:
        users = collections.defaultdict(set)
        for h, t, vb in r.pairs:
            users[t].add(h)
        shared += any(len(hs) >= 2 for hs in users.values())
    assert multi >= 50 and shared >= 10


def test_long_tail_and_caption_coverage():
    """Rare classes exist at a few hundred images already; the flatter caption pool covers every class."""
    v = world_vocabulary()
    _, _, _, ann = _split(400)
    counts = ann.class_counts()
    assert (counts > 0).all()  # quotas: every class appears in the training split
    assert counts.max() >= 5 * np.median(counts) and (counts < 10).sum() >= 30
    _, _, meta, _ = _split(250, split="caption")
    seen = collections.Counter(c for r in meta for c in parse_caption(r.caption) if r.pairs)
    assert len(seen) == v.num_classes


def test_caption_close_ups_fill_the_frame(tmp_path):
    """A close-up shows one interaction group filling the frame; the HOI splits do not change with the setting."""
    _, _, close, _ = _split(40, split="caption", caption_close_up=1.0)
    _, _, scenes, _ = _split(40, split="caption", caption_close_up=0.0)
    _, _, half, _ = _split(200, split="caption", caption_close_up=0.5)

    def extent(r):  # the union box of everything annotated: its larger side as a fraction of the image's
        ids = {e for h, t, _ in r.pairs for e in (h, t)}
        b = np.array([r.boxes[e] for e in ids], float)
        return max(b[:, 3].max() - b[:, 1].min(), b[:, 2].max() - b[:, 0].min()) / 64
    assert all(r.pairs for r in close)
    assert min(extent(r) for r in close) > 0.8 and np.median([extent(r) for r in scenes if r.pairs]) < 0.7
    for r in close:  # one person with one object, or two people (interacting, or sharing the object)
        assert sum(1 for k in r.labels if k == 0) <= 2 and len({t for _, t, _ in r.pairs if r.labels[t] != 0}) <= 1
    assert 70 <= sum(extent(r) > 0.8 for r in half if r.pairs) <= 130
    # the HOI splits ignore the setting
    assert np.array_equal(_split(10, caption_close_up=1.0)[1], _split(10, caption_close_up=0.0)[1])
    with pytest.raises(ValueError, match="caption_close_up"):
        build_world(ExperimentConfig().override({"world.caption_close_up": 1.5, "data.cache_dir": str(tmp_path)}))


# ---- the cached world -----------------------------------------------------------------------------------------
def _cfg(tmp_path, **world):
    d = {"world.n_train": 30, "world.n_test": 15, "world.n_caption": 20, "data.cache_dir": str(tmp_path)}
    d.update({f"world.{k}": val for k, val in world.items()})
    return ExperimentConfig().override(d)


def test_build_world_caches_and_loads(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    w = build_world(cfg, progress=False)
    assert w.root == tmp_path / "world" / w.digest and (w.root / "meta.json").is_file()
    assert w.train_images.shape == (30, 64, 64, 3) and w.test_images.shape == (15, 64, 64, 3)
    assert w.caption_images.shape == (20, 64, 64, 3) and len(w.captions) == 20
    assert isinstance(w.train_images, np.memmap)
    assert w.train.num_images == 30 and w.det_train.num_images == 30 and w.det_test.num_images == 15
    assert w.det_train.filenames == w.train.filenames and w.det_train.feats is None
    assert set(w.protocols) == {"rf_uc", "nf_uc", "uo", "uv", "uc0", "uc1", "uc2", "uc3", "uc4"}
    assert HOIAnnotations.from_json(w.root / "instances_train.json").num_pairs == w.train.num_pairs
    assert not [p for p in (tmp_path / "world").iterdir() if p.name.startswith(".")]  # no temp folders left

    def boom(*a, **k):
        raise AssertionError("the second call must load from disk")

    monkeypatch.setattr(W, "generate_split", boom)
    w2 = build_world(cfg, progress=False)
    assert np.array_equal(w.train_images, w2.train_images) and np.array_equal(w.caption_images, w2.caption_images)
    assert w.train.to_dict() == w2.train.to_dict() and w.captions == w2.captions
    assert np.array_equal(w.det_test.boxes, w2.det_test.boxes)
    assert all(np.array_equal(w.protocols[k], w2.protocols[k]) for k in w.protocols)
    # another detector config reuses the world and adds a detection folder
    w3 = build_world(cfg.override({"detector.miss_rate": 0.5}), progress=False)
    assert w3.root == w.root and len(w3.det_train.boxes) != len(w.det_train.boxes)


def test_build_world_is_byte_identical_across_caches(tmp_path):
    a = build_world(_cfg(tmp_path / "a"), progress=False)
    b = build_world(_cfg(tmp_path / "b"), progress=False)
    assert a.digest == b.digest
    for name in ("train_images.npy", "test_images.npy", "caption_images.npy", "instances_train.json",
                 "instances_test.json", "captions.json", "protocols.json", "meta.json"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name
    c = build_world(_cfg(tmp_path / "c", seed=5), progress=False)
    assert c.digest != a.digest and not np.array_equal(a.train_images, c.train_images)


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    real = W.generate_split

    def fail_on_test(wc, split, n, **kw):
        if split == "test":
            raise KeyboardInterrupt
        return real(wc, split, n, **kw)

    monkeypatch.setattr(W, "generate_split", fail_on_test)
    with pytest.raises(KeyboardInterrupt):
        build_world(_cfg(tmp_path), progress=False)
    assert list((tmp_path / "world").iterdir()) == []
    monkeypatch.setattr(W, "generate_split", real)
    assert build_world(_cfg(tmp_path), progress=False).train.num_images == 30


def test_bad_world_config(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        build_world(_cfg(tmp_path, n_train=0), progress=False)
    with pytest.raises(ValueError, match="image_size"):
        generate_split(WorldConfig(image_size=8), "train", 2)


def test_other_sizes_and_limits():
    wc, images, meta, ann = _split(30, image_size=96, max_people=1, max_objects=2)
    ann.validate()
    assert images.shape == (30, 96, 96, 3)
    for r in meta:
        labels = np.asarray(r.labels)
        assert (labels == 0).sum() == 1 and (labels != 0).sum() <= 2
    assert (ann.object != 0).all()  # with one person, a person is never a target


def test_bench_reports_speed():
    out = W.bench(n=20)
    assert out["images"] == 20 and out["images_per_s_cpu"] > 0 and math.isfinite(out["images_per_s_wall"])


# ---- plotting ----------------------------------------------------------------------------------------------------
def test_plots(sample):
    from hoilib.plotting import plot_class_frequencies, show_hoi_grid
    _, images, meta, ann = sample
    v = world_vocabulary()
    fig = show_hoi_grid(images, ann, v, [0, 1, 2, 3, 4], ncols=3)
    assert len(fig.axes) == 5
    ax0 = fig.axes[0]
    n_pairs = len({(tuple(ann.boxes_h[r]), tuple(ann.boxes_o[r])) for r in ann.pairs_of(0)})
    assert len(ax0.lines) == n_pairs  # one link per human-object pair
    assert "\u2192" in ax0.get_xlabel() or n_pairs == 0
    counts = ann.class_counts()
    fig = plot_class_frequencies(counts, unseen=[0, 3, 5], names=[v.hoi_name(c) for c in range(v.num_classes)])
    ax = fig.axes[0]
    assert len(ax.patches) == v.num_classes and ax.get_yscale() == "log"
    assert sum(p.get_hatch() == "////" for p in ax.patches) == 3
    with pytest.raises(ValueError):
        plot_class_frequencies(counts, unseen=[v.num_classes])
    with pytest.raises(ValueError):
        show_hoi_grid(images, ann, v, [])


def _dist_to_box(p, b):
    """Distance from point p to box b = [x0, y0, x1, y1] (1-based inclusive boxes are shifted to continuous)."""
    x0, y0, x1, y1 = b[0] - 1, b[1] - 1, b[2], b[3]
    return math.hypot(max(x0 - p[0], 0, p[0] - x1), max(y0 - p[1], 0, p[1] - y1))


def test_every_pair_is_rendered_with_its_body_evidence(sample):
    """The geometry behind each verb: the right body part touches (or points at) the target."""
    _, _, meta, _ = sample
    v = world_vocabulary()
    V = {name: i for i, name in enumerate(v.verbs)}
    O = {name: i for i, name in enumerate(v.objects)}
    checked = collections.Counter()
    for r in meta:
        for h, t, verb in r.pairs:
            j, s, gaze = r.people[h]
            box, o = r.boxes[t], r.labels[t]
            hands = min(_dist_to_box(j["ha_n"], box), _dist_to_box(j["ha_f"], box)) / s
            both = max(_dist_to_box(j["ha_n"], box), _dist_to_box(j["ha_f"], box)) / s
            name = v.verbs[verb]
            if verb == V["hold"] and o != O["kite"]:
                assert hands < 0.12, (r.caption, name)
            elif verb in (V["carry"], V["push"], V["hug"]):
                assert both < 0.15, (r.caption, name)
            elif verb == V["kick"]:
                assert _dist_to_box(j["to_n"], box) / s < 0.12, r.caption
            elif verb == V["ride"] and o == O["skateboard"]:  # standing on it
                assert max(_dist_to_box(j["ft_n"], box), _dist_to_box(j["ft_f"], box)) / s < 0.1, r.caption
            elif verb in (V["sit_on"], V["ride"], V["lie_on"]):
                assert _dist_to_box(j["hip"], box) / s < 0.15, (r.caption, name)
            elif verb in (V["eat"], V["drink_with"]):
                assert _dist_to_box(j["head"], box) / s < 0.2, r.caption
            elif verb == V["feed"] and o != O["bird"]:
                assert hands < 0.15, r.caption
            elif verb in (V["catch"], V["throw"]):
                assert hands < 0.4, (r.caption, name)
            elif verb == V["no_interaction"]:
                hb = r.boxes[h]
                gap = max(box[0] - hb[2], hb[0] - box[2], box[1] - hb[3], hb[1] - box[3], 0)
                assert gap < 0.2 * s + 1, r.caption  # + 1: boxes are whole pixels
            elif verb == V["look_at"]:  # the gaze ray from the face passes through the target's box
                hx, hy = j["head"]
                dx, dy = math.cos(gaze), math.sin(gaze)
                assert any(_dist_to_box((hx + dx * k * 0.5, hy + dy * k * 0.5), box) < 1.0 for k in range(200)), \
                    r.caption
            checked[name] += 1
    assert len(checked) >= 13, checked
