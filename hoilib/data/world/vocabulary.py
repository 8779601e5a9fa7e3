"""The world's vocabulary and captions.

16 objects (object 0 = person, who can also be an interaction target), 16 verbs including "no_interaction", and
95 valid (verb, object) HOI classes grouped by object as in HICO-DET, every object having a "no_interaction" (and a
"look_at") class. Prompts follow LAIN (verb prompts "a photo of a person is riding the object", object prompts
ending with "a photo of nothing") and HICO-DET (HOI prompts "a photo of a person riding a horse"). Captions name
every interaction of an image in the same wording (`make_caption`), and `parse_caption` reads them back.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..vocab import Vocabulary

# COCO-like object order with person = 0 (as HICO-DET in the LAIN code); verbs alphabetical as in HICO-DET.
OBJECTS = ("person", "bicycle", "bench", "bird", "dog", "horse", "umbrella", "ball", "kite", "skateboard",
           "bottle", "cup", "apple", "chair", "phone", "book")
VERBS = ("carry", "catch", "drink_with", "eat", "feed", "hold", "hug", "kick", "lie_on", "look_at",
         "no_interaction", "push", "ride", "sit_on", "throw", "walk")
(PERSON, BICYCLE, BENCH, BIRD, DOG, HORSE, UMBRELLA, BALL, KITE, SKATEBOARD, BOTTLE, CUP, APPLE, CHAIR, PHONE,
 BOOK) = range(len(OBJECTS))
(CARRY, CATCH, DRINK, EAT, FEED, HOLD, HUG, KICK, LIE, LOOK, NOI, PUSH, RIDE, SIT, THROW, WALK) = range(len(VERBS))

# Verb-object validity table (the HOI classes). Every object has no_interaction and look_at.
_VALID = {
    PERSON: (CARRY, HOLD, HUG, KICK, LOOK, NOI, PUSH),
    BICYCLE: (CARRY, HOLD, LOOK, NOI, PUSH, RIDE, SIT),
    BENCH: (LIE, LOOK, NOI, PUSH, SIT),
    BIRD: (FEED, HOLD, LOOK, NOI),
    DOG: (CARRY, FEED, HOLD, HUG, LOOK, NOI, WALK),
    HORSE: (FEED, HUG, LOOK, NOI, PUSH, RIDE, SIT, WALK),
    UMBRELLA: (CARRY, HOLD, LOOK, NOI),
    BALL: (CARRY, CATCH, HOLD, KICK, LOOK, NOI, THROW),
    KITE: (CARRY, HOLD, LOOK, NOI),
    SKATEBOARD: (CARRY, HOLD, KICK, LOOK, NOI, RIDE, SIT),
    BOTTLE: (CARRY, DRINK, HOLD, KICK, LOOK, NOI, THROW),
    CUP: (CARRY, DRINK, HOLD, LOOK, NOI),
    APPLE: (CATCH, EAT, HOLD, LOOK, NOI, THROW),
    CHAIR: (CARRY, HOLD, KICK, LOOK, NOI, PUSH, SIT),
    PHONE: (CATCH, HOLD, LOOK, NOI),
    BOOK: (CARRY, CATCH, HOLD, LOOK, NOI, THROW),
}
_ING = {"carry": "carrying", "catch": "catching", "drink_with": "drinking with", "eat": "eating",
        "feed": "feeding", "hold": "holding", "hug": "hugging", "kick": "kicking", "lie_on": "lying on",
        "look_at": "looking at", "push": "pushing", "ride": "riding", "sit_on": "sitting on",
        "throw": "throwing", "walk": "walking"}


def _article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name.replace("_", " ")


@lru_cache(maxsize=1)
def world_vocabulary() -> Vocabulary:
    """The world's vocabulary: 16 verbs, 16 objects (0 = person), 95 HOI classes grouped by object (HICO-DET order:
    objects in index order, verbs alphabetical within an object)."""
    hoi = [(v, o) for o in range(len(OBJECTS)) for v in _VALID[o]]
    verb_prompts = tuple("a photo of a person and the object with no interaction" if v == "no_interaction"
                         else f"a photo of a person is {_ING[v]} the object" for v in VERBS)
    object_prompts = tuple(f"a photo of {_article(o)}" for o in OBJECTS) + ("a photo of nothing",)
    hoi_prompts = tuple(f"a photo of {_hoi_phrase(v, o)}" for v, o in hoi)
    return Vocabulary(name="world", verbs=VERBS, objects=OBJECTS, hoi_classes=np.asarray(hoi, np.int64),
                      verb_prompts=verb_prompts, object_prompts=object_prompts, hoi_prompts=hoi_prompts,
                      no_interaction=NOI)


def _hoi_phrase(v: int, o: int) -> str:
    """"a person riding a horse" / "a person and a horse" (no_interaction), as in HICO-DET's prompts."""
    if v == NOI:
        return f"a person and {_article(OBJECTS[o])}"
    return f"a person {_ING[VERBS[v]]} {_article(OBJECTS[o])}"


def make_caption(person_pairs: list) -> str:
    """Caption of one image from its interactions.

    Args:
        person_pairs: one list per person (left to right) of (verb, object) pairs that person takes part in.
    Returns "a photo of <clause>, <clause>, ...": a clause per person, "a person riding a horse and sitting on a
    horse"; no_interaction pairs become their own clause "a person and a dog" (HICO-DET's prompt wording).
    """
    clauses = []
    for pairs in person_pairs:
        active = [f"{_ING[VERBS[v]]} {_article(OBJECTS[o])}" for v, o in pairs if v != NOI]
        if active:
            clauses.append("a person " + " and ".join(active))
        clauses += [_hoi_phrase(NOI, o) for v, o in pairs if v == NOI]
    return "a photo of " + ", ".join(clauses)


def parse_caption(caption: str) -> list:
    """Inverse of `make_caption`: the list of HOI class indices a caption names (with repeats)."""
    vocab = world_vocabulary()
    lut = vocab.object_verb_to_hoi
    phrase = {f"{_ING[VERBS[v]]} {_article(OBJECTS[o])}": int(lut[o, v])
              for o in range(len(OBJECTS)) for v in _VALID[o] if v != NOI}
    noi = {f"and {_article(OBJECTS[o])}": int(lut[o, NOI]) for o in range(len(OBJECTS))}
    if not caption.startswith("a photo of "):
        raise ValueError(f"not a world caption: {caption!r}")
    out = []
    for clause in caption[len("a photo of "):].split(", "):
        if not clause.startswith("a person "):
            raise ValueError(f"clause {clause!r} of {caption!r} does not start with 'a person '")
        rest = clause[len("a person "):]
        if rest in noi:
            out.append(noi[rest])
            continue
        for part in rest.split(" and "):
            if part not in phrase:
                raise ValueError(f"unknown phrase {part!r} in caption {caption!r}")
            out.append(phrase[part])
    return out
