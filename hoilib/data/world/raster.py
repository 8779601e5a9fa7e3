"""The rasteriser: numpy primitives on small windows of a supersampled canvas, primitive-list helpers, and the
small random helpers every drawing function uses."""
from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np

# Shapes are drawn at SS x the output resolution and box-filtered down, which anti-aliases thin limbs cheaply.
SS = 2
# Primitive tuples (image or local coordinates; widths and radii in the same unit):
#   ("c", x, y, r, paint) circle      ("e", x, y, rx, ry, angle, paint) ellipse     ("g", x, y, r0, r1, paint) ring
#   ("s", x0, y0, x1, y1, w, paint) thick segment with round caps   ("l", points, w, paint) thick polyline
#   ("p", points, paint) convex polygon
# paint = (r, g, b) or ("t", rgb_a, rgb_b, pattern): rgb_b where the canvas-fixed texture pattern is set.
N_PATTERNS = 7


class _Raster:
    """A supersampled uint8 canvas with vectorised primitives; coordinates are output pixels (continuous).

    img: [N, N, 4] uint8 (R, G, B, unused); primitives paint it through rgba, a [N, N] uint32 view of the same
    memory, one packed word per pixel (a masked fill of one word is half the cost of three bytes). scratch:
    [N, N, 4] int16 working space of the background (its fourth channel stays 0)."""

    def __init__(self, size: int):
        self.S, self.N = size, size * SS
        c = ((np.arange(self.N) + 0.5) / SS).astype(np.float32)
        self.cx, self.cy = c[None, :], c[:, None]
        self.img = np.zeros((self.N, self.N, 4), np.uint8)
        self.rgba = self.img.view(np.uint32)[..., 0]
        self.scratch = np.zeros((self.N, self.N, 4), np.int16)
        self.patterns = _patterns(self.N)

    def _win(self, x0, y0, x1, y1):
        i0, i1 = max(0, int(x0 * SS)), min(self.N, int(x1 * SS) + 2)
        j0, j1 = max(0, int(y0 * SS)), min(self.N, int(y1 * SS) + 2)
        if i1 <= i0 or j1 <= j0:
            return None
        return j0, j1, i0, i1

    def _fill(self, w, mask, paint):
        j0, j1, i0, i1 = w
        view = self.rgba[j0:j1, i0:i1]
        if len(paint) == 3:
            view[mask] = _packed(paint)
        else:
            pat = self.patterns[paint[3], j0:j1, i0:i1]
            view[mask & ~pat] = _packed(paint[1])
            view[mask & pat] = _packed(paint[2])

    def draw(self, p):
        k = p[0]
        if k == "c":
            _, x, y, r, paint = p
            w = self._win(x - r, y - r, x + r, y + r)
            if w:
                dx, dy = self.cx[:, w[2]:w[3]] - x, self.cy[w[0]:w[1]] - y
                self._fill(w, dx * dx + dy * dy <= r * r, paint)
        elif k == "s":  # one segment, the commonest primitive: `_segments` without its loop
            _, x0, y0, x1, y1, wd, paint = p
            h = wd / 2
            w = self._win((x1 if x1 < x0 else x0) - h, (y1 if y1 < y0 else y0) - h, (x1 if x1 > x0 else x0) + h,
                          (y1 if y1 > y0 else y0) + h)
            if w:
                d2 = _seg_d2(self.cx[:, w[2]:w[3]], self.cy[w[0]:w[1]], x0, y0, x1, y1)
                self._fill(w, d2 <= h * h, paint)
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
                # inside = on the inner side of every edge (convex polygons), all edges at once: per edge i
                # (bx - ax) * (Y - ay) - (by - ay) * (X - ax), compared with 0 on the side the winding gives
                e = np.array([[xs[i] - xs[i - 1] for i in range(len(xs))], [ys[i - 1] for i in range(len(xs))],
                              [ys[i] - ys[i - 1] for i in range(len(xs))], [xs[i - 1] for i in range(len(xs))]],
                             np.float32)[:, :, None, None]  # [4, K, 1, 1]
                cross = e[0] * (Y - e[1]) - e[2] * (X - e[3])  # [K, H, W]
                self._fill(w, ((cross >= 0) if area >= 0 else (cross <= 0)).all(0), paint)
        else:
            raise ValueError(f"unknown primitive {k!r}")

    def _segments(self, pts, wd, paint):
        """A thick polyline through pts (2 or more points) with round joints and caps."""
        h = wd / 2
        xs, ys = zip(*pts)
        w = self._win(min(xs) - h, min(ys) - h, max(xs) + h, max(ys) + h)
        if w:
            X, Y = self.cx[:, w[2]:w[3]], self.cy[w[0]:w[1]]
            d2 = _seg_d2(X, Y, xs[0], ys[0], xs[1], ys[1]) if len(pts) == 2 else _polyline_d2(xs, ys, X, Y)
            self._fill(w, d2 <= h * h, paint)

    def result(self) -> np.ndarray:
        """[S, S, 3] uint8: the SS x SS box-filtered canvas (rounded mean; summed rows first, then columns)."""
        a = self.img.reshape(self.S, SS, self.S * SS * 4)
        rows = a[:, 0].astype(np.uint16)
        for dj in range(1, SS):
            rows += a[:, dj]
        rows = rows.reshape(self.S, self.S, SS, 4)
        acc = rows[:, :, 0, :3].copy()
        for di in range(1, SS):
            acc += rows[:, :, di, :3]
        acc += SS * SS // 2
        acc //= SS * SS
        return acc.astype(np.uint8)


