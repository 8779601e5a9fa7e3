"""Scenes: which groups an image holds, where they go, where each person looks, and the drawing of one image.

An image (default 64x64) holds people doing the sampled HOI classes (a person often joins another group's object
with a different verb) and up to max_objects objects besides people, idle distractors included, on a cluttered
background (`backgrounds`). "look_at" is given exactly when a person's gaze ray (from the face, along the head
direction) first hits that entity's box (what is held at the mouth does not count), and it replaces
no_interaction. Close-ups (the caption pool's object-centric "web photos") show one group filling the frame.

Version 1: 1..max_people people (mostly one), groups apart with a margin, backgrounds independent of the labels.
Version 2: min_people..max_people people (bystanders who do nothing fill up), groups that overlap (a pair's union
box holds other people and objects), long-range variants of throw / walk / hold a kite / look_at,
and a background scene chosen after the labels (`_pick_scene`): the home scene of one of the image's verbs in the
caption pool, of a verb nobody in the image does in the HOI splits.
"""
from __future__ import annotations

import math
from collections import deque
from itertools import islice
from dataclasses import dataclass, field

import numpy as np

from .backgrounds import HOME_SCENE, N_SCENES, _background
from .interactions import _attach, _attach_options, _attachable, _build, _bystander, _distractor
from .people import HEAD_R, _Person, _person_prims
from .raster import _pick, _prims_bbox, _u, _xf
from .vocabulary import BALL, HOLD, LOOK, NOI, OBJECTS, PERSON, VERBS, make_caption, world_vocabulary

# ---------------------------------------------------------------------------------------------------------------
# Composition and layout
# ---------------------------------------------------------------------------------------------------------------
_PEOPLE_WEIGHTS = (0.45, 0.35, 0.2)  # version 1: 1, 2, 3 people (then uniform) before truncation to max_people
P_SHARE = 0.7  # probability that an extra person tries to join an existing group (same object, a different verb)
SHARE_LOOKAHEAD = 600
# Version 2: the long-range variant of an interaction (throw, walk a dog, hold a kite, look_at an object) is drawn
# with this probability.
P_FAR = 0.6
# Version 2: each group after the first is centred over a point of a placed one, and may overlap any placed group
# by at most this fraction of the smaller box (group boxes are loose: bodies and objects overlap less). Measured on
# 400 test images, crowded pairs (`stats.crowding`): 0.35 -> 32% (and groups left without a place: 2.6 people per
# image), 0.5 -> 51%, 0.6 -> 64%, 0.7 -> 69%.
MAX_OVERLAP = 0.6

# HOI classes whose target is a person (they need two people) and the others
_PERSON_CLASSES = frozenset(c for c, (v, o) in enumerate(world_vocabulary().hoi_classes.tolist()) if o == PERSON)
_OBJECT_CLASSES = frozenset(range(len(world_vocabulary().hoi_classes))) - _PERSON_CLASSES
_NONE = frozenset()


@dataclass(frozen=True)
class _Recipe:
    """How the images of one split are composed (`recipe(wc, split)`)."""
    version: int
    min_people: int  # version 2 scenes: people drawn uniformly from min_people..max_people, bystanders fill up
    max_people: int
    max_objects: int
    clutter: float
    scene_rule: str  # version 2: "home" (caption pool: a verb's home scene) | "away" (HOI splits: an absent verb's)
    scene_bias: float  # probability that the scene follows scene_rule (else uniform)


def recipe(wc, split: str) -> _Recipe:
    """The recipe of `split` ("caption" or an HOI split) in world `wc` (a WorldConfig)."""
    return _Recipe(int(wc.version), int(wc.min_people), int(wc.max_people), int(wc.max_objects), float(wc.clutter),
                   "home" if split == "caption" else "away", float(wc.scene_bias))


