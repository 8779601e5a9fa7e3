"""Cached per-image detections: the one format shared by the real DETR path and the built-in world's simulator.

A cache is one `.npz` file with flat arrays (D detections over N images):

    filenames  (N,)    str      image file names, in the order of the matching annotation file
    offsets    (N+1,)  int64    detections of image i are rows offsets[i]:offsets[i+1]
    boxes      (D, 4)  float32  xyxy, continuous 0-based pixels of the original image
    scores     (D,)    float32  detector confidence in [0, 1]
    labels     (D,)    int64    object class index (0 = person)
    feats      (D, F)  float32  optional per-detection feature vectors (e.g. DETR decoder states, F = 256)
    num_classes ()     int64    size of the label space (for range checks)

`DetectionCache.save` / `DetectionCache.load` round-trip it exactly; `load` checks shapes, ranges and boxes and
raises `DetectionCacheError` naming the file and the first bad entry.
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
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as e:  # zipfile / format errors
            raise DetectionCacheError(f"{path}: not a readable .npz file: {e}") from None
        for key in ("filenames", "offsets", "boxes", "scores", "labels", "num_classes"):
            if key not in z.files:
                raise DetectionCacheError(f"{path}: missing array {key!r}")
        out = cls(
            filenames=[str(s) for s in z["filenames"]], offsets=z["offsets"].astype(np.int64),
            boxes=z["boxes"].astype(np.float32), scores=z["scores"].astype(np.float32),
            labels=z["labels"].astype(np.int64), num_classes=int(z["num_classes"]),
            feats=z["feats"].astype(np.float32) if "feats" in z.files else None, source=str(path),
        )
        out.validate(sizes)
        return out

    def validate(self, sizes: np.ndarray | None = None) -> None:
        src, n = self.source, self.num_images
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any():
            raise DetectionCacheError(f"{src}: offsets must be non-decreasing, start at 0 and have {n + 1} entries")
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
