"""Scenes: which groups an image holds, where they go, where each person looks, and the drawing of one image.

An image (default 64x64) holds 1..max_people people doing the sampled HOI classes (a person often joins another
group's object with a different verb) and up to max_objects objects besides people, idle distractors included, on
a cluttered background (sky/ground gradients, noise, trees, houses, rocks, clouds, fences). "look_at" is given
exactly when a person's gaze ray (from the face, along the head direction) first hits that entity's box (what is
held at the mouth does not count), and it replaces no_interaction. Close-ups (the caption pool's object-centric
"web photos") show one group filling the frame.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .interactions import _attach, _attach_options, _attachable, _build, _distractor
from .people import HEAD_R, _Person, _person_prims
from .raster import SS, _jit, _pick, _prims_bbox, _rect, _shade, _u, _xf
from .vocabulary import BALL, HOLD, LOOK, NOI, OBJECTS, PERSON, VERBS, make_caption

# ---------------------------------------------------------------------------------------------------------------
# Composition and layout
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
# Background
# ---------------------------------------------------------------------------------------------------------------
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


def _to_image(placed):
    """Placed groups [(group, s, m, tx, ty)] -> entities in image coordinates: people (joints moved in place) and
    objects (primitive lists); per entity its class; the draw order (("e", entity) / ("x", primitive)); pairs
    {(h, t): verbs}, looks {h: t}, fixed gazes {h: angle} and ray exclusions {h: {t}}, in entity indices."""
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
    return ents, kinds, draw, looks, fixed, ignore, pairs


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
    ents, kinds, draw, looks, fixed, ignore, pairs = _to_image(placed)
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
    return _Rendered(ras.result(), rows, final, kinds, caption, people)
