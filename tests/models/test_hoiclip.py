"""HOICLIP's training-free enhancement (§3.4, eq. 17): the two scoring rules on hand-made numbers, in
`hoiclip.final_scores` and through `LAIN.postprocess`, and K = 0 as a true off switch under both rules."""
import math

import numpy as np
import pytest
import torch

from hoilib.config import ExperimentConfig
from hoilib.models import build_model
from hoilib.models.hoiclip import final_scores

from test_lain import UNSEEN, random_dets, toy_vocab

# 2 pairs x 3 classes. zs: the top-K cosines kept (0 elsewhere); prior 0 marks an invalid entry.
LOGITS = torch.tensor([[0.0, 1.0, -1.0], [2.0, -2.0, 0.5]])
ZS = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.25, 0.0]])
PRIOR = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.2, 0.2]])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_hoiclip_rule_by_hand():
    # (sigmoid(logit) + sigmoid(zs)) * prior; sigmoid(0) = 0.5 is added where zs was zeroed.
    expected = [[(0.5 + 0.5744425) * 0.5, (0.7310586 + 0.5) * 0.5, 0.0],
                [(0.8807971 + 0.5) * 0.2, (0.1192029 + 0.5621765) * 0.2, (0.6224593 + 0.5) * 0.2]]
    assert expected[0][0] == pytest.approx((sig(0) + sig(0.3)) * 0.5, abs=1e-7)
    got = final_scores(LOGITS, PRIOR, ZS, "hoiclip")
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    assert got[0, 0].item() == pytest.approx(0.5372213, abs=1e-6)


def test_logit_rule_by_hand():
    # sigmoid(logit + zs) * prior
    expected = [[sig(0.3) * 0.5, sig(1.0) * 0.5, 0.0], [sig(2.0) * 0.2, sig(-1.75) * 0.2, sig(0.5) * 0.2]]
    got = final_scores(LOGITS, PRIOR, ZS, "logit")
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    assert got[1, 1].item() == pytest.approx(0.0296094, abs=1e-6)


def test_without_zero_shot_scores_both_rules_are_the_plain_score():
    plain = torch.sigmoid(LOGITS) * PRIOR
    for rule in ("hoiclip", "logit"):
        assert torch.equal(final_scores(LOGITS, PRIOR, None, rule), plain)
    with pytest.raises(ValueError, match="zero-shot rule must be one of"):
        final_scores(LOGITS, PRIOR, ZS, "sum")
    with pytest.raises(ValueError, match="differ in shape"):
        final_scores(LOGITS, PRIOR, ZS[:1], "hoiclip")




def make(clip, **model):
    cfg = ExperimentConfig().override({f"model.{k}": v for k, v in model.items()})
    return build_model(cfg, toy_vocab(), clip=clip, protocol_unseen=UNSEEN)


def test_postprocess_applies_the_rule(clip):
    # Two pairs of one image, both with a ball (object 2; its classes are verbs 0, 2, 3, 4); the object boxes'
    # x1 (32 and 0) tell the pairs apart in the results.
    out = dict(boxes=torch.tensor([[0.0, 0, 32, 32], [32, 32, 64, 64], [0, 32, 16, 64]]),
               scores=torch.tensor([0.9, 0.8, 0.5]), labels=torch.tensor([0, 2, 2]),
               pairs=torch.tensor([[0, 1], [0, 2]]),
               logits=torch.tensor([[0.0, 5.0, 1.0, -1.0, 2.0], [2.0, 5.0, -2.0, 0.5, 0.0]]),
               zs=torch.tensor([[0.3, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.25, 0.0, 0.0]]))
    p0, p1 = (0.9 * 0.8) ** 2.8, (0.9 * 0.5) ** 2.8  # priors at lambda_test = 2.8
    # (object box x1, verb) -> (hoiclip, logit)
    expected = {
        (32, 0): ((sig(0.0) + sig(0.3)) * p0, sig(0.3) * p0), (32, 2): ((sig(1.0) + 0.5) * p0, sig(1.0) * p0),
        (32, 3): ((sig(-1.0) + 0.5) * p0, sig(-1.0) * p0), (32, 4): ((sig(2.0) + 0.5) * p0, sig(2.0) * p0),
        (0, 0): ((sig(2.0) + 0.5) * p1, sig(2.0) * p1), (0, 2): ((sig(-2.0) + sig(0.25)) * p1, sig(-1.75) * p1),
        (0, 3): ((sig(0.5) + 0.5) * p1, sig(0.5) * p1), (0, 4): ((sig(0.0) + 0.5) * p1, sig(0.0) * p1),
    }
    ov = toy_vocab().object_verb_to_hoi
    for i, rule in enumerate(("hoiclip", "logit")):
        res = make(clip, zs_rule=rule).postprocess([out], [(64, 64)])[0]
        got = {(int(x1), int(h)): s for x1, h, s in zip(res["boxes_o"][:, 0], res["hoi"], res["score"])}
        assert set(got) == {(x1, int(ov[2, v])) for x1, v in expected}  # one row per valid entry
        for (x1, v), e in expected.items():
            assert got[(x1, int(ov[2, v]))] == pytest.approx(e[i], rel=1e-5), (rule, x1, v)


@pytest.mark.parametrize("rule", ["hoiclip", "logit"])
def test_top_k_zero_leaves_scores_unchanged(clip, rule):
    images = torch.randn(2, 3, 64, 64)
    dets = [random_dets(2, 3, seed=11), random_dets(1, 3, seed=12)]
    off = make(clip, zs_topk=0, zs_rule=rule).eval()
    on = make(clip, zs_topk=3, zs_rule=rule).eval()
    with torch.no_grad():
        out_off, out_on = off(images, dets), on(images, dets)
    assert all("zs" not in o for o in out_off) and all("zs" in o for o in out_on)
    res_off = off.postprocess(out_off, [(64, 64)] * 2)
    res_on = on.postprocess(out_on, [(64, 64)] * 2)
    for o, r, r_on in zip(out_off, res_off, res_on):
        prior = o["prior"]
        p, t = torch.nonzero(prior).unbind(1)
        plain = (torch.sigmoid(o["logits"][p, t]) * prior[p, t]).numpy()
        np.testing.assert_allclose(r["score"], plain, rtol=1e-6)  # exactly the score without the enhancement
        assert not np.allclose(r_on["score"], r["score"])  # while K > 0 changes it
