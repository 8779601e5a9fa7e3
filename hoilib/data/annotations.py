"""HOI annotations in the HICO-DET `instances_*.json` format, held as flat arrays.

The file format (fredzzhang/hicodet, used by UPT and LAIN): a dict with per-image lists `filenames`, `size`
([width, height]) and `annotation` (dicts of parallel lists `boxes_h`, `boxes_o`, `hoi`, `object`, `verb`), plus
`empty` (positions of images without annotations), `objects`, `verbs` and `correspondence`
([hoi, object, verb] per HOI class). Boxes follow HICO-DET's MATLAB convention: 1-based inclusive pixel indices,
so continuous 0-based xyxy = stored - [1, 1, 0, 0] (`continuous_boxes`). The built-in world writes the same
format and convention, so one reader and one evaluator serve both.

In memory every annotated pair is one row of flat arrays (`image_index`, `boxes_h`, `boxes_o`, `hoi`, `object`,
`verb`), which is what the evaluator and the split code want.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAIR_KEYS = ("boxes_h", "boxes_o", "hoi", "object", "verb")


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the offending entry."""


@dataclass
class HOIAnnotations:
    """All annotated human-object pairs of one split.

    Attributes:
        filenames: N image file names.
        sizes: [N, 2] int64, (width, height) in pixels.
        image_index: [M] int64, image position of each pair.
        boxes_h, boxes_o: [M, 4] float64, xyxy in the file's convention (HICO-DET: 1-based inclusive).
        hoi, object, verb: [M] int64 class indices.
        verbs, objects: class names; correspondence: [C, 3] int64 rows (hoi, object, verb).
        empty: positions of images without annotations (as listed in the file).
        source: where the annotations came from (for error messages).
    """

    filenames: list
    sizes: np.ndarray
    image_index: np.ndarray
    boxes_h: np.ndarray
    boxes_o: np.ndarray
    hoi: np.ndarray
    object: np.ndarray
    verb: np.ndarray
    verbs: list
    objects: list
    correspondence: np.ndarray
    empty: list = field(default_factory=list)
    source: str = "<memory>"

    # ---- sizes ----------------------------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return len(self.filenames)

    @property
    def num_pairs(self) -> int:
        return int(self.hoi.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.correspondence.shape[0])

    @property
    def hoi_to_verb(self) -> np.ndarray:
        """[C] verb index of each HOI class."""
        out = np.empty(self.num_classes, np.int64)
        out[self.correspondence[:, 0]] = self.correspondence[:, 2]
        return out

    @property
    def hoi_to_object(self) -> np.ndarray:
        """[C] object index of each HOI class."""
        out = np.empty(self.num_classes, np.int64)
        out[self.correspondence[:, 0]] = self.correspondence[:, 1]
        return out

    def class_counts(self) -> np.ndarray:
        """[C] number of annotated pairs per HOI class."""
        return np.bincount(self.hoi, minlength=self.num_classes)

    def continuous_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Human and object boxes as continuous 0-based xyxy pixels (stored - [1, 1, 0, 0])."""
        shift = np.array([1.0, 1.0, 0.0, 0.0])
        return self.boxes_h - shift, self.boxes_o - shift

    def pairs_of(self, i: int) -> np.ndarray:
        """Row indices of image i's pairs."""
        lo, hi = np.searchsorted(self.image_index, [i, i + 1])
        if np.all(self.image_index[:-1] <= self.image_index[1:]):
            return np.arange(lo, hi)
        return np.flatnonzero(self.image_index == i)

    def nonempty_images(self) -> np.ndarray:
        """Sorted positions of images with at least one pair."""
        return np.unique(self.image_index)

    # ---- transformations ------------------------------------------------------------------------------
    def select_pairs(self, keep: np.ndarray) -> "HOIAnnotations":
        """A copy holding only the pairs where the boolean mask `keep` [M] is True (all images kept)."""
        keep = np.asarray(keep, bool)
        if keep.shape != (self.num_pairs,):
            raise ValueError(f"mask has shape {keep.shape}, expected ({self.num_pairs},)")
        empty = sorted(set(range(self.num_images)) - set(np.unique(self.image_index[keep]).tolist()))
        return HOIAnnotations(
            filenames=list(self.filenames), sizes=self.sizes.copy(), image_index=self.image_index[keep],
            boxes_h=self.boxes_h[keep], boxes_o=self.boxes_o[keep], hoi=self.hoi[keep], object=self.object[keep],
            verb=self.verb[keep], verbs=list(self.verbs), objects=list(self.objects),
            correspondence=self.correspondence.copy(), empty=empty, source=self.source,
        )

    def select_images(self, images: np.ndarray) -> "HOIAnnotations":
        """A copy holding only the given image positions, renumbered 0..len(images)-1 in the given order."""
        images = np.asarray(images, np.int64)
        remap = np.full(self.num_images, -1, np.int64)
        remap[images] = np.arange(len(images))
        rows = np.flatnonzero(remap[self.image_index] >= 0)
        new_index = remap[self.image_index[rows]]
        order = rows[np.argsort(new_index, kind="stable")]
        new_index = remap[self.image_index[order]]
        nonempty = set(new_index.tolist())
        return HOIAnnotations(
            filenames=[self.filenames[i] for i in images], sizes=self.sizes[images], image_index=new_index,
            boxes_h=self.boxes_h[order], boxes_o=self.boxes_o[order], hoi=self.hoi[order],
            object=self.object[order], verb=self.verb[order], verbs=list(self.verbs),
            objects=list(self.objects), correspondence=self.correspondence.copy(),
            empty=[i for i in range(len(images)) if i not in nonempty], source=self.source,
        )

    # ---- I/O ------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | Path, validate: bool = True) -> "HOIAnnotations":
        """Read an `instances_*.json` file. Raises AnnotationError (naming file and entry) on bad content."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        try:
            with open(path) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}: malformed JSON: {e}") from None
        return cls.from_dict(d, source=str(path), validate=validate)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<memory>", validate: bool = True) -> "HOIAnnotations":
        if not isinstance(d, dict):
            raise AnnotationError(f"{source}: top level must be a JSON object, got {type(d).__name__}")
        for key in ("filenames", "size", "annotation", "objects", "verbs", "correspondence"):
            if key not in d:
                raise AnnotationError(f"{source}: missing key {key!r}")
        n = len(d["filenames"])
        for key in ("size", "annotation"):
            if len(d[key]) != n:
                raise AnnotationError(f"{source}: {key!r} has {len(d[key])} entries but 'filenames' has {n}")
        cols = {k: [] for k in PAIR_KEYS}
        image_index = []
        for i, ann in enumerate(d["annotation"]):
            if not isinstance(ann, dict) or any(k not in ann for k in PAIR_KEYS):
                raise AnnotationError(f"{source}: annotation[{i}] ({d['filenames'][i]}) must have keys {PAIR_KEYS}")
            m = len(ann["hoi"])
            for k in PAIR_KEYS:
                if len(ann[k]) != m:
                    raise AnnotationError(
                        f"{source}: annotation[{i}] ({d['filenames'][i]}): {k!r} has {len(ann[k])} entries, "
                        f"'hoi' has {m}")
                cols[k].extend(ann[k])
            image_index.extend([i] * m)
        try:
            boxes_h = np.asarray(cols["boxes_h"], np.float64).reshape(-1, 4)
            boxes_o = np.asarray(cols["boxes_o"], np.float64).reshape(-1, 4)
            sizes = np.asarray(d["size"], np.int64).reshape(n, 2)
            corr = np.asarray(d["correspondence"], np.int64).reshape(-1, 3)
        except (ValueError, TypeError) as e:
            raise AnnotationError(f"{source}: boxes, sizes and correspondence must be numeric lists of 4/2/3: {e}") \
                from None
        out = cls(
            filenames=list(d["filenames"]), sizes=sizes, image_index=np.asarray(image_index, np.int64),
            boxes_h=boxes_h, boxes_o=boxes_o, hoi=np.asarray(cols["hoi"], np.int64),
            object=np.asarray(cols["object"], np.int64), verb=np.asarray(cols["verb"], np.int64),
            verbs=list(d["verbs"]), objects=list(d["objects"]), correspondence=corr,
            empty=list(d.get("empty", [])), source=source,
        )
        if validate:
            out.validate()
        return out

    def to_dict(self) -> dict:
        ann = [{k: [] for k in PAIR_KEYS} for _ in range(self.num_images)]
        for r in range(self.num_pairs):
            a = ann[int(self.image_index[r])]
            a["boxes_h"].append([float(v) for v in self.boxes_h[r]])
            a["boxes_o"].append([float(v) for v in self.boxes_o[r]])
            a["hoi"].append(int(self.hoi[r]))
            a["object"].append(int(self.object[r]))
            a["verb"].append(int(self.verb[r]))
        nonempty = set(self.image_index.tolist())
        return {
            "filenames": list(self.filenames), "size": self.sizes.tolist(), "annotation": ann,
            "empty": [i for i in range(self.num_images) if i not in nonempty],
            "objects": list(self.objects), "verbs": list(self.verbs), "correspondence": self.correspondence.tolist(),
        }

    def to_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    # ---- checks ---------------------------------------------------------------------------------------
    def _where(self, row: int) -> str:
        i = int(self.image_index[row])
        return f"{self.source}: image {i} ({self.filenames[i]}), pair {row - int(self.pairs_of(i)[0])}"

    def validate(self) -> None:
        """Check class ranges, HOI/object/verb consistency and box geometry; raise AnnotationError naming the entry."""
        C, V, O = self.num_classes, len(self.verbs), len(self.objects)
        if C and not np.array_equal(np.sort(self.correspondence[:, 0]), np.arange(C)):
            raise AnnotationError(f"{self.source}: correspondence must list HOI classes 0..{C - 1} once each")
        if C and ((self.correspondence[:, 1] < 0).any() or (self.correspondence[:, 1] >= O).any()
                  or (self.correspondence[:, 2] < 0).any() or (self.correspondence[:, 2] >= V).any()):
            raise AnnotationError(f"{self.source}: correspondence has an object or verb index out of range")
        for name, arr, hi in (("hoi", self.hoi, C), ("object", self.object, O), ("verb", self.verb, V)):
            bad = np.flatnonzero((arr < 0) | (arr >= hi))
            if bad.size:
                r = int(bad[0])
                raise AnnotationError(f"{self._where(r)}: {name} index {int(arr[r])} out of range [0, {hi})")
        if self.num_pairs:
            bad = np.flatnonzero((self.hoi_to_object[self.hoi] != self.object) | (self.hoi_to_verb[self.hoi] != self.verb))
            if bad.size:
                r = int(bad[0])
                raise AnnotationError(
                    f"{self._where(r)}: hoi {int(self.hoi[r])} is (object {int(self.hoi_to_object[self.hoi[r]])}, "
                    f"verb {int(self.hoi_to_verb[self.hoi[r]])}) but the pair says object {int(self.object[r])}, "
                    f"verb {int(self.verb[r])}")
        w = self.sizes[self.image_index, 0].astype(np.float64)
        h = self.sizes[self.image_index, 1].astype(np.float64)
        for name, b in (("boxes_h", self.boxes_h), ("boxes_o", self.boxes_o)):
            if not np.isfinite(b).all():
                r = int(np.flatnonzero(~np.isfinite(b).all(1))[0])
                raise AnnotationError(f"{self._where(r)}: {name} has a non-finite coordinate {b[r].tolist()}")
            bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
            if bad.size:
                r = int(bad[0])
                raise AnnotationError(f"{self._where(r)}: {name} {b[r].tolist()} has x2 < x1 or y2 < y1")
            # 1-based inclusive pixel indices: 1 <= x1, x2 <= width (same for y).
            bad = np.flatnonzero((b[:, 0] < 1) | (b[:, 1] < 1) | (b[:, 2] > w) | (b[:, 3] > h))
            if bad.size:
                r = int(bad[0])
                raise AnnotationError(
                    f"{self._where(r)}: {name} {b[r].tolist()} lies outside the image "
                    f"({int(w[r])}x{int(h[r])}, 1-based pixel indices)")
