"""The Locality and Interaction Adapters: parameter counts against the official arithmetic, shapes on the world's
8x8 and ViT-B/16's 14x14 grids, the ablation switches, and the local-attention mixer against a naive loop."""
import math

import pytest
import torch
import torch.nn.functional as F

from torchvision.ops import roi_align

from hoilib.models.adapters import (MLP, AdapterContext, CrossAttentionLayer, InteractionAdapter, LAINAdapter,
                                    LocalityAdapter, LocalWindowAttention, plan_rois)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_official_vit_b16_arithmetic():
    # lain-reference.md §10: 212,704 per layer adapter at width 768, D_a = 32; prior MLP 86,944; query_proj 164,736.
    assert n_params(CrossAttentionLayer(32, 2, 64)) == 8_544  # attn 4,224 + FFN 4,192 + 2 LN 128
    la = LocalityAdapter(768, 32, (3, 5))
    ia = InteractionAdapter(768, 32, roi_size=7, n_queries=10)
    assert n_params(la) == 86_784
    assert n_params(ia) == 125_920
    assert n_params(LAINAdapter(la, ia)) == 212_704
    assert n_params(MLP(517, 128, 32, 3)) == 86_944
    assert n_params(MLP(512, 128, 768, 2)) == 164_736
    # Ablations remove exactly their modules.
    assert n_params(InteractionAdapter(768, 32, use_iprm=False)) == 125_920 - 8_544
    assert n_params(InteractionAdapter(768, 32, use_context=False)) == 125_920 - 8_544 - 320
    assert n_params(LocalityAdapter(768, 32, use_visual=False)) == 86_784 - 24_608
    # Local attention: per window qkv (32 -> 96) + out (32 -> 32) + a bias per (head, offset).
    la_attn = LocalityAdapter(768, 32, (3, 5), mixer="local_attn")
    convs = 32 * 32 * 9 + 32 + 32 * 32 * 25 + 32
    assert n_params(la_attn) == 86_784 - convs + 2 * (3 * 32 * 32 + 96 + 32 * 32 + 32) + 2 * (9 + 25)


def test_official_initialisation():
    la = LocalityAdapter(128, 32, gamma_init=1e-9)
    ia = InteractionAdapter(128, 32, roi_size=4, gamma_init=1e-9)
    assert torch.all(la.gamma == 1e-9) and la.gamma.shape == (128,)
    assert torch.all(ia.gamma == 1e-9) and ia.gamma.shape == (128,)
    # LoRA-style init of the two down-projections: zero bias, kaiming-uniform(a=sqrt 5) bound = 1 / sqrt(fan_in).
    for lin in (la.down, ia.token_down):
        assert torch.all(lin.bias == 0)
        assert lin.weight.abs().max().item() <= 1 / math.sqrt(128) + 1e-6


@pytest.mark.parametrize("width,grid", [(128, (8, 8)), (768, (14, 14))])
def test_la_shapes_and_gamma_scaling(width, grid):
    b, g = 2, grid[0] * grid[1]
    la = LocalityAdapter(width, 32, (3, 5), gamma_init=1e-9)
    patches, layout = torch.randn(b, g, width), torch.randn(b, *grid, 32)
    out = la(patches, layout, grid)
    assert out.shape == (b, g, width)
    with torch.no_grad():
        la.gamma.fill_(1.0)
    out1 = la(patches, layout, grid)
    assert torch.allclose(out * 1e9, out1, rtol=1e-4, atol=1e-6)


