"""The built-in HOI world: a procedurally generated data set shaped like HICO-DET (the embedded default).

The world reproduces HICO-DET's structure at small scale so that the whole study (CLIP pretraining, zero-shot
protocols, adapters, ablations) runs on a CPU in minutes:

- Vocabulary: 16 objects (object 0 = person, who can also be an interaction target), 16 verbs including
  "no_interaction", 95 valid (verb, object) HOI classes grouped by object as in HICO-DET, every object having a
  "no_interaction" class. Prompts follow LAIN (verb prompts "a photo of a person is riding the object", object
  prompts ending with "a photo of nothing") and HICO-DET (HOI prompts "a photo of a person riding a horse").
- Images (default 64x64): 1..max_people articulated figures (head with a gaze direction, torso, two-segment arms
  and legs; standing, walking, leaning, sitting, kneeling, lying, riding poses) and up to max_objects other objects
  with object-specific shapes, colours and textures, on cluttered backgrounds (sky/ground gradients, noise, trees,
  houses, rocks, clouds, fences).
- Interactions are visible only through local evidence: which body part touches the object (a hand holds it,
  a foot kicks it, the hip rests on it, both arms wrap it), pose (leaning to push, arm raised to throw, both arms
  forward to catch), relative placement (on top of, at the mouth, on a leash) and gaze (the eye and the back of
  the head show where a person looks). Different people in one image do different things, often with the same
  object, so image-level cues cannot say who does what.
- Labels are multi-label per pair as in HICO-DET and follow fixed rules that the rendering obeys:
  "hold" = the object is in the person's hand (so carry, eat and drink_with always come with hold, and so does
  riding a bicycle, whose handlebar is held); riding a horse or a bicycle is also sitting on it; "look_at" is
  given exactly when the person's gaze ray (from the face, along the head direction) first hits that entity's box
  (what is held at the mouth does not count); "no_interaction" = an idle person standing right next to the object
  (replaced by look_at when they look at it). `tests/test_world.py` checks the body evidence of every verb.
- HOI class frequencies are long-tailed (Zipf with exponent `cfg.world.long_tail` over a seeded class ranking):
  per split a shuffled list of class quotas (>= 1 training and >= 2 test pairs for every class), then i.i.d. draws.
  Default world (3,000 training images): ~6,500 training pairs, 23-24 of 95 classes rare (< 10 pairs; HICO-DET:
  138 of 600), counts from 5 to ~1,300.
- Captions for CLIP pretraining name every interaction of an image ("a photo of a person riding a horse and
  sitting on a horse, a person feeding a horse"); they come from a separate pool of `cfg.world.n_caption` images
  drawn with a flatter class distribution (`cfg.world.caption_long_tail`), covering every class, including the
  ones a zero-shot protocol hides from HOI training. A fraction `cfg.world.caption_close_up` of them are
  close-ups, one person and their object filling the frame, as object-centric photos are on the web; the rest are
  scenes like the HOI images.

`build_world(cfg)` generates (or loads from the on-disk cache) everything the study needs: images, annotations in
the HICO-DET `instances_*.json` format, captions, simulated detections and the zero-shot protocols.
`python -m hoilib.data.world --bench` prints the generation speed on one core; `--preview out.png` renders a grid.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .annotations import HOIAnnotations
from .detections import DetectionCache
from .vocab import Vocabulary

# Bump when the generator changes in a way that changes its output: the cache key includes it.
WORLD_VERSION = "2"

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------
# Rasteriser: numpy primitives on small windows of a supersampled canvas
# ---------------------------------------------------------------------------------------------------------------
# Shapes are drawn at SS x the output resolution and box-filtered down, which anti-aliases thin limbs cheaply.
SS = 2
# Primitive tuples (image or local coordinates; widths and radii in the same unit):
#   ("c", x, y, r, paint) circle      ("e", x, y, rx, ry, angle, paint) ellipse     ("g", x, y, r0, r1, paint) ring
#   ("s", x0, y0, x1, y1, w, paint) thick segment with round caps   ("l", points, w, paint) thick polyline
#   ("p", points, paint) convex polygon
# paint = (r, g, b) or ("t", rgb_a, rgb_b, pattern): rgb_b where the canvas-fixed texture pattern is set.
N_PATTERNS = 7


class _Raster:
    """A supersampled uint8 canvas with vectorised primitives; coordinates are output pixels (continuous)."""

    def __init__(self, size: int):
        self.S, self.N = size, size * SS
        c = ((np.arange(self.N) + 0.5) / SS).astype(np.float32)
        self.cx, self.cy = c[None, :], c[:, None]
        self.img = np.zeros((self.N, self.N, 3), np.uint8)
        self.patterns = _patterns(self.N)

    def _win(self, x0, y0, x1, y1):
        i0, i1 = max(0, int(x0 * SS)), min(self.N, int(x1 * SS) + 2)
        j0, j1 = max(0, int(y0 * SS)), min(self.N, int(y1 * SS) + 2)
        if i1 <= i0 or j1 <= j0:
            return None
        return j0, j1, i0, i1

    def _fill(self, w, mask, paint):
        j0, j1, i0, i1 = w
        view = self.img[j0:j1, i0:i1]
        if len(paint) == 3:
            view[mask] = paint
        else:
            pat = self.patterns[paint[3], j0:j1, i0:i1]
            view[mask & ~pat] = paint[1]
            view[mask & pat] = paint[2]

    def draw(self, p):
        k = p[0]
        if k == "c":
            _, x, y, r, paint = p
            w = self._win(x - r, y - r, x + r, y + r)
            if w:
                dx, dy = self.cx[:, w[2]:w[3]] - x, self.cy[w[0]:w[1]] - y
                self._fill(w, dx * dx + dy * dy <= r * r, paint)
        elif k == "s":
            _, x0, y0, x1, y1, wd, paint = p
            self._segments(((x0, y0), (x1, y1)), wd, paint)
        elif k == "l":
            self._segments(p[1], p[2], p[3])
        elif k == "e":
            _, x, y, rx, ry, ang, paint = p
            ca, sa = math.cos(ang), math.sin(ang)
            hx, hy = math.hypot(rx * ca, ry * sa), math.hypot(rx * sa, ry * ca)
            w = self._win(x - hx, y - hy, x + hx, y + hy)
            if w:
                dx, dy = self.cx[:, w[2]:w[3]] - x, self.cy[w[0]:w[1]] - y
                u, v = (dx * ca + dy * sa) / rx, (dy * ca - dx * sa) / ry
                self._fill(w, u * u + v * v <= 1.0, paint)
        elif k == "g":
            _, x, y, r0, r1, paint = p
            w = self._win(x - r1, y - r1, x + r1, y + r1)
            if w:
                dx, dy = self.cx[:, w[2]:w[3]] - x, self.cy[w[0]:w[1]] - y
                d2 = dx * dx + dy * dy
                self._fill(w, (d2 <= r1 * r1) & (d2 >= r0 * r0), paint)
        elif k == "p":
            pts, paint = p[1], p[2]
            xs, ys = [q[0] for q in pts], [q[1] for q in pts]
            w = self._win(min(xs), min(ys), max(xs), max(ys))
            if w:
                X, Y = self.cx[:, w[2]:w[3]], self.cy[w[0]:w[1]]
                area = sum(xs[i - 1] * ys[i] - xs[i] * ys[i - 1] for i in range(len(xs)))
                sg = 1.0 if area >= 0 else -1.0
                mask = None
                for i in range(len(xs)):  # inside = on the same side of every edge (convex polygons)
                    ax, ay, bx, by = xs[i - 1], ys[i - 1], xs[i], ys[i]
                    cr = ((bx - ax) * (Y - ay) - (by - ay) * (X - ax)) * sg >= 0
                    mask = cr if mask is None else mask & cr
                self._fill(w, mask, paint)
        else:
            raise ValueError(f"unknown primitive {k!r}")

    def _segments(self, pts, wd, paint):
        h = wd / 2
        xs, ys = [q[0] for q in pts], [q[1] for q in pts]
        w = self._win(min(xs) - h, min(ys) - h, max(xs) + h, max(ys) + h)
        if not w:
            return
        X, Y = self.cx[:, w[2]:w[3]], self.cy[w[0]:w[1]]
        best = None
        for i in range(1, len(pts)):
            ax, ay, bx, by = xs[i - 1], ys[i - 1], xs[i], ys[i]
            dx, dy = bx - ax, by - ay
            L2 = dx * dx + dy * dy
            Xa, Ya = X - ax, Y - ay
            if L2 < 1e-12:
                d2 = Xa * Xa + Ya * Ya
            else:
                t = np.minimum(np.maximum((Xa * (dx / L2)) + (Ya * (dy / L2)), 0.0), 1.0)
                px, py = Xa - t * dx, Ya - t * dy
                d2 = px * px + py * py
            best = d2 if best is None else np.minimum(best, d2)
        self._fill(w, best <= h * h, paint)

    def result(self) -> np.ndarray:
        """[S, S, 3] uint8: the SS x SS box-filtered canvas."""
        a = self.img.astype(np.uint16)
        acc = a[0::SS, 0::SS].copy()
        for dj in range(SS):
            for di in range(SS):
                if dj or di:
                    acc += a[dj::SS, di::SS]
        acc += SS * SS // 2
        acc //= SS * SS
        return acc.astype(np.uint8)


@lru_cache(maxsize=4)
def _patterns(n: int) -> np.ndarray:
    """[N_PATTERNS, n, n] bool texture masks fixed to the canvas (stripes, checks, dots, spots)."""
    j, i = np.mgrid[0:n, 0:n]
    rs = np.random.RandomState(12345)  # fixed: textures are part of the renderer, not of the world's seed
    noise = rs.rand(n // 8 + 2, n // 8 + 2)
    spots = np.kron(noise, np.ones((8, 8)))[:n, :n] > 0.62
    pats = [
        (j // 3) % 2 == 0,  # horizontal stripes
        (i // 3) % 2 == 0,  # vertical stripes
        ((i + j) // 4) % 2 == 0,  # diagonal stripes
        ((i // 4) + (j // 4)) % 2 == 0,  # checks
        ((i % 6 - 2.5) ** 2 + (j % 6 - 2.5) ** 2) < 3.0,  # dots
        spots,  # irregular spots (animal coats)
        ((i - j) // 4) % 2 == 0,  # anti-diagonal stripes
    ]
    return np.stack(pats).astype(bool)


def _prims_bbox(prims) -> list:
    """[x0, y0, x1, y1] extent of a primitive list."""
    x0 = y0 = math.inf
    x1 = y1 = -math.inf
    for p in prims:
        k = p[0]
        if k == "c":
            a0, b0, a1, b1 = p[1] - p[3], p[2] - p[3], p[1] + p[3], p[2] + p[3]
        elif k == "s":
            h = p[5] / 2
            a0, a1 = min(p[1], p[3]) - h, max(p[1], p[3]) + h
            b0, b1 = min(p[2], p[4]) - h, max(p[2], p[4]) + h
        elif k == "l":
            h = p[2] / 2
            xs, ys = [q[0] for q in p[1]], [q[1] for q in p[1]]
            a0, a1, b0, b1 = min(xs) - h, max(xs) + h, min(ys) - h, max(ys) + h
        elif k == "p":
            xs, ys = [q[0] for q in p[1]], [q[1] for q in p[1]]
            a0, a1, b0, b1 = min(xs), max(xs), min(ys), max(ys)
        elif k == "e":
            ca, sa = math.cos(p[5]), math.sin(p[5])
            hx, hy = math.hypot(p[3] * ca, p[4] * sa), math.hypot(p[3] * sa, p[4] * ca)
            a0, a1, b0, b1 = p[1] - hx, p[1] + hx, p[2] - hy, p[2] + hy
        elif k == "g":
            a0, b0, a1, b1 = p[1] - p[4], p[2] - p[4], p[1] + p[4], p[2] + p[4]
        else:
            raise ValueError(k)
        x0, y0, x1, y1 = min(x0, a0), min(y0, b0), max(x1, a1), max(y1, b1)
    return [x0, y0, x1, y1]


def _xf(prims, s, m, tx, ty):
    """Primitives under x' = m*s*x + tx, y' = s*y + ty (m = +-1 mirrors)."""
    a = m * s
    out = []
    for p in prims:
        k = p[0]
        if k == "c":
            out.append(("c", a * p[1] + tx, s * p[2] + ty, s * p[3], p[4]))
        elif k == "s":
            out.append(("s", a * p[1] + tx, s * p[2] + ty, a * p[3] + tx, s * p[4] + ty, s * p[5], p[6]))
        elif k == "l":
            out.append(("l", tuple((a * x + tx, s * y + ty) for x, y in p[1]), s * p[2], p[3]))
        elif k == "p":
            out.append(("p", tuple((a * x + tx, s * y + ty) for x, y in p[1]), p[2]))
        elif k == "e":
            out.append(("e", a * p[1] + tx, s * p[2] + ty, s * p[3], s * p[4], m * p[5], p[6]))
        elif k == "g":
            out.append(("g", a * p[1] + tx, s * p[2] + ty, s * p[3], s * p[4], p[5]))
    return out


def _rot(prims, ang):
    """Primitives rotated by `ang` radians about the origin (clockwise on screen, y points down)."""
    ca, sa = math.cos(ang), math.sin(ang)

    def r(x, y):
        return x * ca - y * sa, x * sa + y * ca

    out = []
    for p in prims:
        k = p[0]
        if k == "c":
            out.append(("c", *r(p[1], p[2]), p[3], p[4]))
        elif k == "s":
            out.append(("s", *r(p[1], p[2]), *r(p[3], p[4]), p[5], p[6]))
        elif k == "l":
            out.append(("l", tuple(r(x, y) for x, y in p[1]), p[2], p[3]))
        elif k == "p":
            out.append(("p", tuple(r(x, y) for x, y in p[1]), p[2]))
        elif k == "e":
            out.append(("e", *r(p[1], p[2]), p[3], p[4], p[5] + ang, p[6]))
        elif k == "g":
            out.append(("g", *r(p[1], p[2]), p[3], p[4], p[5]))
    return out


def _rect(x0, y0, x1, y1, paint):
    return ("p", ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), paint)


def _shade(c, f):
    """Colour scaled by f (clipped), keeping texture tuples' structure."""
    if len(c) == 4:
        return ("t", _shade(c[1], f), _shade(c[2], f), c[3])
    return tuple(int(min(255, max(0, v * f))) for v in c)


