"""Detection caches: the .npz round trip, bad caches, per-image JSON import and caching from a detector callable."""
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hoilib.data import DetectionCache, DetectionCacheError, Detections
from hoilib.data.images import ArrayImages
from hoilib.data.detr_import import (cache_detections, detection_file, detr_postprocess, export_detection_dir,
                                     import_detection_dir, label_map, read_detection_json)
from hoilib.data.hicodet import load_hicodet

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"
SIZES = np.array([[64, 48], [80, 60], [30, 20], [50, 70]])


def _random_cache(feats: bool, seed: int = 0) -> DetectionCache:
    """Four images with 3, 0, 5, 1 detections inside their SIZES."""
    rng = np.random.default_rng(seed)
    dets = []
    for (w, h), k in zip(SIZES, (3, 0, 5, 1)):
        xy1 = rng.uniform(0, 0.5, (k, 2)) * [w, h]
        xy2 = xy1 + rng.uniform(0.1, 0.5, (k, 2)) * [w, h]
        dets.append(Detections(np.concatenate([xy1, xy2], 1).astype(np.float32), rng.random(k).astype(np.float32),
                               rng.integers(0, 80, k), rng.standard_normal((k, 16)).astype(np.float32) if feats
                               else None))
    return DetectionCache.from_list([f"img_{i}.jpg" for i in range(4)], dets, 80)


def _assert_equal(a: DetectionCache, b: DetectionCache) -> None:
    assert a.filenames == b.filenames and a.num_classes == b.num_classes
    for key in ("offsets", "boxes", "scores", "labels"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and np.array_equal(x, y), key
    assert (a.feats is None) == (b.feats is None)
    if a.feats is not None:
        assert a.feats.dtype == np.float32 and np.array_equal(a.feats, b.feats)


# ---- .npz cache ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("feats", [False, True])
def test_cache_round_trip_is_exact(tmp_path, feats):
    cache = _random_cache(feats)
    assert cache.offsets.tolist() == [0, 3, 3, 8, 9]
    path = tmp_path / "sub" / "dets.npz"
    cache.save(path)
    loaded = DetectionCache.load(path, sizes=SIZES)
    _assert_equal(cache, loaded)
    assert loaded.source == str(path) and list(tmp_path.rglob("*tmp*")) == []
    d = loaded[2]
    assert len(d) == 5 and d.boxes.shape == (5, 4) and (d.feats is None) != feats
    assert len(loaded[1]) == 0 and (loaded[1].feats is None or loaded[1].feats.shape == (0, 16))


def _save_arrays(path: Path, **changes) -> Path:
    cache = _random_cache(True)
    arrays = dict(filenames=np.asarray(cache.filenames), offsets=cache.offsets, boxes=cache.boxes,
                  scores=cache.scores, labels=cache.labels, num_classes=np.int64(80), feats=cache.feats)
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, expected", [
    (dict(boxes=None), r"missing array 'boxes'"),
    (dict(scores=np.zeros(8, np.float32)), r"scores has shape \(8,\), expected \(9,\)"),
    (dict(offsets=np.array([0, 3, 2, 8, 9])), r"offsets must be non-decreasing"),
    (dict(feats=np.zeros((9, 4, 2), np.float32)), r"feats has shape \(9, 4, 2\), expected \(9, F\)"),
    (dict(labels=np.array([0, 1, 2, 3, 4, 80, 6, 7, 8])), r"image 2 \(img_2.jpg\), detection 2: label 80 out of range"),
    (dict(scores=np.array([0.5, 1.5] + [0.5] * 7, np.float32)), r"image 0 \(img_0.jpg\), detection 1: score 1.5"),
])
def test_bad_cache_arrays_name_file_and_entry(tmp_path, changes, expected):
    path = _save_arrays(tmp_path / "bad.npz", **changes)
    with pytest.raises(DetectionCacheError, match=rf"^{path}: {expected}"):
        DetectionCache.load(path)