def test_la_switches_drop_their_input():
    grid, width = (8, 8), 64
    p1, p2 = torch.randn(2, 64, width), torch.randn(2, 64, width)
    l1, l2 = torch.randn(2, 8, 8, 32), torch.randn(2, 8, 8, 32)
    la_no_vis = LocalityAdapter(width, 32, use_visual=False, gamma_init=1.0)
    assert torch.allclose(la_no_vis(p1, l1, grid), la_no_vis(p2, l1, grid))
    assert not torch.allclose(la_no_vis(p1, l1, grid), la_no_vis(p1, l2, grid))
    la_no_lay = LocalityAdapter(width, 32, use_layout=False, gamma_init=1.0)
    assert torch.allclose(la_no_lay(p1, l1, grid), la_no_lay(p1, None, grid))
    assert not torch.allclose(la_no_lay(p1, None, grid), la_no_lay(p2, None, grid))
    with pytest.raises(ValueError, match="needs the layout prior"):
        LocalityAdapter(width, 32)(p1, None, grid)
    with pytest.raises(ValueError, match="visual information, the spatial layout, or both"):
        LocalityAdapter(width, 32, use_visual=False, use_layout=False)
    with pytest.raises(ValueError, match="odd"):
        LocalityAdapter(width, 32, kernels=(3, 4))
    with pytest.raises(ValueError, match="la_mixer"):
        LocalityAdapter(width, 32, mixer="pool")


def test_la_is_local():
    # Official kernels {3, 5}: a change at one cell reaches at most 2 cells away (one conv layer, no pooling).
    la = LocalityAdapter(32, 16, (3, 5), gamma_init=1.0)
    p = torch.randn(1, 100, 32)
    q = p.clone()
    q[0, 0] += 5.0  # cell (0, 0)
    d = (la(p, torch.zeros(1, 10, 10, 16), (10, 10)) - la(q, torch.zeros(1, 10, 10, 16), (10, 10))).abs().sum(-1)
    d = d.view(10, 10)
    assert d[:3, :3].min() > 0
    assert d[3:, :].max() == 0 and d[:, 3:].max() == 0


