"""Image sources, HOIDataset items and build_dataset on the HICO-DET fixtures (and the world when it exists)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from hoilib.config import ExperimentConfig
from hoilib.data import DetectionCache, DetectionCacheError
from hoilib.data.dataset import HOIDataset, HOISplit, build_dataset
from hoilib.data.images import ArrayImages, FileImages, ImageSource
from hoilib.data.hicodet import load_hicodet
from hoilib.data.splits import hicodet_protocol, hicodet_rare, rare_classes

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"


def _cfg(root=FIX, **over) -> ExperimentConfig:
    return ExperimentConfig().override({"data.dataset": "hicodet", "data.hicodet_root": str(root), **over})


# ---- image sources ---------------------------------------------------------------------------------------------
def test_array_images(tmp_path):
    arr = np.arange(4 * 3 * 5 * 3, dtype=np.uint8).reshape(4, 3, 5, 3)
    mm = np.lib.format.open_memmap(tmp_path / "imgs.npy", mode="w+", dtype=np.uint8, shape=arr.shape)
    mm[:] = arr
    src = ArrayImages(mm, index=[3, 1])
    assert isinstance(src, ImageSource) and len(src) == 2 and len(ArrayImages(arr)) == 4
    img = src.load(0)
    assert img.shape == (3, 5, 3) and np.array_equal(img, arr[3]) and not isinstance(img, np.memmap)
    img[:] = 0  # a private copy: the store is untouched
    assert np.array_equal(mm[3], arr[3]) and np.array_equal(src.load(1), arr[1])
    with pytest.raises(IndexError, match=r"image 2 out of range \[0, 2\)"):
        src.load(2)
    with pytest.raises(ValueError, match=r"expected a uint8 array \[N, H, W, 3\], got float32"):
        ArrayImages(arr.astype(np.float32))
    with pytest.raises(ValueError, match="outside"):
        ArrayImages(arr, index=[4])


def test_file_images_read_rgb(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((6, 9), 77, np.uint8), mode="L").save(tmp_path / "grey.png")  # HICO-DET has grey JPEGs
    src = FileImages(tmp_path, ["grey.png", "gone.jpg"])
    img = src.load(0)
    assert img.shape == (6, 9, 3) and img.dtype == np.uint8 and (img == 77).all()
    with pytest.raises(FileNotFoundError, match=rf"image 1 not found: {tmp_path / 'gone.jpg'}"):
        src.load(1)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(OSError, match=rf"image 0 could not be read: {tmp_path / 'broken.jpg'}"):
        FileImages(tmp_path, ["broken.jpg"]).load(0)


# ---- HOIDataset ---------------------------------------------------------------------------------------------------
def test_hoidataset_items_follow_the_contract():
    ann, images = load_hicodet(FIX, "test")
    dets = DetectionCache.load(FIX / "detections_test2015.npz")
    ds = HOIDataset(ann, images, dets)
    assert len(ds) == 4 and ds.image_ids.tolist() == [0, 2, 3, 4]  # test image 1 has no pairs
    assert len(HOIDataset(ann, images, dets, skip_empty=False)) == 5
    for i in range(len(ds)):
        it = ds[i]
        j = it["image_index"]
        assert it["index"] == i and j == ds.image_ids[i] and it["filename"] == ann.filenames[j]
        w, h = ann.sizes[j]
        assert it["size"] == (w, h) and it["image"].shape == (h, w, 3) and it["image"].dtype == np.uint8
        rows = np.flatnonzero(ann.image_index == j)
        gt = it["gt"]
        assert gt["boxes_h"].dtype == np.float32 and gt["hoi"].dtype == np.int64
        # continuous 0-based xyxy = stored 1-based inclusive - [1, 1, 0, 0]
        assert np.array_equal(gt["boxes_h"], (ann.boxes_h[rows] - [1, 1, 0, 0]).astype(np.float32))
        assert np.array_equal(gt["boxes_o"], (ann.boxes_o[rows] - [1, 1, 0, 0]).astype(np.float32))
        for key in ("hoi", "verb", "object"):
            assert np.array_equal(gt[key], getattr(ann, key)[rows])
        assert np.array_equal(it["dets"].boxes, dets[j].boxes) and np.array_equal(it["dets"].feats, dets[j].feats)
    first = ds[0]["gt"]
    assert first["boxes_h"].tolist() == [[3, 3, 24, 46], [3, 3, 24, 46]] and first["hoi"].tolist() == [18, 22]
    assert ds[-1]["index"] == 3 and HOIDataset(ann, images)[0]["dets"] is None
    with pytest.raises(IndexError):
        ds[4]


def test_hoidataset_input_checks(tmp_path):
    ann, images = load_hicodet(FIX, "test")
    with pytest.raises(ValueError, match="5 annotated images but the image source has 4"):
        HOIDataset(ann, FileImages(images.image_dir, ann.filenames[:4]))
    # detections are matched by file name; an image absent from the cache is named
    dets = DetectionCache.load(FIX / "detections_test2015.npz")
    keep = [0, 1, 2, 4]
    part = DetectionCache.from_list([dets.filenames[k] for k in keep], [dets[k] for k in keep], 80)
    part.source = "part.npz"
    with pytest.raises(DetectionCacheError,
                       match=r"^part.npz: no detections for image 3 \(HICO_test2015_00000004.jpg\)"):
        HOIDataset(ann, images, part)
    # an image whose size disagrees with the annotations
    img_dir = tmp_path / "imgs"
    shutil.copytree(images.image_dir, img_dir)
    from PIL import Image

    Image.new("RGB", (10, 10)).save(img_dir / ann.filenames[0])
    ds = HOIDataset(ann, FileImages(img_dir, ann.filenames))
    with pytest.raises(ValueError, match=r"HICO_test2015_00000001.jpg: image is 10x10 .* say 64x48"):
        ds[0]


# ---- build_dataset: HICO-DET -------------------------------------------------------------------------------------
def test_build_dataset_hicodet_train_is_filtered():
    split = build_dataset(_cfg(), "train")  # default protocol: rf_uc
    assert isinstance(split, HOISplit) and split.split == "train" and split.protocol == "rf_uc"
    assert split.vocab.name == "hicodet" and split.vocab.num_classes == 600
    assert np.array_equal(split.unseen, hicodet_protocol("rf_uc")) and np.array_equal(split.rare, hicodet_rare())
    ann = split.annotations
    assert not np.isin(ann.hoi, split.unseen).any()  # 22 (wash bicycle) is gone
    assert split.kept_images.tolist() == [0, 3, 4, 5, 6, 7]
    assert ann.filenames == [f"HICO_train2015_{k + 1:08d}.jpg" for k in (0, 3, 4, 5, 6, 7)]
    assert ann.num_pairs == 10 and len(split.dataset) == 6
    full = DetectionCache.load(FIX / "detections_train2015.npz")
    for i in range(len(split.dataset)):
        it = split.dataset[i]
        k = int(split.kept_images[it["image_index"]])
        assert it["filename"] == full.filenames[k]
        assert np.array_equal(it["dets"].boxes, full[k].boxes) and it["dets"].feats is None
    assert split.dataset[0]["gt"]["hoi"].tolist() == [18]


def test_build_dataset_hicodet_test_and_supervised():
    test = build_dataset(_cfg(), "test")
    assert test.annotations.num_images == 5 and test.annotations.num_pairs == 9  # unfiltered
    assert 22 in test.annotations.hoi and len(test.dataset) == 4 and test.kept_images.tolist() == [0, 1, 2, 3, 4]
    assert test.dataset[0]["dets"].feats.shape == (3, 8)
    sup = build_dataset(_cfg(**{"data.protocol": "supervised"}), "train")
    assert sup.unseen.shape == (0,) and sup.annotations.num_images == 7 and sup.annotations.num_pairs == 12
    uo = build_dataset(_cfg(**{"data.protocol": "uo"}), "train")
    assert 422 not in uo.annotations.hoi and uo.annotations.num_pairs == 11


def test_build_dataset_hicodet_paths(tmp_path):
    root = tmp_path / "hicodet"
    shutil.copytree(FIX, root)
    moved = tmp_path / "elsewhere.npz"
    (root / "detections_test2015.npz").rename(moved)
    with pytest.raises(FileNotFoundError, match=r"detection cache not found: .*detections_test2015.npz.*detr_import"):
        build_dataset(_cfg(root), "test")
    split = build_dataset(_cfg(root, **{"data.detections_test": str(moved)}), "test")
    assert len(split.dataset) == 4 and split.dataset.detections.source == str(moved)
    shutil.rmtree(root / "hico_20160224_det" / "images" / "train2015")
    with pytest.raises(FileNotFoundError, match=r"HICO-DET image folder not found: .*images/train2015"):
        build_dataset(_cfg(root), "train")
    with pytest.raises(FileNotFoundError, match="HICO-DET annotation file not found"):
        build_dataset(_cfg(tmp_path / "empty"), "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        build_dataset(_cfg(root), "val")


# ---- build_dataset: the built-in world (when its module exists) ---------------------------------------------------
def test_build_dataset_world(tmp_path):
    pytest.importorskip("hoilib.data.world")
    cfg = ExperimentConfig().override({"data.cache_dir": str(tmp_path), "world.n_train": 60, "world.n_test": 30,
                                       "world.n_caption": 30, "data.protocol": "rf_uc"})
    from hoilib.data.world import build_world

    world = build_world(cfg, progress=False)
    train = build_dataset(cfg, "train")
    test = build_dataset(cfg, "test")
    assert np.array_equal(train.unseen, np.unique(world.protocols["rf_uc"]))
    assert not np.isin(train.annotations.hoi, train.unseen).any()
    assert np.array_equal(train.rare, rare_classes(world.train)) and np.array_equal(test.rare, train.rare)
    assert test.annotations.num_pairs == world.test.num_pairs and train.vocab.name == "world"
    S = cfg.world.image_size
    for split, images in ((train, world.train_images), (test, world.test_images)):
        it = split.dataset[len(split.dataset) - 1]
        k = int(split.kept_images[it["image_index"]])
        assert it["image"].shape == (S, S, 3) and np.array_equal(it["image"], images[k])
        assert it["size"] == (S, S) and it["dets"] is not None and len(it["gt"]["hoi"]) > 0
