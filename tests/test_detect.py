"""The detection-cache command line (hoilib.detect) on a tiny HICO-DET tree, with a random DETR on the CPU."""
import json

import numpy as np
import pytest
from PIL import Image

from hoilib import detect as detect_cli
from hoilib.data.detections import DetectionCache
from hoilib.data.hicodet import load_hicodet
from hoilib.data.vocab import hicodet_vocabulary
from hoilib.models import detr as detr_mod
from hoilib.models.detr import detect

from _detr_helpers import SMALL, _image, ckpt, model  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

# ---- the CLI on a tiny HICO-DET tree -------------------------------------------------------------------------------
SIZES = [(64, 48), (40, 56), (64, 48)]  # (W, H); two share a shape


@pytest.fixture
def tiny_root(tmp_path):
    vocab = hicodet_vocabulary()
    corr = vocab.correspondence  # [600, 3] (hoi, object, verb)
    img_dir = tmp_path / "hico_20160224_det" / "images" / "test2015"
    img_dir.mkdir(parents=True)
    names = [f"HICO_test2015_{i + 1:08d}.jpg" for i in range(len(SIZES))]
    for i, (name, (w, h)) in enumerate(zip(names, SIZES)):
        Image.fromarray(_image(w, h, 40 + i)).save(img_dir / name, quality=95)
    pair = lambda hoi, bh, bo: dict(boxes_h=[bh], boxes_o=[bo], hoi=[hoi], object=[int(corr[hoi, 1])],  # noqa: E731
                                    verb=[int(corr[hoi, 2])])
    annotation = [pair(18, [2.0, 3.0, 20.0, 46.0], [18.0, 20.0, 60.0, 44.0]),
                  dict(boxes_h=[], boxes_o=[], hoi=[], object=[], verb=[]),
                  pair(297, [5.0, 5.0, 30.0, 40.0], [30.0, 10.0, 50.0, 30.0])]
    d = dict(filenames=names, size=[list(s) for s in SIZES], annotation=annotation, empty=[1],
             objects=list(vocab.objects), verbs=list(vocab.verbs), correspondence=corr.tolist())
    (tmp_path / "instances_test2015.json").write_text(json.dumps(d))
    return tmp_path


def _cli(ckpt, root, *extra):
    return detect_cli.main(["--checkpoint", str(ckpt), "--root", str(root), "--split", "test", "--device", "cpu",
                            "--min-size", "48", "--max-size", "96", "--batch-size", "2", "--no-progress", *extra])


def test_cli_writes_a_cache_build_dataset_can_read(model, ckpt, tiny_root):
    assert _cli(ckpt, tiny_root) == 0
    out = tiny_root / "detections_test2015.npz"
    ann, images = load_hicodet(tiny_root, "test")
    cache = DetectionCache.load(out, sizes=ann.sizes)
    assert cache.filenames == ann.filenames
    assert cache.feats is not None and cache.feats.shape == (300, 256)
    assert np.diff(cache.offsets).tolist() == [100, 100, 100]
    assert not (tiny_root / "detections_test2015.npz.parts").exists()
    for i in range(3):  # same numbers as running the model directly on the decoded JPEG
        d = detect(model, [images.load(i)], **SMALL)[0]
        np.testing.assert_allclose(cache[i].boxes, d.boxes, atol=1e-3)  # batch of 2 vs 1: float noise only
        np.testing.assert_allclose(cache[i].feats, d.feats, atol=1e-3)
        np.testing.assert_array_equal(cache[i].labels, d.labels)


def test_cli_resumes_from_shards_and_refuses_other_settings(model, ckpt, tiny_root, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(detect_cli, "_merge", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _cli(ckpt, tiny_root, "--shard-size", "1", "--score-floor", "0.999")
    parts = tiny_root / "detections_test2015.npz.parts"
    assert sorted(p.name for p in parts.glob("shard_*.npz")) == ["shard_00000.npz", "shard_00001.npz",
                                                                 "shard_00002.npz"]
    assert not (tiny_root / "detections_test2015.npz").exists()
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"other settings \(score_floor: 0\.999 now 0\.9\)"):
        _cli(ckpt, tiny_root, "--shard-size", "1", "--score-floor", "0.9")

    def no_model(*a, **k):
        raise AssertionError("every shard is done: the model must not be loaded again")

    monkeypatch.setattr(detr_mod, "load_detr", no_model)
    _cli(ckpt, tiny_root, "--shard-size", "1", "--score-floor", "0.999")
    assert not parts.exists()
    cache = DetectionCache.load(tiny_root / "detections_test2015.npz")
    assert cache.num_images == 3 and cache.feats.shape[1] == 256
    _, images = load_hicodet(tiny_root, "test")
    for i in range(3):  # the floor, plus at most 3 fill-ups per group (humans / others) below it
        assert (cache[i].scores < 0.999).sum() <= 6 and len(cache[i]) < 100
        d = detect(model, [images.load(i)], score_floor=0.999, **SMALL)[0]
        np.testing.assert_array_equal(cache[i].labels, d.labels)
        np.testing.assert_allclose(cache[i].scores, d.scores, atol=1e-5)


def test_cli_max_images_writes_a_separate_file(ckpt, tiny_root):
    _cli(ckpt, tiny_root, "--max-images", "2")
    cache = DetectionCache.load(tiny_root / "detections_test2015_first2.npz")
    assert cache.filenames == ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"]
    assert not (tiny_root / "detections_test2015.npz").exists()
    with pytest.raises(FileNotFoundError, match="DETR checkpoint not found"):
        _cli(tiny_root / "missing.pth", tiny_root)
