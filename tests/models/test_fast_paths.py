"""The fast path (`model.fast_path=True`) against the reference implementation: every piece on its own, then the
whole model (logits and the gradient of every trainable parameter) on the world's ViT and on ViT-B/16 with random
weights, across the ablation switches and the edge cases (images without pairs, one image with one pair), and a
short world training run's mAP.

Tolerances (float32). The two paths compute the same arithmetic in another order and grouping (the masked
(N + 1 + G)^2 softmax vs separate image and HO softmaxes, merged vs summed convolutions, folded QuickGELU
weights, matmuls over other row sets), so each result moves by a few ulp per operation and the differences grow
through the layers and the backward pass. Observed worst cases: logits 4e-6 absolute; gradients 1e-5 (world,
4 layers of width 128) and 4e-6 (ViT-B/16) of their tensor's largest entry. The bounds below are 20-25x that: a
real change (an HO token seeing CLS, a wrong dropout mask, a missing adapter update) moves results by 1e-2..1.
Dropout stays on in training mode: both paths draw their masks from the CPU generator in the same order and
shapes, so they are equal, not merely equal in distribution.
"""
import math

import numpy as np
import pytest
import torch

from hoilib import cache, runs
from hoilib.config import SPEED_ONLY, ExperimentConfig
from hoilib.models import build_clip, build_model
from hoilib.models.adapters import LocalityAdapter
from hoilib.models.attention import block_dense, block_reference, block_split, mlp
from hoilib.models.ho_tokens import build_layout_mlp, layout_prior, layout_prior_batched
from hoilib.models.pairs import assign_positives, assign_positives_batched, make_pairs, make_pairs_batched
from hoilib.kernels import pair_layout
from test_lain import make, random_dets, set_gammas, targets_from, toy_vocab

LOGIT_ATOL = 1e-4  # logits are scale (14.3) x cosine: |logit| <= ~15
RTOL_MAX = 2e-4  # gradients: max |fast - ref| <= RTOL_MAX * max |ref| per parameter tensor


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip(clip):
    return clip.requires_grad_(False)


def _assert_scaled_close(a, b, rel, what):
    scale = float(b.abs().max()) if b.numel() else 0.0
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= rel * max(scale, 1e-12), f"{what}: max |diff| {err:.3g} > {rel} x max |ref| {scale:.3g}"


def run_both(model, images, dets, train=True, seed=5, seen=None):
    """(outputs, loss, grads) of the reference and the fast path from the same weights and RNG state."""
    res = []
    for fast in (False, True):
        model.fast_path = fast
        model.train(train)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # same dropout masks in both paths
        out = model(images, dets, seen)
        loss = model.compute_loss(out, targets_from(out))
        loss["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        res.append((out, loss, grads))
    return res


def assert_paths_equal(ref, fast, rel=RTOL_MAX):
    (o_ref, l_ref, g_ref), (o_fast, l_fast, g_fast) = ref, fast
    assert len(o_ref) == len(o_fast)
    for a, b in zip(o_fast, o_ref):
        for key in ("boxes", "scores", "labels", "pairs", "prior"):
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)
        assert a["logits"].shape == b["logits"].shape
        torch.testing.assert_close(a["logits"], b["logits"], atol=LOGIT_ATOL, rtol=0)
    assert l_fast["num_pos"] == l_ref["num_pos"]
    torch.testing.assert_close(l_fast["loss"], l_ref["loss"], atol=1e-5, rtol=1e-5)
    assert set(g_fast) == set(g_ref), set(g_fast) ^ set(g_ref)
    for name in g_ref:
        _assert_scaled_close(g_fast[name], g_ref[name], rel, name)


