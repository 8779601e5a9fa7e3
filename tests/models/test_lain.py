"""LAIN end to end on open_clip ViTs with random weights: shapes, the attention-mask invariants, batching,
frozen CLIP, every ablation switch, detection filtering, the layout grid, text prompts, the prior, the loss
targets, post-processing, HOICLIP's components, and the parameter counts of lain-reference.md §10."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hoilib import cache
from hoilib.config import ExperimentConfig
from hoilib.data.detections import Detections
from hoilib.data.images import crop, union_box
from hoilib.data.vocab import Vocabulary, hicodet_vocabulary
from hoilib.models import build_clip, build_model, get_tokenizer
from hoilib.models.hoiclip import fit_verb_classifier, visual_semantic_arithmetic, zero_shot_topk
from hoilib.models.pairs import make_pairs, paint_layout, select_detections
from hoilib.models.text import PromptLearner, tokenize_prompts

VERBS = ("hold", "ride", "carry", "no_interaction", "kick")
OBJECTS = ("person", "bicycle", "ball", "cup")
HOI = np.array([[0, 1], [1, 1], [3, 1], [0, 2], [2, 2], [4, 2], [3, 2], [0, 3], [2, 3], [3, 3], [0, 0], [3, 0]])
UNSEEN = np.array([1, 5])  # "ride bicycle", "kick ball"


def toy_vocab() -> Vocabulary:
    return Vocabulary(
        name="toy", verbs=VERBS, objects=OBJECTS, hoi_classes=HOI,
        verb_prompts=tuple(f"a photo of a person is {v}ing the object" for v in VERBS),
        object_prompts=tuple(f"a photo of a {o}" for o in OBJECTS) + ("a photo of nothing",),
        hoi_prompts=tuple(f"a photo of a person {VERBS[v]}ing a {OBJECTS[o]}" for v, o in HOI), no_interaction=3)


pytestmark = pytest.mark.usefixtures("one_thread")




def make(clip, protocol_unseen=UNSEEN, **model):
    cfg = ExperimentConfig().override({f"model.{k}": v for k, v in model.items()})
    return build_model(cfg, toy_vocab(), clip=clip, protocol_unseen=protocol_unseen)


def set_gammas(model, value=1.0):
    """Make the adapters matter (their gammas start at 1e-9)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(value)


def random_dets(n_h, n_o, size=64, seed=0, feats=None):
    g = torch.Generator().manual_seed(seed)
    k = n_h + n_o
    xy = torch.rand(k, 2, generator=g) * size * 0.6
    wh = torch.rand(k, 2, generator=g) * size * 0.35 + size * 0.05
    labels = torch.cat([torch.zeros(n_h, dtype=torch.long), torch.randint(1, len(OBJECTS), (n_o,), generator=g)])
    return dict(boxes=torch.cat([xy, xy + wh], 1), scores=torch.rand(k, generator=g) * 0.6 + 0.3, labels=labels,
                feats=None if feats is None else torch.randn(k, feats, generator=g))


def targets_from(outputs, n=2):
    """Ground truth = the first n pairs of each image with verbs 0 and 2 (valid for balls and cups)."""
    tg = []
    for o in outputs:
        p = o["pairs"][:n]
        tg.append(dict(boxes_h=o["boxes"][p[:, 0]], boxes_o=o["boxes"][p[:, 1]], verb=torch.tensor([0, 2])[:len(p)],
                       object=o["labels"][p[:, 1]], hoi=torch.tensor([3, 4])[:len(p)]))
    return tg


# ---- detections, pairs, layout ----------------------------------------------------------------------------------
def test_select_detections_hand_made():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9.5], [50, 50, 60, 60], [20, 20, 30, 30], [0, 0, 10, 10],
                          [70, 0, 80, 10], [40, 0, 45, 5]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.3, 0.1, 0.7, 0.6, 0.25])
    labels = torch.tensor([0, 0, 0, 0, 2, 3, 2])
    keep, n_h = select_detections(boxes, scores, labels, min_instances=3, max_instances=15)
    # Box 1 is suppressed by box 0 (same class, IoU 0.95); box 4 survives (other class). Humans passing 0.2:
    # boxes 0 and 2 only -> fewer than 3 -> the top 3 after NMS, including box 3 below the threshold.
    assert n_h == 3 and keep[:3].tolist() == [0, 2, 3]
    # Objects: 4, 5, 6 pass (3 >= min) and come by descending score.
    assert keep[3:].tolist() == [4, 5, 6]
    keep, n_h = select_detections(boxes, scores, labels, min_instances=1, max_instances=1)
    assert keep.tolist() == [0, 4] and n_h == 1  # top-1 of each group
    keep, n_h = select_detections(boxes, scores, labels, min_instances=1, max_instances=15)
    assert keep.tolist() == [0, 2, 4, 5, 6] and n_h == 2  # threshold 0.2 drops box 3
    assert select_detections(boxes[:0], scores[:0], labels[:0])[0].numel() == 0
    with pytest.raises(ValueError, match="expected boxes"):
        select_detections(boxes, scores[:3], labels)


