"""HO-token attention: every HO token attends to itself and to the patches of its own image.

In LAIN's attention mask (lain-reference §4) the HO token of pair p sees only itself and the G patches of its image
b(p) (not CLS, not the other HO tokens), and no image token sees it. Its attention row per head is therefore

    s_0 = c q.k_s,   s_j = c q.K_b[j]  (j = 1..G),   c = 1 / sqrt(d)
    o   = (e^{s_0} v_s + sum_j e^{s_j} V_b[j]) / (e^{s_0} + sum_j e^{s_j})

with q, k_s, v_s [d] the token's own query, key and value and K_b, V_b [G, d] its image's patch keys and values:
the HO rows of the masked (N_max + 1 + G)^2 attention, computed as P x (G + 1) with no mask. HO tokens are flat
([P, H, d], image after image, see `PairLayout`); images keep their own [B, G, H, d] keys and values.

Backward (as in FlashAttention-2, Dao 2023, Alg. 2), with L = logsumexp_j s_j (j = 0..G), p_j = e^{s_j - L} and
D = dO.o:
    dv_s = p_0 dO,   dV_b[j] += p_j dO,   ds_j = p_j (dO.v_j - D),   dq = c sum_j ds_j k_j,
    dk_s = c ds_0 q, dK_b[j] += c ds_j q     (sums over the pairs of image b).

Three implementations: `ho_attention_reference` (plain torch, the specification and the CPU path: HO tokens are
scattered to [B, S, H, d] per image for two batched matmuls, S = most pairs of one image); the Triton kernels
(forward: one program per block of <= BLOCK_P pairs of one image and head, an online softmax over the image's
patches started at the self term; backward: `_ho_attention_bwd_dq_kernel` per pair block for dq, dk_s, dv_s and
`_ho_attention_bwd_dkv_kernel` per image, patch block and head for dK_b, dV_b, which loops over the image's pairs,
so that no atomics are needed); `ho_attention(..., impl)` picks one.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import HAS_TRITON, INTERPRET


@dataclass
class PairLayout:
    """Where the flat HO tokens (pairs) of a batch belong: image after image, pairs of one image contiguous.

    batch, slot: [P] int64 image of each pair and its rank within the image; counts: pairs per image (B ints);
    offsets: [B + 1] int32 first pair of each image (and P); n_slot: S = max(counts).
    """

    batch: Tensor
    slot: Tensor
    counts: tuple
    offsets: Tensor
    n_slot: int
    _blocks: dict = field(default_factory=dict, repr=False)

    def blocks(self, block_p: int) -> Tensor:
        """[n_blocks, 3] int32 (image, first pair, end) of every run of <= block_p pairs of one image."""
        if block_p not in self._blocks:
            rows = []
            start = 0
            for b, c in enumerate(self.counts):
                rows += [(b, s, min(s + block_p, start + c)) for s in range(start, start + c, block_p)]
                start += c
            self._blocks[block_p] = torch.tensor(rows, dtype=torch.int32, device=self.batch.device).view(-1, 3)
        return self._blocks[block_p]


def pair_layout(counts, device=None) -> PairLayout:
    """`PairLayout` of a batch with counts[b] pairs in image b."""
    counts = tuple(int(c) for c in counts)
    c = torch.as_tensor(counts, dtype=torch.long, device=device)
    batch = torch.repeat_interleave(torch.arange(len(counts), device=device), c)
    offsets = torch.cat([c.new_zeros(1), torch.cumsum(c, 0)])
    slot = torch.arange(int(offsets[-1]), device=device) - offsets[:-1][batch]
    return PairLayout(batch, slot, counts, offsets.to(torch.int32), max(counts, default=0))


def _check(q: Tensor, k_self: Tensor, v_self: Tensor, k_img: Tensor, v_img: Tensor, layout: PairLayout) -> None:
    if q.ndim != 3 or k_self.shape != q.shape or v_self.shape != q.shape:
        raise ValueError(f"q, k_self, v_self must be [P, H, d] alike, got {tuple(q.shape)}, {tuple(k_self.shape)}, "
                         f"{tuple(v_self.shape)}")
    if k_img.ndim != 4 or v_img.shape != k_img.shape or k_img.shape[2:] != q.shape[1:]:
        raise ValueError(f"k_img, v_img must be [B, G, H, d] with the heads of q, got {tuple(k_img.shape)}, "
                         f"{tuple(v_img.shape)} for q {tuple(q.shape)}")
    if len(layout.counts) != k_img.shape[0] or sum(layout.counts) != q.shape[0]:
        raise ValueError(f"pair layout of {len(layout.counts)} images / {sum(layout.counts)} pairs does not match "
                         f"{k_img.shape[0]} images / {q.shape[0]} pairs")


def ho_attention_reference(q: Tensor, k_self: Tensor, v_self: Tensor, k_img: Tensor, v_img: Tensor,
                           layout: PairLayout) -> Tensor:
    """Plain-torch HO-token attention (see the module docstring).

    Args:
        q, k_self, v_self: [P, H, d] query, key and value of every HO token (flat, image after image).
        k_img, v_img: [B, G, H, d] patch keys and values of every image.
        layout: the images of the P pairs.
    Returns:
        [P, H, d] attention output (before the output projection).
    """
    _check(q, k_self, v_self, k_img, v_img, layout)
    p, h, d = q.shape
    b = k_img.shape[0]
    if p == 0:
        return q.new_zeros(0, h, d)
    # Scatter to per-image slots [B, S, 3, H, d]: two batched matmuls against the image's patches then serve
    # every pair (slots without a pair compute finite garbage that is never read).
    own = torch.stack([q, k_self, v_self], 1)  # [P, 3, H, d]
    pad = own.new_zeros(b, layout.n_slot, 3, h, d).index_put((layout.batch, layout.slot), own)
    qp, kp, vp = pad.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, S, d]
    qp = qp * (1.0 / math.sqrt(d))
    s_self = (qp * kp).sum(-1, keepdim=True)  # [B, H, S, 1]
    s_img = qp @ k_img.permute(0, 2, 3, 1)  # [B, H, S, G]
    att = torch.cat([s_self, s_img], -1).softmax(-1)
    out = att[..., :1] * vp + att[..., 1:] @ v_img.transpose(1, 2)  # [B, H, S, d]
    return out.transpose(1, 2)[layout.batch, layout.slot].to(q.dtype)  # [P, H, d]


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _ho_attention_fwd_kernel(
        q_ptr, ks_ptr, vs_ptr,  # [P, H, D] HO-token query / key / value (row stride s_p, head stride s_h)
        k_ptr, v_ptr,  # [B, G, H, D] patch keys / values (strides s_kb, s_kg, s_kh)
        o_ptr,  # [P, H, D] output, contiguous
        lse_ptr,  # [P, H] float32 logsumexp of each row (for the backward)
        blk_ptr,  # [n_blocks, 3] int32 (image, first pair, end pair)
        G, H, scale, s_p, s_h, s_kb, s_kg, s_kh,
        HEAD_D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, PREC: tl.constexpr,
    ):
        pid, h = tl.program_id(0), tl.program_id(1)
        img = tl.load(blk_ptr + pid * 3)
        start = tl.load(blk_ptr + pid * 3 + 1)
        end = tl.load(blk_ptr + pid * 3 + 2)
        offs_p = start + tl.arange(0, BLOCK_P)
        offs_d = tl.arange(0, HEAD_D)
        mask_p = offs_p < end
        rows = offs_p[:, None] * s_p + h * s_h + offs_d[None, :]
        q = tl.load(q_ptr + rows, mask=mask_p[:, None], other=0.0)
        ks = tl.load(ks_ptr + rows, mask=mask_p[:, None], other=0.0).to(tl.float32)
        vs = tl.load(vs_ptr + rows, mask=mask_p[:, None], other=0.0).to(tl.float32)
        # The self term starts the online softmax: running max m, running sum l, accumulator acc.
        m = tl.sum(q.to(tl.float32) * ks, 1) * scale
        l_sum = tl.full([BLOCK_P], 1.0, tl.float32)
        acc = vs
        for g0 in range(0, G, BLOCK_G):
            offs_g = g0 + tl.arange(0, BLOCK_G)
            mask_g = offs_g < G
            kv = img * s_kb + offs_g[:, None] * s_kg + h * s_kh + offs_d[None, :]
            k = tl.load(k_ptr + kv, mask=mask_g[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale  # [BLOCK_P, BLOCK_G]
            s = tl.where(mask_g[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            l_sum = l_sum * alpha + tl.sum(p, 1)
            v = tl.load(v_ptr + kv, mask=mask_g[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
            m = m_new
        out = acc / l_sum[:, None]
        tl.store(o_ptr + offs_p[:, None] * (H * HEAD_D) + h * HEAD_D + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
                 mask=mask_p[:, None])
        tl.store(lse_ptr + offs_p * H + h, m + tl.log(l_sum), mask=mask_p)

    @triton.jit
    def _ho_attention_bwd_dq_kernel(
        q_ptr, ks_ptr, vs_ptr,  # [P, H, D] as in the forward (strides s_p, s_h)
        k_ptr, v_ptr,  # [B, G, H, D] patch keys / values (strides s_kb, s_kg, s_kh)
        do_ptr,  # [P, H, D] output gradient, contiguous
        lse_ptr, delta_ptr,  # [P, H] float32 logsumexp and D = dO.o
        dq_ptr, dks_ptr, dvs_ptr,  # [P, H, D] float32 gradients, contiguous
        blk_ptr,  # [n_blocks, 3] int32 (image, first pair, end pair)
        G, H, scale, s_p, s_h, s_kb, s_kg, s_kh,
        HEAD_D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, PREC: tl.constexpr,
    ):
        pid, h = tl.program_id(0), tl.program_id(1)
        img = tl.load(blk_ptr + pid * 3)
        start = tl.load(blk_ptr + pid * 3 + 1)
        end = tl.load(blk_ptr + pid * 3 + 2)
        offs_p = start + tl.arange(0, BLOCK_P)
        offs_d = tl.arange(0, HEAD_D)
        mask_p = offs_p < end
        rows = offs_p[:, None] * s_p + h * s_h + offs_d[None, :]
        out_rows = offs_p[:, None] * (H * HEAD_D) + h * HEAD_D + offs_d[None, :]
        q = tl.load(q_ptr + rows, mask=mask_p[:, None], other=0.0)
        ks = tl.load(ks_ptr + rows, mask=mask_p[:, None], other=0.0).to(tl.float32)
        vs = tl.load(vs_ptr + rows, mask=mask_p[:, None], other=0.0).to(tl.float32)
        do = tl.load(do_ptr + out_rows, mask=mask_p[:, None], other=0.0)
        lse = tl.load(lse_ptr + offs_p * H + h, mask=mask_p, other=0.0)
        delta = tl.load(delta_ptr + offs_p * H + h, mask=mask_p, other=0.0)
        qf, dof = q.to(tl.float32), do.to(tl.float32)
        p0 = tl.exp(tl.sum(qf * ks, 1) * scale - lse)
        ds0 = p0 * (tl.sum(dof * vs, 1) - delta)
        dq = ds0[:, None] * ks
        for g0 in range(0, G, BLOCK_G):
            offs_g = g0 + tl.arange(0, BLOCK_G)
            mask_g = offs_g < G
            kv = img * s_kb + offs_g[:, None] * s_kg + h * s_kh + offs_d[None, :]
            k = tl.load(k_ptr + kv, mask=mask_g[:, None], other=0.0)
            v = tl.load(v_ptr + kv, mask=mask_g[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale
            p = tl.where(mask_g[None, :], tl.exp(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        tl.store(dq_ptr + out_rows, dq * scale, mask=mask_p[:, None])
        tl.store(dks_ptr + out_rows, ds0[:, None] * qf * scale, mask=mask_p[:, None])
        tl.store(dvs_ptr + out_rows, p0[:, None] * dof, mask=mask_p[:, None])

    @triton.jit
    def _ho_attention_bwd_dkv_kernel(
        q_ptr,  # [P, H, D] HO-token queries (strides s_p, s_h)
        k_ptr, v_ptr,  # [B, G, H, D] patch keys / values (strides s_kb, s_kg, s_kh)
        do_ptr,  # [P, H, D] output gradient, contiguous
        lse_ptr, delta_ptr,  # [P, H] float32
        dk_ptr, dv_ptr,  # [B, G, H, D] float32 gradients, contiguous
        off_ptr,  # [B + 1] int32 first pair of every image
        G, H, scale, s_p, s_h, s_kb, s_kg, s_kh,
        HEAD_D: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, PREC: tl.constexpr,
    ):
        img, gb, h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_g = gb * BLOCK_G + tl.arange(0, BLOCK_G)
        offs_d = tl.arange(0, HEAD_D)
        mask_g = offs_g < G
        kv = img * s_kb + offs_g[:, None] * s_kg + h * s_kh + offs_d[None, :]
        k = tl.load(k_ptr + kv, mask=mask_g[:, None], other=0.0)
        v = tl.load(v_ptr + kv, mask=mask_g[:, None], other=0.0)
        dk = tl.zeros([BLOCK_G, HEAD_D], tl.float32)
        dv = tl.zeros([BLOCK_G, HEAD_D], tl.float32)
        start = tl.load(off_ptr + img)
        end = tl.load(off_ptr + img + 1)
        for p0 in range(start, end, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            mask_p = offs_p < end
            q = tl.load(q_ptr + offs_p[:, None] * s_p + h * s_h + offs_d[None, :], mask=mask_p[:, None], other=0.0)
            do = tl.load(do_ptr + offs_p[:, None] * (H * HEAD_D) + h * HEAD_D + offs_d[None, :],
                         mask=mask_p[:, None], other=0.0)
            lse = tl.load(lse_ptr + offs_p * H + h, mask=mask_p, other=0.0)
            delta = tl.load(delta_ptr + offs_p * H + h, mask=mask_p, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale  # [BLOCK_P, BLOCK_G]
            p = tl.where(mask_p[:, None] & mask_g[None, :], tl.exp(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PREC)
        out = img * (G * H * HEAD_D) + offs_g[:, None] * (H * HEAD_D) + h * HEAD_D + offs_d[None, :]
        tl.store(dk_ptr + out, dk * scale, mask=mask_g[:, None])
        tl.store(dv_ptr + out, dv, mask=mask_g[:, None])


# Tile sizes: tl.dot needs >= 16 per side; 32 pairs x 64 patches keeps a [32, 64] fp32 score tile and the
# [BLOCK, d <= 128] operands in registers; a ViT-B/16 image has 196 patches (4 tiles, the last one masked).
_BLOCK_P, _BLOCK_G = 32, 64


def _launch_args(q: Tensor, k_img: Tensor) -> dict:
    d = q.shape[2]
    return dict(G=k_img.shape[1], H=q.shape[1], scale=1.0 / math.sqrt(d), s_p=q.stride(0), s_h=q.stride(1),
                s_kb=k_img.stride(0), s_kg=k_img.stride(1), s_kh=k_img.stride(2), HEAD_D=d, BLOCK_P=_BLOCK_P,
                BLOCK_G=_BLOCK_G, PREC="ieee" if q.dtype == torch.float32 else "tf32")


def _inner_contiguous(*ts: Tensor) -> list:
    # The kernels index rows and heads by strides but read each head's d values as one contiguous run.
    return [t if t.stride(-1) == 1 else t.contiguous() for t in ts]


def _ho_attention_triton_fwd(q, k_self, v_self, k_img, v_img, layout):
    q, k_self, v_self, k_img, v_img = _inner_contiguous(q, k_self, v_self, k_img, v_img)
    if k_self.stride() != q.stride() or v_self.stride() != q.stride():
        k_self, v_self, q = k_self.contiguous(), v_self.contiguous(), q.contiguous()
    if v_img.stride() != k_img.stride():
        k_img, v_img = k_img.contiguous(), v_img.contiguous()
    p, h, d = q.shape
    out = torch.empty(p, h, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(p, h, dtype=torch.float32, device=q.device)
    blocks = layout.blocks(_BLOCK_P)
    if p:
        _ho_attention_fwd_kernel[(blocks.shape[0], h)](q, k_self, v_self, k_img, v_img, out, lse, blocks,
                                                        **_launch_args(q, k_img))
    return out, lse, (q, k_self, v_self, k_img, v_img)


class _HOAttentionTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k_self, v_self, k_img, v_img, layout):
        out, lse, used = _ho_attention_triton_fwd(q, k_self, v_self, k_img, v_img, layout)
        ctx.save_for_backward(*used, out, lse)
        ctx.layout = layout
        return out

    @staticmethod
    def backward(ctx, d_out):
        q, k_self, v_self, k_img, v_img, out, lse = ctx.saved_tensors
        layout = ctx.layout
        p, h, d = q.shape
        d_out = d_out.contiguous()
        delta = (d_out.float() * out.float()).sum(-1)  # [P, H]
        f32 = dict(dtype=torch.float32, device=q.device)
        dq, dks, dvs = (torch.empty(p, h, d, **f32) for _ in range(3))
        dk, dv = (torch.zeros(k_img.shape, **f32) for _ in range(2))
        args = _launch_args(q, k_img)
        if p:
            blocks = layout.blocks(_BLOCK_P)
            _ho_attention_bwd_dq_kernel[(blocks.shape[0], h)](q, k_self, v_self, k_img, v_img, d_out, lse, delta,
                                                              dq, dks, dvs, blocks, **args)
            grid = (k_img.shape[0], triton.cdiv(k_img.shape[1], _BLOCK_G), h)
            _ho_attention_bwd_dkv_kernel[grid](q, k_img, v_img, d_out, lse, delta, dk, dv, layout.offsets, **args)
        return dq.to(q.dtype), dks.to(q.dtype), dvs.to(q.dtype), dk.to(k_img.dtype), dv.to(v_img.dtype), None


_warned = False


def ho_attention(q: Tensor, k_self: Tensor, v_self: Tensor, k_img: Tensor, v_img: Tensor, layout: PairLayout,
                 impl: str = "auto") -> Tensor:
    """HO-token attention [P, H, d] (see `ho_attention_reference` for the arguments); differentiable.

    impl: "auto" uses the Triton kernels for CUDA tensors when Triton is available, else the reference; "triton"
    forces them (error when they cannot run; CPU tensors need TRITON_INTERPRET=1); "torch" forces the reference.
    The kernels need a power-of-two head width >= 16 (ViT-B/16, ViT-L/14: 64; the world's ViT: 32); other widths
    use the reference.
    """
    if impl not in ("auto", "triton", "torch"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    _check(q, k_self, v_self, k_img, v_img, layout)
    d = q.shape[-1]
    shape_ok = d >= 16 and d & (d - 1) == 0
    can_run = HAS_TRITON and (q.is_cuda or INTERPRET) and shape_ok
    if impl == "triton" and not can_run:
        raise RuntimeError("the Triton HO-attention kernels need CUDA tensors (or TRITON_INTERPRET=1) and a "
                           f"power-of-two head width >= 16 (got {d})")
    if impl == "triton" or (impl == "auto" and can_run and q.is_cuda):
        return _HOAttentionTriton.apply(q, k_self, v_self, k_img, v_img, layout)
    global _warned
    if impl == "auto" and q.is_cuda and not _warned:
        warnings.warn("Triton is not available (or the head width is unsupported); HO-token attention uses the "
                      "PyTorch reference")
        _warned = True
    return ho_attention_reference(q, k_self, v_self, k_img, v_img, layout)
