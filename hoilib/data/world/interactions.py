"""Interaction groups: people and objects whose interaction fixes their relative placement.

Interactions are visible only through local evidence: which body part touches the object (a hand holds it, a foot
kicks it, the hip rests on it, both arms wrap it), pose (leaning to push, arm raised to throw, both arms forward to
catch), relative placement (on top of, at the mouth, on a leash) and gaze (set later by the scene). Labels are
multi-label per pair as in HICO-DET and follow fixed rules that the rendering obeys: "hold" = the object is in the
person's hand (so carry, eat and drink_with always come with hold, and so does riding a bicycle, whose handlebar is
held); riding a horse or a bicycle is also sitting on it; "no_interaction" = an idle person standing right next to
the object. A group can leave free places where a second person joins the same object with a different verb
(`_attach`), so that image-level cues cannot say who does what. World version 2 also draws long-range variants
(`far`), whose evidence lies between or beyond the two boxes: a ball thrown well away from the hand (a trail of
dots behind it), a dog on a long leash, a kite high up on a long string, an object looked at from afar. Ropes
(leashes, bridles, strings, reins) are recorded with their end points for the checks.
`tests/data/world/test_interactions.py` checks the body evidence of every verb.
"""
from __future__ import annotations

import math

from .objects import _Obj, _idle_object, _make_object, _on_ground, _rot_obj, _set_down
from .people import (FOOT, HAND_R, HEAD_R, TORSO_W, _arm, _kneel, _leg, _Person, _pusher, _rel,
                     _shift_person, _sit, _stand, _torso)
from .raster import _pick, _prims_bbox, _u
from .vocabulary import (_VALID, APPLE, BALL, BENCH, BICYCLE, BIRD, BOOK, BOTTLE, CARRY, CATCH, CHAIR, CUP, DOG,
                         DRINK, EAT, FEED, HOLD, HORSE, HUG, KICK, KITE, LIE, LOOK, NOI, PERSON, PUSH, RIDE, SIT,
                         SKATEBOARD, THROW, UMBRELLA, VERBS, WALK)


def _flat_bbox(boxes):
    """The union [x0, y0, x1, y1] of boxes."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


class _Group:
    """People and objects whose interaction fixes their relative placement; laid out as one unit.

    ents: _Person / _Obj entities; order: draw order of ("e", index) and ("x", primitive) items;
    pairs: {(human, target): set of verbs}; look: {human: target it looks at};
    gaze_fix: {human: gaze angle in the group frame for poses that fix the head (drinking, lying)};
    mouth: {human: entity held at the mouth (ignored by the gaze ray)}; classes: the sampled (verb, object)
    classes the group renders (for re-queueing when it does not fit); ropes: (human, target, hand end, far end)
    of every rope drawn.
    """

    __slots__ = ("ents", "order", "pairs", "look", "gaze_fix", "mouth", "classes", "distractor", "free", "ropes")

    def __init__(self):
        self.ents, self.order, self.pairs, self.look = [], [], {}, {}
        self.gaze_fix, self.mouth, self.classes, self.distractor = {}, {}, [], False
        self.ropes = []
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


def _rope(g, h, t, a, b, sag, w, c):
    """Draw a rope from person h's hand at a to point b of target t, and record it."""
    g.x(_line(a, b, sag=sag, w=w, c=c))
    g.ropes.append((h, t, a, b))


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


def _build_hold(R, g, v, o, far=False):
    """hold: the object in a hand (a bicycle or chair by its handlebar / backrest, a small dog under one arm, a
    kite by its string; far: the kite high up)."""
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
        kite = _make_object(R, o)
        if far:  # high up on a long string
            kite.place("string", (ha[0] + _u(R, 0.5, 0.9), ha[1] - _u(R, 0.8, 1.1)))
        else:
            kite.place("string", (ha[0] + _u(R, 0.3, 0.6), ha[1] - _u(R, 0.55, 0.8)))
        t = g.add(kite)
        _rope(g, h, t, ha, kite.pt("string"), 0.05, 0.012, (70, 70, 70))
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


def _build_carry(R, g, v, o, far=False):
    """carry (and hold): a bicycle on the shoulder, a chair upside down over the head, a dog in both arms, other
    things held in front with both hands."""
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


def _build_catch(R, g, v, o, far=False):
    """catch: both hands reaching forward to an incoming object (motion streaks)."""
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


def _build_throw(R, g, v, o, far=False):
    """throw: arm raised, the object leaving the hand (motion streaks; far: well away from the hand, a trail of
    dots between); another person can catch it."""
    p = _stand(R, 0.0, lean=-0.1, stride=_u(R, 0.15, 0.25))
    ha = _arm(p, "n", _rel(p, "sh", _u(R, 0.02, 0.1), -0.3), (1, 0))
    _arm(p, "f", _rel(p, "sh", -0.15, 0.25))
    h = g.add(p)
    ob = _make_object(R, o)
    r = (ob.box[2] - ob.box[0]) / 2
    if far:  # in flight well away from the hand, flatter, a trail of dots back to the hand
        d, k = (0.95, -0.3), r + _u(R, 0.45, 0.85)
        c = (ha[0] + d[0] * k, ha[1] + d[1] * k)
        for f in (0.35, 0.55, 0.75):
            g.x(("c", ha[0] + d[0] * k * f, ha[1] + d[1] * k * f, 0.02, (250, 250, 250)))
    else:
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