WORLD_DETS = [(3, 4, 7), (0, 2, 8), (1, 1, 9), (2, 5, 10)]  # (humans, objects, seed); image 1 has no pair
ABLATIONS = {
    "LA + IA": {},
    "w/o adapters": dict(use_la=False, use_ia=False),
    "+ LA": dict(use_ia=False),
    "+ IA": dict(use_la=False),
    "LA: local attention": dict(la_mixer="local_attn"),
    "LA: w/o visual info": dict(la_visual=False),
    "IA: w/o IPRM": dict(ia_iprm=False),
    "IA: w/o context": dict(ia_context=False),
    "HOI prompts": dict(text_mode="hoi"),
    "HOICLIP verb classifier": dict(use_verb_classifier=True),
    "official text encoder": dict(text_causal_mask=False),
    "detector features": dict(ho_feature="detector", det_feat_dim=16),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_world_model_fast_equals_reference(clip, name):
    over = ABLATIONS[name]
    model = make(clip, **over)
    set_gammas(model, 0.5)  # the adapters must matter (their gammas start at 1e-9)
    feats = over.get("det_feat_dim")
    dets = [random_dets(h, o, seed=s, feats=feats) for h, o, s in WORLD_DETS]
    ref, fast = run_both(model, torch.randn(4, 3, 64, 64), dets, seen=model.seen_hoi)
    assert ref[1]["num_pos"] > 0 and ref[0][1]["pairs"].shape[0] == 0
    assert_paths_equal(ref, fast)


def test_world_inference_with_zero_shot_scores(clip):
    model = make(clip, use_verb_classifier=True, zs_topk=3).eval()
    set_gammas(model, 0.5)
    images = torch.randn(4, 3, 64, 64)
    dets = [random_dets(h, o, seed=s) for h, o, s in WORLD_DETS]
    with torch.no_grad():
        model.fast_path = False
        ref = model(images, dets)
        model.fast_path = True
        fast = model(images, dets)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a["logits"], b["logits"], atol=LOGIT_ATOL, rtol=0)
        torch.testing.assert_close(a["prior"], b["prior"])


@pytest.mark.parametrize("case", ["no pairs anywhere", "one image one pair"])
def test_world_edge_cases(clip, case):
    model = make(clip)
    set_gammas(model, 0.5)
    if case == "no pairs anywhere":
        dets = [random_dets(0, 3, seed=1), random_dets(2, 0, seed=2)]  # no human; humans but n = 2 -> pairs!
        dets[1] = random_dets(1, 0, seed=2)  # one human alone: no pair
        ref, fast = run_both(model, torch.randn(2, 3, 64, 64), dets)
        assert all(o["pairs"].shape == (0, 2) and o["logits"].shape == (0, 5) for o in fast[0])
        assert fast[1]["loss"].item() == 0 and fast[1]["loss"].requires_grad
        assert set(fast[2]) == set(ref[2]) == {"logit_scale"}
    else:
        d = dict(boxes=torch.tensor([[2.0, 2, 30, 40], [20, 10, 60, 50]]), scores=torch.tensor([0.9, 0.8]),
                 labels=torch.tensor([0, 2]), feats=None)
        ref, fast = run_both(model, torch.randn(1, 3, 64, 64), [d])
        assert fast[0][0]["pairs"].tolist() == [[0, 1]]
        assert_paths_equal(ref, fast)


@pytest.mark.slow
def test_vit_b16_fast_equals_reference():
    """ViT-B/16 (random weights, 224 px, detector features) with a 5-verb vocabulary: two images, 8 and 2 pairs."""
    torch.manual_seed(0)
    vit = build_clip("ViT-B-16").requires_grad_(False)
    cfg = ExperimentConfig().override({"clip.arch": "ViT-B-16", "data.dataset": "hicodet", "model.det_feat_dim": 16})
    model = build_model(cfg, toy_vocab(), clip=vit, protocol_unseen=np.array([1, 5]))
    set_gammas(model, 0.5)
    dets = [random_dets(2, 3, size=224, seed=11, feats=16), random_dets(1, 2, size=224, seed=12, feats=16)]
    ref, fast = run_both(model, torch.randn(2, 3, 224, 224), dets, seen=model.seen_hoi)
    assert [o["pairs"].shape[0] for o in fast[0]] == [8, 2]
    assert_paths_equal(ref, fast)