@pytest.mark.parametrize("changes, expected", [
    # nothing is coerced: float labels were truncated, bytes / int file names stringified, 80.0 read as 80
    (dict(labels=np.array([0, 1.5, 2, 3, 4, 5, 6, 7, 8])), r"labels must hold integers, got dtype float64"),
    (dict(labels=np.arange(9, dtype=np.float32)), r"labels must hold integers, got dtype float32"),
    (dict(offsets=np.array([0.0, 3, 3, 8, 9])), r"offsets must hold integers, got dtype float64"),
    (dict(filenames=np.arange(4)), r"filenames must be a 1-D array of str, got dtype int64 and shape \(4,\)"),
    (dict(filenames=np.array([b"a.jpg", b"b.jpg", b"c.jpg", b"d.jpg"])), r"filenames must be a 1-D array of str"),
    (dict(filenames=np.array(["img_0.jpg", "img_1.jpg", "img_1.jpg", "img_3.jpg"])),
     r"filenames\[2\] 'img_1.jpg' repeats filenames\[1\]"),
    (dict(filenames=np.array(["img_0.jpg", "", "img_2.jpg", "img_3.jpg"])), r"filenames\[1\] = '' is not a file"),
    (dict(num_classes=np.float64(80)), r"num_classes must be one integer, got dtype float64 and shape \(\)"),
    (dict(num_classes=np.array([80])), r"num_classes must be one integer, got dtype int64 and shape \(1,\)"),
    (dict(scores=np.array([0.5, 0.1] + [0.5] * 7)), r"scores\[1\] = 0.1 is not exactly float32 \(dtype float64\)"),
    (dict(boxes=np.array([[1, 1, 2, 2]] * 9)), r"boxes must hold floats, got dtype int64"),
    (dict(offsets=np.array([0, 3, 3, 8, 2 ** 64 - 1], np.uint64)), r"offsets\[4\] = 18446744073709551615 is not ex"),
    # the entry is named
    (dict(offsets=np.array([1, 3, 3, 8, 9])), r"offsets\[0\] = 1, expected 0"),
    (dict(offsets=np.array([0, 3, 3, 8])), r"offsets has shape \(4,\), expected \(5,\) for 4 images"),
    (dict(offsets=np.array([0, 3, 2, 8, 9])),
     r"offsets must be non-decreasing, but offsets\[2\] = 2 < offsets\[1\] = 3 \(image 1, img_1.jpg\)"),
])
def test_cache_arrays_are_not_coerced(tmp_path, changes, expected):
    path = _save_arrays(tmp_path / "bad.npz", **changes)
    with pytest.raises(DetectionCacheError, match=rf"^{path}: {expected}"):
        DetectionCache.load(path)


def test_exact_other_dtypes_load(tmp_path):
    """Integer arrays of any width, float64 values that are exactly float32: same values, canonical dtypes."""
    cache = _random_cache(True)
    path = _save_arrays(tmp_path / "wide.npz", offsets=cache.offsets.astype(np.uint8),
                        labels=cache.labels.astype(np.int16), boxes=cache.boxes.astype(np.float64),
                        num_classes=np.int32(80))
    _assert_equal(cache, DetectionCache.load(path))


def test_unreadable_cache_files(tmp_path):
    good = _save_arrays(tmp_path / "good.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DetectionCacheError, match=rf"^{tmp_path / 'one.npy'}: a single .npy array, not an .npz"):
        DetectionCache.load(tmp_path / "one.npy")
    (tmp_path / "half.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DetectionCacheError, match=rf"^{tmp_path / 'half.npz'}: not a readable .npz archive "
                                                  r"\(BadZipFile"):
        DetectionCache.load(tmp_path / "half.npz")
    # A damaged byte inside a member: the archive opens, the array does not (CRC check).
    data = bytearray(good.read_bytes())
    at = data.index(b"boxes.npy") + 200
    data[at] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(data))
    with pytest.raises(DetectionCacheError, match=rf"^{tmp_path / 'crc.npz'}: array 'boxes' cannot be read \(BadZip"):
        DetectionCache.load(tmp_path / "crc.npz")
    np.savez(tmp_path / "obj.npz", filenames=np.array(["a", None], object), offsets=np.zeros(3, np.int64))
    with pytest.raises(DetectionCacheError, match=r"obj.npz: array 'filenames' cannot be read \(ValueError: Object"):
        DetectionCache.load(tmp_path / "obj.npz")
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as zf:
        for name in ("filenames", "offsets", "boxes", "scores", "labels", "num_classes"):
            zf.writestr(name + ".npy", b"plain bytes")
    with pytest.raises(DetectionCacheError, match=r"raw.npz: member 'filenames' is not a .npy array"):
        DetectionCache.load(tmp_path / "raw.npz")


