"""Zero-shot protocols (lists of unseen HOI classes) built by HICO-DET's rules, for any vocabulary.

HICO-DET's standard lists (`assets/zero_shot_splits.json`) were drawn once for its 600 classes; the built-in
world needs the same kinds of split for its own vocabulary. The rules, read off the HICO-DET lists
(checked with `hoilib.data.vocab.hicodet_vocabulary()` against the asset lists):

- RF-UC (rare first): the ~20% rarest classes by training count (HICO-DET: 120 of 600, all among the 138 rare);
  NF-UC (non-rare first): the ~20% most frequent. In HICO-DET's RF-UC and NF-UC lists every object and every verb
  keeps at least one seen class, so the same constraint is applied here: a class is skipped when hiding it would
  leave its object or its verb with no seen class.
- UO (unseen object): every class of a random set of objects totalling ~20% of the classes (HICO-DET: 12 objects,
  100 classes); person is never an unseen object. Hiding an object hides its no_interaction class too (HICO-DET's
  UO list contains the 12 no_interaction classes of its objects).
- UV (unseen verb): every class of a random set of verbs totalling ~20% (HICO-DET: 20 verbs, 84 classes);
  no_interaction is never an unseen verb (it is not in HICO-DET's UV list), so every object keeps a seen class.
- UC (unseen combination), draws uc0..uc{n_uc-1}: random ~20% of the classes such that every object and every
  verb keeps at least one seen class: the verb and the object are each seen, only the combination is new. HICO-DET's
  five UC lists satisfy the object half of this rule but not the verb half: each hides every class of 9-10 verbs,
  nearly all of them verbs with a single HICO-DET class (e.g. uc0 hides "flip", "greet", "install"). With
  `uc_keep_verbs=False` the draw follows the lists literally (objects only).

no_interaction classes are ordinary classes in RF-UC, NF-UC and UC (HICO-DET's lists hide 5, 27 and 14-28 of them
respectively). Ties in training counts are broken by the seed; every list is deterministic from the seed.
"""
from __future__ import annotations

import numpy as np

from ..vocab import Vocabulary

PROTOCOL_NAMES = ("rf_uc", "nf_uc", "uo", "uv", "uc0", "uc1", "uc2", "uc3", "uc4")


def _greedy(order, n, hoi_classes, keep_objects=True, keep_verbs=True):
    """Hide classes in `order` until n are hidden, skipping a class when that would leave its object (verb) with
    no seen class."""
    V, O = int(hoi_classes[:, 0].max()) + 1, int(hoi_classes[:, 1].max()) + 1
    seen_v = np.bincount(hoi_classes[:, 0], minlength=V)
    seen_o = np.bincount(hoi_classes[:, 1], minlength=O)
    out = []
    for c in order:
        if len(out) == n:
            break
        v, o = hoi_classes[c]
        if (keep_verbs and seen_v[v] <= 1) or (keep_objects and seen_o[o] <= 1):
            continue
        seen_v[v] -= 1
        seen_o[o] -= 1
        out.append(int(c))
    return np.sort(np.asarray(out, np.int64))


def _whole_groups(candidates, sizes, target):
    """Groups (objects or verbs) taken in the given random order while adding one brings the total class count
    closer to `target` (at least one group)."""
    chosen, total = [], 0
    for g in candidates:
        if sizes[g] == 0:
            continue
        if not chosen or abs(total + sizes[g] - target) < abs(total - target):
            chosen.append(int(g))
            total += int(sizes[g])
    return chosen


def make_protocols(train_counts, vocab: Vocabulary, seed: int, unseen_fraction: float = 0.2, n_uc: int = 5,
                   *, uc_keep_verbs: bool = True) -> dict:
    """Unseen HOI class lists for RF-UC, NF-UC, UO, UV and UC (several draws).

    Args:
        train_counts: [C] training pairs per HOI class (the unfiltered training set).
        vocab: the vocabulary (hoi_classes [C, 2] (verb, object); object 0 = person; vocab.no_interaction).
        seed: every random choice (tie-breaks, objects, verbs, UC draws) follows from it.
        unseen_fraction: fraction of classes to hide (HICO-DET: 120 / 600 = 0.2).
        n_uc: number of UC draws ("uc0" ...).
        uc_keep_verbs: UC keeps a seen class for every verb as well as every object (see module docstring).
    Returns:
        {"rf_uc", "nf_uc", "uo", "uv", "uc0".. : sorted int64 arrays of unseen HOI indices}.
    """
    hoi = np.asarray(vocab.hoi_classes, np.int64)
    C = hoi.shape[0]
    counts = np.asarray(train_counts).reshape(-1)
    if counts.shape[0] != C:
        raise ValueError(f"train_counts has {counts.shape[0]} entries but the vocabulary has {C} HOI classes")
    if (counts < 0).any():
        raise ValueError("train_counts must be non-negative")
    if not 0.0 < unseen_fraction < 1.0:
        raise ValueError(f"unseen_fraction must lie in (0, 1), got {unseen_fraction}")
    n = max(1, int(round(unseen_fraction * C)))
    rs = np.random.RandomState(seed)
    tie = rs.permutation(C)
    out = {
        "rf_uc": _greedy(np.lexsort((tie, counts)), n, hoi),
        "nf_uc": _greedy(np.lexsort((tie, -counts)), n, hoi),
    }
    per_object = np.bincount(hoi[:, 1], minlength=vocab.num_objects)
    objects = [o for o in rs.permutation(vocab.num_objects) if o != 0]
    unseen_objects = _whole_groups(objects, per_object, n)
    out["uo"] = np.flatnonzero(np.isin(hoi[:, 1], unseen_objects)).astype(np.int64)
    per_verb = np.bincount(hoi[:, 0], minlength=vocab.num_verbs)
    verbs = [v for v in rs.permutation(vocab.num_verbs) if v != vocab.no_interaction]
    unseen_verbs = _whole_groups(verbs, per_verb, n)
    out["uv"] = np.flatnonzero(np.isin(hoi[:, 0], unseen_verbs)).astype(np.int64)
    for k in range(n_uc):
        out[f"uc{k}"] = _greedy(rs.permutation(C), n, hoi, keep_verbs=uc_keep_verbs)
    return out


def protocol_table(protocols: dict, vocab: Vocabulary, train_counts, test_counts=None) -> list:
    """One row (dict) per protocol: unseen / seen class counts, unseen training and test pairs, and how many
    objects and verbs have no seen class left. Feed it to pandas.DataFrame for display."""
    hoi = np.asarray(vocab.hoi_classes, np.int64)
    train_counts = np.asarray(train_counts)
    rows = []
    for name, unseen in protocols.items():
        unseen = np.asarray(unseen, np.int64)
        seen = np.setdiff1d(np.arange(hoi.shape[0]), unseen)
        row = {"protocol": name, "unseen_classes": int(len(unseen)), "seen_classes": int(len(seen)),
               "unseen_train_pairs": int(train_counts[unseen].sum()),
               "seen_train_pairs": int(train_counts[seen].sum()),
               "objects_without_seen_class": int(vocab.num_objects - len(np.unique(hoi[seen, 1]))),
               "verbs_without_seen_class": int(vocab.num_verbs - len(np.unique(hoi[seen, 0])))}
        if test_counts is not None:
            test_counts = np.asarray(test_counts)
            row["unseen_test_pairs"] = int(test_counts[unseen].sum())
            row["seen_test_pairs"] = int(test_counts[seen].sum())
        rows.append(row)
    return rows
