"""The on-disk cache of the world (hoilib.data.world.store): caching, loading, byte-identity, interrupted builds."""
from __future__ import annotations

import numpy as np
import pytest

from hoilib.config import ExperimentConfig
from hoilib.data.annotations import HOIAnnotations
from hoilib.data.world import VERSION_1, build_world, store


def _cfg(tmp_path, **world):
    d = {"world.n_train": 30, "world.n_val": 12, "world.n_test": 15, "world.n_caption": 20,
         "data.cache_dir": str(tmp_path)}
    d.update({f"world.{k}": val for k, val in world.items()})
    return ExperimentConfig().override(d)


def test_build_world_caches_and_loads(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    w = build_world(cfg, progress=False)
    assert w.root == tmp_path / "world" / w.digest and (w.root / "meta.json").is_file()
    assert w.train_images.shape == (30, 64, 64, 3) and w.test_images.shape == (15, 64, 64, 3)
    assert w.caption_images.shape == (20, 64, 64, 3) and len(w.captions) == 20
    assert isinstance(w.train_images, np.memmap)
    assert w.train.num_images == 30 and w.det_train.num_images == 30 and w.det_test.num_images == 15
    assert w.det_train.filenames == w.train.filenames and w.det_train.feats is None
    # the validation split: annotations, images, every instance and simulated detections, as the others
    assert w.val.num_images == 12 and w.val_images.shape == (12, 64, 64, 3) and w.val_entities.num_images == 12
    assert w.det_val.filenames == w.val.filenames == [f"WORLD_val_{i:08d}.png" for i in range(12)]
    assert HOIAnnotations.from_json(w.root / "instances_val.json").num_pairs == w.val.num_pairs > 0
    images = {s: {img.tobytes() for img in getattr(w, f"{s}_images")} for s in ("train", "val", "test")}
    assert len(images["val"]) == 12 and not images["val"] & (images["train"] | images["test"])
    assert {k: len(v) for k, v in w.scenes.items()} == {"train": 30, "val": 12, "test": 15, "caption": 20}
    assert all(((v >= 0) & (v < 16)).all() for v in w.scenes.values())
    assert set(w.protocols) == {"rf_uc", "nf_uc", "uo", "uv", "uc0", "uc1", "uc2", "uc3", "uc4"}
    assert HOIAnnotations.from_json(w.root / "instances_train.json").num_pairs == w.train.num_pairs
    assert not [p for p in (tmp_path / "world").iterdir() if p.name.startswith(".")]  # no temp folders left

    def boom(*a, **k):
        raise AssertionError("the second call must load from disk")

    monkeypatch.setattr(store, "generate_split", boom)
    w2 = build_world(cfg, progress=False)
    assert np.array_equal(w.train_images, w2.train_images) and np.array_equal(w.caption_images, w2.caption_images)
    assert w.train.to_dict() == w2.train.to_dict() and w.captions == w2.captions
    assert np.array_equal(w.det_test.boxes, w2.det_test.boxes)
    assert all(np.array_equal(w.protocols[k], w2.protocols[k]) for k in w.protocols)
    # another detector config reuses the world and adds a detection folder
    w3 = build_world(cfg.override({"detector.miss_rate": 0.5}), progress=False)
    assert w3.root == w.root and len(w3.det_train.boxes) != len(w.det_train.boxes)


def test_build_world_is_byte_identical_across_caches(tmp_path):
    a = build_world(_cfg(tmp_path / "a"), progress=False)
    b = build_world(_cfg(tmp_path / "b"), progress=False)
    assert a.digest == b.digest
    for name in ("train_images.npy", "val_images.npy", "test_images.npy", "caption_images.npy",
                 "instances_train.json", "instances_val.json", "instances_test.json", "captions.json",
                 "protocols.json", "scenes.json", "meta.json"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name
    c = build_world(_cfg(tmp_path / "c", seed=5), progress=False)
    assert c.digest != a.digest and not np.array_equal(a.train_images, c.train_images)


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    real = store.generate_split

    def fail_on_test(wc, split, n, **kw):
        if split == "test":
            raise KeyboardInterrupt
        return real(wc, split, n, **kw)

    monkeypatch.setattr(store, "generate_split", fail_on_test)
    with pytest.raises(KeyboardInterrupt):
        build_world(_cfg(tmp_path), progress=False)
    assert list((tmp_path / "world").iterdir()) == []
    monkeypatch.setattr(store, "generate_split", real)
    assert build_world(_cfg(tmp_path), progress=False).train.num_images == 30


def test_version_1_world_and_no_validation_split(tmp_path):
    """A version 1 world (no scenes: -1) and a world without a validation split (empty, but every file there)."""
    w = build_world(_cfg(tmp_path, **VERSION_1, n_val=0), progress=False)
    assert w.val.num_images == 0 and w.val_images.shape == (0, 64, 64, 3) and w.det_val.num_images == 0
    assert all((v == -1).all() for v in w.scenes.values()) and len(w.scenes["val"]) == 0
    assert w.train.num_images == 30


@pytest.mark.parametrize("field, value, message", [
    ("n_train", 0, "world.n_train must be >= 1"), ("n_val", -1, "world.n_val must be >= 0"),
    ("version", 3, r"world.version must be one of \(1, 2\)"), ("min_people", 0, "world.min_people must be >= 1"),
    ("scene_bias", 1.5, r"world.scene_bias must be in \[0.0, 1.0\]"),
])
def test_bad_world_config(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        build_world(_cfg(tmp_path, **{field: value}), progress=False)
