"""Objects: procedural shapes with named anchor points, in "person-height units" (a standing person is ~1 tall),
ground at y = 0, facing +x.

Every object class has its own shape function (sizes, colours and textures drawn from the image's random stream),
dispatched by `_make_object`; the helpers below turn, ground or idle an object.
"""
from __future__ import annotations

import math

import numpy as np

from .raster import _jit, _pick, _prims_bbox, _rect, _rot, _shade, _u, _xf
from .vocabulary import (APPLE, BALL, BENCH, BICYCLE, BIRD, BOOK, BOTTLE, CHAIR, CUP, DOG, HORSE, KITE, PHONE,
                         SKATEBOARD, UMBRELLA)


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


def _horse(R, z, state):
    """A horse facing +x (sometimes spotted), with anchors for riding, feeding, hugging, pushing and leading."""
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
    return _Obj(HORSE, prims, anchors)


def _dog(R, z, state):
    """A dog facing +x (sometimes patched), with anchors for its mouth, collar and back."""
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
    return _Obj(DOG, prims, anchors)


def _bird(R, z, state):
    """A bird standing on the ground, or flying when state == "fly"."""
    c = _jit(R, _pick(R, [(40, 90, 200), (210, 40, 40), (240, 200, 30), (40, 40, 40), (120, 80, 50)]))
    beak = (240, 160, 30)
    if state == "fly":
        prims = [("e", 0, 0, 0.065 * z, 0.03 * z, 0, c), ("c", 0.06 * z, -0.015 * z, 0.028 * z, c),
                 ("p", ((0.085 * z, -0.02 * z), (0.12 * z, -0.012 * z), (0.085 * z, -0.004 * z)), beak),
                 ("p", ((-0.03 * z, -0.01), (0.03 * z, -0.01), (-0.06 * z, -0.12 * z)), _shade(c, 0.8)),
                 ("p", ((-0.06 * z, 0), (-0.12 * z, -0.03 * z), (-0.12 * z, 0.025 * z)), c)]
        return _Obj(BIRD, prims, {"center": (0, 0), "base": (0, 0.05)}, flying=True)
    prims = [("s", -0.01 * z, -0.03, 0.0, 0, 0.012, (90, 60, 30)),
             ("s", 0.02 * z, -0.03, 0.02 * z, 0, 0.012, (90, 60, 30)),
             ("p", ((-0.05 * z, -0.06 * z), (-0.12 * z, -0.1 * z), (-0.11 * z, -0.04 * z)), _shade(c, 0.8)),
             ("e", 0, -0.06 * z, 0.065 * z, 0.038 * z, -0.15, c), ("c", 0.055 * z, -0.1 * z, 0.03 * z, c),
             ("p", ((0.08 * z, -0.108 * z), (0.12 * z, -0.098 * z), (0.08 * z, -0.088 * z)), beak),
             ("c", 0.063 * z, -0.108 * z, 0.008, (10, 10, 10))]
    return _Obj(BIRD, prims, {"base": (0, 0), "center": (0, -0.06 * z), "head": (0.06 * z, -0.1 * z)})


def _bicycle(R, z, state):
    """A bicycle facing +x, with anchors for the saddle, handlebar, crank and rack."""
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
    return _Obj(BICYCLE, prims, anchors)


def _bench(R, z, state):
    """A bench with a backrest; state == "long" makes room to lie on it."""
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
    return _Obj(BENCH, prims, anchors)


def _chair(R, z, state):
    """A chair facing +x; state == "upside": upside down (carried over the head)."""
    c = _jit(R, _pick(R, _WOOD + [(200, 50, 50), (50, 80, 170), (230, 230, 225)]))
    leg = _shade(c, 0.75)
    h = 0.26 * z
    prims = [("s", 0.1 * z, -h, 0.11 * z, 0, 0.03, leg), ("s", -0.1 * z, -h, -0.11 * z, 0, 0.03, leg),
             ("s", -0.1 * z, -h, -0.13 * z, -h - 0.36 * z, 0.035, c),
             ("s", -0.13 * z, -h - 0.33 * z, -0.11 * z, -h - 0.2 * z, 0.06, c),
             _rect(-0.12 * z, -h - 0.03, 0.13 * z, -h + 0.01, c)]
    anchors = {"base": (0, 0), "seat": (0.0, -h - 0.03), "back_top": (-0.13 * z, -h - 0.34 * z),
               "front": (0.13 * z, -h * 0.5), "center": (0, -h - 0.1), "top": (0, -h - 0.36 * z)}
    o = _Obj(CHAIR, prims, anchors)
    if state == "upside":  # carried over the head, legs up
        o.prims = _rot(o.prims, math.pi)
        o.anchors = {k: (-x, -y) for k, (x, y) in o.anchors.items()}
        o.box = _prims_bbox(o.prims)
    return o


