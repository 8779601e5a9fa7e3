"""What the world asks of a model (hoilib.data.world.stats): crowded pairs in version 2, a scene context that
follows the verbs in the caption pool and misleads in the HOI splits."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hoilib.config import ExperimentConfig
from hoilib.data.annotations import HOIAnnotations
from hoilib.data.detections import DetectionCache, Detections
from hoilib.data.world import (VERSION_1, build_world, crowding, scene_verb_association, world_statistics,
                               world_vocabulary)
from hoilib.data.world.backgrounds import HOME_SCENE, N_SCENES
from hoilib.data.world.generate import _entities
from hoilib.data.world.stats import caption_verbs, image_verbs

from _world_sample import render_split



def _hand_made():
    """Two images (continuous boxes; the annotation stores them + [1, 1, 0, 0]).

    Image 0: person A [9, 9, 20, 40] and person C [22, 12, 28, 38] both use object B [29, 29, 40, 40] (A with two
    verbs); object D [50, 50, 60, 60] lies apart. C's centre (25, 25) lies inside the union of A and B, A's centre
    (14.5, 24.5) outside the union of C and B [22, 12, 40, 40].
    Image 1: person P [9, 9, 20, 40] uses object Q [20, 29, 25, 40]; object F [12, 20, 16, 24] has its centre
    inside their union, object G [20, 0, 30, 8] overlaps it with its centre outside."""
    v = world_vocabulary()
    lut = v.object_verb_to_hoi
    A, B, C, D = [9, 9, 20, 40], [29, 29, 40, 40], [22, 12, 28, 38], [50, 50, 60, 60]
    P, Q, F, G = [9, 9, 20, 40], [20, 29, 25, 40], [12, 20, 16, 24], [20, 0, 30, 8]
    ball, cup = v.objects.index("ball"), v.objects.index("cup")
    hold, kick, look = v.verbs.index("hold"), v.verbs.index("kick"), v.verbs.index("look_at")
    rows = [(0, A, B, ball, hold), (0, A, B, ball, kick), (0, C, B, ball, look), (1, P, Q, cup, hold)]
    shift = np.array([1, 1, 0, 0], np.float64)
    ann = HOIAnnotations(
        filenames=["a.png", "b.png"], sizes=np.full((2, 2), 64), image_index=np.array([r[0] for r in rows]),
        boxes_h=np.array([r[1] for r in rows], np.float64) + shift,
        boxes_o=np.array([r[2] for r in rows], np.float64) + shift,
        hoi=np.array([lut[r[3], r[4]] for r in rows]), object=np.array([r[3] for r in rows]),
        verb=np.array([r[4] for r in rows]), verbs=list(v.verbs), objects=list(v.objects),
        correspondence=v.correspondence)
    ann.validate()
    ents = DetectionCache.from_list(ann.filenames, [
        Detections(np.array([A, B, C, D], np.float32), np.ones(4, np.float32), np.array([0, ball, 0, cup])),
        Detections(np.array([P, Q, F, G], np.float32), np.ones(4, np.float32), np.array([0, cup, ball, ball]))],
        num_classes=len(v.objects))
    return ann, ents


def test_crowding_rule_on_hand_made_pairs():
    ann, ents = _hand_made()
    c = crowding(ann, ents)
    assert c["pairs"] == 3  # A-B counts once for its two verbs
    assert c["crowded"] == pytest.approx(2 / 3) and c["with_person"] == pytest.approx(1 / 3)
    assert c["with_object"] == pytest.approx(1 / 3) and c["others_per_pair"] == pytest.approx(2 / 3)
    assert c["shared_target"] == pytest.approx(2 / 3) and c["people_per_image"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="entities cover 1 images, annotations 2"):
        crowding(ann, DetectionCache.from_list(["a.png"], [ents[0]], num_classes=ents.num_classes))


@pytest.fixture(scope="module")
def crowds():
    """crowding() of 150 test images of the default world (version 2) and of version 1."""
    out = {}
    for name, kw in (("v2", {}), ("v1", VERSION_1)):
        _, _, meta, ann = render_split(150, split="test", **kw)
        out[name] = crowding(ann, _entities(meta, ann.filenames))
    return out


def test_version_2_pairs_are_crowded_and_version_1_pairs_are_not(crowds):
    """HICO-DET-like crowding (>= 50% of the pairs hold another person or object) in version 2 only."""
    v1, v2 = crowds["v1"], crowds["v2"]
    assert v2["crowded"] >= 0.5 and v2["with_person"] >= 0.3, v2
    assert v1["crowded"] < 0.2 < v2["crowded"] - v1["crowded"], (v1, v2)
    assert 2.6 <= v2["people_per_image"] <= 3.4 and v1["people_per_image"] < 2.0
    assert v2["shared_target"] >= 0.15  # people sharing an object with different verbs


def test_scene_association_known_answer():
    ride, hold, carry = (world_vocabulary().verbs.index(n) for n in ("ride", "hold", "carry"))
    scenes = [HOME_SCENE[ride], HOME_SCENE[carry], HOME_SCENE[hold], HOME_SCENE[ride]]
    verbs = [{ride, hold}, {hold}, {hold, carry}, set()]
    a = scene_verb_association(scenes, verbs)
    assert a["images"] == 4 and a["home"] == pytest.approx(0.5)
    assert a["chance"] == pytest.approx((2 + 1 + 2 + 0) / 4 / N_SCENES) and a["ratio"] == pytest.approx(
        0.5 / a["chance"])
    assert math.isnan(scene_verb_association([-1, -1], [{ride}, {hold}])["home"])  # version 1: no scenes
    with pytest.raises(ValueError, match="2 scenes but 1 verb sets"):
        scene_verb_association([0, 1], [{ride}])


def _association(split, n, **kw):
    """scene_verb_association of n rendered images of `split`."""
    _, _, meta, ann = render_split(n, split=split, **kw)
    verbs = caption_verbs([r.caption for r in meta]) if split == "caption" else image_verbs(ann)
    return scene_verb_association([r.scene for r in meta], verbs)


def _sd(a):
    """Binomial standard deviation of a "home" fraction at chance."""
    return math.sqrt(a["chance"] * (1 - a["chance"]) / a["images"])


def test_scene_follows_the_verbs_in_the_caption_pool_and_misleads_in_the_hoi_splits():
    caption = _association("caption", 200)
    assert caption["home"] >= 0.6 and caption["ratio"] >= 3.0, caption
    for split in ("train", "val", "test"):
        hoi = _association(split, 120)
        # scene_bias 0.8: the home of an absent verb 80% of the time, so home ~ 0.2 x chance
        assert hoi["home"] <= 0.6 * hoi["chance"], (split, hoi)


@pytest.mark.parametrize("split", ["caption", "test"])
def test_scene_bias_zero_leaves_scenes_at_chance(split):
    a = _association(split, 200, scene_bias=0.0)
    assert abs(a["home"] - a["chance"]) <= 4 * _sd(a), a


def test_version_1_has_no_scenes():
    _, _, meta, _ = render_split(10, **VERSION_1)
    assert {r.scene for r in meta} == {-1}


def test_world_statistics_of_a_built_world(tmp_path):
    cfg = ExperimentConfig().override({"world.n_train": 40, "world.n_val": 20, "world.n_test": 30,
                                       "world.n_caption": 60, "data.cache_dir": str(tmp_path)})
    w = build_world(cfg, progress=False)
    st = world_statistics(w)
    assert set(st["crowding"]) == {"train", "val", "test"} and set(st["scenes"]) == {"train", "val", "test",
                                                                                     "caption"}
    assert st["crowding"]["val"] == crowding(w.val, w.val_entities)
    assert st["scenes"]["caption"]["images"] == 60 and st["scenes"]["test"]["images"] == 30
    assert st["scenes"]["caption"]["home"] > st["scenes"]["test"]["home"]
