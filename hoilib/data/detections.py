"""Cached per-image detections: the one format shared by the real DETR path and the built-in world's simulator.

A cache is one `.npz` file with flat arrays (D detections over N images):

    filenames  (N,)    str      image file names, in the order of the matching annotation file
    offsets    (N+1,)  int64    detections of image i are rows offsets[i]:offsets[i+1]
    boxes      (D, 4)  float32  xyxy, continuous 0-based pixels of the original image
    scores     (D,)    float32  detector confidence in [0, 1]
    labels     (D,)    int64    object class index (0 = person)
    feats      (D, F)  float32  optional per-detection feature vectors (e.g. DETR decoder states, F = 256)
    num_classes ()     int64    size of the label space (for range checks)

`DetectionCache.save` / `DetectionCache.load` round-trip it exactly; `load` checks dtypes, shapes, ranges and boxes
and raises `DetectionCacheError` naming the file and the first bad entry. It converts nothing that would change a
value: integer arrays may have any integer dtype and float arrays any float dtype whose values are all exactly float32
(float labels, object or bytes file names, a num_classes of 80.0 are errors).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DetectionCacheError(ValueError):
    """A malformed detection cache; the message names the file and the offending entry."""


@dataclass
class Detections:
    """Detections of one image: boxes [K, 4] xyxy pixels, scores [K], labels [K], feats [K, F] or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    feats: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class DetectionCache:
    filenames: list
    offsets: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    num_classes: int
    feats: np.ndarray | None = None
    source: str = "<memory>"

    @property
    def num_images(self) -> int:
        return len(self.filenames)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, i: int) -> Detections:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return Detections(self.boxes[lo:hi], self.scores[lo:hi], self.labels[lo:hi],
                          None if self.feats is None else self.feats[lo:hi])

    @classmethod
    def from_list(cls, filenames: list, dets: list, num_classes: int) -> "DetectionCache":
        """Build a cache from one `Detections` per image (in `filenames` order)."""
        if len(filenames) != len(dets):
            raise ValueError(f"{len(filenames)} filenames but {len(dets)} detection sets")
        counts = np.array([len(d) for d in dets], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        has_feats = [d.feats is not None for d in dets]
        if any(has_feats) and not all(has_feats):
            raise ValueError("either every image has feature vectors or none does")
        cat = lambda xs, shape, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt)  # noqa: E731
        feats = None
        if dets and all(has_feats):
            # Images without detections carry no feature width ((0, F) cannot be reshaped from size 0): skip them.
            fs = [np.asarray(d.feats).reshape(len(d), -1) for d in dets if len(d)]
            dim = max((np.asarray(d.feats).shape[-1] for d in dets if np.asarray(d.feats).ndim == 2), default=0)
            feats = cat(fs, (0, dim), np.float32)
        out = cls(
            filenames=list(filenames), offsets=offsets,
            boxes=cat([np.asarray(d.boxes).reshape(-1, 4) for d in dets], (0, 4), np.float32),
            scores=cat([np.asarray(d.scores).reshape(-1) for d in dets], (0,), np.float32),
            labels=cat([np.asarray(d.labels).reshape(-1) for d in dets], (0,), np.int64),
            num_classes=int(num_classes), feats=feats,
        )
        out.validate()
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(filenames=np.asarray(self.filenames, dtype=str), offsets=self.offsets, boxes=self.boxes,
                      scores=self.scores, labels=self.labels, num_classes=np.int64(self.num_classes))
        if self.feats is not None:
            arrays["feats"] = self.feats
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # atomic: an interrupted write never leaves a half cache behind

    @classmethod
    def load(cls, path: str | Path, sizes: np.ndarray | None = None) -> "DetectionCache":
        """Read and validate a cache. `sizes` [N, 2] (width, height) additionally checks boxes lie in the image."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detection cache not found: {path}")
        z = read_npz(path, DetectionCacheError)
        for key in ("filenames", "offsets", "boxes", "scores", "labels", "num_classes"):
            if key not in z:
                raise DetectionCacheError(f"{path}: missing array {key!r}")
        names = z["filenames"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise DetectionCacheError(f"{path}: filenames must be a 1-D array of str, got dtype {names.dtype} and "
                                      f"shape {names.shape}")
        nc = z["num_classes"]
        if nc.shape != () or nc.dtype.kind not in "iu":
            raise DetectionCacheError(f"{path}: num_classes must be one integer, got dtype {nc.dtype} and shape "
                                      f"{nc.shape}")
        out = cls(
            filenames=names.tolist(), offsets=_exact(z, "offsets", np.int64, path),
            boxes=_exact(z, "boxes", np.float32, path), scores=_exact(z, "scores", np.float32, path),
            labels=_exact(z, "labels", np.int64, path), num_classes=int(nc),
            feats=_exact(z, "feats", np.float32, path) if "feats" in z else None, source=str(path),
        )
        out.validate(sizes)
        return out

    def validate(self, sizes: np.ndarray | None = None) -> None:
        """Check file names, offsets, shapes, scores, labels and boxes (inside `sizes` [N, 2] (width, height) when
        given); raise DetectionCacheError naming the source and the first bad entry."""
        src, n = self.source, self.num_images
        seen: dict = {}
        for i, f in enumerate(self.filenames):
            if not isinstance(f, str) or not f:
                raise DetectionCacheError(f"{src}: filenames[{i}] = {f!r} is not a file name")
            if f in seen:  # images are looked up by name: a repeat would shadow the first one
                raise DetectionCacheError(f"{src}: filenames[{i}] {f!r} repeats filenames[{seen[f]}]")
            seen[f] = i
        if self.num_classes < 0:
            raise DetectionCacheError(f"{src}: num_classes = {self.num_classes} must be >= 0")
        off = self.offsets
        if off.shape != (n + 1,):
            raise DetectionCacheError(f"{src}: offsets has shape {off.shape}, expected ({n + 1},) for {n} images")
        if off[0] != 0:
            raise DetectionCacheError(f"{src}: offsets[0] = {int(off[0])}, expected 0")
        bad = np.flatnonzero(np.diff(off) < 0)
        if bad.size:
            i = int(bad[0])
            raise DetectionCacheError(f"{src}: offsets must be non-decreasing, but offsets[{i + 1}] = "
                                      f"{int(off[i + 1])} < offsets[{i}] = {int(off[i])} (image {i}, "
                                      f"{self.filenames[i]})")
        d = int(self.offsets[-1])
        for name, arr, shape in (("boxes", self.boxes, (d, 4)), ("scores", self.scores, (d,)),
                                 ("labels", self.labels, (d,))):
            if arr.shape != shape:
                raise DetectionCacheError(f"{src}: {name} has shape {arr.shape}, expected {shape}")
        if self.feats is not None and (self.feats.ndim != 2 or self.feats.shape[0] != d):
            raise DetectionCacheError(f"{src}: feats has shape {self.feats.shape}, expected ({d}, F)")
        img = np.repeat(np.arange(n), np.diff(self.offsets))

        def fail(row: int, what: str) -> None:
            i = int(img[row])
            raise DetectionCacheError(f"{src}: image {i} ({self.filenames[i]}), detection {row - int(self.offsets[i])}: "
                                      f"{what}")

        bad = np.flatnonzero(~np.isfinite(self.boxes).all(1) | ~np.isfinite(self.scores))
        if bad.size:
            fail(int(bad[0]), "non-finite box or score")
        bad = np.flatnonzero((self.scores < 0) | (self.scores > 1))
        if bad.size:
            fail(int(bad[0]), f"score {float(self.scores[bad[0]])} outside [0, 1]")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if bad.size:
            fail(int(bad[0]), f"label {int(self.labels[bad[0]])} out of range [0, {self.num_classes})")
        bad = np.flatnonzero((self.boxes[:, 2] < self.boxes[:, 0]) | (self.boxes[:, 3] < self.boxes[:, 1]))
        if bad.size:
            fail(int(bad[0]), f"box {self.boxes[bad[0]].tolist()} has x2 < x1 or y2 < y1")
        if sizes is not None:
            sizes = np.asarray(sizes)
            if len(sizes) != n:
                raise DetectionCacheError(f"{src}: {n} images but {len(sizes)} image sizes were given")
            w, h = sizes[img, 0] + 0.5, sizes[img, 1] + 0.5  # half a pixel of slack for rounding
            bad = np.flatnonzero((self.boxes[:, 0] < -0.5) | (self.boxes[:, 1] < -0.5) | (self.boxes[:, 2] > w)
                                 | (self.boxes[:, 3] > h))
            if bad.size:
                fail(int(bad[0]), f"box {self.boxes[bad[0]].tolist()} lies outside the "
                                  f"{int(sizes[img[bad[0]], 0])}x{int(sizes[img[bad[0]], 1])} image")


def read_npz(path: Path, error: type) -> dict:
    """All arrays of an `.npz` archive, read eagerly with allow_pickle=False: {name: ndarray}.

    Raises `error` (an Exception subclass) naming the file, and the array where one is to blame, for anything else:
    a single `.npy` array, a file that is not a zip, a truncated or corrupted archive, an object (pickled) array, a
    member that is not a `.npy` array.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        raise error(f"{path}: a single .npy array, not an .npz archive of named arrays (write one with np.savez)")
    if head[:2] != b"PK":
        raise error(f"{path}: not an .npz archive (a zip of .npy arrays); the file starts with {head!r}")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # zipfile, zlib, struct and numpy format errors all mean a damaged archive
        raise error(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None
    out = {}
    with z:
        for k in z.files:
            try:
                a = z[k]
            except Exception as e:
                raise error(f"{path}: array {k!r} cannot be read ({type(e).__name__}: {e})") from None
            if not isinstance(a, np.ndarray):  # numpy hands back the raw bytes of a member without the .npy header
                raise error(f"{path}: member {k!r} is not a .npy array")
            out[k] = a
    return out


def _exact(z: dict, key: str, dtype, path: Path) -> np.ndarray:
    """z[key] as int64 (from any integer dtype) or float32 (from any float dtype), refusing any change of value."""
    a = z[key]
    kinds = "iu" if dtype is np.int64 else "f"
    if a.dtype.kind not in kinds:
        raise DetectionCacheError(f"{path}: {key} must hold {'integers' if kinds == 'iu' else 'floats'}, got dtype "
                                  f"{a.dtype}")
    if a.dtype == dtype:
        return a
    out = a.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        changed = out != a if kinds == "iu" else ~((out == a) | (np.isnan(out) & np.isnan(a)))
    if changed.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(changed)[0]), a.shape))
        raise DetectionCacheError(f"{path}: {key}{list(where)} = {a[where]} is not exactly {np.dtype(dtype).name} "
                                  f"(dtype {a.dtype})")
    return out