# ---- the pieces -------------------------------------------------------------------------------------------------
def test_block_split_equals_masked_reference(clip):
    """One frozen layer: [HO.., CLS, patches] with LAIN's mask vs the flat split form, output and input gradient."""
    blk = clip.visual.transformer.resblocks[1]
    counts = [3, 0, 5]
    n_max, g, d = max(counts), 64, 128
    x = torch.randn(3, n_max + 1 + g, d, requires_grad=True)
    mask = make(clip)._attention_mask(n_max, g, "cpu")
    ref = block_reference(blk, x, mask)
    lay = pair_layout(counts)
    flat = torch.cat([x[:, n_max:].reshape(-1, d), x[lay.batch, lay.slot]])
    out = block_split(blk, flat, 3, lay, "torch")
    ref_flat = torch.cat([ref[:, n_max:].reshape(-1, d), ref[lay.batch, lay.slot]])
    torch.testing.assert_close(out, ref_flat, atol=2e-5, rtol=1e-5)
    go = torch.randn_like(out)
    (g_fast,) = torch.autograd.grad(out, x, go)
    (g_ref,) = torch.autograd.grad(ref_flat, x, go)
    torch.testing.assert_close(g_fast, g_ref, atol=2e-5, rtol=1e-5)
    pad = torch.ones(3, n_max, dtype=torch.bool)
    pad[lay.batch, lay.slot] = False
    assert g_fast[:, :n_max][pad].abs().max() == 0  # padded slots take no part