def test_make_pairs_ordered_human_x_other():
    assert make_pairs(2, 4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 0], [1, 2], [1, 3]]
    assert make_pairs(0, 3).shape == (0, 2) and make_pairs(1, 1).shape == (0, 2)


def test_paint_layout_hand_made():
    # 4x4 grid on a 32x32 image (8 px per cell). Box 0 covers x 0..16, y 0..8 -> grid x1 0, x2 2+0.5 -> round 2
    # (half to even), y 0..1.5 -> round 2: rows 0..1, cols 0..1. Box 1 painted later on top at cols 1..3, row 1.
    boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0], [10.0, 9.0, 30.0, 15.0]])
    index, g = paint_layout(boxes, (4, 4), (32, 32))
    assert torch.allclose(g, torch.tensor([[0, 0, 2.5, 1.5], [1.25, 1.125, 4.25, 2.375]]))
    expected = torch.tensor([[0, 0, 2, 2], [0, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
    assert torch.equal(index, expected)
    index, _ = paint_layout(boxes[:0], (4, 4), (32, 32))
    assert torch.equal(index, torch.zeros(4, 4, dtype=torch.long))


def test_attention_mask_is_the_official_one(clip):
    m = make(clip)._attention_mask(2, 3, "cpu")
    # Rows/cols: HO0, HO1, CLS, P0, P1, P2; True = blocked.
    expected = torch.tensor([[0, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(m, expected)


# ---- building ---------------------------------------------------------------------------------------------------
def test_world_model_resolved_options_and_parameter_count(clip):
    model = make(clip)
    assert model.resolved == dict(n_ctx=10, class_specific=True, roi_size=4, ho_feature="clip_roi")
    assert model.image_size == 64 and model.grid == (8, 8) and model.width == 128
    # Same arithmetic as lain-reference §10 at width 128, embed 128, D_a 32, roi 4 (4 layers, 5 verbs).
    la = (128 * 32 + 32) + 64 + (32 * 32 + 32) + (32 * 32 * 9 + 32) + (32 * 32 * 25 + 32) + 64 + (32 * 128 + 128) + 128
    ia = (128 * 32 + 32) + 64 + 320 + 3 * 8_544 + (128 * 32 + 32) + (64 * 128 + 128) + 128
    layout = (133 * 128 + 128) + (128 * 128 + 128) + (128 * 32 + 32)
    query = (256 * 128 + 128) + (128 * 128 + 128)
    ctx = 5 * 10 * 128
    assert (la, ia) == (44_544, 42_720)
    assert sum(p.numel() for p in model.trainable_parameters()) == 4 * (la + ia) + layout + query + ctx + 1
    assert sum(p.numel() for p in model.trainable_parameters()) == 442_657


def test_vit_b16_parameter_counts_match_reference():
    """lain-reference §10: 212,704 per layer, 86,944 prior MLP, 164,736 query_proj, contexts 1.44 M / 2.16 M / 18 k;
    totals about 4.24 M (RF-UC), 4.96 M (NF-UC, UO) and 2.82 M (UV)."""
    torch.manual_seed(0)
    vit = build_clip("ViT-B-16")
    vocab = hicodet_vocabulary()
    cfg = ExperimentConfig().override({"clip.arch": "ViT-B-16", "data.dataset": "hicodet", "data.protocol": "rf_uc"})
    model = build_model(cfg, vocab, clip=vit)
    assert model.resolved == dict(n_ctx=24, class_specific=True, roi_size=7, ho_feature="detector")
    assert model.grid == (14, 14) and model.spatial_scale == 14 / 224
    assert len(model.adapters) == 12
    assert all(sum(p.numel() for p in a.parameters()) == 212_704 for a in model.adapters)
    assert sum(p.numel() for p in model.layout_mlp.parameters()) == 86_944
    assert sum(p.numel() for p in model.query_proj.parameters()) == 164_736
    assert model.prompt_learner.ctx.shape == (117, 24, 512)
    assert sum(p.numel() for p in model.trainable_parameters()) == 4_241_825
    for protocol, shape, total in (("nf_uc", (117, 36, 512), 4_960_673), ("uv", (36, 512), 2_822_561)):
        c = cfg.override({"data.protocol": protocol})
        # Only the contexts differ between protocols; reuse the adapters' count to keep the test fast.
        text_only = build_model(c.override({"model.use_la": False, "model.use_ia": False}), vocab, clip=vit)
        assert text_only.prompt_learner.ctx.shape == shape
        n = sum(p.numel() for p in text_only.trainable_parameters())
        assert n + 12 * 212_704 + 86_944 == total


def test_clear_errors(clip):
    model = make(clip)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 64, 64\]"):
        model(torch.zeros(1, 3, 32, 32), [random_dets(1, 1)])
    with pytest.raises(ValueError, match="2 images but 1 detection sets"):
        model(torch.zeros(2, 3, 64, 64), [random_dets(1, 1)])
    with pytest.raises(ValueError, match="class_specific_ctx"):
        make(clip, class_specific_ctx="yes")
    with pytest.raises(ValueError, match="lower model.n_ctx"):
        make(clip, n_ctx=25)
    det = make(clip, ho_feature="detector")
    with pytest.raises(ValueError, match="needs per-detection feats"):
        det(torch.zeros(1, 3, 64, 64), [random_dets(2, 2)])
    with pytest.raises(ValueError, match="model.det_feat_dim"):
        det(torch.zeros(1, 3, 64, 64), [random_dets(2, 2, feats=16)])


# ---- text -------------------------------------------------------------------------------------------------------
def test_text_encoder_matches_open_clip_and_placeholders(clip):
    model = make(clip)
    tok = get_tokenizer("hoi-world-vit")
    texts = ["a photo of a person is riding the object.", "a photo of nothing."]
    plain = tokenize_prompts(tok, texts, 0, 32)
    ref = clip.encode_text(plain)
    assert torch.allclose(model.text_encoder.encode(plain), ref, atol=1e-5)  # cut after the end token: same result
    # A prompt learner whose contexts are the embedding of "x" reproduces the text "X X X <prompt>.".
    pl = PromptLearner(model.text_encoder, tok, ["a photo of a person is riding the object"], 3, True, 32)
    with torch.no_grad():
        pl.ctx.copy_(clip.token_embedding.weight[tok.encode("X")[0]].expand(1, 3, -1))
    with_x = clip.encode_text(tokenize_prompts(tok, [texts[0]], 3, 32))
    assert torch.allclose(pl(), F.normalize(with_x, dim=-1), atol=1e-5)
    shared = PromptLearner(model.text_encoder, tok, ["a", "b"], 4, False, 32)
    assert shared.ctx.shape == (4, 128) and shared().shape == (2, 128)
    # Without the causal mask (the official code's text encoder) the result differs.
    model_nc = make(clip, text_causal_mask=False)
    assert not torch.allclose(model_nc.text_encoder.encode(plain), ref, atol=1e-3)


# ---- the vision side: invariants --------------------------------------------------------------------------------
def test_forward_shapes_and_prior(clip):
    model = make(clip).train()
    dets = [random_dets(3, 4, seed=1), random_dets(1, 2, seed=2), random_dets(0, 3, seed=3)]
    out = model(torch.randn(3, 3, 64, 64), dets)
    assert out[2]["pairs"].shape[0] == 0  # no human detected: no pair
    for o in out:
        n_h, n = int((o["labels"] == 0).sum()), len(o["labels"])
        assert o["pairs"].shape[0] == (n_h * (n - 1) if n_h else 0)
    for o in out:
        p = o["pairs"].shape[0]
        assert o["logits"].shape == (p, 5) and o["prior"].shape == (p, 5)
        assert torch.all(o["labels"][o["pairs"][:, 0]] == 0) or p == 0
        lab_o = o["labels"][o["pairs"][:, 1]]
        s = o["scores"][o["pairs"][:, 0]] * o["scores"][o["pairs"][:, 1]]  # lambda_train = 1
        valid = model.valid_all[lab_o] & model.seen_hoi[model.ov_to_hoi[lab_o].clamp_min(0)]
        assert torch.allclose(o["prior"], s[:, None] * valid)
    # Unseen (ride, bicycle) and (kick, ball) have no prior in training; at test (lambda 2.8) they do.
    model.eval()
    with torch.no_grad():
        ev = model(torch.randn(3, 3, 64, 64), dets)
    for o in ev:
        lab_o = o["labels"][o["pairs"][:, 1]]
        s = (o["scores"][o["pairs"][:, 0]] * o["scores"][o["pairs"][:, 1]]) ** 2.8
        assert torch.allclose(o["prior"], s[:, None] * model.valid_all[lab_o])
    bikes = torch.cat([o["labels"][o["pairs"][:, 1]] == 1 for o in out])
    if bikes.any():
        assert torch.cat([o["prior"] for o in out])[bikes, 1].max() == 0
        assert torch.cat([o["prior"] for o in ev])[bikes, 1].min() > 0


def test_image_without_human_has_no_pairs(clip):
    model = make(clip).eval()
    d = dict(boxes=torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), scores=torch.tensor([0.9, 0.8]),
             labels=torch.tensor([1, 2]), feats=None)
    out = model(torch.randn(1, 3, 64, 64), [d])[0]
    assert out["pairs"].shape == (0, 2) and out["logits"].shape == (0, 5) and out["prior"].shape == (0, 5)
    assert model.postprocess([out], [(100, 80)])[0]["score"].shape == (0,)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("adapters", [True, False])
def test_ho_tokens_cannot_change_image_tokens(clip, adapters, fast):
    model = make(clip, use_la=adapters, use_ia=adapters, fast_path=fast).eval()
    set_gammas(model)
    images = torch.randn(2, 3, 64, 64)
    kept = [model._select(random_dets(2, 3, seed=s)) for s in (4, 5)]
    with torch.no_grad():
        ho1, x1 = model.encode(images, kept, return_tokens=True)
        model.query_proj.layers[-1].bias.add_(torch.randn(128) * 3)  # every HO token changes
        ho2, x2 = model.encode(images, kept, return_tokens=True)
    assert x1.shape == (2, 1 + 64, 128)
    assert torch.equal(x1, x2)  # CLS and patches: bit-identical
    assert not torch.allclose(ho1[0], ho2[0])
    if not adapters:  # the image path is vanilla CLIP: CLS output = encode_image
        cls = model.clip.visual.ln_post(x1[:, 0]) @ model.clip.visual.proj
        assert torch.allclose(cls, clip.encode_image(images), atol=1e-5)


def test_ho_tokens_do_not_see_each_other(clip):
    """Removing other pairs of an image leaves a pair's output unchanged (HO_i sees itself and the patches)."""
    model = make(clip).eval()
    set_gammas(model)
    images = torch.randn(1, 3, 64, 64)
    k = model._select(random_dets(2, 3, seed=6))
    k2 = dict(k, pairs=k["pairs"][[1, 4]])
    with torch.no_grad():
        full = model.encode(images, [k])[0]
        sub = model.encode(images, [k2])[0]
    assert torch.allclose(full[[1, 4]], sub, atol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"use_verb_classifier": True, "zs_topk": 3}, {"text_mode": "hoi"},
                                       {"ho_feature": "detector", "det_feat_dim": 16}])
def test_batched_equals_one_by_one(clip, overrides):
    model = make(clip, **overrides).eval()
    set_gammas(model)
    feats = 16 if overrides.get("ho_feature") == "detector" else None
    dets = [random_dets(3, 4, seed=7, feats=feats), random_dets(0, 2, seed=8, feats=feats),
            random_dets(1, 1, seed=9, feats=feats), random_dets(2, 5, seed=10, feats=feats)]
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        batched = model(images, dets)
        single = [model(images[i:i + 1], dets[i:i + 1])[0] for i in range(4)]
    assert len({o["pairs"].shape[0] for o in batched}) > 2  # different numbers of pairs (and padding)
    for b, s in zip(batched, single):
        assert torch.equal(b["pairs"], s["pairs"])
        assert torch.allclose(b["logits"], s["logits"], atol=1e-4)
        assert torch.allclose(b["prior"], s["prior"])


# ---- training: frozen CLIP, ablations ---------------------------------------------------------------------------
def _train_step(model, seed=0, lr=1e-2):
    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=1e-4)
    dets = [random_dets(2, 3, seed=seed), random_dets(3, 2, seed=seed + 1)]
    out = model(torch.randn(2, 3, 64, 64), dets, seen_mask=model.seen_hoi)
    losses = model.compute_loss(out, targets_from(out))
    opt.zero_grad()
    losses["loss"].backward()
    opt.step()
    return losses


def test_clip_stays_frozen_and_trainables_move(clip):
    model = make(clip, use_verb_classifier=True)
    before_clip = {k: v.clone() for k, v in model.clip.state_dict().items()}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("clip.") for n in before)
    losses = _train_step(model)
    assert losses["num_pos"] > 0 and torch.isfinite(losses["loss"])
    assert all(torch.equal(before_clip[k], v) for k, v in model.clip.state_dict().items())
    assert all(p.grad is None for p in model.clip.parameters())
    moved = {n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)}
    for name in ("logit_scale", "prompt_learner.ctx", "query_proj.layers.0.weight", "layout_mlp.layers.0.weight",
                 "verb_head.weight", "verb_head.adapter.layers.0.weight"):
        assert name in moved, name
    for i in range(4):
        assert {f"adapters.{i}.la.gamma", f"adapters.{i}.ia.gamma", f"adapters.{i}.ia.queries.weight"} <= moved
    assert model.clip.training is False


