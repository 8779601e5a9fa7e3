"""Fuzzing the annotation reader with mutations of a subset of the real HICO-DET test annotations.

Property: a mutated file either loads into exactly what it says (same values and JSON types; no coercion) or raises
AnnotationError whose message starts with the file name and names the entry; no other exception escapes.
"""
import copy
import functools
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hoilib.data import AnnotationError, HOIAnnotations

HICO_TEST_JSON = Path(__file__).resolve().parents[3] / "shared" / "hicodet" / "instances_test2015.json"
IMAGES = list(range(12)) + [153]  # 153 has no pairs
PAIR_KEYS = ("boxes_h", "boxes_o", "hoi", "object", "verb")
# Values that are wrong somewhere (or everywhere): other JSON types, floats for ints, numeric strings, non-finite
# and huge numbers, empty containers.
ODD = [None, True, False, 0, -1, 1, 7, 7.0, 245.7, 1e300, -0.0, "7", "", "x.jpg", [], {}, [1, 2], [1.0, 2.0, 3.0, 4.0],
       float("nan"), float("inf"), float("-inf"), 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 400,
       "HICO_test2015_00000001.jpg"]
# Tokens that name an entry (or say what is missing at the top level).
ENTRY = re.compile(r"annotation\[\d+\]|image \d+|size\[\d+\]|filenames\[\d+\]|empty\[\d+\]|objects\[\d+\]|"
                   r"verbs\[\d+\]|correspondence\[\d+\]|missing key '\w+'|^'\w+': |'\w+' has \d+ entries")


@functools.cache
def _subset() -> tuple:
    """(IMAGES of the real test file with its full class tables and a matching `empty`, their `_regions`)."""
    d = json.loads(HICO_TEST_JSON.read_text())
    out = {k: [d[k][i] for i in IMAGES] for k in ("filenames", "size", "annotation")}
    out["empty"] = [j for j, a in enumerate(out["annotation"]) if not a["hoi"]]
    out.update({k: d[k] for k in ("objects", "verbs", "correspondence")})
    assert out["empty"] == [len(IMAGES) - 1]
    return out, _regions(out)


def _paths(x, prefix=()) -> list:
    """Every node below x as a path of keys / indices (the root excluded)."""
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    out = []
    for k, v in items:
        out.append(prefix + (k,))
        out += _paths(v, prefix + (k,))
    return out


def _regions(d: dict) -> dict:
    """Paths by top-level key, so that the small tables are hit as often as the pairs; correspondence: 3 rows."""
    regions = {k: [p for p in _paths(d) if p[0] == k] for k in d}
    regions["correspondence"] = [p for p in regions["correspondence"] if len(p) == 1 or p[1] in (0, 245, 599)]
    return regions


@st.composite
def mutations(draw, d: dict, regions: dict):
    """(kind of change, path, mutated copy) of one random change to d."""
    path = draw(st.sampled_from(regions[draw(st.sampled_from(sorted(regions)))]))
    out = copy.deepcopy(d)
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    node = parent[last]
    kinds = ["replace", "delete", "swap"] + (["grow", "shrink"] if isinstance(node, list) else []) \
        + (["number"] if type(node) in (int, float) else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "replace":
        parent[last] = draw(st.sampled_from(ODD))
    elif kind == "delete":
        del parent[last]
    elif kind == "grow":
        node.append(copy.deepcopy(node[-1]) if node else draw(st.sampled_from(ODD)))
    elif kind == "shrink" and node:
        del node[draw(st.integers(0, len(node) - 1))]
    elif kind == "swap":  # the value of another node of the same region (duplicate names, another class, ...)
        src = d
        for k in draw(st.sampled_from(regions[path[0]])):
            src = src[k]
        parent[last] = copy.deepcopy(src)
    elif kind == "number":  # a nearby number: out-of-range classes, shifted or inverted boxes, fractional values
        parent[last] = node + draw(st.sampled_from([-1000, -1, 1, 0.5, 1000]))
    return kind, path, out


def _typed(x):
    """JSON value with types attached, so that 7, 7.0 and True differ."""
    if isinstance(x, list):
        return [_typed(v) for v in x]
    if isinstance(x, dict):
        return {k: _typed(v) for k, v in x.items()}
    return (type(x).__name__, x)


def _as_float(x):
    """Box coordinates: JSON ints and floats are both numbers (bools are not and stay bools)."""
    if isinstance(x, list):
        return [_as_float(v) for v in x]
    return float(x) if type(x) is int else x


def _assert_reads_exactly(ann: HOIAnnotations, d: dict) -> None:
    got = ann.to_dict()
    for key in ("filenames", "size", "objects", "verbs", "correspondence"):
        assert _typed(got[key]) == _typed(d[key]), key
    assert got["empty"] == ann.empty
    if "empty" in d:
        assert _typed(ann.empty) == _typed(d["empty"])
    for a, b in zip(got["annotation"], d["annotation"], strict=True):
        for key in ("hoi", "object", "verb"):
            assert _typed(a[key]) == _typed(b[key]), key
        for key in ("boxes_h", "boxes_o"):
            assert _typed(a[key]) == _typed(_as_float(b[key])), key
            assert all(math.isfinite(v) for box in b[key] for v in box)


@pytest.mark.skipif(not HICO_TEST_JSON.is_file(), reason=f"real HICO-DET annotations not found at {HICO_TEST_JSON}")
@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_reader_rejects_or_reads_exactly(data):
    kind, path, d = data.draw(mutations(*_subset()))
    what = f"{kind} at {path}"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "instances_mutated.json"
        file.write_text(json.dumps(d))
        try:
            ann = HOIAnnotations.from_json(file)
        except AnnotationError as e:
            msg = str(e)
            assert msg.startswith(f"{file}: "), (what, msg)
            assert ENTRY.search(msg[len(str(file)) + 2:]), (what, msg)
            # A change of image i's entries is reported at image i (or at the file name it now repeats); deleting
            # the entry itself shortens the list instead.
            if path[0] in ("annotation", "size", "filenames") and len(path) > 1 and (len(path) > 2 or kind != "delete"):
                i = path[1]
                assert re.search(rf"\[{i}\]|image {i}\b", msg), (what, msg)
            event(f"rejected ({kind})")
            return
    event(f"loaded ({kind})")
    _assert_reads_exactly(ann, d)