def test_block_dense_causal_and_mlp_fold_equal_open_clip(clip):
    blk = clip.transformer.resblocks[0]
    x = torch.randn(3, 9, 128)
    causal = clip.attn_mask[:9, :9]
    torch.testing.assert_close(block_dense(blk, x, is_causal=True), blk(x, attn_mask=causal), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(block_dense(blk, x), blk(x), atol=2e-5, rtol=1e-5)
    h = torch.randn(7, 128)
    torch.testing.assert_close(mlp(blk.mlp, h), blk.mlp(h), atol=1e-5, rtol=1e-5)
    # With trainable CLIP weights the fold is not used (the gradient must reach the real weights).
    trainable = build_clip("hoi-world-vit").transformer.resblocks[0]
    out = mlp(trainable.mlp, h)
    out.sum().backward()
    assert trainable.mlp.c_fc.weight.grad is not None


def test_text_encoder_fast_equals_reference(clip):
    for causal in (True, False):
        model = make(clip, text_causal_mask=causal)
        ctx = model.prompt_learner.ctx
        res = []
        for fast in (False, True):
            model.fast_path = fast
            ctx.grad = None
            t = model.prompt_learner()
            (t * torch.arange(t.numel()).view_as(t).sin()).sum().backward()
            res.append((t.detach(), ctx.grad.clone()))
        torch.testing.assert_close(res[1][0], res[0][0], atol=2e-6, rtol=1e-5)
        _assert_scaled_close(res[1][1], res[0][1], RTOL_MAX, f"ctx grad (causal={causal})")


def test_merged_convolution_equals_the_sum_and_trains_both():
    torch.manual_seed(0)
    la = LocalityAdapter(48, 16, (3, 5), gamma_init=1.0)
    x = torch.randn(2, 49, 48)
    layout = torch.randn(2, 7, 7, 16)
    ref = la(x, layout, (7, 7))
    g_ref = torch.autograd.grad(ref.sum(), [m.weight for m in la.mixers] + [m.bias for m in la.mixers])
    out = la(x, layout, (7, 7), merged=True)
    g_out = torch.autograd.grad(out.sum(), [m.weight for m in la.mixers] + [m.bias for m in la.mixers])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    for a, b, name in zip(g_out, g_ref, ("w3", "w5", "b3", "b5")):
        _assert_scaled_close(a, b, 1e-5, name)  # sums of ~6,000 products in another order
    w, b = la.merged_conv()
    assert w.shape == (16, 16, 5, 5)
    torch.testing.assert_close(w[..., 1:4, 1:4] - la.mixers[1].weight[..., 1:4, 1:4], la.mixers[0].weight)
    torch.testing.assert_close(w[..., 0, :], la.mixers[1].weight[..., 0, :])  # the 3x3 kernel adds nothing there


def test_batched_pairs_layout_and_positives_equal_per_image():
    torch.manual_seed(0)
    n_h, n = torch.tensor([2, 0, 1, 3, 1]), torch.tensor([4, 3, 1, 3, 2])
    batched = make_pairs_batched(n_h, n)
    per_image = [torch.cat([torch.full((len(p), 1), i), p], 1) for i, p in
                 enumerate(make_pairs(int(a), int(b)) for a, b in zip(n_h, n))]
    assert torch.equal(batched, torch.cat(per_image))
    # Layout prior: 3 images (one without boxes), 4 x 4 grid on 32 x 32 images.
    boxes = [torch.tensor([[0.0, 0, 16, 8], [10, 9, 30, 15]]), torch.zeros(0, 4), torch.tensor([[4.0, 4, 28, 30]])]
    kept = [dict(boxes=b, scores=torch.rand(len(b)), labels=torch.randint(0, 3, (len(b),))) for b in boxes]
    text = torch.randn(4, 8)
    mlp_ = build_layout_mlp(8, 6)
    ref = layout_prior(mlp_, kept, text, (4, 4), 32)
    flat = dict(boxes=torch.cat(boxes), scores=torch.cat([k["scores"] for k in kept]),
                labels=torch.cat([k["labels"] for k in kept]), box_img=torch.tensor([0, 0, 2]))
    torch.testing.assert_close(layout_prior_batched(mlp_, flat, 3, text, (4, 4), 32), ref, atol=1e-6, rtol=1e-5)
    # Positives: per image vs one batched min-IoU matrix (pairs only match their own image's ground truth).
    g = torch.Generator().manual_seed(3)
    rnd = lambda k: (lambda xy: torch.cat([xy, xy + 10 + 20 * torch.rand(k, 2, generator=g)], 1))(  # noqa: E731
        torch.rand(k, 2, generator=g) * 40)
    imgs = [(rnd(5), rnd(5), rnd(3), rnd(3), torch.randint(0, 4, (3,), generator=g)) for _ in range(3)]
    imgs[1] = (imgs[1][0], imgs[1][1], imgs[0][2], imgs[0][3], imgs[1][4])  # image 1 shares image 0's GT boxes
    imgs[0] = (imgs[0][2][[0, 1, 2, 0, 1]], imgs[0][3][[0, 1, 2, 2, 0]]) + imgs[0][2:]  # some exact matches
    ref = torch.cat([assign_positives(bh, bo, gh, go, c, 4, 0.5) for bh, bo, gh, go, c in imgs])
    cat = lambda i: torch.cat([t[i] for t in imgs])  # noqa: E731
    idx = torch.arange(3).repeat_interleave(5)
    out = assign_positives_batched(cat(0), cat(1), idx, cat(2), cat(3), cat(4), torch.arange(3).repeat_interleave(3),
                                   4, 0.5, impl="torch")
    assert ref.sum() > 0 and torch.equal(out, ref)


def test_fast_path_and_kernel_impl_are_speed_only():
    assert {"model.fast_path", "model.kernel_impl"} <= set(SPEED_ONLY)
    assert ExperimentConfig().model.fast_path is True
    with pytest.raises(ValueError, match="kernel_impl"):
        ExperimentConfig().override({"model.kernel_impl": "cuda"})
    a = ExperimentConfig()
    b = a.override({"model.fast_path": False, "model.kernel_impl": "torch"})
    assert cache.run_key(a) == cache.run_key(b) and cache.predictions_key(a) == cache.predictions_key(b)


@pytest.mark.slow
def test_world_training_run_map_equal(tmp_path):
    """A short schedule on a tiny world (the smoke profile's sizes): the test mAPs of a fast-path and a reference
    run differ by < 0.01 (percentage points). Same seed, same data order, same dropout masks."""
    cfg = ExperimentConfig.from_preset("smoke").override({"data.cache_dir": str(tmp_path), "train.epochs": 1})
    maps = {}
    for fast in (False, True):
        res = runs.run_experiment(cfg.override({"model.fast_path": fast}), redo=True, progress=False)
        maps[fast] = {k: res[k] for k in ("full", "rare", "non_rare", "unseen", "seen")}
    for k, v in maps[False].items():
        if v is not None:
            assert math.isfinite(v) and abs(maps[True][k] - v) < 0.01, (k, maps)