ABLATIONS = {
    "w/o adapters": dict(use_la=False, use_ia=False),
    "+ LA": dict(use_ia=False),
    "+ IA": dict(use_la=False),
    "LA + IA": dict(),
    "LA: w/o visual info": dict(la_visual=False),
    "LA: w/o spatial layout": dict(la_layout=False),
    "LA: local attention": dict(la_mixer="local_attn"),
    "IA: w/o IPRM": dict(ia_iprm=False),
    "IA: w/o context extraction": dict(ia_context=False),
    "HOI prompts": dict(text_mode="hoi"),
    "shared context": dict(class_specific_ctx="shared"),
    "HOICLIP": dict(use_verb_classifier=True, zs_topk=3),
    "official text encoder": dict(text_causal_mask=False),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_builds_and_trains(clip, name):
    model = make(clip, **ABLATIONS[name])
    a = model.adapters
    checks = {
        "w/o adapters": lambda: a is None and model.layout_mlp is None,
        "+ LA": lambda: a[0].ia is None and a[0].la is not None,
        "+ IA": lambda: a[0].la is None and model.layout_mlp is None,
        "LA: w/o visual info": lambda: a[0].la.down is None,
        "LA: w/o spatial layout": lambda: model.layout_mlp is None and a[0].la.down is not None,
        "LA: local attention": lambda: type(a[0].la.mixers[0]).__name__ == "LocalWindowAttention",
        "IA: w/o IPRM": lambda: not hasattr(a[0].ia, "iprm") and hasattr(a[0].ia, "context"),
        "IA: w/o context extraction": lambda: not hasattr(a[0].ia, "queries") and hasattr(a[0].ia, "iprm"),
        "HOI prompts": lambda: model.num_targets == len(HOI) and model.prompt_learner.ctx.shape[0] == len(HOI),
        "shared context": lambda: model.prompt_learner.ctx.dim() == 2,
        "HOICLIP": lambda: model.verb_head is not None,
    }
    assert checks.get(name, lambda: True)()
    before = [p.detach().clone() for p in model.trainable_parameters()]
    losses = _train_step(model)
    assert torch.isfinite(losses["loss"]) and losses["loss"].item() > 0
    assert sum(not torch.equal(b, p) for b, p in zip(before, model.trainable_parameters())) >= len(before) // 2
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), [random_dets(2, 2, seed=3)])
    res = model.postprocess(out, [(128, 96)])[0]
    top = 2 if model.zs_topk and model.zs_rule == "hoiclip" else 1  # HOICLIP adds a probability to a probability
    assert len(res["score"]) > 0 and np.all((res["score"] >= 0) & (res["score"] <= top))