def _umbrella(R, z, state):
    """An open umbrella held by its grip; state "planted" (standing on the ground, taller) or "closed"."""
    c1 = _jit(R, _pick(R, _BRIGHT))
    c2 = _jit(R, _pick(R, _BRIGHT))
    canopy = ("t", c1, c2, _pick(R, (1, 2, 6))) if c1 != c2 else c1
    if state == "closed":
        prims = [("s", -0.26 * z, 0, 0.2 * z, 0, 0.05, c1), ("s", 0.2 * z, 0, 0.26 * z, 0, 0.015, (60, 60, 60)),
                 ("s", -0.26 * z, 0, -0.3 * z, 0.03, 0.02, (60, 40, 30))]
        return _Obj(UMBRELLA, prims, {"grip": (-0.2 * z, 0), "center": (0, 0), "grip2": (0.05 * z, 0)})
    R0 = 0.27 * z
    top = 0.42 if state != "planted" else 0.72
    cy = -top
    arc = tuple((R0 * math.cos(a), cy - R0 * 0.8 * math.sin(a)) for a in np.linspace(0, math.pi, 9))
    prims = [("s", 0, 0, 0, cy, 0.022, (70, 70, 70)), ("s", 0, 0, 0.035, 0.025, 0.02, (70, 50, 35)),
             ("p", arc, canopy), ("s", 0, cy - R0 * 0.8, 0, cy - R0 * 0.8 - 0.04, 0.02, (70, 70, 70))]
    return _Obj(UMBRELLA, prims, {"grip": (0, -0.02), "base": (0, 0), "top": (0, cy - R0 * 0.8),
                                  "center": (0, cy - 0.1)})


def _ball(R, z, state):
    """A ball: plain with a shading band, or a football / basketball texture."""
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
    return _Obj(BALL, prims, {"center": (0, 0), "base": (0, r), "grip": (-r * 0.9, 0)})


def _kite(R, z, state):
    """A flying kite with its tail; state == "ground": lying on the ground, tail-less."""
    c1, c2 = _jit(R, _pick(R, _BRIGHT)), _jit(R, _pick(R, _BRIGHT))
    w, hgt = 0.09 * z, 0.12 * z
    prims = [("p", ((0, -hgt), (w, -0.02), (0, hgt), (-w, -0.02)), c1),
             ("p", ((0, -hgt), (w, -0.02), (0, hgt)), c2),
             ("s", 0, -hgt, 0, hgt, 0.012, (60, 50, 40)), ("s", -w, -0.02, w, -0.02, 0.012, (60, 50, 40))]
    if state != "ground":
        tail = ((0, hgt), (0.03, hgt + 0.05), (-0.02, hgt + 0.1), (0.02, hgt + 0.15), (-0.01, hgt + 0.2))
        prims = prims + [("l", tail, 0.012, (80, 80, 80)), ("c", 0.02, hgt + 0.15, 0.015, c2),
                         ("c", 0.03, hgt + 0.05, 0.015, c1)]
    o = _Obj(KITE, prims, {"center": (0, 0), "string": (0, 0.02), "bottom": (0, hgt), "grip": (0, hgt * 0.5)},
             flying=state != "ground")
    if state == "ground":  # lying on the ground
        o.prims = _rot(o.prims, math.pi / 2)
        o.anchors = {"center": (0, 0), "base": (0, w), "grip": (0, 0)}
        o.box = _prims_bbox(o.prims)
    return o


def _skateboard(R, z, state):
    """A skateboard on its wheels; state == "vertical": held by one end, nose down."""
    deck = _jit(R, _pick(R, _BRIGHT + _WOOD[:2]))
    prims = [("c", -0.14 * z, -0.024, 0.024, (40, 40, 40)), ("c", 0.14 * z, -0.024, 0.024, (40, 40, 40)),
             ("s", -0.21 * z, -0.062, 0.21 * z, -0.062, 0.03, deck),
             ("s", 0.2 * z, -0.062, 0.24 * z, -0.08, 0.03, deck),
             ("s", -0.2 * z, -0.062, -0.24 * z, -0.08, 0.03, deck)]
    anchors = {"base": (0, 0), "deck": (0, -0.077), "tail": (-0.24 * z, -0.07), "nose": (0.24 * z, -0.07),
               "center": (0, -0.05), "grip": (-0.22 * z, -0.07), "mid_l": (-0.12 * z, -0.077),
               "mid_r": (0.12 * z, -0.077)}
    o = _Obj(SKATEBOARD, prims, anchors)
    if state == "vertical":  # held by one end at the side, nose down
        o.prims = _rot(_xf(o.prims, 1, 1, 0.24 * z, 0.07), math.pi / 2)
        o.anchors = {"grip": (0, 0), "center": (0, 0.24 * z)}
        o.box = _prims_bbox(o.prims)
    return o


