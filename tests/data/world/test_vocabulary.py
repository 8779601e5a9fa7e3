"""The world's vocabulary, prompts and captions (hoilib.data.world.vocabulary)."""
from __future__ import annotations

import numpy as np
import pytest

from hoilib.data.world import make_caption, parse_caption, world_vocabulary


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
