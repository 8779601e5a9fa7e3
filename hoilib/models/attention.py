"""The frozen open_clip layers as LAIN runs them: the reference and the fast paths (`model.fast_path`).

Reference (`block_reference`): open_clip's ResidualAttentionBlock parts called one by one on the whole sequence
[HO_1..HO_Nmax, CLS, patches] with LAIN's boolean mask (lain-reference §4), through nn.MultiheadAttention.

Fast paths, the same arithmetic in fewer, larger operations (equal up to float summation order):
- `block_dense` ([B, L, D], optional causal mask; the text tower): one F.linear for q, k, v and
  F.scaled_dot_product_attention on the batch-first tensor. nn.MultiheadAttention with gradients enabled
  transposes a batch-first input and runs the q/k/v projection as one small matmul per sequence position (a
  [L, B, D] x [L, D, 3D] bmm), which took ~45% of a ViT-B/16 training step. `block_rows` runs a text tower's
  last layer for the pooled (end-of-text) rows alone.
- `block_split` (the vision tower): HO tokens never reach CLS or the patches, so the image tokens' attention is
  plain ViT attention over N = 1 + G tokens, computed once per image; the HO rows see only themselves and their
  image's patches (`kernels.ho_attention`: P x (G + 1), no mask, no HO padding). The residual stream is one flat
  [B * N + P, D] tensor (every image's CLS and patches, then the P HO tokens), so that the per-token parts (LNs,
  projections, MLP) are one op each for all tokens.
- `mlp` (both): QuickGELU x * sigmoid(1.702 x) as silu(1.702 x) / 1.702 with 1.702 folded into the frozen
  c_fc and c_proj weights (one fused elementwise op forward and backward instead of three and five).
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import Tensor, nn

from ..kernels.ho_attention import PairLayout, ho_attention

QUICK_GELU = 1.702  # QuickGELU's sigmoid slope (OpenAI CLIP)


def check_block(blk: nn.Module) -> bool:
    """True when `blk` is an open_clip ResidualAttentionBlock this module can run (plain self-attention)."""
    a = getattr(blk, "attn", None)
    return (isinstance(a, nn.MultiheadAttention) and a._qkv_same_embed_dim and a.bias_k is None
            and not a.add_zero_attn and all(hasattr(blk, n) for n in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")))


def block_reference(blk: nn.Module, x: Tensor, mask: Tensor | None) -> Tensor:
    """One frozen ResidualAttentionBlock on [B, L, D] with a boolean attention mask (True = blocked) or None.

    Calls its parts directly: open_clip's own `attention()` casts the mask to the activation dtype, which would turn
    a boolean mask into an additive 0/1 mask.
    """
    h = blk.ln_1(x)
    if not blk.attn.batch_first:
        h = h.transpose(0, 1)
    a = blk.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    if not blk.attn.batch_first:
        a = a.transpose(0, 1)
    x = x + blk.ls_1(a)
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


def _heads(t: Tensor, n_heads: int) -> Tensor:
    """[..., L, 3D] packed q, k, v -> [3, ..., H, L, D/H]."""
    *lead, n, three_d = t.shape
    d = three_d // 3
    t = t.view(*lead, n, 3, n_heads, d // n_heads)
    return t.movedim(-3, 0).transpose(-3, -2)


def block_dense(blk: nn.Module, x: Tensor, is_causal: bool = False) -> Tensor:
    """`block_reference` on [B, L, D] (no mask, or a causal one) with one q/k/v projection and SDPA."""
    a = blk.attn
    b, n, d = x.shape
    q, k, v = _heads(F.linear(blk.ln_1(x), a.in_proj_weight, a.in_proj_bias), a.num_heads)  # [B, H, L, d/H]
    o = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    x = x + blk.ls_1(a.out_proj(o.transpose(1, 2).reshape(b, n, d)))
    return x + blk.ls_2(mlp(blk.mlp, blk.ln_2(x)))


def block_rows(blk: nn.Module, x: Tensor, rows: Tensor, is_causal: bool = False) -> Tensor:
    """`block_dense` for one output row per sequence: x [B, L, D], rows [B] -> [B, D], the layer's output at
    position rows[b] of sequence b (its query, attention output and MLP only; keys and values from all positions).
    A text tower's last layer needs nothing else: only the end-of-text token is pooled."""
    a = blk.attn
    b, n, d = x.shape
    heads = a.num_heads
    h = blk.ln_1(x)
    at = torch.arange(b, device=x.device)
    q = F.linear(h[at, rows], a.in_proj_weight[:d], None if a.in_proj_bias is None else a.in_proj_bias[:d])
    kv = F.linear(h, a.in_proj_weight[d:], None if a.in_proj_bias is None else a.in_proj_bias[d:])  # [B, L, 2D]
    k, v = kv.view(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, d/H]
    mask = None
    if is_causal:  # the causal mask's row of each query: keys 0..rows[b]
        mask = (torch.arange(n, device=x.device)[None, :] <= rows[:, None])[:, None, None, :]  # [B, 1, 1, L]
    o = F.scaled_dot_product_attention(q.view(b, heads, 1, d // heads), k, v, attn_mask=mask)
    y = x[at, rows] + blk.ls_1(a.out_proj(o.reshape(b, d)))
    return y + blk.ls_2(mlp(blk.mlp, blk.ln_2(y)))


def block_split(blk: nn.Module, x: Tensor, n_images: int, layout: PairLayout, impl: str = "auto") -> Tensor:
    """One frozen layer on LAIN's flat residual stream.

    Args:
        x: [B * N + P, D]: the B images' tokens [CLS, patches] (N = 1 + G each, image after image), then the P HO
            tokens in `layout` order.
        n_images: B. layout: image of every HO token. impl: `kernels.ho_attention` implementation.
    Returns:
        [B * N + P, D], equal to `block_reference` on [HO.., CLS, patches] with LAIN's mask.
    """
    a = blk.attn
    heads = a.num_heads
    m, d = x.shape
    p = layout.batch.shape[0]
    bn = m - p
    qkv = F.linear(blk.ln_1(x), a.in_proj_weight, a.in_proj_bias)  # [M, 3D]
    q, k, v = _heads(qkv[:bn].view(n_images, bn // n_images, 3 * d), heads)  # [B, H, N, d/H]
    o_img = F.scaled_dot_product_attention(q, k, v)  # CLS and patches: plain ViT attention
    qh, kh, vh = qkv[bn:].view(p, 3, heads, d // heads).unbind(1)  # [P, H, d/H]
    k_img, v_img = k[:, :, 1:].transpose(1, 2), v[:, :, 1:].transpose(1, 2)  # patches only: [B, G, H, d/H]
    o_ho = ho_attention(qh, kh, vh, k_img, v_img, layout, impl)
    o = torch.cat([o_img.transpose(1, 2).reshape(bn, d), o_ho.reshape(p, d).to(o_img.dtype)])
    x = x + blk.ls_1(a.out_proj(o))
    return x + blk.ls_2(mlp(blk.mlp, blk.ln_2(x)))


_folded = weakref.WeakKeyDictionary()  # c_fc module -> (key, c_fc weight, c_fc bias, c_proj weight), all scaled


def mlp(m: nn.Module, x: Tensor) -> Tensor:
    """open_clip's MLP (c_fc, activation, c_proj); QuickGELU runs as silu with 1.702 folded into the frozen weights."""
    fc, act, proj = m.c_fc, m.gelu, m.c_proj
    if not isinstance(act, QuickGELU) or fc.weight.requires_grad or proj.weight.requires_grad:
        return m(x)
    key = (fc.weight.data_ptr(), fc.weight._version, proj.weight.data_ptr(), proj.weight._version, fc.weight.device,
           fc.weight.dtype)
    hit = _folded.get(fc)
    if hit is None or hit[0] != key:
        with torch.no_grad():
            hit = (key, fc.weight * QUICK_GELU, None if fc.bias is None else fc.bias * QUICK_GELU,
                   proj.weight / QUICK_GELU)
        _folded[fc] = hit
    # x * sigmoid(1.702 x) = silu(1.702 x) / 1.702
    return F.linear(F.silu(F.linear(x, hit[1], hit[2])), hit[3], proj.bias)