def _bottle(R, z, state):
    """A bottle with a label, standing."""
    c = _jit(R, _pick(R, [(40, 140, 60), (120, 70, 30), (60, 110, 200), (200, 200, 210), (200, 60, 50)]))
    hgt = 0.17 * z
    prims = [_rect(-0.032 * z, -hgt * 0.72, 0.032 * z, 0, c), ("s", 0, -hgt * 0.7, 0, -hgt, 0.03 * z, c),
             _rect(-0.018 * z, -hgt - 0.015, 0.018 * z, -hgt + 0.01, (230, 230, 230)),
             _rect(-0.033 * z, -hgt * 0.55, 0.033 * z, -hgt * 0.3, (235, 225, 200))]
    return _Obj(BOTTLE, prims, {"base": (0, 0), "grip": (0, -hgt * 0.42), "mouth": (0, -hgt - 0.01),
                                "center": (0, -hgt * 0.5)})


def _cup(R, z, state):
    """A cup with a handle."""
    c = _jit(R, _pick(R, [(245, 245, 240), (210, 50, 50), (50, 100, 200), (240, 200, 40), (60, 160, 90)]))
    hgt = 0.1 * z
    prims = [("g", 0.045 * z, -hgt * 0.5, 0.013 * z, 0.032 * z, _shade(c, 0.85)),
             ("p", ((-0.04 * z, -hgt), (0.04 * z, -hgt), (0.032 * z, 0), (-0.032 * z, 0)), c),
             ("s", -0.04 * z, -hgt, 0.04 * z, -hgt, 0.012, _shade(c, 0.7))]
    return _Obj(CUP, prims, {"base": (0, 0), "grip": (0.065 * z, -hgt * 0.5), "mouth": (-0.035 * z, -hgt),
                             "center": (0, -hgt * 0.5)})


def _apple(R, z, state):
    """An apple with a highlight, a stalk and a leaf."""
    c = _jit(R, _pick(R, [(200, 30, 30), (120, 190, 50), (220, 60, 40), (230, 200, 50)]))
    r = 0.045 * z
    prims = [("c", 0, 0, r, c), ("c", -r * 0.35, -r * 0.35, r * 0.3, _shade(c, 1.25)),
             ("s", 0, -r * 0.8, 0.008, -r * 1.4, 0.012, (90, 60, 30)),
             ("e", 0.025, -r * 1.25, 0.022, 0.01, -0.3, (50, 150, 40))]
    return _Obj(APPLE, prims, {"center": (0, 0), "base": (0, r), "grip": (-r * 0.8, 0.0)})


def _phone(R, z, state):
    """A phone with its screen."""
    c = _jit(R, _pick(R, [(30, 30, 35), (200, 200, 205), (180, 40, 60), (40, 60, 140)]))
    w, hgt = 0.03 * z, 0.052 * z
    prims = [_rect(-w, -hgt, w, hgt, c), _rect(-w * 0.7, -hgt * 0.75, w * 0.7, hgt * 0.7, (120, 200, 240))]
    return _Obj(PHONE, prims, {"center": (0, 0), "base": (0, hgt), "grip": (-w, 0.0)})


def _book(R, z, state):
    """A closed book; state == "open": open pages facing the viewer."""
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
    return _Obj(BOOK, prims, {"center": (0, 0), "base": (0, hgt), "grip": (-w, 0.0)})


# Shape function of every object class (person aside: people are `people._Person`).
_SHAPES = {HORSE: _horse, DOG: _dog, BIRD: _bird, BICYCLE: _bicycle, BENCH: _bench, CHAIR: _chair,
           UMBRELLA: _umbrella, BALL: _ball, KITE: _kite, SKATEBOARD: _skateboard, BOTTLE: _bottle, CUP: _cup,
           APPLE: _apple, PHONE: _phone, BOOK: _book}


def _make_object(R, cls, state=""):
    """A random instance of object class `cls` (size, colours, texture); `state` selects a variant
    (bird: "fly"; umbrella: "open" held, "planted", "closed"; skateboard: "vertical"; kite: "ground";
    book: "open"; chair: "upside"; bench: "long")."""
    z = _u(R, 0.9, 1.1)
    if cls in (BALL, CUP, APPLE, PHONE, BOOK, BOTTLE, BIRD):
        z *= 1.35  # hand-sized things drawn larger than life so that they keep a few pixels at 64 px
    shape = _SHAPES.get(cls)
    if shape is None:
        raise ValueError(f"no shape for object class {cls}")
    return shape(R, z, state)


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