class _ClassStream:
    """HOI classes to render, in order: a shuffled list with the split's class quotas, then i.i.d. draws.

    `take(fits)` returns (and removes) the first of the next `lookahead` classes in the set `fits` (those that fit
    the image being composed), so that classes needing two people or a particular partner are postponed rather
    than dropped.
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

    def take(self, fits, lookahead=None):
        k = lookahead or self.k
        while len(self.q) < k:
            self.q.append(self._draw())
        for i, c in enumerate(islice(self.q, k)):  # (indexing a deque deep inside is slow)
            if c in fits:
                del self.q[i]
                self.taken += 1
                return c
        return None

    def give_back(self, classes):
        for c in reversed(classes):
            self.q.appendleft(c)
        self.taken -= len(classes)


def _n_people(R, rec, close_up):
    """How many people an image is composed for: version 2 scenes uniformly min_people..max_people; version 1 and
    close-ups (at most 2) mostly one, by _PEOPLE_WEIGHTS."""
    if rec.version >= 2 and not close_up:
        return rec.min_people + int(R.random() * (rec.max_people - rec.min_people + 1))
    max_people = min(2, rec.max_people) if close_up else rec.max_people
    w = list(_PEOPLE_WEIGHTS[:max_people]) + [0.1] * max(0, max_people - len(_PEOPLE_WEIGHTS))
    u, n_people = R.random() * sum(w), 1
    for k, wk in enumerate(w):
        u -= wk
        if u <= 0:
            n_people = k + 1
            break
    return n_people


def _compose(R, stream, hoi, lut, n_people, max_people, max_objects, v2=False, min_people=0):
    """Groups of one image: people doing stream classes (some joining others' objects) plus distractors.

    v2: version 2's long-range variants; min_people: bystanders are added up to this many people."""
    p_far = P_FAR if v2 else 0.0
    groups, people, objs = [], 0, 0
    while people < n_people:
        room = n_people - people
        if groups and R.random() < P_SHARE:
            # a deep look ahead: classes sharing an object with the image's groups are a small minority
            ok = set().union(*(_attachable(g) for g in groups))
            ok = {int(lut[o, v]) for v, o in ok}
            c = stream.take(ok, SHARE_LOOKAHEAD)
            if c is not None:
                v, o = hoi[c]
                options = [(g, opt) for g in groups for opt in _attach_options(g, v, o)]
                g, (t, mode) = _pick(R, options)
                _attach(R, g, v, o, t, mode)
                people += 1
                continue
        # objs counts things other than people (1..max_objects per image, as HICO-DET's object instances)
        c = stream.take((_PERSON_CLASSES if room >= 2 else _NONE) | (_OBJECT_CLASSES if objs < max_objects else _NONE))
        if c is None:
            break
        g = _build(R, *hoi[c], far=p_far > 0 and R.random() < p_far)
        groups.append(g)
        people += len(g.persons())
        objs += hoi[c][1] != PERSON
    if not groups:  # the next classes all need more people than drawn: take one that fits max_people
        c = stream.take(_PERSON_CLASSES | _OBJECT_CLASSES if max_people >= 2 else _OBJECT_CLASSES)
        if c is None:  # only possible with max_people = 1 and a run of person-target classes
            c = int(lut[BALL, HOLD])
        g = _build(R, *hoi[c], far=p_far > 0 and R.random() < p_far)
        groups.append(g)
        people += len(g.persons())
        objs += hoi[c][1] != PERSON
    while people < min_people:
        groups.append(_bystander(R))
        people += 1
    n_obj = 1 + int(R.random() * max_objects)
    while objs < n_obj:
        groups.append(_distractor(R, 1 + int(R.random() * (len(OBJECTS) - 1))))
        objs += 1
    return groups


def _layout(R, groups, S, max_overlap=None):
    """Place groups (scale s px per person height, mirror m, ground point tx, ty): apart with a margin
    (max_overlap None, version 1) or overlapping by at most max_overlap of either box (version 2).

    Returns (placed [(group, s, m, tx, ty)], dropped groups). Lower in the image = nearer = larger."""
    crowd = sum(len(g.persons()) for g in groups) + 0.5 * sum(g.distractor for g in groups)
    base = S * 0.45 * (1.0 if crowd <= 2 else 0.88 if crowd <= 3 else 0.78) * _u(R, 0.92, 1.08)
    bbs = [g.bbox() for g in groups]
    order = sorted(range(len(groups)), key=lambda i: (groups[i].distractor, bbs[i][0] - bbs[i][2]))  # widest first
    placed, boxes, dropped = [], [], []
    for i in order:
        g = groups[i]
        x0, y0, x1, y1 = bbs[i]
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
            if max_overlap is not None and boxes:  # version 2: centred over a placed group (a crowd, not a row)
                b = _pick(R, boxes)
                tx = min(max(_u(R, b[0], b[2]) - m * s * (x0 + x1) / 2, lo), hi)
            else:
                tx = _u(R, lo, hi)
            X0, X1 = (tx + s * x0, tx + s * x1) if m > 0 else (tx - s * x1, tx - s * x0)
            box = (X0, top, X1, bottom)
            if _fits(box, boxes, s, max_overlap):
                placed.append((g, s, m, tx, ty))
                boxes.append(box)
                ok = True
                break
        if not ok:
            dropped.append(g)
    return placed, dropped


def _fits(box, boxes, s, max_overlap):
    """Whether `box` may join the placed `boxes` (s: its person height in px; see `_layout`)."""
    if max_overlap is None:
        mg = 0.12 * s
        return all(box[0] > b[2] + mg or box[2] < b[0] - mg or box[1] > b[3] + mg or box[3] < b[1] - mg
                   for b in boxes)
    area = (box[2] - box[0]) * (box[3] - box[1])
    for b in boxes:
        w, h = min(box[2], b[2]) - max(box[0], b[0]), min(box[3], b[3]) - max(box[1], b[1])
        if w > 0 and h > 0 and w * h > max_overlap * min(area, (b[2] - b[0]) * (b[3] - b[1])):
            return False
    return True


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
    x_flat, y_flat = abs(dx) < 1e-9, abs(dy) < 1e-9
    for i, b in enumerate(boxes):
        if i in skip or (b[0] <= ox <= b[2] and b[1] <= oy <= b[3]):
            continue
        # slab test, x then y: the ray's parameter interval [t0, t1] inside the box
        if x_flat:
            if ox < b[0] or ox > b[2]:
                continue
            t0, t1 = 0.0, math.inf
        else:
            a, c = (b[0] - ox) / dx, (b[2] - ox) / dx
            t0, t1 = (c, a) if a > c else (a, c)
            t0 = t0 if t0 > 0.0 else 0.0
        if y_flat:
            if oy < b[1] or oy > b[3]:
                continue
        else:
            a, c = (b[1] - oy) / dy, (b[3] - oy) / dy
            if a > c:
                a, c = c, a
            t0, t1 = (a if a > t0 else t0), (c if c < t1 else t1)
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
    ropes: list = field(default_factory=list)  # (human, target, hand end (x, y), far end (x, y)) per rope
    scene: int = -1  # version 2: index into backgrounds.SCENES; -1 in version 1


def _to_image(placed):
    """Placed groups [(group, s, m, tx, ty)] -> entities in image coordinates: people (joints moved in place) and
    objects (primitive lists); per entity its class; the draw order (("e", entity) / ("x", primitive)); pairs
    {(h, t): verbs}, looks {h: t}, fixed gazes {h: angle}, ray exclusions {h: {t}} and ropes [(h, t, a, b)], in
    entity indices."""
    ents, kinds, draw, looks, fixed, ignore, pairs, ropes = [], [], [], {}, {}, {}, {}, []
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
        ropes += [(base + h, base + t, (tx + m * s * a[0], ty + s * a[1]), (tx + m * s * b[0], ty + s * b[1]))
                  for h, t, a, b in g.ropes]
    return ents, kinds, draw, looks, fixed, ignore, pairs, ropes


def _draw(ras, draw, ents):
    """Draw the entities and extra primitives in order; returns {person entity: its primitives}."""
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
    return person_prims


def _pick_scene(R, verbs, rec):
    """The scene of a version 2 image whose pairs do `verbs` (a set of verb indices): with probability
    rec.scene_bias the home scene of one of them ("home") or of a verb none of them is ("away"), else any."""
    if R.random() < rec.scene_bias:
        if rec.scene_rule == "home" and verbs:
            return HOME_SCENE[_pick(R, sorted(verbs))]
        away = [v for v in range(len(HOME_SCENE)) if v not in verbs]
        if rec.scene_rule == "away" and away:
            return HOME_SCENE[_pick(R, away)]
    return int(R.random() * N_SCENES)


def _render_image(R, ras, stream, hoi, lut, S, rec, close_up=False):
    """Compose, lay out, resolve gazes, label and draw one image of recipe `rec` (a `_Recipe`).

    close_up: one interaction group (a person and their object, or two people) fills the frame instead of a
    scene being laid out (the caption pool's object-centric "web photos")."""
    v2 = rec.version >= 2
    n_people = _n_people(R, rec, close_up)
    if close_up:
        groups = _compose(R, stream, hoi, lut, n_people, min(2, rec.max_people), 1, v2)
        placed, dropped = [], groups  # nothing placed: the first group fills the image (below)
    else:
        groups = _compose(R, stream, hoi, lut, n_people, rec.max_people, rec.max_objects, v2,
                          rec.min_people if v2 else 0)
        placed, dropped = _layout(R, groups, S, MAX_OVERLAP if v2 else None)
    if not any(p[0].classes for p in placed):  # no interaction fitted: the first group fills the image
        g = next(g for g in groups if g.classes)
        x0, y0, x1, y1 = g.bbox()
        s = 0.95 * min(S / (x1 - x0), S / (y1 - y0))
        placed = [(g, s, 1, (S - s * (x1 + x0)) / 2, S - 0.5 - s * y1)]
        dropped = [h for h in groups if h is not g]
    for g in dropped:
        if not g.distractor:
            stream.give_back([int(lut[o, v]) for v, o in g.classes])
    placed.sort(key=lambda t: t[4])  # far (higher up) first
    ents, kinds, draw, looks, fixed, ignore, pairs, ropes = _to_image(placed)
    boxes = [e.bbox() if isinstance(e, _Person) else _prims_bbox(e) for e in ents]
    persons = [(i, e) for i, e in enumerate(ents) if isinstance(e, _Person)]
    # ---- gaze decides look_at (and overrides no_interaction: looking at something is an interaction)
    for h, t in looks.items():
        pairs[(h, t)].discard(LOOK)
    for h, t in _resolve_gaze(R, persons, boxes, looks, fixed, ignore, S).items():
        vs = pairs.setdefault((h, t), set())
        vs.discard(NOI)
        vs.add(LOOK)
    # ---- draw (version 2: the scene follows the labels, see `_pick_scene`)
    scene = _pick_scene(R, {v for vs in pairs.values() for v in vs}, rec) if v2 else None
    _background(R, ras, S, rec.clutter, scene)
    person_prims = _draw(ras, draw, ents)
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
    return _Rendered(ras.result(), rows, final, kinds, caption, people, ropes, -1 if scene is None else scene)