def test_compute_loss_positives_from_exact_boxes(clip):
    model = make(clip).train()
    d = dict(boxes=torch.tensor([[0.0, 0, 20, 30], [30, 5, 60, 40], [10, 35, 30, 60]]),
             scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([0, 2, 3]), feats=None)
    out = model(torch.randn(1, 3, 64, 64), [d])
    assert out[0]["pairs"].tolist() == [[0, 1], [0, 2]]
    # GT: (hold ball) and (carry ball) on pair (0, 1), (kick ball) is unseen -> no prior, not counted;
    # (carry cup) on pair (0, 2).
    tgt = dict(boxes_h=d["boxes"][[0, 0, 0, 0]], boxes_o=d["boxes"][[1, 1, 1, 2]], verb=torch.tensor([0, 2, 4, 2]),
               object=torch.tensor([2, 2, 2, 3]), hoi=torch.tensor([3, 4, 5, 8]))
    losses = model.compute_loss(out, [tgt])
    assert losses["num_pos"] == 3
    empty = model.compute_loss([dict(out[0], pairs=out[0]["pairs"][:0], logits=out[0]["logits"][:0],
                                     prior=out[0]["prior"][:0])], [tgt])
    assert empty["loss"].item() == 0 and empty["num_pos"] == 0 and empty["loss"].requires_grad