def test_bad_cache_boxes(tmp_path):
    boxes = _random_cache(True).boxes.copy()
    boxes[4] = [10, 5, 2, 8]  # image 2, detection 1: x2 < x1
    path = _save_arrays(tmp_path / "flip.npz", boxes=boxes)
    with pytest.raises(DetectionCacheError, match=rf"^{path}: image 2 \(img_2.jpg\), detection 1: box .* x2 < x1"):
        DetectionCache.load(path)
    boxes = _random_cache(True).boxes.copy()
    boxes[8] = [10, 10, 51, 20]  # image 3 is 50 px wide
    path = _save_arrays(tmp_path / "out.npz", boxes=boxes)
    DetectionCache.load(path)  # without sizes nothing to compare with
    with pytest.raises(DetectionCacheError, match=r"image 3 \(img_3.jpg\), detection 0: .* outside the 50x70 image"):
        DetectionCache.load(path, sizes=SIZES)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DetectionCacheError, match="junk.npz: not an .npz archive"):
        DetectionCache.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="detection cache not found"):
        DetectionCache.load(tmp_path / "none.npz")


# ---- per-image JSON files (fredzzhang/hicodet, UPT layout) -----------------------------------------------------
def test_import_fixture_dir_matches_cache():
    """The fixture JSON files (one of them in a 2x resized frame, with 'size') import to the fixture cache exactly."""
    test, _ = load_hicodet(FIX, "test")
    imported = import_detection_dir(FIX / "detections" / "test2015", test)
    _assert_equal(imported, DetectionCache.load(FIX / "detections_test2015.npz", sizes=test.sizes))
    assert json.loads(detection_file(FIX / "detections" / "test2015", test.filenames[2]).read_text())["size"] == \
        [128, 96]  # [height, width] of the 2x frame of the 48x64 image


@pytest.mark.parametrize("feats", [False, True])
def test_export_import_round_trip(tmp_path, feats):
    cache = _random_cache(feats)
    export_detection_dir(cache, tmp_path / "dets", feature_key="hidden_states")
    assert sorted(p.name for p in (tmp_path / "dets").iterdir()) == [f"img_{i}.json" for i in range(4)]
    ann = _annotations(cache.filenames, SIZES)
    out = import_detection_dir(tmp_path / "dets", ann, path=tmp_path / "c.npz")
    _assert_equal(cache, out)
    _assert_equal(cache, DetectionCache.load(tmp_path / "c.npz"))


def _annotations(filenames, sizes):
    from hoilib.data import HOIAnnotations

    return HOIAnnotations(filenames=list(filenames), sizes=np.asarray(sizes), image_index=np.zeros(0, np.int64),
                          boxes_h=np.zeros((0, 4)), boxes_o=np.zeros((0, 4)), hoi=np.zeros(0, np.int64),
                          object=np.zeros(0, np.int64), verb=np.zeros(0, np.int64), verbs=[], objects=[],
                          correspondence=np.zeros((0, 3), np.int64), source="toy")


def _write(path: Path, **d) -> Path:
    path.write_text(json.dumps(d))
    return path