# ---------------------------------------------------------------------------------------------------------------
# Random helpers (Python's Mersenne Twister: a few scalar draws per shape, much faster than numpy's Generator)
# ---------------------------------------------------------------------------------------------------------------
def _u(R, a, b):
    return a + (b - a) * R.random()


def _pick(R, seq):
    return seq[int(R.random() * len(seq))]


def _jit(R, c, amount=18):
    """A colour with a little random variation, so that no two instances are identical."""
    return tuple(int(min(255, max(0, v + (R.random() - 0.5) * 2 * amount))) for v in c)


# ---------------------------------------------------------------------------------------------------------------
# Objects: shapes in "person-height units" (a standing person is ~1 tall), ground at y = 0, facing +x
# ---------------------------------------------------------------------------------------------------------------
class _Obj:
    """An object instance: primitives and named anchor points in its own frame, plus its placement in the group
    frame (x' = m*x + tx, y' = y + ty)."""

    __slots__ = ("cls", "prims", "anchors", "box", "m", "tx", "ty", "flying")

    def __init__(self, cls, prims, anchors, flying=False):
        self.cls, self.prims, self.anchors, self.flying = cls, prims, anchors, flying
        self.box = _prims_bbox(prims)
        self.m, self.tx, self.ty = 1, 0.0, 0.0

    def place(self, anchor, point, m=1):
        """Put `anchor` at `point` (group frame), mirrored when m = -1."""
        ax, ay = self.anchors[anchor]
        self.m, self.tx, self.ty = m, point[0] - m * ax, point[1] - ay
        return self

    def pt(self, anchor):
        ax, ay = self.anchors[anchor]
        return (self.m * ax + self.tx, ay + self.ty)

    def bbox(self):
        x0, y0, x1, y1 = self.box
        if self.m < 0:
            x0, x1 = -x1, -x0
        return [x0 + self.tx, y0 + self.ty, x1 + self.tx, y1 + self.ty]


_WOOD = [(150, 100, 55), (120, 80, 45), (170, 125, 75), (95, 65, 40)]
_BRIGHT = [(220, 40, 40), (40, 90, 210), (245, 200, 30), (40, 170, 70), (240, 130, 20), (150, 60, 190),
           (20, 170, 190), (235, 90, 160), (245, 245, 245)]
_HORSE = [(140, 90, 50), (95, 60, 35), (45, 38, 36), (225, 220, 210), (150, 145, 140), (175, 105, 55)]
_DOG = [(160, 110, 60), (215, 180, 120), (50, 45, 40), (235, 230, 220), (120, 80, 50), (190, 150, 100)]


def _make_object(R, cls, state=""):
    """A random instance of object class `cls` (size, colours, texture); `state` selects a variant
    (bird: "fly"; umbrella: "open" held, "planted", "closed"; skateboard: "vertical"; kite: "ground";
    book: "open"; chair: "upside")."""
    z = _u(R, 0.9, 1.1)
    if cls in (BALL, CUP, APPLE, PHONE, BOOK, BOTTLE, BIRD):
        z *= 1.35  # hand-sized things drawn larger than life so that they keep a few pixels at 64 px
    if cls == HORSE:
        c = _jit(R, _pick(R, _HORSE))
        dark = _shade(c, 0.6)
        body = ("t", c, _pick(R, [(235, 230, 220), (60, 45, 35)]), 5) if R.random() < 0.25 else c
        mane = _jit(R, _pick(R, [(40, 30, 25), (90, 60, 35), (230, 220, 200)]))
        L, Hb = 0.42 * z, 0.55 * z
        prims = [("s", 0.22 * z, -Hb + 0.05, 0.26 * z, 0, 0.065, dark),  # far legs first, darker
                 ("s", -0.32 * z, -Hb + 0.05, -0.28 * z, 0, 0.065, dark),
                 ("s", -0.44 * z, -Hb - 0.06, -0.53 * z, -Hb + 0.2, 0.05, mane),
                 ("e", 0, -Hb, L, 0.15 * z, 0, body),
                 ("s", 0.3 * z, -Hb - 0.04, 0.5 * z, -Hb - 0.3 * z, 0.13 * z, c),
                 ("s", 0.27 * z, -Hb - 0.12, 0.46 * z, -Hb - 0.37 * z, 0.04, mane),
                 ("e", 0.57 * z, -Hb - 0.29 * z, 0.13 * z, 0.06 * z, 0.45, c),
                 ("c", 0.57 * z, -Hb - 0.33 * z, 0.013, (20, 20, 20)),
                 ("p", ((0.48 * z, -Hb - 0.36 * z), (0.5 * z, -Hb - 0.44 * z), (0.53 * z, -Hb - 0.35 * z)), c),
                 ("s", 0.32 * z, -Hb + 0.05, 0.32 * z, 0, 0.07, c), ("s", -0.22 * z, -Hb + 0.05, -0.22 * z, 0, 0.07, c)]
        anchors = {"back": (-0.05 * z, -Hb - 0.14 * z), "mouth": (0.67 * z, -Hb - 0.24 * z),
                   "neck": (0.42 * z, -Hb - 0.2 * z), "rump": (-0.41 * z, -Hb - 0.04), "base": (0, 0),
                   "front": (0.7 * z, -Hb - 0.1), "rear": (-0.45 * z, -Hb)}
        return _Obj(cls, prims, anchors)
    if cls == DOG:
        c = _jit(R, _pick(R, _DOG))
        body = ("t", c, _pick(R, [(250, 250, 245), (45, 40, 35), (130, 90, 55)]), 5) if R.random() < 0.35 else c
        dark = _shade(c, 0.65)
        y = -0.2 * z
        prims = [("s", 0.1 * z, y, 0.11 * z, 0, 0.045, dark), ("s", -0.12 * z, y, -0.13 * z, 0, 0.045, dark),
                 ("s", -0.17 * z, y - 0.02, -0.26 * z, y - 0.11 * z, 0.035, c),
                 ("e", 0, y, 0.19 * z, 0.075 * z, 0, body),
                 ("s", 0.13 * z, y, 0.14 * z, 0, 0.045, c), ("s", -0.09 * z, y, -0.1 * z, 0, 0.045, c),
                 ("c", 0.2 * z, y - 0.1 * z, 0.068 * z, c),
                 ("e", 0.27 * z, y - 0.08 * z, 0.05 * z, 0.032 * z, 0, c),
                 ("c", 0.315 * z, y - 0.09 * z, 0.014, (20, 20, 20)),
                 ("e", 0.17 * z, y - 0.12 * z, 0.025 * z, 0.055 * z, -0.4, dark),
                 ("c", 0.23 * z, y - 0.12 * z, 0.012, (15, 15, 15))]
        anchors = {"base": (0, 0), "mouth": (0.31 * z, y - 0.07 * z), "collar": (0.15 * z, y - 0.07 * z),
                   "back": (0, y - 0.075 * z), "center": (0, y), "head": (0.2 * z, y - 0.1 * z)}
        return _Obj(cls, prims, anchors)
    if cls == BIRD:
        c = _jit(R, _pick(R, [(40, 90, 200), (210, 40, 40), (240, 200, 30), (40, 40, 40), (120, 80, 50)]))
        beak = (240, 160, 30)
        if state == "fly":
            prims = [("e", 0, 0, 0.065 * z, 0.03 * z, 0, c), ("c", 0.06 * z, -0.015 * z, 0.028 * z, c),
                     ("p", ((0.085 * z, -0.02 * z), (0.12 * z, -0.012 * z), (0.085 * z, -0.004 * z)), beak),
                     ("p", ((-0.03 * z, -0.01), (0.03 * z, -0.01), (-0.06 * z, -0.12 * z)), _shade(c, 0.8)),
                     ("p", ((-0.06 * z, 0), (-0.12 * z, -0.03 * z), (-0.12 * z, 0.025 * z)), c)]
            return _Obj(cls, prims, {"center": (0, 0), "base": (0, 0.05)}, flying=True)
        prims = [("s", -0.01 * z, -0.03, 0.0, 0, 0.012, (90, 60, 30)),
                 ("s", 0.02 * z, -0.03, 0.02 * z, 0, 0.012, (90, 60, 30)),
                 ("p", ((-0.05 * z, -0.06 * z), (-0.12 * z, -0.1 * z), (-0.11 * z, -0.04 * z)), _shade(c, 0.8)),
                 ("e", 0, -0.06 * z, 0.065 * z, 0.038 * z, -0.15, c), ("c", 0.055 * z, -0.1 * z, 0.03 * z, c),
                 ("p", ((0.08 * z, -0.108 * z), (0.12 * z, -0.098 * z), (0.08 * z, -0.088 * z)), beak),
                 ("c", 0.063 * z, -0.108 * z, 0.008, (10, 10, 10))]
        return _Obj(cls, prims, {"base": (0, 0), "center": (0, -0.06 * z), "head": (0.06 * z, -0.1 * z)})
    if cls == BICYCLE:
        fr = _jit(R, _pick(R, _BRIGHT[:8] + [(30, 30, 30)]))
        tire = (35, 35, 35)
        r, wd = 0.17 * z, 0.028
        rh, fh, cr = (-0.28 * z, -r), (0.28 * z, -r), (0.0, -r)
        st, hd = (-0.07 * z, -0.46 * z), (0.2 * z, -0.46 * z)
        prims = [("g", rh[0], rh[1], r - 0.03, r, tire), ("g", fh[0], fh[1], r - 0.03, r, tire),
                 ("s", rh[0], rh[1], fh[0], fh[1], 0.008, (150, 150, 150)),
                 ("l", (rh, cr, st, rh), wd, fr), ("l", (cr, hd, fh), wd, fr), ("s", *st, *hd, wd, fr),
                 ("s", hd[0], hd[1], hd[0] + 0.02 * z, hd[1] - 0.09 * z, 0.025, fr),
                 ("s", hd[0] - 0.03 * z, hd[1] - 0.09 * z, hd[0] + 0.05 * z, hd[1] - 0.1 * z, 0.03, tire),
                 ("e", st[0], st[1] - 0.025, 0.055 * z, 0.018, 0, tire), ("c", cr[0], cr[1], 0.03, (90, 90, 90))]
        anchors = {"base": (0, 0), "saddle": (st[0], st[1] - 0.04), "handle": (hd[0] + 0.03 * z, hd[1] - 0.1 * z),
                   "crank": cr, "rear": (-0.45 * z, -0.25), "front": (0.45 * z, -0.25), "top": (0, -0.5 * z),
                   "rack": (-0.3 * z, -0.38 * z),
                   "center": (0, -0.3 * z)}
        return _Obj(cls, prims, anchors)
    if cls == BENCH:
        c = _jit(R, _pick(R, _WOOD + [(50, 110, 60), (60, 60, 70)]))
        leg = _shade(c, 0.55)
        Lb = (0.45 if state == "long" else 0.36) * z
        h = 0.26
        prims = [("s", -Lb + 0.06, -h, -Lb + 0.06, 0, 0.04, leg), ("s", Lb - 0.06, -h, Lb - 0.06, 0, 0.04, leg),
                 ("s", -Lb + 0.08, -h, -Lb + 0.08, -h - 0.26, 0.03, leg),
                 ("s", Lb - 0.08, -h, Lb - 0.08, -h - 0.26, 0.03, leg),
                 _rect(-Lb, -h - 0.27, Lb, -h - 0.17, ("t", c, _shade(c, 0.8), 0)),
                 _rect(-Lb - 0.02, -h - 0.035, Lb + 0.02, -h + 0.01, c)]
        anchors = {"base": (0, 0), "seat": (0, -h - 0.035), "seat_l": (-Lb * 0.5, -h - 0.035),
                   "seat_r": (Lb * 0.5, -h - 0.035), "side_l": (-Lb - 0.02, -h - 0.2), "side_r": (Lb + 0.02, -h - 0.2),
                   "center": (0, -h - 0.1)}
        return _Obj(cls, prims, anchors)
    if cls == CHAIR:
        c = _jit(R, _pick(R, _WOOD + [(200, 50, 50), (50, 80, 170), (230, 230, 225)]))
        leg = _shade(c, 0.75)
        h = 0.26 * z
        prims = [("s", 0.1 * z, -h, 0.11 * z, 0, 0.03, leg), ("s", -0.1 * z, -h, -0.11 * z, 0, 0.03, leg),
                 ("s", -0.1 * z, -h, -0.13 * z, -h - 0.36 * z, 0.035, c),
                 ("s", -0.13 * z, -h - 0.33 * z, -0.11 * z, -h - 0.2 * z, 0.06, c),
                 _rect(-0.12 * z, -h - 0.03, 0.13 * z, -h + 0.01, c)]
        anchors = {"base": (0, 0), "seat": (0.0, -h - 0.03), "back_top": (-0.13 * z, -h - 0.34 * z),
                   "front": (0.13 * z, -h * 0.5), "center": (0, -h - 0.1), "top": (0, -h - 0.36 * z)}
        o = _Obj(cls, prims, anchors)
        if state == "upside":  # carried over the head, legs up
            o.prims = _rot(o.prims, math.pi)
            o.anchors = {k: (-x, -y) for k, (x, y) in o.anchors.items()}
            o.box = _prims_bbox(o.prims)
        return o
    if cls == UMBRELLA:
        c1 = _jit(R, _pick(R, _BRIGHT))
        c2 = _jit(R, _pick(R, _BRIGHT))
        canopy = ("t", c1, c2, _pick(R, (1, 2, 6))) if c1 != c2 else c1
        if state == "closed":
            prims = [("s", -0.26 * z, 0, 0.2 * z, 0, 0.05, c1), ("s", 0.2 * z, 0, 0.26 * z, 0, 0.015, (60, 60, 60)),
                     ("s", -0.26 * z, 0, -0.3 * z, 0.03, 0.02, (60, 40, 30))]
            return _Obj(cls, prims, {"grip": (-0.2 * z, 0), "center": (0, 0), "grip2": (0.05 * z, 0)})
        R0 = 0.27 * z
        top = 0.42 if state != "planted" else 0.72
        cy = -top
        arc = tuple((R0 * math.cos(a), cy - R0 * 0.8 * math.sin(a)) for a in np.linspace(0, math.pi, 9))
        prims = [("s", 0, 0, 0, cy, 0.022, (70, 70, 70)), ("s", 0, 0, 0.035, 0.025, 0.02, (70, 50, 35)),
                 ("p", arc, canopy), ("s", 0, cy - R0 * 0.8, 0, cy - R0 * 0.8 - 0.04, 0.02, (70, 70, 70))]
        return _Obj(cls, prims, {"grip": (0, -0.02), "base": (0, 0), "top": (0, cy - R0 * 0.8),
                                 "center": (0, cy - 0.1)})
    if cls == BALL:
        r = 0.062 * z
        kind = int(R.random() * 4)
        if kind == 0:
            paint = ("t", (245, 245, 245), (30, 30, 30), 4)
        elif kind == 1:
            paint = ("t", _jit(R, (240, 120, 30)), (60, 30, 10), 0)
        else:
            paint = _jit(R, _pick(R, _BRIGHT))
        prims = [("c", 0, 0, r, paint), ("s", -r * 0.7, -r * 0.1, r * 0.7, r * 0.1, r * 0.25, _shade(
            paint if len(paint) == 3 else paint[1], 0.7))] if kind >= 2 else [("c", 0, 0, r, paint)]
        return _Obj(cls, prims, {"center": (0, 0), "base": (0, r), "grip": (-r * 0.9, 0)})
    if cls == KITE:
        c1, c2 = _jit(R, _pick(R, _BRIGHT)), _jit(R, _pick(R, _BRIGHT))
        w, hgt = 0.09 * z, 0.12 * z
        prims = [("p", ((0, -hgt), (w, -0.02), (0, hgt), (-w, -0.02)), c1),
                 ("p", ((0, -hgt), (w, -0.02), (0, hgt)), c2),
                 ("s", 0, -hgt, 0, hgt, 0.012, (60, 50, 40)), ("s", -w, -0.02, w, -0.02, 0.012, (60, 50, 40))]
        if state != "ground":
            tail = ((0, hgt), (0.03, hgt + 0.05), (-0.02, hgt + 0.1), (0.02, hgt + 0.15), (-0.01, hgt + 0.2))
            prims = prims + [("l", tail, 0.012, (80, 80, 80)), ("c", 0.02, hgt + 0.15, 0.015, c2),
                             ("c", 0.03, hgt + 0.05, 0.015, c1)]
        o = _Obj(cls, prims, {"center": (0, 0), "string": (0, 0.02), "bottom": (0, hgt), "grip": (0, hgt * 0.5)},
                 flying=state != "ground")
        if state == "ground":  # lying on the ground
            o.prims = _rot(o.prims, math.pi / 2)
            o.anchors = {"center": (0, 0), "base": (0, w), "grip": (0, 0)}
            o.box = _prims_bbox(o.prims)
        return o
    if cls == SKATEBOARD:
        deck = _jit(R, _pick(R, _BRIGHT + _WOOD[:2]))
        prims = [("c", -0.14 * z, -0.024, 0.024, (40, 40, 40)), ("c", 0.14 * z, -0.024, 0.024, (40, 40, 40)),
                 ("s", -0.21 * z, -0.062, 0.21 * z, -0.062, 0.03, deck),
                 ("s", 0.2 * z, -0.062, 0.24 * z, -0.08, 0.03, deck),
                 ("s", -0.2 * z, -0.062, -0.24 * z, -0.08, 0.03, deck)]
        anchors = {"base": (0, 0), "deck": (0, -0.077), "tail": (-0.24 * z, -0.07), "nose": (0.24 * z, -0.07),
                   "center": (0, -0.05), "grip": (-0.22 * z, -0.07), "mid_l": (-0.12 * z, -0.077),
                   "mid_r": (0.12 * z, -0.077)}
        o = _Obj(cls, prims, anchors)
        if state == "vertical":  # held by one end at the side, nose down
            o.prims = _rot(_xf(o.prims, 1, 1, 0.24 * z, 0.07), math.pi / 2)
            o.anchors = {"grip": (0, 0), "center": (0, 0.24 * z)}
            o.box = _prims_bbox(o.prims)
        return o
    if cls == BOTTLE:
        c = _jit(R, _pick(R, [(40, 140, 60), (120, 70, 30), (60, 110, 200), (200, 200, 210), (200, 60, 50)]))
        hgt = 0.17 * z
        prims = [_rect(-0.032 * z, -hgt * 0.72, 0.032 * z, 0, c), ("s", 0, -hgt * 0.7, 0, -hgt, 0.03 * z, c),
                 _rect(-0.018 * z, -hgt - 0.015, 0.018 * z, -hgt + 0.01, (230, 230, 230)),
                 _rect(-0.033 * z, -hgt * 0.55, 0.033 * z, -hgt * 0.3, (235, 225, 200))]
        return _Obj(cls, prims, {"base": (0, 0), "grip": (0, -hgt * 0.42), "mouth": (0, -hgt - 0.01),
                                 "center": (0, -hgt * 0.5)})
    if cls == CUP:
        c = _jit(R, _pick(R, [(245, 245, 240), (210, 50, 50), (50, 100, 200), (240, 200, 40), (60, 160, 90)]))
        hgt = 0.1 * z
        prims = [("g", 0.045 * z, -hgt * 0.5, 0.013 * z, 0.032 * z, _shade(c, 0.85)),
                 ("p", ((-0.04 * z, -hgt), (0.04 * z, -hgt), (0.032 * z, 0), (-0.032 * z, 0)), c),
                 ("s", -0.04 * z, -hgt, 0.04 * z, -hgt, 0.012, _shade(c, 0.7))]
        return _Obj(cls, prims, {"base": (0, 0), "grip": (0.065 * z, -hgt * 0.5), "mouth": (-0.035 * z, -hgt),
                                 "center": (0, -hgt * 0.5)})
    if cls == APPLE:
        c = _jit(R, _pick(R, [(200, 30, 30), (120, 190, 50), (220, 60, 40), (230, 200, 50)]))
        r = 0.045 * z
        prims = [("c", 0, 0, r, c), ("c", -r * 0.35, -r * 0.35, r * 0.3, _shade(c, 1.25)),
                 ("s", 0, -r * 0.8, 0.008, -r * 1.4, 0.012, (90, 60, 30)),
                 ("e", 0.025, -r * 1.25, 0.022, 0.01, -0.3, (50, 150, 40))]
        return _Obj(cls, prims, {"center": (0, 0), "base": (0, r), "grip": (-r * 0.8, 0.0)})
    if cls == PHONE:
        c = _jit(R, _pick(R, [(30, 30, 35), (200, 200, 205), (180, 40, 60), (40, 60, 140)]))
        w, hgt = 0.03 * z, 0.052 * z
        prims = [_rect(-w, -hgt, w, hgt, c), _rect(-w * 0.7, -hgt * 0.75, w * 0.7, hgt * 0.7, (120, 200, 240))]
        return _Obj(cls, prims, {"center": (0, 0), "base": (0, hgt), "grip": (-w, 0.0)})
    if cls == BOOK:
        c = _jit(R, _pick(R, _BRIGHT[:8] + [(90, 50, 30)]))
        w, hgt = 0.075 * z, 0.055 * z
        if state == "open":
            prims = [("p", ((-w, -hgt), (0, -hgt * 0.7), (0, hgt), (-w, hgt * 0.7)), (245, 245, 235)),
                     ("p", ((w, -hgt), (0, -hgt * 0.7), (0, hgt), (w, hgt * 0.7)), (235, 235, 225)),
                     ("s", 0, -hgt * 0.7, 0, hgt, 0.015, c), ("s", -w, hgt * 0.7, w, hgt * 0.7, 0.012, c)]
        else:
            prims = [_rect(-w, -hgt, w, hgt, c), _rect(w * 0.6, -hgt * 0.85, w, hgt * 0.85, (245, 245, 235)),
                     ("s", -w, -hgt, -w, hgt, 0.025, _shade(c, 0.6)),
                     ("s", -w * 0.4, -hgt * 0.3, w * 0.3, -hgt * 0.3, 0.012, (245, 230, 120))]
        return _Obj(cls, prims, {"center": (0, 0), "base": (0, hgt), "grip": (-w, 0.0)})
    raise ValueError(f"no shape for object class {cls}")