def _naive_window_attention(m: LocalWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop reference: every cell attends over the in-grid cells of its k x k window."""
    b, d, gh, gw = x.shape
    k, h, r = m.window, m.heads, m.window // 2
    q, kk, v = m.qkv(x.flatten(2).transpose(1, 2)).chunk(3, -1)
    out = torch.zeros(b, gh * gw, d)
    for bi in range(b):
        for y in range(gh):
            for xx in range(gw):
                i = y * gw + xx
                for head in range(h):
                    sl = slice(head * d // h, (head + 1) * d // h)
                    scores, vals = [], []
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            yy, xn = y + dy, xx + dx
                            if 0 <= yy < gh and 0 <= xn < gw:
                                j = yy * gw + xn
                                off = (dy + r) * k + (dx + r)
                                dot = q[bi, i, sl] @ kk[bi, j, sl]
                                scores.append(dot / math.sqrt(d // h) + m.pos_bias[head, off])
                                vals.append(v[bi, j, sl])
                    a = torch.softmax(torch.stack(scores), 0)
                    out[bi, i, sl] = (a[:, None] * torch.stack(vals)).sum(0)
    return m.out(out).transpose(1, 2).reshape(b, d, gh, gw)


@pytest.mark.parametrize("window,grid", [(3, (4, 5)), (5, (3, 3))])
def test_local_window_attention_matches_naive_loop(window, grid):
    m = LocalWindowAttention(8, window, heads=2)
    with torch.no_grad():
        m.pos_bias.normal_()
    x = torch.randn(2, 8, *grid)
    assert torch.allclose(m(x), _naive_window_attention(m, x), atol=1e-5)


def _ia_inputs(width=64, grid=(8, 8), size=64.0, roi=4):
    patches = torch.randn(2, grid[0] * grid[1], width)
    # Image 0: boxes 0,1,2; image 1: boxes 3,4; then the full-image boxes 5 (image 0) and 6 (image 1).
    boxes = torch.tensor([[0, 0, 0, 20, 30], [0, 30, 10, 60, 50], [0, 5, 40, 25, 60], [1, 10, 10, 40, 40],
                          [1, 20, 30, 50, 60], [0, 0, 0, size, size], [1, 0, 0, size, size]]).float()
    plan = plan_rois(boxes, 2, grid, roi, grid[0] / size)
    pair_h = torch.tensor([0, 0, 3, 5, 6])
    pair_o = torch.tensor([1, 2, 4, 5, 6])
    tokens = torch.randn(5, width)
    return patches, tokens, plan, pair_h, pair_o


@pytest.mark.parametrize("grid,size,roi", [((8, 8), 64.0, 4), ((14, 14), 224.0, 7)])
def test_roi_plan_equals_torchvision_roi_align(grid, size, roi):
    """The IA's ROIAlign-as-a-matrix gives torchvision's roi_align(aligned=True) of every box, in any box order."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 16, *grid, generator=g)
    xy = torch.rand(9, 2, generator=g) * size * 0.7
    boxes = torch.cat([torch.tensor([[2], [0], [1], [0], [2], [0], [0], [1], [2.0]]), xy,
                       xy + torch.rand(9, 2, generator=g) * size * 0.3 + 1], 1)
    boxes[3, 1:] = torch.tensor([0, 0, size, size])
    plan = plan_rois(boxes, 3, grid, roi, grid[0] / size)
    assert plan.weights.shape == (3, 4 * roi * roi, grid[0] * grid[1])  # image 0 has the most boxes (4)
    got = plan.apply(feats.flatten(2).transpose(1, 2))  # [K, r*r, C]
    ref = roi_align(feats, boxes, (roi, roi), spatial_scale=grid[0] / size, aligned=True)  # [K, C, r, r]
    assert torch.allclose(got, ref.flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("ctx,iprm", [(True, True), (False, True), (True, False), (False, False)])
def test_ia_tokens_are_independent(ctx, iprm):
    """Each token's update depends only on its own token and boxes: a subset gives the same rows."""
    ia = InteractionAdapter(64, 16, roi_size=4, use_context=ctx, use_iprm=iprm, gamma_init=1.0).eval()
    patches, tok, plan, ph, po = _ia_inputs()
    full = ia(patches, tok, plan, ph, po)
    assert full.shape == (5, 64)
    sub = ia(patches, tok[[1, 4]], plan, ph[[1, 4]], po[[1, 4]])
    assert torch.allclose(full[[1, 4]], sub, atol=1e-5)
    # A pair's update changes with its object region; swapping human and object changes it (ordered pairs).
    swapped = ia(patches, tok[:1], plan, po[:1], ph[:1])
    assert not torch.allclose(swapped, full[:1])
    with pytest.raises(ValueError, match="roi_size"):
        InteractionAdapter(64, 16, roi_size=3)(patches, tok, plan, ph, po)


def test_ia_matches_roi_align_reference():
    """The IA's region tokens are LN(Linear(roi_align(F))) as in the official code."""
    ia = InteractionAdapter(64, 16, roi_size=4, gamma_init=1.0).eval()
    patches, tok, plan, ph, po = _ia_inputs()
    captured = {}
    ia.context.register_forward_hook(lambda m, i, o: captured.__setitem__("r", i[1]))
    ia(patches, tok, plan, ph, po)
    boxes = torch.tensor([[0, 0, 0, 20, 30], [0, 30, 10, 60, 50], [0, 5, 40, 25, 60], [1, 10, 10, 40, 40],
                          [1, 20, 30, 50, 60], [0, 0, 0, 64, 64], [1, 0, 0, 64, 64]]).float()
    ra = roi_align(patches.transpose(1, 2).reshape(2, 64, 8, 8), boxes, (4, 4), spatial_scale=8 / 64, aligned=True)
    ref = ia.roi_ln(ia.roi_down(ra.flatten(2).transpose(1, 2)))
    assert torch.allclose(captured["r"], ref, atol=1e-5)


def test_ia_without_iprm_ignores_partner_in_each_half():
    """Without IPRM the human half of the update sees only the human region (and vice versa)."""
    ia = InteractionAdapter(32, 16, roi_size=2, use_iprm=False, gamma_init=1.0).eval()
    patches, tok, plan, ph, po = _ia_inputs(width=32, roi=2)
    captured = {}
    ia.up.register_forward_hook(lambda m, i, o: captured.__setitem__("ho", i[0]))
    ia(patches, tok[:1], plan, ph[:1], po[:1])
    h_a = captured["ho"][:, :16].clone()
    ia(patches, tok[:1], plan, ph[:1], torch.tensor([2]))  # another object box
    assert torch.allclose(captured["ho"][:, :16], h_a)
    ia_iprm = InteractionAdapter(32, 16, roi_size=2, use_iprm=True, gamma_init=1.0).eval()
    ia_iprm.up.register_forward_hook(lambda m, i, o: captured.__setitem__("ho", i[0]))
    ia_iprm(patches, tok[:1], plan, ph[:1], po[:1])
    h_b = captured["ho"][:, :16].clone()
    ia_iprm(patches, tok[:1], plan, ph[:1], torch.tensor([2]))
    assert not torch.allclose(captured["ho"][:, :16], h_b)


def test_lain_adapter_routes_updates():
    width, grid, n_tok = 32, (4, 4), 3
    la = LocalityAdapter(width, 16, gamma_init=1.0)
    ia = InteractionAdapter(width, 16, roi_size=2, gamma_init=1.0)
    x = torch.randn(1, n_tok + 16, width)
    plan = plan_rois(torch.tensor([[0, 0, 0, 16, 16.0], [0, 2, 2, 10, 10], [0, 0, 0, 32, 32]]), 1, grid, 2, 4 / 32)
    ctx = AdapterContext(n_tok=n_tok, grid=grid, layout=torch.randn(1, 4, 4, 16), rois=plan,
                         tok_batch=torch.tensor([0, 0]), tok_slot=torch.tensor([0, 2]),
                         pair_h=torch.tensor([0, 2]), pair_o=torch.tensor([1, 2]))
    out_la = LAINAdapter(la, None)(x, ctx)
    assert torch.equal(out_la[:, :n_tok], x[:, :n_tok]) and not torch.allclose(out_la[:, n_tok:], x[:, n_tok:])
    out_ia = LAINAdapter(None, ia.eval())(x, ctx)
    assert torch.equal(out_ia[:, n_tok:], x[:, n_tok:])
    assert torch.equal(out_ia[:, 1], x[:, 1])  # slot 1 is padding: untouched
    assert not torch.allclose(out_ia[:, [0, 2]], x[:, [0, 2]])
    # With both: the IA reads the LA-updated patches.
    both = LAINAdapter(la, ia)(x, ctx)
    assert torch.allclose(both[:, n_tok:], out_la[:, n_tok:])
    assert not torch.allclose(both[:, [0, 2]], out_ia[:, [0, 2]])
    with pytest.raises(ValueError, match="needs a Locality Adapter"):
        LAINAdapter(None, None)


def test_cross_attention_layer_is_post_norm_without_self_attention():
    layer = CrossAttentionLayer(16, 2, 32, dropout=0.0).eval()
    q, mem = torch.randn(3, 4, 16), torch.randn(3, 7, 16)
    a = layer.attn(q, mem, mem, need_weights=False)[0]
    h = F.layer_norm(q + a, (16,), layer.norm1.weight, layer.norm1.bias)
    expected = F.layer_norm(h + layer.linear2(F.relu(layer.linear1(h))), (16,), layer.norm2.weight, layer.norm2.bias)
    assert torch.allclose(layer(q, mem), expected, atol=1e-6)
    # Queries do not see each other: a query's output depends only on itself and the memory.
    assert torch.allclose(layer(q[:, :1], mem), layer(q, mem)[:, :1], atol=1e-6)