def _build_at_mouth(R, g, v, o, far=False):
    """drink_with / eat (and hold): the object at the mouth, the head fixed."""
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


def _build_feed(R, g, v, o, far=False):
    """feed: food in a hand at the animal's mouth (crumbs falling for a bird)."""
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


def _build_hug(R, g, v, o, far=False):
    """hug: kneeling with both arms around a dog, or both arms around a horse's neck."""
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


def _build_kick(R, g, v, o, far=False):
    """kick: the near foot raised against the object on the ground."""
    ob = _make_object(R, o)
    hgt = {BALL: ob.box[3] - ob.box[1], BOTTLE: 0.07, SKATEBOARD: 0.06, CHAIR: 0.1}.get(o, 0.08)
    p = _Person(R)
    _torso(p, (0.0, -0.49), -0.12)
    _leg(p, "f", (-0.05, 0.0))
    _leg(p, "n", (_u(R, 0.27, 0.34), -min(hgt * 0.6, 0.12)), (1, 0))
    _arm(p, "n", _rel(p, "sh", -0.16, 0.22), (-0.5, 1))
    _arm(p, "f", _rel(p, "sh", 0.2, 0.15), (-0.5, 1))
    h = g.add(p)
    _on_ground(ob, p.j["to_n"][0] - 0.01)
    t = g.add(ob)
    g.label(h, t, KICK)
    if R.random() < 0.4:
        g.look[h] = t


def _build_lie(R, g, v, o, far=False):
    """lie_on: lying along a long bench, looking up."""
    bench = _make_object(R, o, "long").place("base", (0, 0))
    seat = bench.pt("seat")
    p = _Person(R)
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


def _build_push(R, g, v, o, far=False):
    """push: leaning into the object with both hands."""
    ob = _make_object(R, o).place("base", (0, 0))
    contact = ob.pt({BICYCLE: "saddle", CHAIR: "back_top", BENCH: "side_l", HORSE: "rump"}[o])
    p = _pusher(R, contact)
    t = g.add(ob)
    h = g.add(p)
    g.label(h, t, PUSH)
    if o == HORSE:
        g.free["front"] = (t, None)
    if R.random() < 0.3:
        g.look[h] = t


def _build_ride(R, g, v, o, far=False):
    """ride: astride a horse holding the reins (also sit_on), pedalling a bicycle (also sit_on, and hold: the
    handlebar is held), standing on a skateboard."""
    ob = _make_object(R, o).place("base", (0, 0))
    t = g.add(ob)
    if o == HORSE:
        p = _Person(R)
        hip = (ob.pt("back")[0], ob.pt("back")[1] - 0.03)
        _torso(p, hip, _u(R, 0.05, 0.2))
        _leg(p, "n", _rel(p, hip, 0.1, 0.36), (1, 0))
        p.far_leg = False
        ha = _arm(p, "n", _rel(p, hip, 0.24, -0.14), (-0.3, 1))
        _arm(p, "f", _rel(p, hip, 0.22, -0.16), (-0.3, 1))
        h = g.add(p)
        _rope(g, h, t, ha, ob.pt("mouth"), 0.03, 0.014, (70, 40, 20))
        g.label(h, t, RIDE, SIT)
        g.free["front"], g.free["back"] = (t, None), (t, "rump")
    elif o == BICYCLE:
        p = _Person(R)
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
        p = _Person(R)
        _torso(p, (0.0, ob.pt("deck")[1] - 0.43), _u(R, 0.05, 0.25))
        _leg(p, "n", ob.pt("mid_r"))
        _leg(p, "f", ob.pt("mid_l"))
        _arm(p, "n", _rel(p, "sh", 0.24, 0.08), (0, 1))
        _arm(p, "f", _rel(p, "sh", -0.24, 0.08), (0, 1))
        h = g.add(p)
        g.label(h, t, RIDE)