# ---------------------------------------------------------------------------------------------------------------
# People: an articulated figure (side view) in person-height units
# ---------------------------------------------------------------------------------------------------------------
HEAD_R, NECK, TORSO, UPPER_ARM, FOREARM, THIGH, SHIN, FOOT = 0.1, 0.12, 0.3, 0.17, 0.16, 0.26, 0.255, 0.07
ARM_W, LEG_W, TORSO_W, HAND_R = 0.065, 0.08, 0.15, 0.036
_SKIN = [(241, 194, 160), (224, 172, 125), (198, 134, 66), (141, 85, 36), (255, 219, 172)]
_HAIR = [(30, 25, 20), (80, 50, 25), (205, 165, 85), (130, 130, 130), (150, 70, 30)]
_SHIRT = [(200, 40, 40), (40, 90, 200), (40, 160, 70), (230, 200, 40), (240, 240, 240), (120, 60, 160),
          (240, 130, 30), (35, 35, 35), (0, 150, 160), (230, 110, 160)]
_PANTS = [(40, 50, 90), (30, 30, 30), (100, 70, 40), (120, 120, 120), (190, 170, 120), (60, 90, 60)]
_JOINTS = ("hip", "neck", "head", "sh", "el_n", "ha_n", "el_f", "ha_f", "kn_n", "ft_n", "to_n", "kn_f", "ft_f",
           "to_f")


class _Person:
    """Joint positions (group frame, later image frame), colours, facing f (+1 = right) and gaze angle."""

    __slots__ = ("j", "pal", "f", "far_leg", "gaze", "s", "idle")

    def __init__(self, R, f=1):
        self.pal = (_jit(R, _pick(R, _SKIN), 8), _jit(R, _pick(R, _HAIR), 10), _jit(R, _pick(R, _SHIRT)),
                    _jit(R, _pick(R, _PANTS)))
        self.j, self.f, self.far_leg, self.gaze, self.s, self.idle = {}, f, True, None, 1.0, False

    def bbox(self):
        j, s = self.j, self.s
        xs = [p[0] for p in j.values()]
        ys = [p[1] for p in j.values()]
        h = max(LEG_W, TORSO_W) / 2 * s
        hx, hy = j["head"]
        r = HEAD_R * 1.2 * s
        return [min(min(xs) - h, hx - r), min(min(ys) - h, hy - r), max(max(xs) + h, hx + r),
                max(max(ys) + h, hy + r)]


def _ik(b, t, l1, l2, hint):
    """Two-link inverse kinematics: (middle joint, end) reaching from b toward t; of the two solutions the one
    whose middle joint lies further along `hint` (e.g. knees forward, elbows down)."""
    dx, dy = t[0] - b[0], t[1] - b[1]
    d = math.hypot(dx, dy)
    if d < 1e-6:
        dx, dy, d = 0.0, 1.0, 1e-6
    ux, uy = dx / d, dy / d
    dc = min(max(d, abs(l1 - l2) + 1e-4), l1 + l2 - 1e-4)
    ca = (l1 * l1 + dc * dc - l2 * l2) / (2 * l1 * dc)
    along, h = l1 * ca, l1 * math.sqrt(max(0.0, 1 - ca * ca))
    m1 = (b[0] + along * ux - h * uy, b[1] + along * uy + h * ux)
    m2 = (b[0] + along * ux + h * uy, b[1] + along * uy - h * ux)
    mid = m1 if (m1[0] - m2[0]) * hint[0] + (m1[1] - m2[1]) * hint[1] >= 0 else m2
    end = t if d <= l1 + l2 else (b[0] + dc * ux, b[1] + dc * uy)
    return mid, end


def _torso(p, hip, lean, head_tilt=None):
    """Hip position and torso lean (radians, + = forward); neck, shoulder and head follow."""
    f, sl, cl = p.f, math.sin(lean), math.cos(lean)
    p.j["hip"] = hip
    p.j["neck"] = (hip[0] + f * TORSO * sl, hip[1] - TORSO * cl)
    p.j["sh"] = (hip[0] + f * (TORSO - 0.035) * sl, hip[1] - (TORSO - 0.035) * cl)
    ht = lean * 0.6 if head_tilt is None else head_tilt
    p.j["head"] = (p.j["neck"][0] + f * NECK * math.sin(ht), p.j["neck"][1] - NECK * math.cos(ht))


def _arm(p, side, target, hint=(-0.3, 1.0)):
    """Put hand `side` ("n" near, "f" far) at target (elbow solved; hint x is relative to facing)."""
    el, ha = _ik(p.j["sh"], target, UPPER_ARM, FOREARM, (hint[0] * p.f, hint[1]))
    p.j["el_" + side], p.j["ha_" + side] = el, ha
    return ha


def _leg(p, side, target, hint=(1.0, 0.0), toe=None):
    """Put foot `side` at target (knee solved, forward by default); toe direction (dx, dy) relative to facing."""
    kn, ft = _ik(p.j["hip"], target, THIGH, SHIN, (hint[0] * p.f, hint[1]))
    p.j["kn_" + side], p.j["ft_" + side] = kn, ft
    tx, ty = toe if toe is not None else (FOOT, 0.0)
    p.j["to_" + side] = (ft[0] + p.f * tx, ft[1] + ty)
    return ft


def _rel(p, base, dx, dy):
    """A point dx forward (in facing direction) and dy down from joint `base` (or from a point)."""
    b = p.j[base] if isinstance(base, str) else base
    return (b[0] + p.f * dx, b[1] + dy)


def _stand(R, x, f=1, lean=0.0, stride=None, hip_y=-0.49):
    """A standing (stride > ~0.15: walking) person with hanging arms, feet at ground y = 0."""
    p = _Person(R, f)
    st = _u(R, 0.0, 0.12) if stride is None else stride
    _torso(p, (x, hip_y), lean)
    _leg(p, "n", (x + f * (0.03 + st / 2), 0.0))
    _leg(p, "f", (x - f * (0.02 + st / 2), 0.0))
    _rest_arms(R, p)
    return p