def test_postprocess_maps_verbs_to_hois_and_boxes(clip):
    model = make(clip)
    out = dict(boxes=torch.tensor([[0.0, 0, 32, 32], [32, 32, 64, 64], [0, 32, 16, 64]]),
               scores=torch.tensor([0.9, 0.8, 0.5]), labels=torch.tensor([0, 1, 0]),
               pairs=torch.tensor([[0, 1], [0, 2], [2, 0], [2, 1]]), logits=torch.randn(4, 5))
    res = model.postprocess([out], [(640, 480)])[0]
    sx, sy = 10.0, 7.5
    expected = []
    ov = toy_vocab().object_verb_to_hoi
    for p, (h, o) in enumerate(out["pairs"].tolist()):
        obj = int(out["labels"][o])
        for v in range(5):
            if ov[obj, v] >= 0:
                s = torch.sigmoid(out["logits"][p, v]).item() * (out["scores"][h] * out["scores"][o]).item() ** 2.8
                bh = (out["boxes"][h] * torch.tensor([sx, sy, sx, sy])).tolist()
                bo = (out["boxes"][o] * torch.tensor([sx, sy, sx, sy])).tolist()
                expected.append((int(ov[obj, v]), s, bh, bo))
    assert len(res["hoi"]) == len(expected) == 3 + 2 + 2 + 3  # bicycle: 3 verbs, person: 2
    got = sorted(zip(res["hoi"].tolist(), res["score"].tolist(), res["boxes_h"].tolist(), res["boxes_o"].tolist()),
                 key=lambda r: (r[0], r[1]))
    for g, e in zip(got, sorted(expected, key=lambda r: (r[0], r[1]))):
        assert g[0] == e[0] and g[1] == pytest.approx(e[1], rel=1e-5)
        assert np.allclose(g[2], e[2]) and np.allclose(g[3], e[3])
    assert res["score"].dtype == np.float32 and res["hoi"].dtype == np.int64
    assert np.allclose(res["boxes_o"][res["hoi"] == 1][0], [320, 240, 640, 480])  # ride bicycle


