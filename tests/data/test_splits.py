"""Zero-shot protocols, training-set filtering (official LAIN rule), rare classes and split statistics."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hoilib.data import HOIAnnotations, hicodet_vocabulary
from hoilib.data.hicodet import load_hicodet
from hoilib.data.splits import (filter_training, hicodet_protocol, hicodet_protocols, hicodet_rare, rare_classes,
                                seen_image_mask, split_statistics)
from hoilib.data.vocab import ASSETS

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "hicodet"
ZS = json.loads((ASSETS / "zero_shot_splits.json").read_text())


@pytest.fixture(scope="module")
def real_test(request):
    path = Path(__file__).resolve().parents[3] / "shared" / "hicodet" / "instances_test2015.json"
    if not path.is_file():
        pytest.skip(f"real HICO-DET annotations not found at {path}")
    return HOIAnnotations.from_json(path)


def _toy(images: list, num_classes: int = 6) -> HOIAnnotations:
    """Annotations over a toy vocabulary (HOI class c = (verb c, object c % 2)) from [(filename, [hoi, ...])]."""
    ann = []
    for _, hois in images:
        ann.append(dict(boxes_h=[[1.0, 1.0, 5.0, 5.0]] * len(hois), boxes_o=[[2.0, 2.0, 8.0, 8.0]] * len(hois),
                        hoi=list(hois), object=[h % 2 for h in hois], verb=list(hois)))
    return HOIAnnotations.from_dict(dict(
        filenames=[f for f, _ in images], size=[[10, 10]] * len(images), annotation=ann,
        objects=["person", "ball"], verbs=[f"v{c}" for c in range(num_classes)],
        correspondence=[[c, c % 2, c] for c in range(num_classes)]))


# ---- protocols -------------------------------------------------------------------------------------------------
def test_hicodet_protocol_lists():
    sizes = {name: len(cls) for name, cls in hicodet_protocols().items()}
    assert sizes == dict(rf_uc=120, nf_uc=120, uo=100, uv=84, uc0=120, uc1=120, uc2=120, uc3=120, uc4=120)
    for name, cls in hicodet_protocols().items():
        assert cls.dtype == np.int64 and np.array_equal(cls, np.unique(cls)) and cls.min() >= 0 and cls.max() < 600
        assert set(cls.tolist()) == set(ZS[{"rf_uc": "rare_first", "nf_uc": "non_rare_first", "uo": "unseen_object",
                                            "uv": "unseen_verb"}.get(name, name)])
    assert hicodet_protocol("supervised").shape == (0,)
    with pytest.raises(ValueError, match="unknown protocol 'rf-uc'; known: .*'rf_uc'"):
        hicodet_protocol("rf-uc")
    rare = hicodet_rare()
    assert len(rare) == 138
    assert set(hicodet_protocol("rf_uc")) <= set(rare)  # RF-UC: the rarest classes
    assert not set(hicodet_protocol("nf_uc")) & set(rare)  # NF-UC: non-rare classes only
    vocab = hicodet_vocabulary()
    uo_objects = set(vocab.hoi_classes[hicodet_protocol("uo"), 1].tolist())
    assert len(uo_objects) == 12 and set(hicodet_protocol("uo")) == set(
        np.flatnonzero(np.isin(vocab.hoi_classes[:, 1], list(uo_objects))).tolist())
    uv_verbs = set(vocab.hoi_classes[hicodet_protocol("uv"), 0].tolist())
    assert len(uv_verbs) == 20 and set(hicodet_protocol("uv")) == set(
        np.flatnonzero(np.isin(vocab.hoi_classes[:, 0], list(uv_verbs))).tolist())


def test_real_test_pairs_per_protocol(real_test):
    protocols = {**hicodet_protocols(), "supervised": hicodet_protocol("supervised")}
    df = split_statistics(None, real_test, protocols, hicodet_rare()).set_index("setting")
    expected = dict(rf_uc=(836, 32569), nf_uc=(21259, 12146), uo=(4988, 28417), uv=(6580, 26825))
    for name, (unseen, seen) in expected.items():
        assert (df.loc[name, "test_set_pairs"], df.loc[name, "test_other_pairs"]) == (unseen, seen), name
    for name in ("uc0", "uc1", "uc2", "uc3", "uc4"):
        ref = ZS["test_set_instance_counts"][name]
        assert (df.loc[name, "test_set_pairs"], df.loc[name, "test_other_pairs"]) == (ref["unseen"], ref["seen"])
    assert (df["test_set_pairs"] + df["test_other_pairs"] == 33405).all()
    assert (df["test_images"] == 9546).all()
    assert df.loc["supervised", "set_classes"] == 0 and df.loc["supervised", "test_set_pairs"] == 0
    assert df.loc["rare", "set_classes"] == 138 and df.loc["non_rare", "set_classes"] == 462
    assert df.loc["rf_uc", "set_classes"] + df.loc["rf_uc", "other_classes"] == 600
    # without the train file the train columns are missing values, not zeros
    train_cols = ["train_images", "train_pairs", "train_set_pairs"]
    assert df[train_cols].isna().all().all()
    assert str(df["test_set_pairs"].dtype) == "Int64"


# ---- the official filtering rule -------------------------------------------------------------------------------
def test_filter_training_hand_made_case():
    ann = _toy([("a.jpg", [0, 1, 1]),  # mixed: kept, the unseen pair (0) removed
                ("b.jpg", [0, 0]),  # unseen only: dropped
                ("c.jpg", []),  # empty: dropped
                ("d.jpg", [2, 5]),  # seen only: kept intact
                ("e.jpg", [5, 0])])  # kept, one pair left
    out = filter_training(ann, np.array([0]))
    assert out.filenames == ["a.jpg", "d.jpg", "e.jpg"]
    assert out.image_index.tolist() == [0, 0, 1, 1, 2]
    assert out.hoi.tolist() == [1, 1, 2, 5, 5]
    assert out.verb.tolist() == out.hoi.tolist() and out.object.tolist() == [1, 1, 0, 1, 1]
    assert out.empty == [] and out.sizes.shape == (3, 2)
    assert seen_image_mask(ann, [0]).tolist() == [True, False, False, True, True]
    # two unseen classes: e.jpg keeps only class 5, d.jpg only class 5 too
    out = filter_training(ann, np.array([0, 1, 2]))
    assert out.filenames == ["d.jpg", "e.jpg"] and out.hoi.tolist() == [5, 5]
    # supervised: only the empty image goes
    out = filter_training(ann, np.zeros(0, np.int64))
    assert out.filenames == ["a.jpg", "b.jpg", "d.jpg", "e.jpg"] and out.num_pairs == ann.num_pairs
    with pytest.raises(ValueError, match=r"HOI class index 6 out of range \[0, 6\)"):
        filter_training(ann, [6])


def test_filter_training_on_real_annotations(real_test):
    """The test file stands in for a training split: unseen classes vanish, every seen pair survives."""
    per_image = {}
    for i, h in zip(real_test.image_index.tolist(), real_test.hoi.tolist()):
        per_image.setdefault(i, []).append(h)
    for name, unseen in hicodet_protocols().items():
        out = filter_training(real_test, unseen)
        assert not np.isin(out.hoi, unseen).any(), name
        seen = ~np.isin(real_test.hoi, unseen)
        assert out.num_pairs == int(seen.sum())  # kept images hold every seen pair
        useen = set(unseen.tolist())
        keep = [real_test.filenames[i] for i in sorted(per_image) if any(h not in useen for h in per_image[i])]
        assert out.filenames == keep, name  # naive rule, original order
        assert out.empty == [] and np.array_equal(np.bincount(out.hoi, minlength=600)[~np.isin(np.arange(600), unseen)],
                                                  real_test.class_counts()[~np.isin(np.arange(600), unseen)])
    assert len(filter_training(real_test, hicodet_protocol("rf_uc")).filenames) == 9329
    assert len(filter_training(real_test, hicodet_protocol("supervised")).filenames) == 9546


def test_rare_classes():
    ann = _toy([("a.jpg", [0] * 9 + [1] * 10), ("b.jpg", [2] * 3 + [3] * 12)])
    assert rare_classes(ann).tolist() == [0, 2, 4, 5]  # 4 and 5 have no pairs at all
    assert rare_classes(ann, threshold=4).tolist() == [2, 4, 5]
    assert rare_classes(ann).dtype == np.int64


def test_rare_classes_real_test(real_test):
    assert len(rare_classes(real_test)) == 198  # README: 198 classes have fewer than 10 test pairs


# ---- statistics with a training split --------------------------------------------------------------------------
def test_split_statistics_with_training_split():
    train, _ = load_hicodet(FIX, "train")
    test, _ = load_hicodet(FIX, "test")
    protocols = {"supervised": np.zeros(0, np.int64), "rf_uc": hicodet_protocol("rf_uc"),
                 "uo": hicodet_protocol("uo")}
    df = split_statistics(train, test, protocols, rare=np.array([22, 139]))
    assert list(df["setting"]) == ["supervised", "rf_uc", "uo", "rare", "non_rare"]
    assert list(df["class_set"]) == ["unseen", "unseen", "unseen", "rare", "non_rare"]
    df = df.set_index("setting")
    # fixture: 8 train images (one empty), 12 pairs; class 22 (RF-UC) on images 0 and 1, 422 (UO) on image 5
    assert df.loc["supervised", ["train_images", "train_pairs", "train_set_pairs"]].tolist() == [7, 12, 0]
    assert df.loc["rf_uc", ["train_images", "train_pairs", "train_set_pairs"]].tolist() == [6, 10, 0]
    assert df.loc["uo", ["train_images", "train_pairs", "train_set_pairs"]].tolist() == [7, 11, 0]
    assert df.loc["rare", ["train_images", "train_pairs", "train_set_pairs"]].tolist() == [7, 12, 3]
    assert df.loc["non_rare", "train_set_pairs"] == 9
    # test: 5 images (one empty), 9 pairs; 22 once, 422 once, 139 once
    assert df.loc["rf_uc", ["test_images", "test_set_images", "test_set_pairs", "test_other_pairs"]].tolist() == \
        [4, 1, 1, 8]
    assert df.loc["rare", ["test_set_images", "test_set_pairs", "test_other_pairs"]].tolist() == [2, 2, 7]
    assert df.loc["rare", "set_classes"] == 2 and df.loc["non_rare", "set_classes"] == 598
    assert isinstance(df, pd.DataFrame) and not df.isna().any().any()
