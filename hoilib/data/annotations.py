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
import math
from dataclasses import dataclass, field
from itertools import chain
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
        empty: ascending positions of images without pairs (the file's list, checked; derived when absent).
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
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, huge integers; nesting too deep
            raise AnnotationError(f"{path}: malformed JSON: {e}") from None
        return cls.from_dict(d, source=str(path), validate=validate)

    @classmethod
    def from_dict(cls, d: dict, source: str = "<memory>", validate: bool = True) -> "HOIAnnotations":
        """Build from the parsed content of an `instances_*.json` file (JSON types: dict, list, str, int, float).

        Nothing is coerced: class indices and image sizes must be JSON integers (7.0 and "7" are errors), box
        coordinates finite numbers, file names distinct non-empty strings, and `empty` (optional) exactly the
        ascending positions of the images without pairs. Any other content raises AnnotationError naming `source`
        and the entry. `validate` then checks class ranges, consistency and box geometry (`validate`).
        """
        return _Reader(d, source).read(cls, validate)

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
        corr = self.correspondence
        if C and not np.array_equal(np.sort(corr[:, 0]), np.arange(C)):
            # C rows that are not a permutation of 0..C-1: an index outside the range or a repeat.
            bad = np.flatnonzero((corr[:, 0] < 0) | (corr[:, 0] >= C))
            if bad.size:
                r = int(bad[0])
                what = f"HOI class {int(corr[r, 0])} outside [0, {C})"
            else:
                _, first = np.unique(corr[:, 0], return_index=True)
                r = int(np.setdiff1d(np.arange(C), first)[0])
                what = f"HOI class {int(corr[r, 0])} repeats correspondence[{int(np.argmax(corr[:, 0] == corr[r, 0]))}]"
            raise AnnotationError(f"{self.source}: correspondence[{r}] = {corr[r].tolist()}: {what}; the table must "
                                  f"list HOI classes 0..{C - 1} once each")
        for col, name, hi in ((1, "object", O), (2, "verb", V)):
            bad = np.flatnonzero((corr[:, col] < 0) | (corr[:, col] >= hi))
            if bad.size:
                r = int(bad[0])
                raise AnnotationError(f"{self.source}: correspondence[{r}] = {corr[r].tolist()}: {name} index "
                                      f"{int(corr[r, col])} out of range [0, {hi})")
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


# ---- strict reading of the file's content ------------------------------------------------------------------------
# The valid path checks whole columns at once (the set of leaf types, then numpy); only a column that fails is
# walked entry by entry, to name the first bad one. Both use the same rules, so the walk always finds it.
_TOP_KEYS = ("filenames", "size", "annotation", "objects", "verbs", "correspondence")


def _show(x) -> str:
    """A JSON value for messages, with its type: `245.7 (float)`, `'7' (str)`; long values are cut."""
    r = repr(x)
    return f"{r if len(r) <= 60 else r[:57] + '...'} ({type(x).__name__})"


def _index_problem(x) -> str | None:
    """Why x is not a JSON integer that fits int64, or None. bool (an int subclass) and 7.0 are not integers."""
    if type(x) is not int:
        return f"{_show(x)} is not an integer"
    if not -(1 << 63) <= x < (1 << 63):
        return f"{x} does not fit in 64 bits"
    return None


def _number_problem(x) -> str | None:
    """Why x is not a finite JSON number (int or float), or None."""
    if type(x) is float:
        return None if math.isfinite(x) else f"{x} is not a finite number"
    if type(x) is int:
        try:
            float(x)
        except OverflowError:
            return f"{x} is too large for a float64"
        return None
    return f"{_show(x)} is not a number"


def _row_problem(fields: tuple, leaf):
    """Problem function for a list of len(fields) values, each checked by `leaf` (e.g. a box, fields x1..y2)."""
    shape = f"[{', '.join(fields)}]"

    def problem(v) -> str | None:
        if type(v) is not list or len(v) != len(fields):
            return f"{_show(v)} is not a list {shape}"
        for name, x in zip(fields, v):
            p = leaf(x)
            if p:
                return f"{name}: {p}"
        return None
    return problem


def _fast_array(values: list, width: int, dtype) -> np.ndarray | None:
    """values as an [n] (width 0) or [n, width] array, or None when any entry is off: a non-list row, a row of
    another length, a leaf that is not an int (int64) / int or float (float64), an overflow, a non-finite float."""
    if width:
        if not (set(map(type, values)) <= {list} and set(map(len, values)) <= {width}):
            return None
        values = list(chain.from_iterable(values))  # a flat list converts about twice as fast as nested ones
    if not set(map(type, values)) <= ({int} if dtype is np.int64 else {int, float}):
        return None
    try:
        a = np.asarray(values, dtype)
    except OverflowError:
        return None
    if width:
        a = a.reshape(-1, width)  # [n, width], also for n = 0
    if dtype is np.float64 and not np.isfinite(a).all():
        return None
    return a


class _Reader:
    """Strict reader of a parsed `instances_*.json` (see `HOIAnnotations.from_dict`)."""

    def __init__(self, d, source: str):
        self.d, self.src = d, source
        self.names: list = []

    def fail(self, where: str, what: str):
        raise AnnotationError(f"{self.src}: {where}: {what}")

    def image(self, i: int) -> str:
        return f"annotation[{i}] ({self.names[i]})"

    def top_list(self, key: str, n: int | None = None) -> list:
        v = self.d[key]
        if type(v) is not list:
            self.fail(repr(key), f"must be a list, got {_show(v)}")
        if n is not None and len(v) != n:
            raise AnnotationError(f"{self.src}: {key!r} has {len(v)} entries but 'filenames' has {n}")
        return v

    def column(self, values: list, width: int, dtype, entries, problem) -> np.ndarray:
        """`_fast_array(values)`, or AnnotationError at the first (where, value) of `entries()` with a problem."""
        a = _fast_array(values, width, dtype)
        if a is not None:
            return a
        for where, v in entries():
            p = problem(v)
            if p:
                self.fail(where, p)
        raise AnnotationError(f"{self.src}: unreadable values")  # unreachable: the walk applies the same rules

    def strings(self, key: str, unique: bool = False) -> list:
        v = self.top_list(key)
        if set(map(type, v)) <= {str} and (not unique or ("" not in v and len(set(v)) == len(v))):
            return list(v)
        seen: dict = {}
        for i, x in enumerate(v):
            if type(x) is not str:
                self.fail(f"{key}[{i}]", f"{_show(x)} is not a string")
            if unique and not x:
                self.fail(f"{key}[{i}]", "empty file name")
            if unique and x in seen:
                self.fail(f"{key}[{i}]", f"{x!r} repeats {key}[{seen[x]}]")
            seen[x] = i
        raise AnnotationError(f"{self.src}: {key!r} unreadable")  # unreachable

    def read(self, cls, validate: bool) -> "HOIAnnotations":
        d, src = self.d, self.src
        if not isinstance(d, dict):
            raise AnnotationError(f"{src}: top level must be a JSON object, got {type(d).__name__}")
        for key in _TOP_KEYS:
            if key not in d:
                raise AnnotationError(f"{src}: missing key {key!r}")
        self.names = names = self.strings("filenames", unique=True)
        n = len(names)
        size_list, anns = self.top_list("size", n), self.top_list("annotation", n)
        objects, verbs = self.strings("objects"), self.strings("verbs")
        corr_list = self.top_list("correspondence")

        sizes = self.column(size_list, 2, np.int64, lambda: ((f"size[{i}] ({names[i]})", v)
                                                             for i, v in enumerate(size_list)),
                            _row_problem(("width", "height"), _index_problem))
        bad = np.flatnonzero((sizes <= 0).any(1))
        if bad.size:
            i = int(bad[0])
            self.fail(f"size[{i}] ({names[i]})", f"{sizes[i].tolist()} must be a positive [width, height]")
        corr = self.column(corr_list, 3, np.int64, lambda: ((f"correspondence[{k}]", v)
                                                            for k, v in enumerate(corr_list)),
                           _row_problem(("hoi", "object", "verb"), _index_problem))

        try:
            per_image = {k: [a[k] for a in anns] for k in PAIR_KEYS}  # [n] lists per key
        except (KeyError, TypeError):  # a missing key, or an entry that is not a JSON object
            per_image = None
        lists = per_image is not None and all(set(map(type, v)) <= {list} for v in per_image.values())
        counts = list(map(len, per_image["hoi"])) if lists else None
        if not lists or any(list(map(len, per_image[k])) != counts for k in PAIR_KEYS):
            self.structure_problem(anns)
        cols = {k: list(chain.from_iterable(v)) for k, v in per_image.items()}

        def pairs(key):  # (where, value) of every pair's entry under `key`, for the entry-by-entry walk
            return lambda: ((f"{self.image(i)}: {key}[{j}]", v) for i, a in enumerate(anns)
                            for j, v in enumerate(a[key]))

        box = _row_problem(("x1", "y1", "x2", "y2"), _number_problem)
        arrays = {k: self.column(cols[k], 4, np.float64, pairs(k), box) for k in ("boxes_h", "boxes_o")}
        for k in ("hoi", "object", "verb"):
            arrays[k] = self.column(cols[k], 0, np.int64, pairs(k), _index_problem)
        counts = np.asarray(counts, np.int64)
        empty = np.flatnonzero(counts == 0).tolist()
        if "empty" in d:
            self.check_empty(self.top_list("empty"), empty, counts)
        out = cls(filenames=names, sizes=sizes, image_index=np.repeat(np.arange(n, dtype=np.int64), counts),
                  verbs=verbs, objects=objects, correspondence=corr, empty=empty, source=src, **arrays)
        if validate:
            out.validate()
        return out

    def structure_problem(self, anns: list) -> None:
        """Raise for the first `annotation` entry that is not {key: list} with lists as long as 'hoi'."""
        for i, ann in enumerate(anns):
            if type(ann) is not dict or any(k not in ann for k in PAIR_KEYS):
                raise AnnotationError(f"{self.src}: {self.image(i)} must have keys {PAIR_KEYS}, got {_show(ann)}")
            for k in PAIR_KEYS:
                if type(ann[k]) is not list:
                    self.fail(self.image(i), f"{k!r} must be a list, got {_show(ann[k])}")
            for k in PAIR_KEYS:
                if len(ann[k]) != len(ann["hoi"]):
                    self.fail(self.image(i), f"{k!r} has {len(ann[k])} entries, 'hoi' has {len(ann['hoi'])}")
        raise AnnotationError(f"{self.src}: 'annotation' unreadable")  # unreachable

    def check_empty(self, listed: list, want: list, counts: np.ndarray) -> None:
        """`listed` (the file's `empty`) must be exactly `want`, the ascending positions of the pair-less images."""
        n = len(counts)
        for j, v in enumerate(listed):
            p = _index_problem(v)
            if p:
                self.fail(f"empty[{j}]", p)
            if not 0 <= v < n:
                self.fail(f"empty[{j}]", f"{v} is not an image position [0, {n})")
            if counts[v]:
                self.fail(f"empty[{j}]", f"{self.image(v)} has {int(counts[v])} pairs")
        if listed != want:
            missing = sorted(set(want) - set(listed))
            if missing:
                self.fail(self.image(missing[0]), "has no pairs but is not listed in 'empty'")
            j = next((j for j, (a, b) in enumerate(zip(listed, want)) if a != b), len(want))
            self.fail(f"empty[{j}]", f"{listed[j]} is repeated or out of order ('empty' lists positions ascending, "
                                     f"each once)")