def _rest_arms(R, p):
    _arm(p, "n", _rel(p, "sh", _u(R, 0.0, 0.08), 0.3), (-0.5, 1))
    _arm(p, "f", _rel(p, "sh", -_u(R, 0.0, 0.08), 0.3), (-0.5, 1))


def _kneel(R, x, f=1, lean=0.3):
    """Kneeling on the far knee (to reach low things: a dog)."""
    p = _Person(R, f)
    _torso(p, (x, -0.31), lean)
    _leg(p, "n", (x + f * 0.2, 0.0), (1, -1))
    _leg(p, "f", (x - f * 0.02, -0.035), (1, 0), toe=None)
    kn = p.j["kn_f"]
    p.j["ft_f"] = (kn[0] - f * SHIN, -0.03)
    p.j["to_f"] = (p.j["ft_f"][0] - f * 0.02, -0.06)
    _rest_arms(R, p)
    return p


def _sit(R, hip, f=1, lean=-0.05, foot_y=0.0):
    """Sitting with the hip at `hip`, thighs forward, feet on the ground, hands on the thighs."""
    p = _Person(R, f)
    _torso(p, hip, lean)
    reach = _u(R, 0.26, 0.32)
    _leg(p, "n", (hip[0] + f * reach, foot_y), (1, -1))
    _leg(p, "f", (hip[0] + f * (reach - 0.06), foot_y), (1, -1))
    _arm(p, "n", _rel(p, hip, 0.17, -0.05), (-0.2, 1))
    _arm(p, "f", _rel(p, hip, 0.14, -0.04), (-0.2, 1))
    return p


def _flat_bbox(boxes):
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


class _Group:
    """People and objects whose interaction fixes their relative placement; laid out as one unit.

    ents: _Person / _Obj entities; order: draw order of ("e", index) and ("x", primitive) items;
    pairs: {(human, target): set of verbs}; look: {human: target it looks at};
    gaze_fix: {human: gaze angle in the group frame for poses that fix the head (drinking, lying)};
    mouth: {human: entity held at the mouth (ignored by the gaze ray)}; classes: the sampled (verb, object)
    classes the group renders (for re-queueing when it does not fit).
    """

    __slots__ = ("ents", "order", "pairs", "look", "gaze_fix", "mouth", "classes", "distractor", "free")

    def __init__(self):
        self.ents, self.order, self.pairs, self.look = [], [], {}, {}
        self.gaze_fix, self.mouth, self.classes, self.distractor = {}, {}, [], False
        # free places where a second person can join with an active verb: tag -> (target, detail)
        self.free = {}

    def add(self, e):
        self.ents.append(e)
        self.order.append(("e", len(self.ents) - 1))
        return len(self.ents) - 1

    def x(self, prim):
        self.order.append(("x", prim))

    def label(self, h, t, *verbs):
        self.pairs.setdefault((h, t), set()).update(verbs)

    def bbox(self):
        boxes = [e.bbox() for e in self.ents]
        xs = [it[1] for it in self.order if it[0] == "x"]
        if xs:
            boxes.append(_prims_bbox(xs))
        return _flat_bbox(boxes)

    def persons(self):
        return [i for i, e in enumerate(self.ents) if isinstance(e, _Person)]


def _line(a, b, sag=0.0, w=0.016, c=(60, 50, 40)):
    """A rope or string from a to b sagging by `sag` in the middle."""
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + sag)
    return ("l", (a, mid, b), w, c)


def _motion(c, r, direction):
    """Two short motion streaks behind an object centred at c moving along unit `direction`."""
    dx, dy = direction
    out = []
    for off in (-0.6, 0.6):
        ox, oy = -dy * off * r, dx * off * r
        a = (c[0] - dx * (r + 0.03) + ox, c[1] - dy * (r + 0.03) + oy)
        b = (c[0] - dx * (r + 0.13) + ox, c[1] - dy * (r + 0.13) + oy)
        out.append(("s", a[0], a[1], b[0], b[1], 0.018, (250, 250, 250)))
    return out


def _rot_obj(o, ang):
    o.prims = _rot(o.prims, ang)
    ca, sa = math.cos(ang), math.sin(ang)
    o.anchors = {k: (x * ca - y * sa, x * sa + y * ca) for k, (x, y) in o.anchors.items()}
    o.box = _prims_bbox(o.prims)
    return o


def _on_ground(o, x_left, m=1):
    """Place object o on the ground with its box's left edge at x_left."""
    o.place("base" if "base" in o.anchors else "center", (0.0, 0.0), m)
    b = o.bbox()
    o.tx += x_left - b[0]
    o.ty += -b[3]
    return o


def _build(R, v, o):
    """A group in which one person (two for person targets) does verb v with a new object of class o, facing +x.
    Returns the group, or None when the combination has no rendering (never for valid classes)."""
    g = _Group()
    f = 1
    if o == PERSON:
        return _build_person_target(R, g, v)
    if v in (LOOK, NOI):
        return _build_near(R, g, v, o)
    if v == HOLD:
        if o in (BICYCLE, CHAIR):  # standing behind it, a hand on the handlebar / backrest
            ob = _make_object(R, o).place("base", (0, 0))
            grip = ob.pt("handle" if o == BICYCLE else "back_top")
            x = grip[0] - _u(R, 0.12, 0.22) if o == BICYCLE else grip[0] - _u(R, 0.15, 0.22)
            p = _stand(R, x, stride=0.05)
            _arm(p, "n", grip)
            h = g.add(p)
            t = g.add(ob)
        elif o == DOG:  # a small dog under one arm
            p = _stand(R, 0.0)
            dog = _make_object(R, o)
            ha = _arm(p, "n", _rel(p, "hip", 0.1, -0.04))
            dog.place("center", _rel(p, ha, 0.06, -0.03))
            h = g.add(p)
            t = g.add(dog)
        elif o == UMBRELLA:
            p = _stand(R, 0.0)
            ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.08, 0.14), -_u(R, 0.0, 0.08)), (0.3, 1))
            h = g.add(p)
            t = g.add(_make_object(R, o).place("grip", ha))
        elif o == KITE:
            p = _stand(R, 0.0)
            ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.12, 0.2), -_u(R, 0.1, 0.2)), (0.3, 1))
            h = g.add(p)
            kite = _make_object(R, o).place("string", (ha[0] + _u(R, 0.3, 0.6), ha[1] - _u(R, 0.55, 0.8)))
            t = g.add(kite)
            g.x(_line(ha, kite.pt("string"), sag=0.05, w=0.012, c=(70, 70, 70)))
        elif o == SKATEBOARD:
            p = _stand(R, 0.0)
            ha = _arm(p, "n", _rel(p, "hip", 0.07, 0.1))
            h = g.add(p)
            t = g.add(_make_object(R, o, "vertical").place("grip", ha))
        elif o == BIRD:
            p = _stand(R, 0.0)
            ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.2, 0.26), _u(R, 0.0, 0.1)))
            h = g.add(p)
            t = g.add(_make_object(R, o).place("base", (ha[0], ha[1] - HAND_R * 0.7)))
        else:
            p = _stand(R, 0.0)
            if R.random() < 0.3 and o in (BOTTLE, BOOK, CUP):
                ha = _arm(p, "n", _rel(p, "hip", 0.08, 0.11))  # hanging at the side
            else:
                ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.17, 0.26), _u(R, 0.06, 0.24)))
            h = g.add(p)
            t = g.add(_make_object(R, o, "open" if R.random() < 0.5 else "").place("grip", ha))
        g.label(h, t, HOLD)
        if o != UMBRELLA and R.random() < 0.25:
            g.look[h] = t
    elif v == CARRY:
        p = _stand(R, 0.0)
        h = g.add(p)
        if o == BICYCLE:
            bike = _rot_obj(_make_object(R, o), -_u(R, 0.2, 0.4))  # front wheel up, top tube on the shoulder
            bike.place("top", _rel(p, "sh", 0.04, -0.02))
            _arm(p, "n", bike.pt("handle"), (0.3, 1))
            _arm(p, "f", bike.pt("saddle"), (0.3, 1))
            g.ents.pop(), g.order.pop()
            t = g.add(bike)
            h = g.add(p)
        elif o == CHAIR:
            ch = _make_object(R, o, "upside").place("seat", _rel(p, "head", 0.02, -0.13))
            _arm(p, "n", _rel(p, ch.pt("seat"), 0.11, 0.0), (1, 0))
            _arm(p, "f", _rel(p, ch.pt("seat"), -0.1, 0.0), (-1, 0))
            t = g.add(ch)
        elif o in (SKATEBOARD, UMBRELLA):
            ha = _arm(p, "n", _rel(p, "hip", 0.13, -0.05))
            ob = _make_object(R, o, "closed") if o == UMBRELLA else _make_object(R, o)
            ob.place("grip" if o == UMBRELLA else "center", (ha[0], ha[1]) if o == UMBRELLA else (ha[0] - 0.08, ha[1]))
            if o == UMBRELLA:
                _arm(p, "f", ob.pt("grip2"))
            t = g.add(ob)
        elif o == DOG:
            dog = _make_object(R, o).place("center", _rel(p, "sh", 0.16, 0.17))
            _arm(p, "n", _rel(p, dog.pt("center"), -0.02, 0.06))
            _arm(p, "f", _rel(p, dog.pt("back"), 0.06, 0.0))
            t = g.add(dog)
        else:
            ob = _make_object(R, o, "" if o != KITE else "")
            c = _rel(p, "sh", _u(R, 0.17, 0.22), _u(R, 0.12, 0.2))
            ob.place("center", c)
            b = ob.bbox()
            _arm(p, "n", (b[0] + 0.01, c[1] + 0.02))
            _arm(p, "f", (b[2] - 0.01, c[1] - 0.02))
            t = g.add(ob)
        g.label(h, t, CARRY, HOLD)
        if R.random() < 0.2:
            g.look[h] = t
    elif v == CATCH:
        p = _stand(R, 0.0, lean=0.1)
        ha = _arm(p, "n", _rel(p, "sh", 0.26, -_u(R, 0.0, 0.12)), (0, 1))
        _arm(p, "f", _rel(p, ha, -0.02, -0.04), (0, 1))
        h = g.add(p)
        ob = _make_object(R, o)
        r = (ob.box[2] - ob.box[0]) / 2
        c = (ha[0] + r + _u(R, 0.05, 0.1), ha[1] - 0.03)
        ob.place("center", c)
        for s in _motion(c, r, (-1.0, 0.15)):
            g.x(s)
        t = g.add(ob)
        g.label(h, t, CATCH)
        if R.random() < 0.7:
            g.look[h] = t
    elif v == THROW:
        p = _stand(R, 0.0, lean=-0.1, stride=_u(R, 0.15, 0.25))
        ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.02, 0.1), -0.3), (1, 0))
        _arm(p, "f", _rel(p, "sh", -0.15, 0.25))
        h = g.add(p)
        ob = _make_object(R, o)
        r = (ob.box[2] - ob.box[0]) / 2
        d = (0.8, -0.6)
        c = (ha[0] + d[0] * (r + _u(R, 0.14, 0.22)), ha[1] + d[1] * (r + _u(R, 0.14, 0.22)))
        ob.place("center", c)
        for s in _motion(c, r, d):
            g.x(s)
        t = g.add(ob)
        g.label(h, t, THROW)
        if CATCH in _VALID[o]:
            g.free["catch"] = (t, r)
        if R.random() < 0.4:
            g.look[h] = t
    elif v in (DRINK, EAT):
        p = _stand(R, 0.0)
        h = g.add(p)
        face = _rel(p, "head", HEAD_R * 0.95, 0.035)
        ob = _make_object(R, o)
        if o == APPLE:
            ob.place("center", _rel(p, face, 0.035, 0.0))
            _arm(p, "n", _rel(p, ob.pt("center"), 0.0, 0.045), (-0.2, 1))
            g.gaze_fix[h] = 0.25
        else:
            _rot_obj(ob, -_u(R, 0.9, 1.2))
            ob.place("mouth", face)
            _arm(p, "n", ob.pt("grip"), (-0.2, 1))
            g.gaze_fix[h] = -0.55
        t = g.add(ob)
        g.mouth[h] = t
        g.label(h, t, v, HOLD)
    elif v == FEED:
        if o == HORSE:
            p = _stand(R, 0.0)
            ha = _arm(p, "n", _rel(p, "sh", 0.27, _u(R, -0.02, 0.04)), (-0.3, 1))
            horse = _make_object(R, o).place("mouth", (ha[0] + 0.05, ha[1]), m=-1)
            t = g.add(horse)
            h = g.add(p)
            g.free["back"] = (t, "rump")
        elif o == DOG:
            p = _kneel(R, 0.0, lean=0.45)
            ha = _arm(p, "n", _rel(p, "sh", 0.24, 0.24), (-0.3, 1))
            dog = _make_object(R, o)
            dog.place("mouth", (ha[0] + 0.05, ha[1]), m=-1)
            dog.ty += -dog.bbox()[3]  # keep its feet on the ground
            h = g.add(p)
            t = g.add(dog)
        else:  # bird on the ground, crumbs falling from the hand
            p = _stand(R, 0.0, lean=0.35)
            ha = _arm(p, "n", _rel(p, "sh", 0.22, 0.27), (-0.3, 1))
            h = g.add(p)
            bird = _make_object(R, o).place("base", (ha[0] + _u(R, 0.12, 0.2), 0.0), m=-1)
            t = g.add(bird)
            for k in range(3):
                g.x(("c", ha[0] + 0.03 + 0.02 * k, ha[1] + 0.08 + 0.1 * k, 0.014, (245, 225, 150)))
        g.x(("c", ha[0] + 0.03, ha[1] - 0.01, 0.022, (250, 220, 120)))
        g.label(h, t, FEED)
        if R.random() < 0.5:
            g.look[h] = t
    elif v == HUG:
        if o == DOG:
            p = _kneel(R, 0.0, lean=0.2)
            dog = _make_object(R, o)
            dog.place("head", _rel(p, "sh", 0.1, 0.12), m=-1)
            dog.ty += -dog.bbox()[3]
            _arm(p, "n", _rel(p, dog.pt("back"), 0.03, 0.01), (0, 1))
            _arm(p, "f", _rel(p, dog.pt("back"), 0.07, -0.01), (0, 1))
            t = g.add(dog)
            h = g.add(p)
        else:  # horse: arms around the neck
            p = _stand(R, 0.0, lean=0.1)
            horse = _make_object(R, o)
            horse.place("neck", _rel(p, "sh", 0.16, 0.02), m=-1)
            _arm(p, "n", _rel(p, horse.pt("neck"), 0.02, 0.02), (0, 1))
            _arm(p, "f", _rel(p, horse.pt("neck"), 0.05, -0.04), (0, 1))
            t = g.add(horse)
            h = g.add(p)
            g.free["back"] = (t, "rump")
        g.label(h, t, HUG)
    elif v == KICK:
        ob = _make_object(R, o)
        hgt = {BALL: ob.box[3] - ob.box[1], BOTTLE: 0.07, SKATEBOARD: 0.06, CHAIR: 0.1}.get(o, 0.08)
        p = _Person(R, f)
        _torso(p, (0.0, -0.49), -0.12)
        _leg(p, "f", (-0.05, 0.0))
        ft = _leg(p, "n", (_u(R, 0.27, 0.34), -min(hgt * 0.6, 0.12)), (1, 0))
        _arm(p, "n", _rel(p, "sh", -0.16, 0.22), (-0.5, 1))
        _arm(p, "f", _rel(p, "sh", 0.2, 0.15), (-0.5, 1))
        h = g.add(p)
        _on_ground(ob, p.j["to_n"][0] - 0.01)
        t = g.add(ob)
        g.label(h, t, KICK)
        if R.random() < 0.4:
            g.look[h] = t
    elif v == LIE:
        bench = _make_object(R, o, "long").place("base", (0, 0))
        seat = bench.pt("seat")
        p = _Person(R, f)
        hip = (0.1, seat[1] - TORSO_W / 2 - 0.01)
        _torso(p, hip, -math.pi / 2, head_tilt=-math.pi / 2 - 0.15)
        _leg(p, "n", (hip[0] + 0.46, hip[1] - 0.02), (0, -1), toe=(0.0, -FOOT))
        _leg(p, "f", (hip[0] + 0.48, hip[1]), (0, -1), toe=(0.0, -FOOT))
        _arm(p, "n", (hip[0] - 0.05, hip[1] - 0.07), (0, -1))
        _arm(p, "f", (hip[0] - 0.08, hip[1] - 0.05), (0, -1))
        t = g.add(bench)
        h = g.add(p)
        g.gaze_fix[h] = -math.pi / 2
        g.label(h, t, LIE)
    elif v == PUSH:
        ob = _make_object(R, o).place("base", (0, 0))
        contact = ob.pt({BICYCLE: "saddle", CHAIR: "back_top", BENCH: "side_l", HORSE: "rump"}[o])
        p = _pusher(R, contact, f)
        t = g.add(ob)
        h = g.add(p)
        g.label(h, t, PUSH)
        if o == HORSE:
            g.free["front"] = (t, None)
        if R.random() < 0.3:
            g.look[h] = t
    elif v == RIDE:
        ob = _make_object(R, o).place("base", (0, 0))
        t = g.add(ob)
        if o == HORSE:
            p = _Person(R, f)
            hip = (ob.pt("back")[0], ob.pt("back")[1] - 0.03)
            _torso(p, hip, _u(R, 0.05, 0.2))
            _leg(p, "n", _rel(p, hip, 0.1, 0.36), (1, 0))
            p.far_leg = False
            ha = _arm(p, "n", _rel(p, hip, 0.24, -0.14), (-0.3, 1))
            _arm(p, "f", _rel(p, hip, 0.22, -0.16), (-0.3, 1))
            h = g.add(p)
            g.x(_line(ha, ob.pt("mouth"), sag=0.03, w=0.014, c=(70, 40, 20)))
            g.label(h, t, RIDE, SIT)
            g.free["front"], g.free["back"] = (t, None), (t, "rump")
        elif o == BICYCLE:
            p = _Person(R, f)
            hip = ob.pt("saddle")
            _torso(p, (hip[0], hip[1] - 0.03), _u(R, 0.4, 0.6))
            ph = _u(R, 0, 2 * math.pi)
            cr = ob.pt("crank")
            _leg(p, "n", (cr[0] + 0.075 * math.cos(ph), cr[1] + 0.075 * math.sin(ph)))
            _leg(p, "f", (cr[0] - 0.075 * math.cos(ph), cr[1] - 0.075 * math.sin(ph)))
            _arm(p, "n", ob.pt("handle"), (-0.3, 1))
            _arm(p, "f", _rel(p, ob.pt("handle"), -0.01, 0.01), (-0.3, 1))
            h = g.add(p)
            g.label(h, t, RIDE, SIT, HOLD)
            g.free["back"] = (t, "rack")
        else:  # skateboard: standing on the deck, knees bent, arms out for balance
            p = _Person(R, f)
            _torso(p, (0.0, ob.pt("deck")[1] - 0.43), _u(R, 0.05, 0.25))
            _leg(p, "n", ob.pt("mid_r"))
            _leg(p, "f", ob.pt("mid_l"))
            _arm(p, "n", _rel(p, "sh", 0.24, 0.08), (0, 1))
            _arm(p, "f", _rel(p, "sh", -0.24, 0.08), (0, 1))
            h = g.add(p)
            g.label(h, t, RIDE)
    elif v == SIT:
        ob = _make_object(R, o).place("base", (0, 0))
        t = g.add(ob)
        if o in (CHAIR, BENCH):
            which = "seat" if o == CHAIR else _pick(R, ("seat_l", "seat_r"))
            seat = ob.pt(which)
            p = _sit(R, (seat[0] - 0.01, seat[1] - 0.045))
            if o == BENCH:
                g.free["seat2"] = (t, "seat_r" if which == "seat_l" else "seat_l")
            else:
                g.free["back"] = (t, "back_top")
        elif o == HORSE:  # side-saddle, hands on the thighs: no reins
            hip = (ob.pt("back")[0], ob.pt("back")[1] - 0.03)
            p = _Person(R, f)
            _torso(p, hip, _u(R, -0.05, 0.05))
            _leg(p, "n", _rel(p, hip, 0.14, 0.38), (1, 0))
            _leg(p, "f", _rel(p, hip, 0.08, 0.4), (1, 0))
            _arm(p, "n", _rel(p, p.j["kn_n"], -0.04, -0.05), (-0.5, 1))
            _arm(p, "f", _rel(p, p.j["kn_f"], -0.05, -0.05), (-0.5, 1))
            g.free["front"], g.free["back"] = (t, None), (t, "rump")
        elif o == BICYCLE:  # on the saddle, feet on the ground, hands off the handlebar
            hip = ob.pt("saddle")
            p = _Person(R, f)
            _torso(p, (hip[0], hip[1] - 0.03), _u(R, -0.05, 0.1))
            _leg(p, "n", (hip[0] + 0.1, 0.0))
            _leg(p, "f", (hip[0] - 0.1, 0.0))
            _arm(p, "n", _rel(p, "hip", 0.12, -0.03), (-0.2, 1))
            _arm(p, "f", _rel(p, "hip", 0.1, -0.02), (-0.2, 1))
            g.free["back"] = (t, "rack")
        else:  # skateboard: sitting on the deck, knees up, hands on the knees
            hip = (ob.pt("deck")[0] - 0.05, ob.pt("deck")[1] - 0.055)
            p = _Person(R, f)
            _torso(p, hip, _u(R, 0.0, 0.2))
            _leg(p, "n", (hip[0] + 0.36, 0.0), (1, -1))
            _leg(p, "f", (hip[0] + 0.32, 0.0), (1, -1))
            _arm(p, "n", p.j["kn_n"], (-0.3, 1))
            _arm(p, "f", p.j["kn_f"], (-0.3, 1))
        h = g.add(p)
        g.label(h, t, SIT)
    elif v == WALK:
        p = _stand(R, 0.0, stride=_u(R, 0.18, 0.28))
        if o == DOG:
            ha = _arm(p, "n", _rel(p, "hip", 0.13, 0.08), (-0.3, 1))
            h = g.add(p)
            dog = _make_object(R, o)
            dog.place("collar", (ha[0] + _u(R, 0.28, 0.42), 0.0))
            dog.ty += -dog.bbox()[3]
            t = g.add(dog)
            g.x(_line(ha, dog.pt("collar"), sag=0.06, w=0.016, c=(200, 40, 40)))
            g.free["front"] = (t, None)
        else:  # leading a horse that walks behind
            ha = _arm(p, "f", _rel(p, "hip", -0.15, 0.02), (-0.3, 1))
            horse = _make_object(R, o)
            horse.place("mouth", (ha[0] - _u(R, 0.12, 0.22), -0.0))
            horse.ty += -horse.bbox()[3]
            t = g.add(horse)
            h = g.add(p)
            g.x(_line(ha, horse.pt("mouth"), sag=0.05, w=0.016, c=(70, 40, 20)))
            g.free["back"] = (t, "rump")
        g.label(h, t, WALK)
        if R.random() < 0.3:
            g.look[h] = t
    else:
        return None
    g.classes.append((v, o))
    return g


