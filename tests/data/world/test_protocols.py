"""Zero-shot protocols built by HICO-DET's rules (hoilib.data.world.protocols)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hoilib.data.vocab import ASSETS, hicodet_vocabulary
from hoilib.data.world import world_vocabulary
from hoilib.data.world.protocols import PROTOCOL_NAMES, make_protocols, protocol_table


def _counts(vocab, seed=0):
    """A long-tailed count vector with many ties (as real counts have)."""
    rs = np.random.RandomState(seed)
    return np.floor(400.0 / (rs.permutation(vocab.num_classes) + 1.0) ** 1.1).astype(np.int64)


def _seen_per(hoi, unseen, col, n):
    seen = np.setdiff1d(np.arange(hoi.shape[0]), unseen)
    return np.bincount(hoi[seen, col], minlength=n)


@pytest.mark.parametrize("vocab", [world_vocabulary(), hicodet_vocabulary()], ids=["world", "hicodet"])
def test_protocol_rules(vocab):
    counts = _counts(vocab)
    p = make_protocols(counts, vocab, seed=3)
    C, hoi = vocab.num_classes, vocab.hoi_classes
    n = round(0.2 * C)
    assert tuple(p) == PROTOCOL_NAMES
    for name, u in p.items():
        assert u.dtype == np.int64 and np.all(np.diff(u) > 0) and u.min() >= 0 and u.max() < C, name
    for name in ("rf_uc", "nf_uc", "uc0", "uc1", "uc2", "uc3", "uc4"):
        assert len(p[name]) == n, name
        # every object and every verb keeps at least one seen class
        assert (_seen_per(hoi, p[name], 1, vocab.num_objects) > 0).all(), name
        assert (_seen_per(hoi, p[name], 0, vocab.num_verbs) > 0).all(), name
    # UO / UV hide whole objects / verbs, never person / no_interaction, about 20% of the classes
    for name, col, never, size in (("uo", 1, 0, vocab.num_objects), ("uv", 0, vocab.no_interaction, vocab.num_verbs)):
        groups = np.unique(hoi[p[name], col])
        assert never not in groups
        assert np.array_equal(np.sort(p[name]), np.flatnonzero(np.isin(hoi[:, col], groups)))
        largest = np.bincount(hoi[:, col], minlength=size).max()
        assert abs(len(p[name]) - n) <= largest, (name, len(p[name]))
    # RF-UC holds the rarest classes: a seen class rarer than the most frequent unseen one was skipped only
    # because hiding it would have left its object or verb without a seen class
    for name, sign in (("rf_uc", 1), ("nf_uc", -1)):
        u = p[name]
        limit = (sign * counts[u]).max()
        seen_o = _seen_per(hoi, u, 1, vocab.num_objects)
        seen_v = _seen_per(hoi, u, 0, vocab.num_verbs)
        for c in np.setdiff1d(np.arange(C), u):
            if sign * counts[c] < limit:
                v, o = hoi[c]
                assert seen_o[o] == 1 or seen_v[v] == 1, (name, c)
    assert counts[p["rf_uc"]].mean() < counts.mean() < counts[p["nf_uc"]].mean()
    # the UC draws differ from each other
    assert len({tuple(p[f"uc{k}"]) for k in range(5)}) == 5


def test_protocols_are_deterministic():
    v = world_vocabulary()
    c = _counts(v)
    a, b = make_protocols(c, v, seed=7), make_protocols(c, v, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    d = make_protocols(c, v, seed=8)
    assert any(not np.array_equal(a[k], d[k]) for k in ("uo", "uv", "uc0"))
    # ties in the counts are broken by the seed
    flat = np.ones(v.num_classes, np.int64)
    assert not np.array_equal(make_protocols(flat, v, 1)["rf_uc"], make_protocols(flat, v, 2)["rf_uc"])


def test_options_and_errors():
    v = world_vocabulary()
    c = _counts(v)
    p = make_protocols(c, v, 0, unseen_fraction=0.1, n_uc=2)
    assert len(p["rf_uc"]) == round(0.1 * v.num_classes) and "uc2" not in p and "uc1" in p
    with pytest.raises(ValueError, match="HOI classes"):
        make_protocols(c[:-1], v, 0)
    with pytest.raises(ValueError, match="unseen_fraction"):
        make_protocols(c, v, 0, unseen_fraction=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        make_protocols(-c, v, 0)


def test_hicodet_lists_follow_the_rules_we_copy():
    """The facts the module docstring states about HICO-DET's official lists."""
    v = hicodet_vocabulary()
    z = json.loads((ASSETS / "zero_shot_splits.json").read_text())
    hoi = v.hoi_classes
    for name in ("rare_first", "non_rare_first"):
        assert (_seen_per(hoi, z[name], 1, 80) > 0).all() and (_seen_per(hoi, z[name], 0, 117) > 0).all()
    for k in range(5):
        u = z[f"uc{k}"]
        assert (_seen_per(hoi, u, 1, 80) > 0).all()  # objects always keep a seen class
        lost = int((_seen_per(hoi, u, 0, 117) == 0).sum())
        assert 9 <= lost <= 10  # ... verbs do not: uc_keep_verbs=False reproduces this
    uo_objects = np.unique(hoi[z["unseen_object"], 1])
    assert 0 not in uo_objects and np.isin(hoi[z["unseen_object"], 0], [v.no_interaction]).sum() == len(uo_objects)
    assert v.no_interaction not in hoi[z["unseen_verb"], 0]
    # our UC without the verb rule behaves like the official lists
    loose = make_protocols(_counts(v), v, 0, uc_keep_verbs=False)["uc0"]
    assert (_seen_per(hoi, loose, 1, 80) > 0).all()


def test_protocol_table():
    v = world_vocabulary()
    c = _counts(v)
    p = make_protocols(c, v, 0)
    rows = protocol_table(p, v, c, test_counts=c)
    assert [r["protocol"] for r in rows] == list(PROTOCOL_NAMES)
    uo = next(r for r in rows if r["protocol"] == "uo")
    assert uo["unseen_train_pairs"] + uo["seen_train_pairs"] == c.sum()
    assert uo["unseen_test_pairs"] + uo["seen_test_pairs"] == c.sum() and uo["unseen_test_pairs"] == c[p["uo"]].sum()
    assert uo["objects_without_seen_class"] == len(np.unique(v.hoi_classes[p["uo"], 1]))
    assert next(r for r in rows if r["protocol"] == "rf_uc")["verbs_without_seen_class"] == 0
