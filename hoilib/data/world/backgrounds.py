"""Backgrounds: sky/ground gradients, smooth noise and clutter shapes, and the scenes of world version 2.

Version 1 draws the sky and the ground colour families independently of everything else. Version 2 draws one of
`N_SCENES` scenes, each a sky family, a ground family and two clutter shapes of its own (e.g. "night sky, snow,
houses and fences"); every verb has a home scene (`HOME_SCENE`), and the scene layer (`scene._pick_scene`) makes
the caption pool show verbs in their home scenes while the HOI splits do not: a context cue that misleads a
whole-image judgement.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .raster import SS, _jit, _pick, _rect, _shade, _u
from .vocabulary import VERBS

# Version 1 colour families (top, bottom of the gradient), drawn independently.
_SKY_COLS = [((120, 170, 230), (190, 220, 245)), ((160, 190, 225), (215, 225, 235)), ((185, 185, 195), (220, 220, 225)),
             ((230, 160, 120), (250, 210, 160)), ((205, 195, 175), (230, 220, 200))]
_GROUND_COLS = [((110, 165, 80), (70, 130, 55)), ((190, 175, 130), (160, 140, 100)), ((150, 150, 150), (110, 110, 115)),
                ((150, 115, 80), (110, 80, 55)), ((125, 160, 105), (85, 125, 75)), ((175, 170, 160), (140, 135, 125))]
CLUTTER_KINDS = ("tree", "house", "rock", "cloud", "fence", "grass")

# Version 2 scenes: 4 skies x 4 grounds, chosen far apart in colour so that a 64 px image shows its scene at a
# glance, each with two clutter shapes of its own.
_SCENE_SKIES = (("day", ((120, 170, 230), (190, 220, 245))), ("overcast", ((175, 175, 185), (215, 215, 220))),
                ("sunset", ((230, 150, 110), (250, 210, 150))), ("night", ((25, 35, 75), (65, 75, 125))))
_SCENE_GROUNDS = (("grass", ((110, 165, 80), (70, 130, 55))), ("sand", ((225, 205, 145), (195, 175, 115))),
                  ("asphalt", ((115, 115, 120), (80, 80, 85))), ("snow", ((235, 238, 245), (200, 205, 218))))
_SCENE_CLUTTER = ((0, 3), (1, 4), (2, 5), (0, 1), (3, 4), (0, 2), (1, 5), (2, 4), (3, 5), (1, 2), (0, 4), (4, 5),
                  (2, 3), (0, 5), (1, 3), (0, 3))
# scene k: (name, (sky top, bottom), (ground top, bottom), clutter kinds)
SCENES = tuple((f"{_SCENE_SKIES[k // 4][0]} {_SCENE_GROUNDS[k % 4][0]} "
                f"{'+'.join(CLUTTER_KINDS[c] for c in _SCENE_CLUTTER[k])}",
                _SCENE_SKIES[k // 4][1], _SCENE_GROUNDS[k % 4][1], _SCENE_CLUTTER[k]) for k in range(16))
N_SCENES = len(SCENES)
HOME_SCENE = tuple(range(len(VERBS)))  # verb v's home scene (one scene per verb)


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


def _background(R, ras, S, clutter, scene=None):
    """Sky/ground gradient, textured noise, and clutter shapes (trees, houses, rocks, clouds, fences, grass).

    scene: None (version 1: colour families and shapes drawn independently) or an index into SCENES (its
    colour families and its two clutter shapes). Returns the horizon height in pixels."""
    hz = _u(R, 0.3, 0.5) * S
    if scene is None:
        sky, ground, kinds = _pick(R, _SKY_COLS), _pick(R, _GROUND_COLS), None
    else:
        _, sky, ground, kinds = SCENES[scene]
    _gradient(R, ras, S, hz, sky, ground, clutter)
    # version 2 draws a third as many shapes: its crowds clutter the image already, and its scene shows in the
    # colours (a third of its rendering time went to background shapes)
    n = int(clutter * (_u(R, 2, 8) if scene is None else _u(R, 0.5, 3)) + 0.5)
    for _ in range(n):
        kind = int(R.random() * 6) if kinds is None else _pick(R, kinds)
        _clutter_shape(R, ras, S, hz, kind, _u(R, 0, S))
    return hz


@lru_cache(maxsize=4)
def _row_centres(n: int) -> np.ndarray:
    """[n] float32 centres of the canvas rows in output pixels."""
    return (np.arange(n, dtype=np.float32) + 0.5) / SS


def _gradient(R, ras, S, hz, sky, ground, clutter):
    """Fill the canvas with the sky and ground gradients (colours jittered) plus a crop of the noise bank."""
    N = ras.N
    # (r, g, b, 0): the canvas has a fourth, unused byte per pixel, and whole pixels are faster to write
    st, sb, gt, gb = (np.array(_jit(R, c, 12) + (0,), np.float32) for c in (*sky, *ground))
    rows = _row_centres(N)
    a = np.minimum(np.maximum(rows / max(hz, 1.0), 0), 1)[:, None]  # (np.clip, with more overhead)
    b = np.minimum(np.maximum((rows - hz) / max(S - hz, 1.0), 0), 1)[:, None]
    col = np.where(rows[:, None] < hz, st * (1 - a) + sb * a, gt * (1 - b) + gb * b).astype(np.int16)
    if clutter > 0:
        bank = _noise_bank(N, float(clutter))
        k, oy, ox = int(R.random() * 8), int(R.random() * 32), int(R.random() * 32)
        noise, img = bank[k, oy:oy + N, ox:ox + N, 0], ras.scratch
        for c in range(3):  # channel by channel: one add broadcast over the trailing axis is twice as slow
            np.add(col[:, c, None], noise, out=img[..., c])
        np.clip(img, 0, 255, out=img)
        ras.img[:] = img
    else:
        ras.img[:] = col[:, None, :]


def _clutter_shape(R, ras, S, hz, kind, x):
    """One clutter shape of CLUTTER_KINDS[kind] at x (horizon at hz)."""
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