def test_label_spaces_and_conventions(tmp_path):
    assert label_map("hico_alphabetical")[49] == 0 and label_map("hico_alphabetical")[0] == 4  # person, airplane
    assert label_map("coco91")[1] == 0 and label_map("coco91")[90] == 79 and label_map("coco91")[12] == -1
    boxes = [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0]]
    f = _write(tmp_path / "a.json", boxes=boxes, scores=[0.9, 0.4], labels=[49, 0])
    d = read_detection_json(f, 40, 40, label_space="hico_alphabetical")
    assert d.labels.tolist() == [0, 4] and d.labels.dtype == np.int64
    f = _write(tmp_path / "b.json", boxes=boxes, scores=[0.9, 0.4], labels=[1, 12])
    d = read_detection_json(f, 40, 40, label_space="coco91")  # id 12 is an unused COCO category: dropped
    assert d.labels.tolist() == [0] and d.boxes.tolist() == [boxes[0]]
    f = _write(tmp_path / "c.json", boxes=[[1.0, 1.0, 10.0, 10.0]], scores=[1.0], labels=[0])
    assert read_detection_json(f, 40, 40, one_based=True).boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
    f = _write(tmp_path / "d.json", boxes=boxes, scores=[0.9, 0.4], labels=[0, 1])
    assert len(read_detection_json(f, 40, 40, score_floor=0.5)) == 1
    # DETR boxes may overflow the border a little: clipped; far outside is an error
    f = _write(tmp_path / "e.json", boxes=[[-1.5, 0.0, 41.0, 39.0]], scores=[0.5], labels=[3])
    assert read_detection_json(f, 40, 40).boxes.tolist() == [[0.0, 0.0, 40.0, 39.0]]
    # 'size' = [height, width] of the detector's frame: boxes come back to the 40x20 image
    f = _write(tmp_path / "g.json", boxes=[[10.0, 20.0, 50.0, 30.0]], scores=[0.5], labels=[3], size=[40, 80])
    assert read_detection_json(f, 40, 20).boxes.tolist() == [[5.0, 10.0, 25.0, 15.0]]


@pytest.mark.parametrize("content, expected", [
    ('{"boxes": [[0, 0, 5, 5]], "scores": [0.5], ', r"malformed JSON"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5]), r"expected a JSON object with keys 'boxes', 'scores', 'labels'"),
    (dict(boxes=[[0, 0, 5, 5], [8, 0, 4, 5]], scores=[0.5, 0.5], labels=[0, 1]),
     r"detection 1: box \[8.0, 0.0, 4.0, 5.0\] has x2 < x1"),
    (dict(boxes=[[0, 0, 5, 5], [0, 0, 90, 5]], scores=[0.5, 0.5], labels=[0, 1]),
     r"detection 1: box \[0.0, 0.0, 90.0, 5.0\] lies outside the 40x30 image \(are the boxes in another frame"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[80]), r"detection 0: label 80 out of range \[0, 80\)"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[1.2], labels=[1]), r"detection 0: score 1.2 outside \[0, 1\]"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5, 0.4], labels=[1]), r"1 boxes, 2 scores and 1 labels"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], feats=[[1, 2], [3, 4]]),
     r"'feats' has shape \(2, 2\), expected \(1, F\)"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], size=[30, 30]), r"'size' \[30, 30\] .* is not a resize"),
    # strings, booleans and flat lists were read as numbers; ragged feature rows and bad UTF-8 were bare ValueErrors
    (dict(boxes=[[0, 0, "5", 5]], scores=[0.5], labels=[1]), r"boxes\[0\]: \[0, 0, '5', 5\]: '5' is not a number"),
    (dict(boxes=[0, 0, 5, 5], scores=[0.5], labels=[1]), r"boxes\[0\]: 0 is not a list of 4 numbers"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[True], labels=[1]), r"scores\[0\]: True is not a number"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=["1"]), r"labels\[0\]: '1' is not a number"),
    (dict(boxes=[[0, 0, 5, 5]], scores=0.5, labels=[1]), r"'scores' must be a list, got 0.5"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], feats=[[1, 2], [3]]),
     r"feats\[1\]: \[3\] is not a list of 2 numbers"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], feats=[7]), r"'feats' has shape \(1,\), expected \(1, F\)"),
    (dict(boxes=[[0, 0, 5, 10 ** 400]], scores=[0.5], labels=[1]), r"boxes\[0\]: .*: 1000.* is not a number"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], size="30"), r"'size' must be a list, got '30'"),
    (dict(boxes=[[0, 0, 5, 5]], scores=[0.5], labels=[1], size=[30, "40"]), r"size\[1\]: '40' is not a number"),
    ('{"boxes": [[0, 0, 5, 5]], "scores": [0.5], "labels": [1], "x": "caf\xe9"}', r"malformed JSON: .*utf-8"),
])
def test_bad_detection_json_names_file_and_entry(tmp_path, content, expected):
    f = tmp_path / "HICO_test2015_00000007.json"
    f.write_bytes(content.encode("latin-1") if isinstance(content, str) else json.dumps(content).encode())
    with pytest.raises(DetectionCacheError, match=rf"^{f}: {expected}"):
        read_detection_json(f, 40, 30)