def _pusher(R, contact, f=1, lean=None):
    """A person leaning into `contact` with both hands (reach solved for the hip position)."""
    lean = _u(R, 0.3, 0.5) if lean is None else lean
    sh_up = (TORSO - 0.035)
    sx = sh_up * math.sin(lean)
    shy = -0.49 - sh_up * math.cos(lean)
    dy = contact[1] - shy
    dx = math.sqrt(max(0.29 ** 2 - dy * dy, 0.003))
    x = contact[0] - f * (dx + sx)
    p = _Person(R, f)
    _torso(p, (x, -0.49), lean)
    _leg(p, "n", (x + f * 0.1, 0.0))
    _leg(p, "f", (x - f * 0.27, 0.0))
    _arm(p, "n", contact, (-0.3, 1))
    _arm(p, "f", (contact[0], contact[1] + 0.04), (-0.3, 1))
    return p


def _build_person_target(R, g, v):
    """Two people: A (facing +x) does v to B."""
    if v == HOLD:  # holding hands, facing each other
        gap = _u(R, 0.4, 0.5)
        a, b = _stand(R, 0.0), _stand(R, gap, f=-1)
        m = (gap / 2, _u(R, -0.5, -0.42))
        _arm(a, "n", m, (-0.3, 1))
        _arm(b, "n", m, (-0.3, 1))
        ia, ib = g.add(a), g.add(b)
        g.label(ia, ib, HOLD)
        g.label(ib, ia, HOLD)
    elif v == HUG:
        gap = _u(R, 0.22, 0.27)
        a, b = _stand(R, 0.0, lean=0.08), _stand(R, gap, f=-1, lean=0.08)
        _arm(a, "n", _rel(a, b.j["sh"], 0.06, 0.06), (0, 1))
        _arm(a, "f", _rel(a, b.j["sh"], 0.04, 0.02), (0, 1))
        _arm(b, "n", _rel(b, a.j["sh"], 0.06, 0.1), (0, 1))
        _arm(b, "f", _rel(b, a.j["sh"], 0.04, 0.05), (0, 1))
        ia, ib = g.add(a), g.add(b)
        g.label(ia, ib, HUG)
        g.label(ib, ia, HUG)
    elif v == PUSH:
        b = _stand(R, _u(R, 0.4, 0.5), lean=_u(R, 0.1, 0.25))
        a = _pusher(R, _rel(b, b.j["sh"], -0.08, 0.08))
        ia, ib = g.add(a), g.add(b)
        g.label(ia, ib, PUSH)
    elif v == KICK:
        b = _stand(R, _u(R, 0.42, 0.48), lean=_u(R, 0.1, 0.3))
        a = _Person(R)
        _torso(a, (0.0, -0.49), -0.15)
        _leg(a, "f", (-0.05, 0.0))
        _leg(a, "n", (b.j["hip"][0] - 0.1, -0.36), (1, -0.3))
        _arm(a, "n", _rel(a, "sh", -0.16, 0.22), (-0.5, 1))
        _arm(a, "f", _rel(a, "sh", 0.2, 0.15), (-0.5, 1))
        ia, ib = g.add(a), g.add(b)
        g.label(ia, ib, KICK)
    elif v == CARRY:  # B sits on A's shoulders, A holds B's shins
        a = _stand(R, 0.0)
        b = _Person(R)
        hip = (a.j["neck"][0] - 0.03, a.j["head"][1] - 0.02)  # astride the neck, A's face stays visible
        _torso(b, hip, _u(R, -0.05, 0.1))
        _leg(b, "n", (hip[0] + 0.16, hip[1] + 0.36), (1, 0))
        _leg(b, "f", (hip[0] + 0.12, hip[1] + 0.38), (1, 0))
        _arm(b, "n", _rel(b, "sh", 0.18, 0.05), (-0.3, 1))
        _arm(b, "f", _rel(b, "sh", -0.15, 0.12), (-0.3, 1))
        _arm(a, "n", _rel(a, b.j["kn_n"], 0.02, 0.1), (-0.3, 1))
        _arm(a, "f", _rel(a, b.j["kn_f"], 0.02, 0.1), (-0.3, 1))
        ib, ia = g.add(b), g.add(a)
        g.label(ia, ib, CARRY, HOLD)
    else:  # look_at / no_interaction: B idle
        return _build_near(R, g, v, PERSON)
    g.classes.append((v, PERSON))
    return g


def _idle_object(R, o, grounded=False):
    """An object not being used, as it would stand or lie on its own (ground frame); kites and birds may fly
    unless `grounded` (next to an idle person, no_interaction means "right there")."""
    if o == KITE:
        return _make_object(R, o, "ground" if grounded or R.random() < 0.5 else "")
    if o == BIRD:
        return _make_object(R, o, "fly" if not grounded and R.random() < 0.4 else "")
    if o == UMBRELLA:
        return _make_object(R, o, "planted" if R.random() < 0.6 else "closed")
    return _make_object(R, o)


def _set_down(o, x_left):
    """Put an idle object at x_left: flying things in the air, the rest on the ground."""
    _on_ground(o, x_left)
    if o.flying:
        o.ty -= 0.55 + 0.5 * ((x_left * 7.3) % 1.0)
    return o