def _packed_little(c):
    return c[0] | c[1] << 8 | c[2] << 16


def _packed_big(c):
    return c[0] << 24 | c[1] << 16 | c[2] << 8


# an (r, g, b) colour as the uint32 word whose bytes in memory are r, g, b, 0
_packed = _packed_little if sys.byteorder == "little" else _packed_big


def _seg_d2(X, Y, ax, ay, bx, by):
    """[H, W] float32 squared distance from the pixel centres (X [1, W], Y [H, 1]) to the segment a-b."""
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    Xa, Ya = X - ax, Y - ay
    if L2 < 1e-12:
        return Xa * Xa + Ya * Ya
    t = Xa * (dx / L2) + Ya * (dy / L2)  # position along the segment, clipped to its ends below
    np.maximum(t, 0.0, out=t)
    np.minimum(t, 1.0, out=t)
    px, py = Xa - t * dx, Ya - t * dy
    return px * px + py * py


def _polyline_d2(xs, ys, X, Y):
    """[H, W] squared distance to the polyline through (xs, ys): `_seg_d2` of all its segments at once (fewer numpy
    calls), minimised. The float32 operations are those of `_seg_d2`, each Python scalar rounded to float32 as
    numpy does, so the distances are the same bits."""
    flat = []  # per segment: start x, y, dx / L2, dy / L2, dx, dy
    for i in range(1, len(xs)):
        ax, ay = xs[i - 1], ys[i - 1]
        dx, dy = xs[i] - ax, ys[i] - ay
        L2 = dx * dx + dy * dy
        # a point segment: zero coefficients give t = 0, hence the distance to its start, as in `_seg_d2`
        flat += (ax, ay, dx / L2, dy / L2, dx, dy) if L2 >= 1e-12 else (ax, ay, 0.0, 0.0, dx, dy)
    c = np.array(flat, np.float32).reshape(-1, 6, 1, 1)  # [K, 6, 1, 1]
    Xa, Ya = X - c[:, 0], Y - c[:, 1]  # [K, 1, W], [K, H, 1]
    t = Xa * c[:, 2] + Ya * c[:, 3]
    np.maximum(t, 0.0, out=t)
    np.minimum(t, 1.0, out=t)
    px, py = Xa - t * c[:, 4], Ya - t * c[:, 5]
    d2 = px * px
    d2 += py * py
    best = np.minimum(d2[0], d2[1])  # (pairwise minima: a reduction costs more for 2-3 segments)
    for k in range(2, len(d2)):
        np.minimum(best, d2[k], out=best)
    return best


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
    if not prims:
        return [math.inf, math.inf, -math.inf, -math.inf]
    ext = []
    for p in prims:
        k = p[0]
        if k == "c":
            a0, b0, a1, b1 = p[1] - p[3], p[2] - p[3], p[1] + p[3], p[2] + p[3]
        elif k == "s":  # (conditional expressions pick what min() / max() of two would, without the calls)
            h, xa, ya, xb, yb = p[5] / 2, p[1], p[2], p[3], p[4]
            a0, a1 = (xb if xb < xa else xa) - h, (xb if xb > xa else xa) + h
            b0, b1 = (yb if yb < ya else ya) - h, (yb if yb > ya else ya) + h
        elif k == "l":
            h = p[2] / 2
            xs, ys = zip(*p[1])
            a0, a1, b0, b1 = min(xs) - h, max(xs) + h, min(ys) - h, max(ys) + h
        elif k == "p":
            xs, ys = zip(*p[1])
            a0, a1, b0, b1 = min(xs), max(xs), min(ys), max(ys)
        elif k == "e":
            ca, sa = math.cos(p[5]), math.sin(p[5])
            hx, hy = math.hypot(p[3] * ca, p[4] * sa), math.hypot(p[3] * sa, p[4] * ca)
            a0, a1, b0, b1 = p[1] - hx, p[1] + hx, p[2] - hy, p[2] + hy
        elif k == "g":
            a0, b0, a1, b1 = p[1] - p[4], p[2] - p[4], p[1] + p[4], p[2] + p[4]
        else:
            raise ValueError(k)
        ext.append((a0, b0, a1, b1))
    x0, y0, x1, y1 = zip(*ext)
    return [min(x0), min(y0), max(x1), max(y1)]


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
    return _clip_rgb(c[0] * f, c[1] * f, c[2] * f)


def _clip_rgb(r, g, b):
    """(r, g, b) truncated to ints in [0, 255] (int(min(255, max(0, v))) per channel, without the calls)."""
    return (255 if r >= 255 else 0 if r <= 0 else int(r), 255 if g >= 255 else 0 if g <= 0 else int(g),
            255 if b >= 255 else 0 if b <= 0 else int(b))


# Random helpers: Python's Mersenne Twister (a few scalar draws per shape, much faster than numpy's Generator).
def _u(R, a, b):
    return a + (b - a) * R.random()


def _pick(R, seq):
    return seq[int(R.random() * len(seq))]


def _jit(R, c, amount=18):
    """A colour with a little random variation, so that no two instances are identical."""
    r = c[0] + (R.random() - 0.5) * 2 * amount
    g = c[1] + (R.random() - 0.5) * 2 * amount
    return _clip_rgb(r, g, c[2] + (R.random() - 0.5) * 2 * amount)