def test_preprocess_and_input_helpers(clip):
    model = make(clip)
    img = np.full((40, 48, 3), 255, np.uint8)
    x = model.preprocess([img, np.zeros((64, 64, 3), np.uint8)])
    assert x.shape == (2, 3, 64, 64)
    mean, std = torch.tensor(model.image_mean), torch.tensor(model.image_std)
    assert torch.allclose(x[0, :, 10, 10], (1 - mean) / std, atol=1e-5)
    assert torch.allclose(x[1, :, 0, 0], -mean / std, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess([np.zeros((8, 8), np.uint8)])
    det = Detections(np.array([[10, 20, 30, 40]], np.float32), np.array([0.5], np.float32), np.array([0]))
    d = model.detections_input([det], [(128, 256)])[0]
    assert torch.allclose(d["boxes"], torch.tensor([[5.0, 5.0, 15.0, 10.0]])) and d["feats"] is None
    t = model.targets_input([dict(boxes_h=[[0, 0, 128, 256]], boxes_o=[[64, 128, 128, 256]], verb=[1], object=[1],
                                  hoi=[1])], [(128, 256)])[0]
    assert torch.allclose(t["boxes_o"], torch.tensor([[32.0, 32.0, 64.0, 64.0]])) and t["hoi"].tolist() == [1]


def test_adapter_state_dict_round_trip(clip):
    a, b = make(clip), make(clip)
    sd = a.adapter_state_dict()
    assert not any(k.startswith("clip.") for k in sd) and "prompt_learner.ctx" in sd
    b.load_adapter_state_dict(sd)
    assert all(torch.equal(v, b.adapter_state_dict()[k]) for k, v in sd.items())
    with pytest.raises(ValueError, match="missing"):
        b.load_adapter_state_dict({k: v for k, v in sd.items() if k != "logit_scale"})


def test_text_cache_follows_parameter_updates(clip):
    model = make(clip).eval()
    with torch.no_grad():
        t1 = model.text_features()
        assert model.text_features() is t1  # cached
        model.prompt_learner.ctx.add_(0.5)
        t2 = model.text_features()
    assert not torch.allclose(t1, t2)


# ---- HOICLIP ------------------------------------------------------------------------------------------------------
def test_visual_semantic_arithmetic_known_answer():
    e = lambda *v: torch.tensor(v, dtype=torch.float)  # noqa: E731
    # Verb 0 with object 0 (two instances) and object 1; verb 1 never seen.
    hoi_feats = torch.stack([e(2, 0, 0), e(0, 2, 0), e(0, 0, 3)])
    hoi_verb, hoi_obj = torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1])
    obj_feats = torch.stack([e(1, 0, 0), e(0, 0, 5), e(0, 4, 0)])
    obj_label = torch.tensor([0, 1, 1])
    e_v, has = visual_semantic_arithmetic(hoi_feats, hoi_verb, hoi_obj, obj_feats, obj_label, 2, 2)
    # E_h(0,0) = (1,1,0)/sqrt2, E_o(0) = (1,0,0); E_h(0,1) = (0,0,1), E_o(1) = (0,4,5)/sqrt41.
    r2, r41 = math.sqrt(2), math.sqrt(41)
    d = e(1 / r2, 1 / r2, 0) - e(1, 0, 0) + e(0, 0, 1) - e(0, 4 / r41, 5 / r41)
    assert torch.allclose(e_v[0], d / d.norm(), atol=1e-6)
    assert has.tolist() == [True, False] and torch.all(e_v[1] == 0)


