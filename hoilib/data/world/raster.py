"""The rasteriser: numpy primitives on small windows of a supersampled canvas, primitive-list helpers, and the
small random helpers every drawing function uses."""
from __future__ import annotations

import math
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


# Random helpers: Python's Mersenne Twister (a few scalar draws per shape, much faster than numpy's Generator).
def _u(R, a, b):
    return a + (b - a) * R.random()


def _pick(R, seq):
    return seq[int(R.random() * len(seq))]


def _jit(R, c, amount=18):
    """A colour with a little random variation, so that no two instances are identical."""
    return tuple(int(min(255, max(0, v + (R.random() - 0.5) * 2 * amount))) for v in c)
