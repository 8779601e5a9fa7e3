"""Zero-shot protocols, the rare / non-rare split and the filtering of the training set.

A protocol is a set of unseen HOI classes. Training hides them by the official LAIN rule
(`../shared/docs/lain-reference.md` §11, LAIN `datasets/__init__.py`): a training image is kept when it has at
least one seen pair, and in a kept image only the unseen pairs are removed. (GEN-VLKT also drops seen labels of
box pairs that carry an unseen label; LAIN does not, and neither do we.) The test set is never filtered:
unseen / seen mAP are means over the two class sets.

HICO-DET's unseen lists are the standard ones (`assets/zero_shot_splits.json`: RF-UC 120, NF-UC 120, UO 100,
UV 84, UC uc0-uc4 120 each); the built-in world makes its own by the same rules (`hoilib.data.world.protocols`).
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd

from .annotations import HOIAnnotations
from .vocab import ASSETS

# Protocol name (config) -> key in assets/zero_shot_splits.json.
HICODET_PROTOCOL_KEYS = {
    "rf_uc": "rare_first", "nf_uc": "non_rare_first", "uo": "unseen_object", "uv": "unseen_verb",
    "uc0": "uc0", "uc1": "uc1", "uc2": "uc2", "uc3": "uc3", "uc4": "uc4",
}
RARE_THRESHOLD = 10  # HICO-DET: a class is rare with fewer than 10 training pairs


@lru_cache(maxsize=1)
def _zero_shot_splits() -> dict:
    return json.loads((ASSETS / "zero_shot_splits.json").read_text())


def hicodet_protocol(name: str) -> np.ndarray:
    """Unseen HOI classes of a HICO-DET protocol: sorted int64 indices into the 600 classes.

    `name` is one of "rf_uc", "nf_uc", "uo", "uv", "uc0".."uc4" (or the file's long names: "rare_first", ...) or
    "supervised" (no unseen classes).
    """
    if name == "supervised":
        return np.zeros(0, np.int64)
    key = HICODET_PROTOCOL_KEYS.get(name, name)  # the long names of zero_shot_splits.json are accepted too
    if key not in HICODET_PROTOCOL_KEYS.values():
        raise ValueError(f"unknown protocol {name!r}; known: {sorted(HICODET_PROTOCOL_KEYS) + ['supervised']}")
    return np.unique(np.asarray(_zero_shot_splits()[key], np.int64))


@lru_cache(maxsize=1)
def hicodet_val_filenames() -> tuple:
    """File names of the real path's validation split: 1,000 HICO-DET training images held out from training
    (`assets/hicodet_val.json`, drawn once with a fixed seed; see its `_doc`)."""
    return tuple(json.loads((ASSETS / "hicodet_val.json").read_text())["filenames"])


def hicodet_protocols() -> dict:
    """All HICO-DET zero-shot protocols: {name: unseen classes}, in the order of `HICODET_PROTOCOL_KEYS`."""
    return {name: hicodet_protocol(name) for name in HICODET_PROTOCOL_KEYS}


def hicodet_rare() -> np.ndarray:
    """The official 138 rare HICO-DET classes (fewer than 10 pairs in instances_train2015.json), sorted int64."""
    return np.unique(np.asarray(_zero_shot_splits()["rare"], np.int64))


def seen_image_mask(annotations: HOIAnnotations, unseen: np.ndarray) -> np.ndarray:
    """[N] bool: the images a protocol keeps for training (those with at least one seen pair)."""
    unseen = _check_classes(unseen, annotations.num_classes)
    seen = ~np.isin(annotations.hoi, unseen)
    keep = np.zeros(annotations.num_images, bool)
    keep[annotations.image_index[seen]] = True
    return keep


def filter_training(annotations: HOIAnnotations, unseen: np.ndarray) -> HOIAnnotations:
    """Hide the unseen classes from a training split by the official LAIN rule.

    Keeps the images with at least one seen pair (images without pairs go, too) and removes their unseen pairs.
    Kept images are renumbered 0..N'-1 in their original order; `np.flatnonzero(seen_image_mask(...))` gives
    their positions in the unfiltered split. With no unseen classes only the empty images are dropped.
    """
    unseen = _check_classes(unseen, annotations.num_classes)
    seen_pairs = ~np.isin(annotations.hoi, unseen)
    kept = np.flatnonzero(seen_image_mask(annotations, unseen))
    # select_pairs drops the unseen pairs (images stay); select_images then keeps and renumbers the images in order.
    return annotations.select_pairs(seen_pairs).select_images(kept)


def rare_classes(train_annotations: HOIAnnotations, threshold: int = RARE_THRESHOLD) -> np.ndarray:
    """Classes with fewer than `threshold` pairs in the (unfiltered) training annotations, sorted int64.

    Classes without any training pair count as rare. On HICO-DET's train2015 file this gives the official 138.
    """
    return rare_from_counts(train_annotations.class_counts(), threshold)


def rare_from_counts(train_counts: np.ndarray, threshold: int = RARE_THRESHOLD) -> np.ndarray:
    """Rare classes of any vocabulary from its [C] training pair counts: indices with fewer than `threshold`."""
    return np.flatnonzero(np.asarray(train_counts) < threshold).astype(np.int64)


def split_statistics(train_ann: HOIAnnotations | None, test_ann: HOIAnnotations, protocols: dict,
                     rare: np.ndarray | None = None) -> pd.DataFrame:
    """One row per protocol (and for the rare / non-rare class sets): how much each setting hides and tests.

    Args:
        train_ann: unfiltered training annotations, or None when they are not available (HICO-DET's train file
            is not shipped with hoilib): the train columns are then missing values.
        test_ann: test annotations (never filtered).
        protocols: {name: unseen HOI classes}; "supervised" (no unseen classes) may be one of them.
        rare: rare classes; adds the rows "rare" and "non_rare" (training unfiltered, as in fully supervised runs).

    Returns:
        DataFrame (nullable Int64 counts) with columns
            setting            protocol name, "rare" or "non_rare"
            class_set          what the set columns count: "unseen" for a protocol, "rare" / "non_rare" otherwise
            set_classes        classes in the set (unseen classes; rare classes)
            other_classes      the remaining classes (seen classes; non-rare classes)
            train_images       training images kept (protocol rule; all non-empty images for rare / non_rare)
            train_pairs        training pairs kept
            train_set_pairs    pairs of set classes left in training (0 for every protocol, by construction)
            test_images        test images with at least one pair
            test_set_images    test images with at least one pair of a set class
            test_set_pairs     test pairs of set classes (unseen / rare)
            test_other_pairs   test pairs of the other classes (seen / non-rare)
    """
    C = test_ann.num_classes
    if train_ann is not None and train_ann.num_classes != C:
        raise ValueError(f"train has {train_ann.num_classes} HOI classes, test has {C}")
    settings = [(name, "unseen", np.asarray(cls), True) for name, cls in protocols.items()]
    if rare is not None:
        rare = _check_classes(rare, C)
        settings += [("rare", "rare", rare, False), ("non_rare", "non_rare", np.setdiff1d(np.arange(C), rare), False)]
    test_images = len(test_ann.nonempty_images())
    rows = []
    for name, class_set, classes, is_protocol in settings:
        classes = _check_classes(classes, C)
        in_set = np.isin(test_ann.hoi, classes)
        row = dict(setting=name, class_set=class_set, set_classes=len(classes), other_classes=C - len(classes),
                   train_images=pd.NA, train_pairs=pd.NA, train_set_pairs=pd.NA, test_images=test_images,
                   test_set_images=len(np.unique(test_ann.image_index[in_set])),
                   test_set_pairs=int(in_set.sum()), test_other_pairs=int((~in_set).sum()))
        if train_ann is not None:
            # rare / non_rare rows describe the fully supervised training set: nothing is hidden there.
            train = filter_training(train_ann, classes if is_protocol else np.zeros(0, np.int64))
            row.update(train_images=len(train.nonempty_images()), train_pairs=train.num_pairs,
                       train_set_pairs=int(np.isin(train.hoi, classes).sum()))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in df.columns[2:]:
        df[col] = df[col].astype("Int64")
    return df


def _check_classes(classes, num_classes: int) -> np.ndarray:
    classes = np.asarray(classes, np.int64).reshape(-1)
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(f"HOI class index {int(bad[0])} out of range [0, {num_classes})")
    return classes
