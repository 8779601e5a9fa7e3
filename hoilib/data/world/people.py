"""People: an articulated figure (side view) in person-height units, its poses (solved by two-link inverse
kinematics) and its primitives.

A person has a head with a gaze direction, a torso, two-segment arms and legs, and four colours (skin, hair, shirt,
trousers); joints live in the group frame until the scene places the group in the image. Poses: standing and walking
(`_stand`), kneeling, sitting, pushing (`_pusher`); interaction builders set the remaining joints themselves.
"""
from __future__ import annotations

import math

from .raster import _jit, _pick, _shade, _u

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
        xs, ys = zip(*j.values())
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


def _shift_person(p, dx, dy=0.0):
    """Move every joint of p by (dx, dy)."""
    p.j = {k: (x + dx, y + dy) for k, (x, y) in p.j.items()}
    return p


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
