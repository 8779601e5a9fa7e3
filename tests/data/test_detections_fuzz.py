"""Fuzzing the detection-cache reader with mutations of the fixture cache (arrays and raw bytes of the .npz).

Property: a mutated cache either loads into exactly the arrays the file holds (same values; integers as int64, floats
as float32 only when that changes no value) or raises DetectionCacheError whose message starts with the file name
and names the array or entry; no other exception escapes.
"""
import json
import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hoilib.data import DetectionCache, DetectionCacheError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"
with np.load(FIX / "detections_test2015.npz") as _z:
    BASE = {k: _z[k] for k in _z.files}
SIZES = np.asarray(json.loads((FIX / "instances_test2015.json").read_text())["size"])
KEYS = sorted(BASE) + ["extra"]
DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64, "U8", "S8", object]
NUMBERS = [np.nan, np.inf, -np.inf, -1, 0, 0.5, 1.5, 80, 1e30, 2 ** 40, -0.0, 0.1]
NAMES = ["", "x.jpg", str(BASE["filenames"][0]), "y" * 40]
ENTRY = re.compile(r"\b(filenames|offsets|boxes|scores|labels|num_classes|feats)\b|image \d+|not an \.npz archive|"
                   r"not a readable \.npz archive|a single \.npy array|member '\w*'|array '\w*'")


@st.composite
def arrays(draw) -> tuple:
    """(kind of change, arrays to save) with one or two changes to BASE."""
    out = {k: v.copy() for k, v in BASE.items()}
    kinds = []
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(KEYS))
        a = out.get(key, np.zeros(3, np.float32))
        kind = draw(st.sampled_from(["delete", "dtype", "shape", "value"]))
        kinds.append(kind)
        if kind == "delete":
            out.pop(key, None)
            continue
        if kind == "dtype":
            try:
                a = a.astype(draw(st.sampled_from(DTYPES)))
            except (ValueError, TypeError, OverflowError):  # e.g. file names to int: no such file to write
                pass
        elif kind == "shape":
            shapes = [a[None], a.reshape(-1), np.zeros((0,) + a.shape[1:], a.dtype)]
            if a.ndim:
                shapes += [a[:-1], np.concatenate([a, a[-1:]]), a[::-1]]
            a = draw(st.sampled_from(shapes))
        elif a.size:
            a = a.copy()
            flat = a.reshape(-1)
            i = draw(st.integers(0, flat.size - 1))
            try:
                flat[i] = draw(st.sampled_from(NAMES if a.dtype.kind in "US" else NUMBERS))
            except (ValueError, TypeError, OverflowError):
                pass
        out[key] = a
    return "+".join(kinds), out


def _assert_reads_exactly(cache: DetectionCache, z: dict) -> None:
    assert z["filenames"].dtype.kind == "U" and cache.filenames == z["filenames"].tolist()
    assert z["num_classes"].dtype.kind in "iu" and cache.num_classes == int(z["num_classes"])
    for key, dtype in (("offsets", np.int64), ("labels", np.int64), ("boxes", np.float32), ("scores", np.float32),
                       ("feats", np.float32)):
        got = getattr(cache, key)
        if key not in z:
            assert key == "feats" and got is None
            continue
        assert got.dtype == dtype and got.shape == z[key].shape, key
        assert z[key].dtype.kind in ("iu" if dtype is np.int64 else "f"), key  # float labels are not labels
        assert np.array_equal(got, z[key], equal_nan=True), key  # compared as numbers, not after a cast


def _check(path: Path, with_sizes: bool, kind: str) -> None:
    try:
        cache = DetectionCache.load(path, sizes=SIZES if with_sizes else None)
    except DetectionCacheError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and ENTRY.search(msg[len(str(path)) + 2:]), (kind, msg)
        event(f"rejected ({kind})")
        return
    event(f"loaded ({kind})")
    with np.load(path) as z:
        _assert_reads_exactly(cache, {k: z[k] for k in z.files})


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change=arrays(), with_sizes=st.booleans())
def test_cache_reader_rejects_or_reads_exactly(change, with_sizes):
    kind, out = change
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dets.npz"
        np.savez(path, **out)
        _check(path, with_sizes, kind)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(cut=st.floats(0, 1), flip=st.floats(0, 1), mode=st.sampled_from(["truncate", "flip"]))
def test_damaged_cache_bytes_are_named(cut, flip, mode):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dets.npz"
        np.savez(path, **BASE)
        data = bytearray(path.read_bytes())
        if mode == "truncate":
            data = data[:int(cut * len(data))]
        else:
            data[min(int(flip * len(data)), len(data) - 1)] ^= 0x5A
        path.write_bytes(bytes(data))
        _check(path, True, mode)
