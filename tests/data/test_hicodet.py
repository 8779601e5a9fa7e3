"""HICO-DET readers: the real test annotations, the fixtures, vocabulary checks and bad-input errors."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hoilib.data import AnnotationError, HOIAnnotations, hicodet_vocabulary
from hoilib.data.images import FileImages
from hoilib.data.hicodet import (annotation_path, check_against_vocabulary, image_dir, load_hicodet,
                                 to_coco_object_order)
from hoilib.data.vocab import ASSETS

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"


@pytest.fixture
def fixture_root(tmp_path) -> Path:
    """A writable copy of the fixture root (annotations + images)."""
    root = tmp_path / "hicodet"
    shutil.copytree(FIX, root)
    return root


def _rewrite(root: Path, split: str, edit) -> Path:
    path = annotation_path(root, split)
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path


# ---- the real test set ----------------------------------------------------------------------------------------
def test_real_test_annotations(hico_test_json):
    ann, images = load_hicodet(hico_test_json.parent, "test")  # no images there: annotations still load
    assert ann.num_images == 9658 and len(images) == 9658
    assert ann.num_pairs == 33405
    assert len(ann.empty) == 112
    pair_less = sorted(set(range(ann.num_images)) - set(ann.image_index.tolist()))
    assert ann.empty == pair_less  # the file's "empty" list is exactly the images without pairs
    assert len(ann.nonempty_images()) == 9546
    assert ann.filenames[0] == "HICO_test2015_00000001.jpg" and ann.filenames == sorted(ann.filenames)
    # class index ranges and consistency with the correspondence table
    assert ann.hoi.min() == 0 and ann.hoi.max() == 599
    assert ann.object.min() == 0 and ann.object.max() == 79
    assert ann.verb.min() == 0 and ann.verb.max() == 116
    assert np.array_equal(ann.hoi_to_object[ann.hoi], ann.object)
    assert np.array_equal(ann.hoi_to_verb[ann.hoi], ann.verb)
    counts = ann.class_counts()
    assert counts.min() == 2 and counts.max() == 898 and (counts < 10).sum() == 198
    assert np.bincount(ann.image_index).max() == 161
    assert ann.sizes[:, 0].min() == 160 and ann.sizes[:, 0].max() == 640
    assert ann.sizes[:, 1].min() == 120 and ann.sizes[:, 1].max() == 640
    # 1-based inclusive boxes: smallest x1/y1 is 1, no x2/y2 beyond the image
    assert min(ann.boxes_h[:, :2].min(), ann.boxes_o[:, :2].min()) == 1.0
    # the tables are exactly hoilib's vocabulary
    vocab = hicodet_vocabulary()
    assert np.array_equal(ann.correspondence, vocab.correspondence)
    assert tuple(ann.objects) == vocab.objects and tuple(ann.verbs) == vocab.verbs
    check_against_vocabulary(ann)
    assert images.image_dir == image_dir(hico_test_json.parent, "test")


# ---- fixtures in the real layout ------------------------------------------------------------------------------
def test_load_fixture_splits():
    train, train_images = load_hicodet(FIX, "train")
    test, test_images = load_hicodet(FIX, "test")
    assert (train.num_images, train.num_pairs, train.empty) == (8, 12, [2])
    assert (test.num_images, test.num_pairs, test.empty) == (5, 9, [1])
    assert isinstance(train_images, FileImages) and train_images.filenames == train.filenames
    for images, ann in ((train_images, train), (test_images, test)):
        for i in range(ann.num_images):
            img = images.load(i)
            w, h = ann.sizes[i]
            assert img.dtype == np.uint8 and img.shape == (h, w, 3)


def test_alphabetical_object_order_is_caught_and_converted():
    cat = json.loads((ASSETS / "hico_categories.json").read_text())["object_index_conventions"]
    alpha_of_coco = np.asarray(cat["hico_alphabetical_index"])
    d = json.loads(annotation_path(FIX, "train").read_text())
    # the fredzzhang/hicodet main-branch version of the same file: objects renumbered alphabetically
    d["objects"] = cat["hico_alphabetical_objects"]
    d["correspondence"] = [[h, int(alpha_of_coco[o]), v] for h, o, v in d["correspondence"]]
    for a in d["annotation"]:
        a["object"] = [int(alpha_of_coco[o]) for o in a["object"]]
    alpha = HOIAnnotations.from_dict(d, source="alpha.json")
    with pytest.raises(AnnotationError) as e:
        check_against_vocabulary(alpha)
    msg = str(e.value)
    assert msg.startswith("alpha.json: objects[0] is 'airplane' but the vocabulary has 'person'")
    assert "alphabetical" in msg and "to_coco_object_order" in msg
    back = to_coco_object_order(alpha)
    check_against_vocabulary(back)
    ref, _ = load_hicodet(FIX, "train")
    for key in ("object", "hoi", "verb", "image_index", "boxes_h", "boxes_o", "correspondence"):
        assert np.array_equal(getattr(back, key), getattr(ref, key)), key
    with pytest.raises(AnnotationError, match="not in alphabetical HICO order"):
        to_coco_object_order(ref)


def test_vocabulary_differences_are_named():
    ann, _ = load_hicodet(FIX, "test")
    verbs = list(ann.verbs)
    verbs[57] = "no interaction"
    bad = HOIAnnotations(**{**ann.__dict__, "verbs": verbs})
    with pytest.raises(AnnotationError,
                       match=r"verbs\[57\] is 'no interaction' but the vocabulary has 'no_interaction'"):
        check_against_vocabulary(bad)
    corr = ann.correspondence.copy()
    corr[[0, 1]] = corr[[1, 0]]  # two HOI classes swapped: still a valid table, but not HICO-DET's order
    corr[:, 0] = np.arange(600)
    bad = HOIAnnotations(**{**ann.__dict__, "correspondence": corr})
    with pytest.raises(AnnotationError, match=r"correspondence\[0\] is \[0, 4, 17\] .* has \[0, 4, 4\] "
                                              r"\(board airplane\)"):
        check_against_vocabulary(bad)
    short = HOIAnnotations(**{**ann.__dict__, "objects": list(ann.objects)[:79]})
    with pytest.raises(AnnotationError, match="objects has 79 entries, the vocabulary has 80"):
        check_against_vocabulary(short)


# ---- bad input -------------------------------------------------------------------------------------------------
def test_missing_annotation_file_says_where_hicodet_comes_from(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_hicodet(tmp_path, "train")
    msg = str(e.value)
    assert str(tmp_path / "instances_train2015.json") in msg
    assert "hico_20160224_det" in msg and "OreoChocolate/LAIN" in msg and "data.hicodet_root" in msg
    with pytest.raises(ValueError, match="split must be one of"):
        load_hicodet(FIX, "val")


def test_malformed_json_names_the_file(fixture_root):
    path = annotation_path(fixture_root, "train")
    path.write_text(path.read_text()[:500])
    with pytest.raises(AnnotationError, match=rf"^{path}: malformed JSON"):
        load_hicodet(fixture_root, "train")


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["annotation"][3]["boxes_o"].__setitem__(1, [20.0, 10.0, 10.0, 22.0]),
     r"image 3 \(HICO_train2015_00000004.jpg\), pair 1: boxes_o \[20.0, 10.0, 10.0, 22.0\] has x2 < x1"),
    (lambda d: d["annotation"][0]["boxes_h"][0].__setitem__(2, 65.0),
     r"image 0 \(HICO_train2015_00000001.jpg\), pair 0: boxes_h \[2.0, 3.0, 65.0, 46.0\] lies outside the image "
     r"\(64x48"),
    (lambda d: d["annotation"][5]["boxes_o"][1].__setitem__(1, 0.0),
     r"image 5 \(HICO_train2015_00000006.jpg\), pair 1: boxes_o .* lies outside"),
    (lambda d: d["annotation"][7]["hoi"].__setitem__(1, 600),
     r"image 7 \(HICO_train2015_00000008.jpg\), pair 1: hoi index 600 out of range \[0, 600\)"),
    (lambda d: d["annotation"][4]["object"].__setitem__(0, 80),
     r"image 4 \(HICO_train2015_00000005.jpg\), pair 0: object index 80 out of range \[0, 80\)"),
    (lambda d: d["annotation"][4]["verb"].__setitem__(0, -1),
     r"image 4 \(HICO_train2015_00000005.jpg\), pair 0: verb index -1 out of range \[0, 117\)"),
    (lambda d: d["annotation"][0]["verb"].__setitem__(0, 1),
     r"image 0 \(HICO_train2015_00000001.jpg\), pair 0: hoi 18 is \(object 1, verb 76\) but the pair says object 1, "
     r"verb 1"),
    (lambda d: d["annotation"][6]["hoi"].append(139),
     r"annotation\[6\] \(HICO_train2015_00000007.jpg\): 'boxes_h' has 1 entries, 'hoi' has 2"),
    (lambda d: d.pop("correspondence"), r"missing key 'correspondence'"),
])
def test_bad_annotations_name_file_and_entry(fixture_root, edit, expected):
    path = _rewrite(fixture_root, "train", edit)
    with pytest.raises(AnnotationError, match=rf"^{path}: {expected}"):
        load_hicodet(fixture_root, "train")


def test_missing_image_file_is_named(fixture_root):
    ann, images = load_hicodet(fixture_root, "test")
    gone = image_dir(fixture_root, "test") / ann.filenames[3]
    gone.unlink()
    assert images.missing() == [ann.filenames[3]]
    images.load(2)  # the others still load
    with pytest.raises(FileNotFoundError, match=rf"image 3 not found: {gone}$"):
        images.load(3)
    shutil.rmtree(image_dir(fixture_root, "test"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        images.load(0)