def test_import_errors(tmp_path):
    det_dir = tmp_path / "dets"
    shutil.copytree(FIX / "detections" / "test2015", det_dir)
    test, _ = load_hicodet(FIX, "test")
    missing = det_dir / "HICO_test2015_00000004.json"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=rf"image 3 \(HICO_test2015_00000004.jpg\) not found: {missing}"):
        import_detection_dir(det_dir, test)
    out = import_detection_dir(det_dir, test, missing="empty")
    assert [len(out[i]) for i in range(5)][3] == 0 and out.feats.shape[1] == 8
    # one file without feature vectors in a cache that has them
    f = det_dir / "HICO_test2015_00000005.json"
    d = json.loads(f.read_text())
    d.pop("feats")
    f.write_text(json.dumps(d))
    with pytest.raises(DetectionCacheError, match=rf"^{f}: no feature vectors, but HICO_test2015_00000001.json has "
                                                  r"feature vectors of size 8"):
        import_detection_dir(det_dir, test, missing="empty")
    with pytest.raises(FileNotFoundError, match="detection folder not found"):
        import_detection_dir(tmp_path / "nowhere", test)


# ---- detector callables ------------------------------------------------------------------------------------------
class ToyDetector:
    """Deterministic stand-in for DETR: three boxes per image derived from its size and mean colour."""

    def __init__(self, as_torch=False, feats=True):
        self.calls, self.as_torch, self.feats = [], as_torch, feats

    def __call__(self, images):
        self.calls.append(len(images))
        out = []
        for img in images:
            h, w = img.shape[:2]
            m = float(img.mean()) / 255
            d = dict(boxes=np.array([[0, 0, w / 2, h / 2], [w / 4, h / 4, w, h], [0, 0, w, h]], np.float32),
                     scores=np.array([0.9, 0.05, m], np.float32), labels=np.array([0, 5, 79]))
            if self.feats:
                d["feats"] = np.full((3, 4), m, np.float32) + np.arange(4, dtype=np.float32)
            if self.as_torch:
                d = {k: torch.as_tensor(v) for k, v in d.items()}
            out.append(d)
        return out


def _toy_images(n=5):
    rng = np.random.default_rng(1)
    return ArrayImages(rng.integers(0, 256, (n, 12, 16, 3), dtype=np.uint8))


def test_cache_detections_applies_only_the_score_floor(tmp_path):
    images = _toy_images()
    names = [f"im{i}.jpg" for i in range(5)]
    det = ToyDetector()
    path = tmp_path / "cache.npz"
    cache = cache_detections(det, images, names, batch_size=2, path=path, score_floor=0.1, progress=False)
    assert det.calls == [2, 2, 1]
    assert cache.offsets.tolist() == [0, 2, 4, 6, 8, 10]  # the 0.05 detection is gone, nothing else
    for i in range(5):
        m = float(images.load(i).mean()) / 255
        d = cache[i]
        assert d.boxes.tolist() == [[0, 0, 8, 6], [0, 0, 16, 12]]
        assert d.scores.tolist() == [np.float32(0.9), np.float32(m)] and d.labels.tolist() == [0, 79]
        assert np.array_equal(d.feats, np.full((2, 4), m, np.float32) + np.arange(4, dtype=np.float32))
    _assert_equal(cache, DetectionCache.load(path))
    # batched == one at a time == torch outputs; no floor keeps all three
    single = cache_detections(ToyDetector(as_torch=True), images, names, batch_size=1, score_floor=0.1,
                              progress=False)
    _assert_equal(cache, single)
    assert len(cache_detections(ToyDetector(feats=False), images, names, progress=False).boxes) == 15