def _build_near(R, g, v, o):
    """look_at (object at a distance, person facing it) or no_interaction (idle person right next to it)."""
    # idle people face either way; a looking person faces what they look at
    p = _stand(R, 0.0, f=-1 if v == NOI and R.random() < 0.5 else 1)
    p.idle = v == NOI
    if o == PERSON:
        ob = _stand(R, 0.0, f=_pick(R, (1, -1)))
        ob.idle = v == NOI
        pb = p.bbox()
        gap = _u(R, 0.02, 0.08) if v == NOI else _u(R, 0.25, 0.6)
        dx = pb[2] + gap - ob.bbox()[0]
        ob.j = {k: (x + dx, y) for k, (x, y) in ob.j.items()}
    else:
        ob = _idle_object(R, o, grounded=v == NOI)
        gap = _u(R, 0.02, 0.08) if v == NOI else _u(R, 0.25, 0.7)
        _set_down(ob, p.bbox()[2] + gap)
    h = g.add(p)
    t = g.add(ob)
    if v == NOI:
        g.label(h, t, NOI)
        if o == PERSON:
            g.label(t, h, NOI)
    else:
        g.label(h, t, LOOK)
        g.look[h] = t
    g.classes.append((v, o))
    return g



def _shift_person(p, dx, dy=0.0):
    p.j = {k: (x + dx, y + dy) for k, (x, y) in p.j.items()}
    return p


# Which second-person verbs a free place accepts, per object (the first person keeps theirs: different people,
# one object).
_FREE_VERBS = {("front", HORSE): (FEED, HUG, WALK), ("front", DOG): (FEED,), ("back", HORSE): (PUSH,),
               ("back", BICYCLE): (PUSH,), ("back", CHAIR): (PUSH,), ("seat2", BENCH): (SIT,),
               ("catch", BALL): (CATCH,), ("catch", APPLE): (CATCH,), ("catch", BOOK): (CATCH,)}


def _attach_options(g, v, o):
    """Ways a new person doing v with an object of class o can join group g: list of (target, mode)."""
    out = []
    if v in (LOOK, NOI):
        gb = g.bbox()
        for i, e in enumerate(g.ents):
            is_cls = isinstance(e, _Person) if o == PERSON else (isinstance(e, _Obj) and e.cls == o)
            if not is_cls or (v == NOI and _airborne(e)):
                continue
            b = e.bbox()
            if b[2] >= gb[2] - 0.03:
                out.append((i, "right"))
            if b[0] <= gb[0] + 0.03:
                out.append((i, "left"))
        return out
    for tag, (t, _) in g.free.items():
        if g.ents[t].cls == o and v in _FREE_VERBS.get((tag, o), ()):
            out.append((t, tag))
    return out


def _airborne(e):
    """Whether entity e is off the ground (a flying kite, a thrown ball): nobody can stand next to it."""
    return e.bbox()[3] < -0.25


def _attachable(g):
    """{(verb, object)} that a new person could do in group g (see `_attach_options`)."""
    out = set()
    gb = g.bbox()
    for e in g.ents:
        b = e.bbox()
        if b[2] >= gb[2] - 0.03 or b[0] <= gb[0] + 0.03:
            o = PERSON if isinstance(e, _Person) else e.cls
            out.add((LOOK, o))
            if not _airborne(e):
                out.add((NOI, o))
    for tag, (t, _) in g.free.items():
        o = g.ents[t].cls
        out.update((v, o) for v in _FREE_VERBS.get((tag, o), ()))
    return out


def _attach(R, g, v, o, t, mode):
    """Add a person doing v with entity t of group g (mode from `_attach_options`)."""
    e = g.ents[t]
    if mode in ("left", "right"):
        side = 1 if mode == "right" else -1
        f = -side if (v == LOOK or R.random() < 0.5) else side  # observers face what they look at
        p = _stand(R, 0.0, f=f)
        p.idle = v == NOI
        gap = _u(R, 0.02, 0.08) if v == NOI else _u(R, 0.25, 0.6)
        b, pb = e.bbox(), p.bbox()
        _shift_person(p, (b[2] + gap - pb[0]) if side > 0 else (b[0] - gap - pb[2]))
        h = g.add(p)
        g.label(h, t, v)
        if v == LOOK:
            g.look[h] = t
    else:
        tag = mode
        detail = g.free.pop(tag)[1]
        hd = e.m if isinstance(e, _Obj) else 1  # the object's heading (+1: its head/front at +x)
        if tag == "front" and v == FEED and o == HORSE:
            p = _stand(R, 0.0, f=-hd)
            mouth = e.pt("mouth")
            ha = _arm(p, "n", (p.j["sh"][0] - hd * 0.27, mouth[1]), (-0.3, 1))
            dx = mouth[0] + hd * 0.05 - ha[0]
            _shift_person(p, dx)
            h = g.add(p)
            ha = p.j["ha_n"]
            g.x(("c", ha[0] - hd * 0.03, ha[1] - 0.01, 0.022, (250, 220, 120)))
        elif tag == "front" and v == FEED:  # dog
            p = _kneel(R, 0.0, f=-hd, lean=0.45)
            ha = _arm(p, "n", _rel(p, "sh", 0.24, 0.24), (-0.3, 1))
            _shift_person(p, e.pt("mouth")[0] + hd * 0.05 - ha[0])
            h = g.add(p)
            ha = p.j["ha_n"]
            g.x(("c", ha[0] - hd * 0.03, ha[1] - 0.01, 0.022, (250, 220, 120)))
        elif tag == "front" and v == HUG:
            p = _stand(R, 0.0, f=-hd, lean=0.1)
            neck = e.pt("neck")
            _shift_person(p, neck[0] + hd * 0.16 - p.j["sh"][0])
            _arm(p, "n", _rel(p, neck, 0.02, 0.02), (0, 1))
            _arm(p, "f", _rel(p, neck, 0.05, -0.04), (0, 1))
            h = g.add(p)
        elif tag == "front" and v == WALK:
            p = _stand(R, 0.0, f=hd, stride=_u(R, 0.18, 0.28))
            ha = _arm(p, "f", _rel(p, "hip", -0.15, 0.02), (-0.3, 1))
            mouth = e.pt("mouth")
            _shift_person(p, mouth[0] + hd * _u(R, 0.12, 0.22) - ha[0])
            h = g.add(p)
            g.x(_line(p.j["ha_f"], mouth, sag=0.05, w=0.016, c=(70, 40, 20)))
        elif tag == "back":
            p = _pusher(R, e.pt(detail), f=hd)
            h = g.add(p)
        elif tag == "seat2":
            seat = e.pt(detail)
            p = _sit(R, (seat[0] - 0.01, seat[1] - 0.045), f=_pick(R, (1, -1)))
            h = g.add(p)
        elif tag == "catch":
            c, r = e.pt("center"), detail
            p = _stand(R, 0.0, f=-1, lean=0.1)
            ha = _arm(p, "n", (p.j["sh"][0] - 0.2, c[1] + 0.02), (0, 1))
            _arm(p, "f", (ha[0] + 0.02, ha[1] - 0.04), (0, 1))
            _shift_person(p, c[0] + r + _u(R, 0.08, 0.14) - ha[0])
            h = g.add(p)
        else:
            raise ValueError(f"cannot attach verb {VERBS[v]} at {tag}")
        g.label(h, t, v)
        if v in (FEED, WALK, CATCH) and R.random() < 0.5:
            g.look[h] = t
    g.classes.append((v, o))


def _distractor(R, o):
    """A group holding one object nobody interacts with."""
    g = _Group()
    g.distractor = True
    g.add(_set_down(_idle_object(R, o), 0.0))
    return g


# ---------------------------------------------------------------------------------------------------------------
# Scene composition and layout
# ---------------------------------------------------------------------------------------------------------------
_PEOPLE_WEIGHTS = (0.45, 0.35, 0.2)  # 1, 2, 3 people (then uniform) before truncation to max_people
P_SHARE = 0.7  # probability that an extra person tries to join an existing group (same object, a different verb)
SHARE_LOOKAHEAD = 600