def test_zero_shot_topk_and_crops():
    img_emb = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    text = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.2]]), dim=-1)
    s = zero_shot_topk(img_emb, text, 2)
    c = 1 / math.sqrt(2)
    assert torch.allclose(s, torch.tensor([[1.0, c, 0, 0], [0, c, 1.0, 0]]), atol=1e-6)
    assert torch.all(zero_shot_topk(img_emb, text, 0) == 0)
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert crop(img, np.array([2.5, 1.2, 6.1, 4.0])).shape == (3, 5, 3)
    assert crop(img, np.array([11.5, 9.5, 11.6, 9.6])).shape == (1, 1, 3)
    assert union_box(np.array([0, 1, 4, 5.0]), np.array([2, 0, 3, 9.0])).tolist() == [0, 0, 4, 9]


def test_fit_verb_classifier_matches_manual_arithmetic(clip):
    model = make(clip, use_verb_classifier=True)
    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    data = [dict(image=ims[0], gt=dict(boxes_h=np.array([[0, 0, 20, 30], [0, 0, 20, 30.0]]),
                                       boxes_o=np.array([[25, 5, 45, 35], [25, 5, 45, 35.0]]),
                                       verb=np.array([0, 2]), object=np.array([2, 2]))),
            dict(image=ims[1], gt=dict(boxes_h=np.array([[10, 10, 30, 40.0]]), boxes_o=np.array([[2, 2, 12, 12.0]]),
                                       verb=np.array([0]), object=np.array([3])))]
    info = fit_verb_classifier(model, data, batch_size=2, progress=False)
    assert info["num_hoi_crops"] == 3 and info["num_object_crops"] == 2  # the shared ball box counts once
    assert info["verbs_from_images"] == [0, 2] and info["verbs_from_text"] == [1, 3, 4]
    f = lambda im, b: clip.encode_image(model.preprocess([crop(im, b)]))[0]  # noqa: E731
    with torch.no_grad():
        u = lambda i, j: union_box(data[i]["gt"]["boxes_h"][j], data[i]["gt"]["boxes_o"][j])  # noqa: E731
        hoi_feats = torch.stack([f(ims[0], u(0, 0)), f(ims[0], u(0, 1)), f(ims[1], u(1, 0))])
        obj_feats = torch.stack([f(ims[0], data[0]["gt"]["boxes_o"][0]), f(ims[1], data[1]["gt"]["boxes_o"][0])])
        e_v, _ = visual_semantic_arithmetic(hoi_feats, torch.tensor([0, 2, 0]), torch.tensor([2, 2, 3]), obj_feats,
                                            torch.tensor([2, 3]), 5, 4)
        text = model.verb_text_features()
    w = model.verb_head.weight
    assert torch.allclose(w[[0, 2]], e_v[[0, 2]], atol=1e-5)
    assert torch.allclose(w[[1, 3, 4]], text[[1, 3, 4]], atol=1e-5)
    with pytest.raises(ValueError, match="use_verb_classifier"):
        fit_verb_classifier(make(clip), data)