def test_cache_detections_fails_cleanly(tmp_path):
    images = _toy_images()
    names = [f"im{i}.jpg" for i in range(5)]
    path = tmp_path / "cache.npz"

    def crashes(batch, calls=[]):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return ToyDetector()(batch)

    with pytest.raises(RuntimeError, match="out of memory"):
        cache_detections(crashes, images, names, batch_size=2, path=path, progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written

    def bad_label(batch):
        out = ToyDetector()(batch)
        out[-1]["labels"] = np.array([0, 5, 80])
        return out

    with pytest.raises(DetectionCacheError, match=r"^image 2 \(im2.jpg\), detection 2: label 80 out of range"):
        cache_detections(bad_label, images, names, batch_size=3, path=path, progress=False)

    def outside(batch):
        out = ToyDetector()(batch)
        out[0]["boxes"][2] = [0, 0, 17, 12]  # the images are 16 px wide
        return out

    with pytest.raises(DetectionCacheError, match=r"^image 0 \(im0.jpg\), detection 2: box .* outside the 16x12"):
        cache_detections(outside, images, names, path=path, progress=False)
    with pytest.raises(DetectionCacheError, match="returned 1 results for a batch of 2"):
        cache_detections(lambda b: ToyDetector()(b)[:1], images, names, batch_size=2, progress=False)
    with pytest.raises(DetectionCacheError, match=r"image 0 \(im0.jpg\): the detector must return dict"):
        cache_detections(lambda b: [dict(boxes=np.zeros((0, 4)))] * len(b), images, names, progress=False)
    assert not path.exists()
    with pytest.raises(ValueError, match="5 images but 4 file names"):
        cache_detections(ToyDetector(), images, names[:4], progress=False)


def test_detr_postprocess_known_answer():
    logits = torch.full((1, 2, 4), -10.0)  # 3 classes + no-object
    logits[0, 0, 1] = 10.0  # query 0: class 1, prob ~1
    logits[0, 1, 3] = 0.0  # query 1: mostly no-object; best real class gets exp(-10)/(1+3exp(-10))
    logits[0, 1, 2] = 0.0  # ... except class 2 ties with no-object: prob 1/(2 + 2exp(-10))
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.25], [0.05, 0.5, 0.3, 1.2]]])  # normalised cx, cy, w, h
    hs = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 2, 3)
    (out,) = detr_postprocess(logits, boxes, [(200, 100)], hidden_states=hs)
    assert out["labels"].tolist() == [1, 2]
    e = np.exp(-10.0)
    np.testing.assert_allclose(out["scores"], [1 / (1 + 3 * np.exp(-20)), 1 / (2 + 2 * e)], rtol=1e-6)
    # query 0: x 50..150, y 37.5..62.5; query 1 overflows left and bottom/top: clipped to the 200x100 image
    np.testing.assert_allclose(out["boxes"], [[50, 37.5, 150, 62.5], [0, 0, 40, 100]], rtol=1e-6)
    assert np.array_equal(out["feats"], hs[0].numpy()) and out["labels"].dtype == np.int64
    (raw,) = detr_postprocess(logits.numpy(), boxes.numpy(), [(200, 100)], clip=False)
    np.testing.assert_allclose(raw["boxes"][1], [-20, -10, 40, 110], rtol=1e-6)
    assert raw["feats"] is None
    with pytest.raises(ValueError, match="1 image sizes for a batch of 2"):
        detr_postprocess(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), [(1, 1)])