class _ClassStream:
    """HOI classes to render, in order: a shuffled list with the split's class quotas, then i.i.d. draws.

    `take(pred)` returns (and removes) the first of the next `lookahead` classes that fits the image being
    composed, so that classes needing two people or a particular partner are postponed rather than dropped.
    """

    def __init__(self, quota_list, probs, R, lookahead=24):
        self.q, self.R, self.k = deque(quota_list), R, lookahead
        self.n_quota, self.taken = len(self.q), 0
        self.cum = np.cumsum(probs / probs.sum()).tolist()

    def _draw(self):
        u = self.R.random()
        lo, hi = 0, len(self.cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cum[mid] < u:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def take(self, pred, lookahead=None):
        k = lookahead or self.k
        while len(self.q) < k:
            self.q.append(self._draw())
        for i in range(k):
            c = self.q[i]
            if pred(c):
                del self.q[i]
                self.taken += 1
                return c
        return None

    def give_back(self, classes):
        for c in reversed(classes):
            self.q.appendleft(c)
        self.taken -= len(classes)


def _compose(R, stream, hoi, lut, max_people, max_objects):
    """Groups of one image: people doing stream classes (some joining others' objects) plus distractors."""
    w = list(_PEOPLE_WEIGHTS[:max_people]) + [0.1] * max(0, max_people - len(_PEOPLE_WEIGHTS))
    u, n_people = R.random() * sum(w), 1
    for k, wk in enumerate(w):
        u -= wk
        if u <= 0:
            n_people = k + 1
            break
    groups, people, objs = [], 0, 0
    while people < n_people:
        room = n_people - people
        if groups and R.random() < P_SHARE:
            # a deep look ahead: classes sharing an object with the image's groups are a small minority
            ok = set().union(*(_attachable(g) for g in groups))
            c = stream.take(lambda c: hoi[c] in ok, SHARE_LOOKAHEAD)
            if c is not None:
                v, o = hoi[c]
                options = [(g, opt) for g in groups for opt in _attach_options(g, v, o)]
                g, (t, mode) = _pick(R, options)
                _attach(R, g, v, o, t, mode)
                people += 1
                continue
        # objs counts things other than people (1..max_objects per image, as HICO-DET's object instances)
        c = stream.take(lambda c: (hoi[c][1] == PERSON and room >= 2) or (hoi[c][1] != PERSON and objs < max_objects))
        if c is None:
            break
        g = _build(R, *hoi[c])
        groups.append(g)
        people += len(g.persons())
        objs += hoi[c][1] != PERSON
    if not groups:  # the next classes all need more people than drawn: take one that fits max_people
        c = stream.take(lambda c: (2 if hoi[c][1] == PERSON else 1) <= max_people)
        if c is None:  # only possible with max_people = 1 and a run of person-target classes
            c = int(lut[BALL, HOLD])
        g = _build(R, *hoi[c])
        groups.append(g)
        objs += hoi[c][1] != PERSON
    n_obj = 1 + int(R.random() * max_objects)
    while objs < n_obj:
        groups.append(_distractor(R, 1 + int(R.random() * (len(OBJECTS) - 1))))
        objs += 1
    return groups


def _layout(R, groups, S):
    """Place groups (scale s px per person height, mirror m, ground point tx, ty) without overlaps.

    Returns (placed [(group, s, m, tx, ty)], dropped groups). Lower in the image = nearer = larger."""
    crowd = sum(len(g.persons()) for g in groups) + 0.5 * sum(g.distractor for g in groups)
    base = S * 0.45 * (1.0 if crowd <= 2 else 0.88 if crowd <= 3 else 0.78) * _u(R, 0.92, 1.08)
    order = sorted(range(len(groups)), key=lambda i: (groups[i].distractor, -(lambda b: b[2] - b[0])(groups[i].bbox())))
    placed, boxes, dropped = [], [], []
    for i in order:
        g = groups[i]
        x0, y0, x1, y1 = g.bbox()
        m = 1 if R.random() < 0.5 else -1
        ok = False
        for attempt in range(36):
            shrink = 0.88 ** (attempt // 9)
            ty = _u(R, 0.52 * S, S - 0.5)
            s = base * shrink * (0.75 + 0.25 * (ty - 0.5 * S) / (0.5 * S))
            top, bottom = ty + s * y0, ty + s * y1
            if top < 0.5:
                ty += 0.5 - top
                top, bottom = 0.5, bottom + (0.5 - top)
            if bottom > S - 0.3 or (x1 - x0) * s > S - 1.0:
                continue
            lo = 0.5 - s * (x0 if m > 0 else -x1)
            hi = S - 0.5 - s * (x1 if m > 0 else -x0)
            if hi < lo:
                continue
            tx = _u(R, lo, hi)
            X0, X1 = (tx + s * x0, tx + s * x1) if m > 0 else (tx - s * x1, tx - s * x0)
            box = (X0, top, X1, bottom)
            mg = 0.12 * s
            if all(box[0] > b[2] + mg or box[2] < b[0] - mg or box[1] > b[3] + mg or box[3] < b[1] - mg
                   for b in boxes):
                placed.append((g, s, m, tx, ty))
                boxes.append(box)
                ok = True
                break
        if not ok:
            dropped.append(g)
    return placed, dropped


# ---------------------------------------------------------------------------------------------------------------
# Gaze: look_at is labelled from the rendered head direction
# ---------------------------------------------------------------------------------------------------------------
_GAZE_FORWARD = (0.0, -0.3, 0.3, -0.6, 0.55, -1.0)  # preferred head directions (radians from "ahead", - = up)
_GAZE_OTHER = (math.pi, math.pi + 0.35, math.pi - 0.35, -math.pi / 2, math.pi / 2)


def _first_hit(origin, ang, boxes, skip, S):
    """Index of the first box the ray from origin along angle `ang` enters (None if it leaves the image first)."""
    dx, dy = math.cos(ang), math.sin(ang)
    ox, oy = origin
    best, best_t = None, math.inf
    for i, b in enumerate(boxes):
        if i in skip or (b[0] <= ox <= b[2] and b[1] <= oy <= b[3]):
            continue
        t0, t1 = 0.0, math.inf
        for o_, d_, lo, hi in ((ox, dx, b[0], b[2]), (oy, dy, b[1], b[3])):
            if abs(d_) < 1e-9:
                if o_ < lo or o_ > hi:
                    t0, t1 = 1.0, 0.0
                    break
            else:
                a, c = (lo - o_) / d_, (hi - o_) / d_
                if a > c:
                    a, c = c, a
                t0, t1 = max(t0, a), min(t1, c)
        if t0 <= t1 and t0 < best_t:
            best, best_t = i, t0
    return best


def _resolve_gaze(R, persons, boxes, looks, fixed, ignore, S):
    """Choose every person's gaze angle; return {person entity: entity its gaze ray hits first}.

    persons: [(entity index, _Person)] in image coordinates; looks: {entity: wanted target};
    fixed: {entity: angle relative to facing}; ignore: {entity: set of entities the ray ignores}."""
    hits = {}
    for e, p in persons:
        hx, hy = p.j["head"]
        r = HEAD_R * p.s
        skip = {e} | ignore.get(e, set())

        def ray(a):
            return _first_hit((hx + r * math.cos(a), hy + r * math.sin(a)), a, boxes, skip, S)

        def abs_angle(rel):
            return rel if p.f > 0 else math.pi - rel

        chosen, hit = None, None
        if e in fixed:
            chosen = abs_angle(fixed[e])
            hit = ray(chosen)
        elif e in looks:
            t = looks[e]
            b = boxes[t]
            w, h = b[2] - b[0], b[3] - b[1]
            for fx, fy in ((0.5, 0.5), (0.5, 0.3), (0.5, 0.7), (0.3, 0.5), (0.7, 0.5)):
                a = math.atan2(b[1] + fy * h - hy, b[0] + fx * w - hx)
                if ray(a) == t:
                    chosen, hit = a, t
                    break
        if chosen is None:
            fwd = list(_GAZE_FORWARD)
            k = int(R.random() * 3)
            fwd[0], fwd[k] = fwd[k], fwd[0]
            for rel in fwd + list(_GAZE_OTHER):
                a = abs_angle(rel)
                hit = ray(a)
                if hit is None:
                    chosen = a
                    break
            if chosen is None:  # nowhere free: look ahead, the ray's first hit is what the person looks at
                chosen = abs_angle(fwd[0])
                hit = ray(chosen)
        p.gaze = chosen
        if hit is not None:
            hits[e] = hit
    return hits


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------
def _person_prims(p):
    """Primitives of a person in image coordinates, back to front."""
    j, s = p.j, p.s
    skin, hair, shirt, pants = p.pal
    out = []
    if p.far_leg:
        out.append(("l", (j["hip"], j["kn_f"], j["ft_f"], j["to_f"]), LEG_W * s, _shade(pants, 0.72)))
    out.append(("l", (j["sh"], j["el_f"], j["ha_f"]), ARM_W * s, _shade(shirt, 0.72)))
    out.append(("c", j["ha_f"][0], j["ha_f"][1], HAND_R * s, _shade(skin, 0.85)))
    out.append(("s", j["hip"][0], j["hip"][1], j["sh"][0], j["sh"][1], TORSO_W * s, shirt))
    out.append(("l", (j["hip"], j["kn_n"], j["ft_n"], j["to_n"]), LEG_W * s, pants))
    hx, hy = j["head"]
    r = HEAD_R * s
    gx, gy = math.cos(p.gaze), math.sin(p.gaze)
    # back of the head in hair colour, face towards the gaze, a dark eye near the face edge
    out.append(("c", hx - 0.3 * r * gx, hy - 0.3 * r * gy, 0.93 * r, hair))
    out.append(("c", hx + 0.12 * r * gx, hy + 0.12 * r * gy, 0.86 * r, skin))
    ex, ey = gx * 0.98 - gy * 0.2 * (1 if gx >= 0 else -1), gy * 0.98 + gx * 0.2 * (1 if gx >= 0 else -1)
    out.append(("c", hx + 0.5 * r * ex, hy + 0.5 * r * ey, 0.24 * r, (20, 15, 15)))
    out.append(("l", (j["sh"], j["el_n"], j["ha_n"]), ARM_W * s, shirt))
    out.append(("c", j["ha_n"][0], j["ha_n"][1], HAND_R * s, skin))
    return out


_SKY_COLS = [((120, 170, 230), (190, 220, 245)), ((160, 190, 225), (215, 225, 235)), ((185, 185, 195), (220, 220, 225)),
             ((230, 160, 120), (250, 210, 160)), ((205, 195, 175), (230, 220, 200))]
_GROUND_COLS = [((110, 165, 80), (70, 130, 55)), ((190, 175, 130), (160, 140, 100)), ((150, 150, 150), (110, 110, 115)),
                ((150, 115, 80), (110, 80, 55)), ((125, 160, 105), (85, 125, 75)), ((175, 170, 160), (140, 135, 125))]


@lru_cache(maxsize=8)
def _noise_bank(n: int, clutter: float) -> np.ndarray:
    """[8, n + 32, n + 32, 1] int16 smooth background noise (amplitude grows with clutter); crops are taken."""
    rs = np.random.RandomState(777)  # part of the renderer, like the texture patterns
    m = n + 32
    out = np.zeros((8, m, m), np.float32)
    for cell, amp in ((24, 12.0), (8, 6.0), (2, 3.0)):  # smooth value noise at three scales
        k = m // cell + 2
        grid = rs.randn(8, k, k).astype(np.float32)
        pos = np.arange(m, dtype=np.float32) / cell
        i0 = pos.astype(np.int64)
        f = (pos - i0)[None, :, None]
        grid = grid[:, i0] * (1 - f) + grid[:, i0 + 1] * f  # bilinear: rows, then columns
        f = f.reshape(1, 1, m)
        out += amp * (grid[:, :, i0] * (1 - f) + grid[:, :, i0 + 1] * f)
    return np.round(out * clutter).astype(np.int16)[..., None]


def _background(R, ras, S, clutter):
    """Sky/ground gradient, textured noise, and clutter shapes (trees, houses, rocks, clouds, fences, bushes)."""
    N = ras.N
    hz = _u(R, 0.3, 0.5) * S
    st, sb = _pick(R, _SKY_COLS)
    gt, gb = _pick(R, _GROUND_COLS)
    st, sb, gt, gb = (np.array(_jit(R, c, 12), np.float32) for c in (st, sb, gt, gb))
    rows = (np.arange(N, dtype=np.float32) + 0.5) / SS
    a = np.clip(rows / max(hz, 1.0), 0, 1)[:, None]
    b = np.clip((rows - hz) / max(S - hz, 1.0), 0, 1)[:, None]
    col = np.where(rows[:, None] < hz, st * (1 - a) + sb * a, gt * (1 - b) + gb * b).astype(np.int16)
    if clutter > 0:
        bank = _noise_bank(N, float(clutter))
        k, oy, ox = int(R.random() * 8), int(R.random() * 32), int(R.random() * 32)
        img = col[:, None, :] + bank[k, oy:oy + N, ox:ox + N]
        np.clip(img, 0, 255, out=img)
        ras.img[:] = img
    else:
        ras.img[:] = col[:, None, :]
    n = int(clutter * _u(R, 2, 8) + 0.5)
    for _ in range(n):
        kind = int(R.random() * 6)
        x = _u(R, 0, S)
        if kind == 0:  # tree on the horizon
            hgt = _u(R, 0.1, 0.3) * S
            green = _jit(R, (60, 120, 55), 25)
            ras.draw(("s", x, hz + 0.02 * S, x, hz - hgt * 0.6, 0.03 * S, _jit(R, (95, 70, 45))))
            for _k in range(3):
                ras.draw(("c", x + _u(R, -0.3, 0.3) * hgt * 0.5, hz - hgt * _u(R, 0.6, 0.9), hgt * _u(R, 0.22, 0.35),
                          _shade(green, _u(R, 0.85, 1.1))))
        elif kind == 1:  # house
            w, hgt = _u(R, 0.15, 0.3) * S, _u(R, 0.1, 0.22) * S
            wall = _jit(R, _pick(R, [(200, 180, 150), (170, 120, 100), (210, 210, 200), (150, 160, 170)]))
            ras.draw(_rect(x, hz - hgt, x + w, hz + 0.01 * S, wall))
            ras.draw(("p", ((x - 0.02 * S, hz - hgt), (x + w / 2, hz - hgt - 0.4 * w), (x + w + 0.02 * S, hz - hgt)),
                      _jit(R, (130, 60, 50))))
            ras.draw(_rect(x + w * 0.2, hz - hgt * 0.7, x + w * 0.4, hz - hgt * 0.4, (90, 110, 140)))
        elif kind == 2:  # rock or bush on the ground
            y = _u(R, hz + 0.05 * S, S)
            c = _jit(R, _pick(R, [(130, 130, 125), (60, 110, 55), (100, 95, 85)]))
            ras.draw(("e", x, y, _u(R, 0.03, 0.08) * S, _u(R, 0.02, 0.04) * S, 0.0, c))
        elif kind == 3:  # cloud
            y = _u(R, 0.03, 0.8) * hz
            for _k in range(2):
                ras.draw(("e", x + _u(R, -0.05, 0.05) * S, y, _u(R, 0.06, 0.12) * S, _u(R, 0.02, 0.04) * S, 0.0,
                          _jit(R, (245, 245, 245), 6)))
        elif kind == 4:  # fence
            y = _u(R, hz + 0.05 * S, hz + 0.3 * S)
            c = _jit(R, (150, 120, 90))
            w = _u(R, 0.2, 0.5) * S
            ras.draw(("s", x, y - 0.06 * S, x + w, y - 0.06 * S, 0.015 * S, c))
            for k in range(5):
                ras.draw(("s", x + k * w / 4, y, x + k * w / 4, y - 0.1 * S, 0.02 * S, c))
        else:  # tufts of grass / flowers
            y = _u(R, hz + 0.05 * S, S)
            c = _jit(R, _pick(R, [(70, 140, 50), (230, 230, 80), (220, 120, 160)]))
            for k in range(4):
                ras.draw(("s", x + k * 0.015 * S, y, x + k * 0.015 * S + _u(R, -0.01, 0.01) * S, y - 0.03 * S,
                          0.012 * S, c))
    return hz


def _hico_box(b, S):
    """Continuous [x0, y0, x1, y1] -> HICO-DET's 1-based inclusive pixel box covering it (clipped to the image)."""
    x0, y0 = min(max(b[0], 0.0), S - 1.0), min(max(b[1], 0.0), S - 1.0)
    x1, y1 = min(max(b[2], 0.0), float(S)), min(max(b[3], 0.0), float(S))
    X0, Y0 = math.floor(x0 + 1e-6) + 1, math.floor(y0 + 1e-6) + 1
    return [float(X0), float(Y0), float(max(X0, math.ceil(x1 - 1e-6))), float(max(Y0, math.ceil(y1 - 1e-6)))]


@dataclass
class _Rendered:
    """One generated image: pixels, annotated pairs and every instance drawn."""
    image: np.ndarray  # [S, S, 3] uint8
    pairs: list  # (human entity, target entity, verb) rows
    boxes: list  # per entity: HICO-DET 1-based inclusive box
    labels: list  # per entity: object class (0 = person)
    caption: str
    people: dict  # entity -> (joints {name: (x, y)}, person height in px, gaze angle): for checks and figures


def _render_image(R, ras, stream, hoi, lut, S, max_people, max_objects, clutter, close_up=False):
    """Compose, lay out, resolve gazes, label and draw one image.

    close_up: one interaction group (a person and their object, or two people) fills the frame instead of a
    scene being laid out (the caption pool's object-centric "web photos")."""
    if close_up:
        groups = _compose(R, stream, hoi, lut, min(2, max_people), 1)
        placed, dropped = [], groups  # nothing placed: the first group fills the image (below)
    else:
        groups = _compose(R, stream, hoi, lut, max_people, max_objects)
        placed, dropped = _layout(R, groups, S)
    if not any(not p[0].distractor for p in placed):  # nothing with people fitted: the first group fills the image
        g = next(g for g in groups if not g.distractor)
        x0, y0, x1, y1 = g.bbox()
        s = 0.95 * min(S / (x1 - x0), S / (y1 - y0))
        placed = [(g, s, 1, (S - s * (x1 + x0)) / 2, S - 0.5 - s * y1)]
        dropped = [h for h in groups if h is not g]
    for g in dropped:
        if not g.distractor:
            stream.give_back([int(lut[o, v]) for v, o in g.classes])
    placed.sort(key=lambda t: t[4])  # far (higher up) first
    # ---- to image coordinates
    ents, kinds, draw, looks, fixed, ignore, pairs = [], [], [], {}, {}, {}, {}
    for g, s, m, tx, ty in placed:
        base = len(ents)
        for e in g.ents:
            if isinstance(e, _Person):
                e.j = {k: (tx + m * s * x, ty + s * y) for k, (x, y) in e.j.items()}
                e.s, e.f = s, e.f * m
                ents.append(e)
                kinds.append(PERSON)
            else:
                ents.append(_xf(e.prims, s, m * e.m, tx + m * s * e.tx, ty + s * e.ty))
                kinds.append(e.cls)
        for item in g.order:
            draw.append(("e", base + item[1]) if item[0] == "e" else ("x", _xf([item[1]], s, m, tx, ty)[0]))
        for (h, t), vs in g.pairs.items():
            pairs[(base + h, base + t)] = set(vs)
        looks.update({base + h: base + t for h, t in g.look.items()})
        fixed.update({base + h: a for h, a in g.gaze_fix.items()})
        ignore.update({base + h: {base + t} for h, t in g.mouth.items()})
    boxes = [e.bbox() if isinstance(e, _Person) else _prims_bbox(e) for e in ents]
    persons = [(i, e) for i, e in enumerate(ents) if isinstance(e, _Person)]
    # ---- gaze decides look_at (and overrides no_interaction: looking at something is an interaction)
    for h, t in looks.items():
        pairs[(h, t)].discard(LOOK)
    for h, t in _resolve_gaze(R, persons, boxes, looks, fixed, ignore, S).items():
        vs = pairs.setdefault((h, t), set())
        vs.discard(NOI)
        vs.add(LOOK)
    # ---- draw
    _background(R, ras, S, clutter)
    person_prims = {}
    for kind, what in draw:
        if kind == "x":
            ras.draw(what)
        elif isinstance(ents[what], _Person):
            pp = _person_prims(ents[what])
            person_prims[what] = pp
            for p in pp:
                ras.draw(p)
        else:
            for p in ents[what]:
                ras.draw(p)
    final = [_hico_box(_prims_bbox(person_prims[i]) if i in person_prims else boxes[i], S) for i in range(len(ents))]
    rows = sorted((h, t, v) for (h, t), vs in pairs.items() for v in vs)
    for h, t, v in rows:
        if lut[kinds[t], v] < 0:
            raise AssertionError(f"invalid label {VERBS[v]} {OBJECTS[kinds[t]]}")
    # caption: a clause per person (left to right) naming what they do
    order = sorted((i for i, _ in persons), key=lambda i: (final[i][0], final[i][1]))
    per_person = [[(v, kinds[t]) for h, t, v in rows if h == i] for i in order]
    caption = make_caption([pp for pp in per_person if pp])
    people = {i: (p.j, p.s, p.gaze) for i, p in persons}
    return _Rendered(ras.result(), rows, final, kinds, caption, people)


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------
_SPLIT_IDS = {"train": 1, "test": 2, "caption": 3, "bench": 4}
def _classes_per_image(max_people: int) -> float:
    """Mean number of sampled classes per image (measured: 1.0 / 1.27 / 1.52 at max_people 1 / 2 / 3). It only
    sizes the quota list; the rest of a split is drawn i.i.d. from the same distribution."""
    return 1.0 + 0.26 * (max_people - 1)


def class_distribution(seed: int, exponent: float, num_classes: int) -> np.ndarray:
    """[C] Zipf class probabilities p_c ~ (rank_c + 1)^-exponent over a seeded random ranking of the classes."""
    rank = np.random.RandomState(seed).permutation(num_classes)
    p = (rank + 1.0) ** -float(exponent)
    return p / p.sum()


def _split_quotas(n_images, probs, min_count, rs, per_image):
    n = int(n_images * per_image * 0.9)
    q = np.where(probs > 0, np.maximum(min_count, np.round(n * probs)), 0).astype(np.int64)
    return rs.permutation(np.repeat(np.arange(len(probs)), q)).tolist()


def generate_split(wc, split: str, n: int, progress: bool = False, out: np.ndarray | None = None):
    """Render one split of the world.

    Args:
        wc: WorldConfig. split: "train" | "test" | "caption" (different random streams; "caption" uses the flatter
            `wc.caption_long_tail` distribution and a larger minimum count per class).
        n: number of images. out: optional preallocated uint8 [n, S, S, 3] array (e.g. a memmap) to fill.
    Returns (images [n, S, S, 3] uint8, list of `_Rendered` without pixels).
    """
    S = int(wc.image_size)
    if S < 16:
        raise ValueError(f"world.image_size must be >= 16 pixels, got {S}")
    if wc.max_people < 1 or wc.max_objects < 1:
        raise ValueError(f"world.max_people and world.max_objects must be >= 1, got {wc.max_people}, {wc.max_objects}")
    vocab = world_vocabulary()
    hoi = [(int(v), int(o)) for v, o in vocab.hoi_classes]
    lut = vocab.object_verb_to_hoi
    sid = _SPLIT_IDS[split]
    exponent = wc.caption_long_tail if split == "caption" else wc.long_tail
    probs = class_distribution(wc.seed, exponent, len(hoi))
    if wc.max_people < 2:  # a person can only be a target when two people fit in an image
        probs = probs * np.array([o != PERSON for v, o in hoi])
    rs = np.random.RandomState([wc.seed, sid, 1])
    per_image = _classes_per_image(wc.max_people)
    # every class appears in every split: >= 1 training pair, >= 2 test pairs (HICO-DET's test minimum), and a
    # quarter of the mean in the caption pool
    min_count = {"caption": max(1, int(0.25 * n * per_image / len(hoi))), "test": 2}.get(split, 1)
    stream = _ClassStream(_split_quotas(n, probs, min_count, rs, per_image), probs,
                          random.Random(wc.seed * 7919 + sid))
    # which caption images are close-ups (their own random stream: the scene images keep theirs)
    close = np.random.RandomState([wc.seed, sid, 2]).random_sample(n) < (wc.caption_close_up if split == "caption"
                                                                         else 0.0)
    ras = _Raster(S)
    images = np.empty((n, S, S, 3), np.uint8) if out is None else out
    meta = []
    it = range(n)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"world {split}", unit="img", leave=False)
    for i in it:
        R = random.Random((wc.seed * 1_000_003 + sid) * 10_000_019 + i)
        r = _render_image(R, ras, stream, hoi, lut, S, wc.max_people, wc.max_objects, wc.clutter, bool(close[i]))
        images[i] = r.image
        r.image = None
        meta.append(r)
    return images, meta


def _annotations(meta, split, S, vocab) -> HOIAnnotations:
    rows = [(i, r.boxes[h], r.boxes[t], v, r.labels[t]) for i, r in enumerate(meta) for h, t, v in r.pairs]
    lut = vocab.object_verb_to_hoi
    n = len(meta)
    return HOIAnnotations(
        filenames=[f"WORLD_{split}_{i:08d}.png" for i in range(n)], sizes=np.full((n, 2), S, np.int64),
        image_index=np.array([r[0] for r in rows], np.int64).reshape(-1),
        boxes_h=np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
        boxes_o=np.array([r[2] for r in rows], np.float64).reshape(-1, 4),
        hoi=np.array([lut[r[4], r[3]] for r in rows], np.int64).reshape(-1),
        object=np.array([r[4] for r in rows], np.int64).reshape(-1),
        verb=np.array([r[3] for r in rows], np.int64).reshape(-1),
        verbs=list(vocab.verbs), objects=list(vocab.objects), correspondence=vocab.correspondence,
        empty=[i for i, r in enumerate(meta) if not r.pairs], source=f"world:{split}")


def _entities(meta, filenames) -> DetectionCache:
    """Every drawn instance (annotated or not) as a DetectionCache with score 1 (continuous pixel boxes)."""
    from .detections import Detections
    dets = []
    for r in meta:
        b = np.array(r.boxes, np.float32).reshape(-1, 4) - np.array([1, 1, 0, 0], np.float32)
        dets.append(Detections(b, np.ones(len(b), np.float32), np.array(r.labels, np.int64)))
    return DetectionCache.from_list(filenames, dets, num_classes=len(OBJECTS))


def bench(n: int = 2000, image_size: int = 64, seed: int = 0) -> dict:
    """Generation speed on one core: renders n training images of the default world (no caching, no torch)."""
    from ..config import WorldConfig
    wc = WorldConfig(seed=seed, image_size=image_size)
    generate_split(wc, "bench", 20)  # warm caches (texture patterns, noise bank)
    t0, c0 = time.perf_counter(), time.process_time()
    generate_split(wc, "bench", n)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": n, "image_size": image_size, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "images_per_s_wall": round(n / wall, 1), "images_per_s_cpu": round(n / cpu, 1)}


# ---------------------------------------------------------------------------------------------------------------
# The cached world
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class WorldData:
    """Everything the study reads from the built-in world (see `build_world`).

    Attributes:
        vocab: `world_vocabulary()`. root: cache folder of this world. digest: its cache key.
        train, test: HOIAnnotations in the HICO-DET file convention (1-based inclusive boxes).
        train_images, test_images: uint8 [N, S, S, 3] (read-only memmaps).
        det_train, det_test: simulated detections (DetectionCache, continuous pixel boxes, no feats).
        train_entities, test_entities: every drawn instance, annotated or not (DetectionCache with score 1).
        caption_images: uint8 [Nc, S, S, 3]; captions: Nc image-level captions (CLIP pretraining pairs).
        protocols: {"rf_uc", "nf_uc", "uo", "uv", "uc0".."uc4": sorted unseen HOI indices}.
    """

    vocab: Vocabulary
    root: Path
    train: HOIAnnotations
    test: HOIAnnotations
    train_images: np.ndarray
    test_images: np.ndarray
    det_train: DetectionCache
    det_test: DetectionCache
    caption_images: np.ndarray
    captions: list
    protocols: dict
    digest: str
    train_entities: DetectionCache
    test_entities: DetectionCache


def world_digest(cfg) -> str:
    """Cache key of a world: hash of cfg.world and the generator version."""
    d = {"world": cfg.to_dict()["world"], "version": WORLD_VERSION}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _load_images(path: Path) -> np.ndarray:
    """uint8 [N, S, S, 3] as a read-only memmap (an empty array is loaded plainly: nothing to map)."""
    arr = np.load(path, mmap_mode="r")
    return np.load(path) if arr.size == 0 else arr


def _new_tmp(final: Path) -> Path:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{random.getrandbits(32):08x}"
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, final: Path) -> None:
    """Atomically move a finished folder into place (another process may have won the race: keep theirs)."""
    try:
        os.rename(tmp, final)
    except OSError:
        if (final / "meta.json").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise


def _write_world(cfg, root: Path, progress: bool) -> None:
    from .protocols import make_protocols
    wc = cfg.world
    for name in ("n_train", "n_test"):
        if getattr(wc, name) < 1:
            raise ValueError(f"world.{name} must be >= 1, got {getattr(wc, name)}")
    if wc.n_caption < 0:
        raise ValueError(f"world.n_caption must be >= 0, got {wc.n_caption}")
    if not 0.0 <= wc.caption_close_up <= 1.0:
        raise ValueError(f"world.caption_close_up must be in [0, 1], got {wc.caption_close_up}")
    vocab, S = world_vocabulary(), int(wc.image_size)
    tmp = _new_tmp(root)
    try:
        counts = {}
        anns = {}
        for split, n in (("train", wc.n_train), ("test", wc.n_test), ("caption", wc.n_caption)):
            path = tmp / f"{split}_images.npy"
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, S, S, 3)) if n else None
            images, meta = generate_split(wc, split, n, progress=progress, out=out)
            if out is not None:
                out.flush()
                del out
            else:
                np.save(path, images)
            if split == "caption":
                (tmp / "captions.json").write_text(json.dumps([r.caption for r in meta]))
                counts["caption_pairs"] = int(sum(len(r.pairs) for r in meta))
                continue
            ann = _annotations(meta, split, S, vocab)
            ann.validate()
            ann.to_json(tmp / f"instances_{split}.json")
            _entities(meta, ann.filenames).save(tmp / f"entities_{split}.npz")
            anns[split] = ann
            counts[f"{split}_pairs"] = ann.num_pairs
        protocols = make_protocols(anns["train"].class_counts(), vocab, wc.seed)
        (tmp / "protocols.json").write_text(json.dumps({k: v.tolist() for k, v in protocols.items()}))
        meta = {"version": WORLD_VERSION, "digest": root.name, "world": cfg.to_dict()["world"],
                "num_classes": vocab.num_classes, "counts": counts,
                "rare_classes": int((anns["train"].class_counts() < 10).sum())}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        _commit(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_detections(cfg, root: Path, det_dir: Path, train, test) -> None:
    from .simdet import simulate_detections
    tmp = _new_tmp(det_dir)
    try:
        for k, (split, ann) in enumerate((("train", train), ("test", test))):
            ents = DetectionCache.load(root / f"entities_{split}.npz")
            det = simulate_detections(ann, cfg.detector, seed=cfg.world.seed * 1000 + 17 + k, instances=ents,
                                      num_classes=len(OBJECTS))
            det.save(tmp / f"detections_{split}.npz")
        (tmp / "meta.json").write_text(json.dumps({"detector": cfg.to_dict()["detector"]}, indent=2, sort_keys=True))
        _commit(tmp, det_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_world(cfg, progress: bool = True) -> WorldData:
    """Generate (first call) or load (later calls) the built-in world of `cfg.world`, with the simulated
    detections of `cfg.detector`.

    Cache layout (under `cfg.data.cache_dir`, relative to the working directory unless absolute):
        world/<digest>/{train,test,caption}_images.npy, instances_{train,test}.json, entities_{train,test}.npz,
                       captions.json, protocols.json, meta.json
        world/<digest>/det_<detector digest>/detections_{train,test}.npz, meta.json
    Folders are written under a temporary name and renamed when complete, so an interrupted build leaves no half
    cache. The same cfg.world gives byte-identical images and JSON on any run.
    """
    root = Path(cfg.data.cache_dir).expanduser() / "world" / world_digest(cfg)
    if not (root / "meta.json").is_file():
        _write_world(cfg, root, progress)
    train = HOIAnnotations.from_json(root / "instances_train.json")
    test = HOIAnnotations.from_json(root / "instances_test.json")
    det_dir = root / f"det_{cfg.digest('detector')}"
    if not (det_dir / "meta.json").is_file():
        _write_detections(cfg, root, det_dir, train, test)
    protocols = {k: np.asarray(v, np.int64) for k, v in json.loads((root / "protocols.json").read_text()).items()}
    return WorldData(
        vocab=world_vocabulary(), root=root, train=train, test=test,
        train_images=_load_images(root / "train_images.npy"), test_images=_load_images(root / "test_images.npy"),
        det_train=DetectionCache.load(det_dir / "detections_train.npz", sizes=train.sizes),
        det_test=DetectionCache.load(det_dir / "detections_test.npz", sizes=test.sizes),
        caption_images=_load_images(root / "caption_images.npy"),
        captions=json.loads((root / "captions.json").read_text()), protocols=protocols, digest=root.name,
        train_entities=DetectionCache.load(root / "entities_train.npz", sizes=train.sizes),
        test_entities=DetectionCache.load(root / "entities_test.npz", sizes=test.sizes),
    )


# ---------------------------------------------------------------------------------------------------------------
# Command line: python -m hoilib.data.world --bench | --preview out.png
# ---------------------------------------------------------------------------------------------------------------
def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hoilib.data.world", description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="store_true", help="print images/s generated on one core")
    ap.add_argument("--n", type=int, default=2000, help="images for --bench / --preview")
    ap.add_argument("--size", type=int, default=64, help="image size for --bench")
    ap.add_argument("--preview", default="", help="write an annotated grid of training images to this PNG")
    args = ap.parse_args(argv)
    if args.bench:
        print(json.dumps(bench(args.n, args.size)))
    if args.preview:
        from ..config import WorldConfig
        from ..plotting import show_hoi_grid
        wc = WorldConfig()
        n = min(args.n, 24)
        images, meta = generate_split(wc, "train", n)
        ann = _annotations(meta, "train", wc.image_size, world_vocabulary())
        show_hoi_grid(images, ann, world_vocabulary(), range(n), ncols=6).savefig(args.preview, dpi=120)
        print(f"wrote {args.preview}")
    if not (args.bench or args.preview):
        ap.print_help()


if __name__ == "__main__":
    _main()