def test_verb_head_in_logits_and_zero_shot_scores_beside_them(clip):
    model = make(clip, use_verb_classifier=True, verb_alpha=0.7, zs_topk=2).eval()
    set_gammas(model)
    images = torch.randn(2, 3, 64, 64)
    dets = [random_dets(2, 3, seed=11), random_dets(1, 3, seed=12)]
    with torch.no_grad():
        out = model(images, dets)
        kept = [model._select(d) for d in dets]
        o = model.encode(images, kept)
        text = model.text_features()
        scale = model.logit_scale.exp()
        cos = F.normalize(clip.encode_image(images), dim=-1) @ model.hoi_text_features().t()  # [2, C]
        top = cos.topk(2, dim=1).indices
        for b in range(2):
            lab_o = kept[b]["labels"][kept[b]["pairs"][:, 1]]
            base = scale * F.normalize(o[b], dim=-1) @ text.t()
            s_v = scale * F.normalize(model.verb_head.adapter(o[b]), dim=-1) @ F.normalize(model.verb_head.weight,
                                                                                              dim=-1).t()
            zs = torch.zeros_like(base)
            for p, obj in enumerate(lab_o.tolist()):
                for v in range(5):
                    h = int(model.ov_to_hoi[obj, v])
                    if h >= 0 and h in top[b].tolist():
                        zs[p, v] = cos[b, h]
            assert torch.allclose(out[b]["logits"], base + 0.7 * s_v, atol=1e-4)
            assert torch.allclose(out[b]["zs"], zs, atol=1e-5)  # combined with the logits by postprocess
            assert (zs != 0).sum() <= 2 * len(lab_o) and (zs != 0).any()
    model.train()  # the enhancement is inference-only
    out_t = model(images, dets)
    assert torch.isfinite(out_t[0]["logits"]).all() and "zs" not in out_t[0]


# ---- ViT-B/16 on the CPU ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_vit_b16_lain_forward_backward_cpu():
    """ViT-B/16 at 224 px, random weights, HICO-DET's 117 verbs, DETR-like 256-d features, two images with
    3 humans and 5 objects each (3 x 7 = 21 ordered pairs per image)."""
    torch.manual_seed(0)
    vocab = hicodet_vocabulary()
    cfg = ExperimentConfig().override({"clip.arch": "ViT-B-16", "data.dataset": "hicodet"})
    model = build_model(cfg, vocab).train()
    # Eight disjoint boxes (a 4 x 2 grid of 56 x 112 cells): nothing is suppressed by NMS.
    cells = torch.tensor([[56.0 * (i % 4), 112.0 * (i // 4)] for i in range(8)])
    boxes = torch.cat([cells + 4, cells + torch.tensor([50.0, 100.0])], 1)
    labels = torch.tensor([0, 0, 0, 1, 17, 40, 56, 61])
    dets = [dict(boxes=boxes, scores=torch.linspace(0.95, 0.6, 8), labels=labels, feats=torch.randn(8, 256))
            for _ in range(2)]
    out = model(torch.randn(2, 3, 224, 224), dets)
    assert [o["pairs"].shape[0] for o in out] == [21, 21]
    assert out[0]["logits"].shape == (21, 117)
    tgt = [dict(boxes_h=o["boxes"][o["pairs"][:3, 0]], boxes_o=o["boxes"][o["pairs"][:3, 1]],
                verb=torch.tensor([57, 76, 36]), object=o["labels"][o["pairs"][:3, 1]],
                hoi=torch.zeros(3, dtype=torch.long)) for o in out]
    losses = model.compute_loss(out, tgt)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert model.adapters[0].la.gamma.grad is not None and model.prompt_learner.ctx.grad is not None
    assert all(p.grad is None for p in model.clip.parameters())



def test_gamma_scale_is_inference_only_and_zero_removes_the_adapters():
    """model.gamma_scale = 0 at inference: the trained LAIN without what its adapters add (exactly restored after)."""
    cfg = ExperimentConfig().override({"model.adapter_dim": 8, "model.n_context_queries": 2, "model.gamma_scale": 0.0})
    assert cache.run_key(cfg) == cache.run_key(cfg.override({"model.gamma_scale": 1.0}))
    assert cache.predictions_key(cfg) != cache.predictions_key(cfg.override({"model.gamma_scale": 1.0}))
    torch.manual_seed(0)
    clip = build_clip("hoi-world-vit")
    lain = build_model(cfg, toy_vocab(), clip=clip).eval()
    set_gammas(lain)
    base = build_model(cfg.override({"model.use_la": False, "model.use_ia": False}), toy_vocab(), clip=clip).eval()
    base.load_state_dict({k: v for k, v in lain.state_dict().items() if k in base.state_dict()}, strict=False)
    images, dets = torch.randn(2, 3, 64, 64), [random_dets(2, 3, seed=1), random_dets(1, 4, seed=2)]
    before = [g.detach().clone() for g in (lain.adapters[0].la.gamma, lain.adapters[0].ia.gamma)]
    with torch.no_grad(), lain.scaled_gammas(0.0):
        zero = lain(images, dets)
    ref = base(images, dets)
    for a, b in zip(zero, ref):
        assert torch.equal(a["logits"], b["logits"])
    assert torch.equal(lain.adapters[0].la.gamma, before[0]) and torch.equal(lain.adapters[0].ia.gamma, before[1])