def _build_sit(R, g, v, o, far=False):
    """sit_on: on a chair or bench, side-saddle on a horse, on a bicycle's saddle with the feet down, on a
    skateboard with the knees up."""
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
        p = _Person(R)
        _torso(p, hip, _u(R, -0.05, 0.05))
        _leg(p, "n", _rel(p, hip, 0.14, 0.38), (1, 0))
        _leg(p, "f", _rel(p, hip, 0.08, 0.4), (1, 0))
        _arm(p, "n", _rel(p, p.j["kn_n"], -0.04, -0.05), (-0.5, 1))
        _arm(p, "f", _rel(p, p.j["kn_f"], -0.05, -0.05), (-0.5, 1))
        g.free["front"], g.free["back"] = (t, None), (t, "rump")
    elif o == BICYCLE:  # on the saddle, feet on the ground, hands off the handlebar
        hip = ob.pt("saddle")
        p = _Person(R)
        _torso(p, (hip[0], hip[1] - 0.03), _u(R, -0.05, 0.1))
        _leg(p, "n", (hip[0] + 0.1, 0.0))
        _leg(p, "f", (hip[0] - 0.1, 0.0))
        _arm(p, "n", _rel(p, "hip", 0.12, -0.03), (-0.2, 1))
        _arm(p, "f", _rel(p, "hip", 0.1, -0.02), (-0.2, 1))
        g.free["back"] = (t, "rack")
    else:  # skateboard: sitting on the deck, knees up, hands on the knees
        hip = (ob.pt("deck")[0] - 0.05, ob.pt("deck")[1] - 0.055)
        p = _Person(R)
        _torso(p, hip, _u(R, 0.0, 0.2))
        _leg(p, "n", (hip[0] + 0.36, 0.0), (1, -1))
        _leg(p, "f", (hip[0] + 0.32, 0.0), (1, -1))
        _arm(p, "n", p.j["kn_n"], (-0.3, 1))
        _arm(p, "f", p.j["kn_f"], (-0.3, 1))
    h = g.add(p)
    g.label(h, t, SIT)


def _build_walk(R, g, v, o, far=False):
    """walk: a dog on a leash ahead (far: a long leash), or leading a horse by the bridle."""
    p = _stand(R, 0.0, stride=_u(R, 0.18, 0.28))
    if o == DOG:
        ha = _arm(p, "n", _rel(p, "hip", 0.13, 0.08), (-0.3, 1))
        h = g.add(p)
        dog = _make_object(R, o)
        dog.place("collar", (ha[0] + (_u(R, 0.7, 1.1) if far else _u(R, 0.28, 0.42)), 0.0))  # far: a long leash
        dog.ty += -dog.bbox()[3]
        t = g.add(dog)
        _rope(g, h, t, ha, dog.pt("collar"), 0.1 if far else 0.06, 0.016, (200, 40, 40))
        g.free["front"] = (t, None)
    else:  # leading a horse that walks behind
        ha = _arm(p, "f", _rel(p, "hip", -0.15, 0.02), (-0.3, 1))
        horse = _make_object(R, o)
        horse.place("mouth", (ha[0] - _u(R, 0.12, 0.22), -0.0))
        horse.ty += -horse.bbox()[3]
        t = g.add(horse)
        h = g.add(p)
        _rope(g, h, t, ha, horse.pt("mouth"), 0.05, 0.016, (70, 40, 20))
        g.free["back"] = (t, "rump")
    g.label(h, t, WALK)
    if R.random() < 0.3:
        g.look[h] = t


# The builder of every verb with an object (person targets, look_at and no_interaction have their own).
_VERB_BUILDERS = {HOLD: _build_hold, CARRY: _build_carry, CATCH: _build_catch, THROW: _build_throw,
                  DRINK: _build_at_mouth, EAT: _build_at_mouth, FEED: _build_feed, HUG: _build_hug, KICK: _build_kick,
                  LIE: _build_lie, PUSH: _build_push, RIDE: _build_ride, SIT: _build_sit, WALK: _build_walk}


def _build(R, v, o, far=False):
    """A group in which one person (two for person targets) does verb v with a new object of class o, facing +x;
    far: the long-range variant where one exists (throw, walk a dog, hold a kite, look_at an object).
    Returns the group, or None when the combination has no rendering (never for valid classes)."""
    g = _Group()
    if o == PERSON:
        return _build_person_target(R, g, v)
    if v in (LOOK, NOI):
        return _build_near(R, g, v, o, far)
    builder = _VERB_BUILDERS.get(v)
    if builder is None:
        return None
    builder(R, g, v, o, far)
    g.classes.append((v, o))
    return g


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


def _build_near(R, g, v, o, far=False):
    """look_at (object at a distance, person facing it; far: well across the image) or no_interaction (idle
    person right next to it)."""
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
        gap = _u(R, 0.02, 0.08) if v == NOI else _u(R, 0.8, 1.5) if far else _u(R, 0.25, 0.7)
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
    if mode in ("left", "right"):
        _attach_beside(R, g, v, t, mode)
    else:
        _attach_free(R, g, v, o, t, mode)
    g.classes.append((v, o))


def _attach_beside(R, g, v, t, mode):
    """look_at / no_interaction: a person standing on the group's `mode` side ("left" / "right") of entity t."""
    e = g.ents[t]
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


def _attach_free(R, g, v, o, t, tag):
    """A person doing v with entity t at the free place `tag` of the group (see `_Group.free`)."""
    e = g.ents[t]
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
        _rope(g, h, t, p.j["ha_f"], mouth, 0.05, 0.016, (70, 40, 20))
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


def _distractor(R, o):
    """A group holding one object nobody interacts with."""
    g = _Group()
    g.distractor = True
    g.add(_set_down(_idle_object(R, o), 0.0))
    return g


def _bystander(R):
    """A group holding one person who does nothing with anything (unless the gaze ray, set by the scene, makes
    them look at something): people in a crowd whom no annotated pair involves."""
    g = _Group()
    p = _stand(R, 0.0, f=_pick(R, (1, -1)))
    p.idle = True
    g.add(p)
    return g
