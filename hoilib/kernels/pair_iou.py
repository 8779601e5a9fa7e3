"""min(IoU_h, IoU_o) between every predicted human-object pair and every ground-truth pair.

LAIN assigns a (pair, verb) label when min(IoU(h, h_gt), IoU(o, o_gt)) >= 0.5 for a ground-truth pair with that
verb (official code: `associate_with_ground_truth`, lain-reference §9; the same quantity ranks matches in the
HICO-DET evaluator). The reference computes two [P, G] IoU matrices and takes their minimum; the Triton kernel
fuses both IoUs and the minimum in one pass over a [BLOCK_P, BLOCK_G] tile, so the two intermediate matrices are
never written. Boxes are continuous xyxy; IoU = inter / (area_a + area_b - inter), 0 when the union is empty.
"""
from __future__ import annotations

import warnings

import torch

from . import HAS_TRITON, INTERPRET


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of xyxy boxes a [..., 4] and b [..., 4] (broadcast: a[:, None] and b[None] give the [P, G]
    matrix; equal shapes give aligned rows). inter / (area_a + area_b - inter), 0 where the union is empty."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def pair_min_iou_reference(boxes_h: torch.Tensor, boxes_o: torch.Tensor, gt_h: torch.Tensor,
                           gt_o: torch.Tensor) -> torch.Tensor:
    """[P, G] min(IoU(boxes_h[p], gt_h[g]), IoU(boxes_o[p], gt_o[g])). Inputs xyxy: [P, 4], [P, 4], [G, 4], [G, 4]."""
    return torch.minimum(box_iou(boxes_h[:, None], gt_h[None]), box_iou(boxes_o[:, None], gt_o[None]))


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _box_iou_tile(a_ptr, b_ptr, offs_p, offs_g, mask_p, mask_g):
        ax1 = tl.load(a_ptr + offs_p * 4 + 0, mask=mask_p, other=0.0)
        ay1 = tl.load(a_ptr + offs_p * 4 + 1, mask=mask_p, other=0.0)
        ax2 = tl.load(a_ptr + offs_p * 4 + 2, mask=mask_p, other=0.0)
        ay2 = tl.load(a_ptr + offs_p * 4 + 3, mask=mask_p, other=0.0)
        bx1 = tl.load(b_ptr + offs_g * 4 + 0, mask=mask_g, other=0.0)
        by1 = tl.load(b_ptr + offs_g * 4 + 1, mask=mask_g, other=0.0)
        bx2 = tl.load(b_ptr + offs_g * 4 + 2, mask=mask_g, other=0.0)
        by2 = tl.load(b_ptr + offs_g * 4 + 3, mask=mask_g, other=0.0)
        iw = tl.minimum(ax2[:, None], bx2[None, :]) - tl.maximum(ax1[:, None], bx1[None, :])
        ih = tl.minimum(ay2[:, None], by2[None, :]) - tl.maximum(ay1[:, None], by1[None, :])
        inter = tl.maximum(iw, 0.0) * tl.maximum(ih, 0.0)
        area_a = tl.maximum(ax2 - ax1, 0.0) * tl.maximum(ay2 - ay1, 0.0)
        area_b = tl.maximum(bx2 - bx1, 0.0) * tl.maximum(by2 - by1, 0.0)
        union = area_a[:, None] + area_b[None, :] - inter
        return tl.where(union > 0, inter / tl.where(union > 0, union, 1.0), 0.0)

    @triton.jit
    def _pair_min_iou_kernel(
        h_ptr,  # [P, 4] predicted human boxes, contiguous
        o_ptr,  # [P, 4] predicted object boxes
        gh_ptr,  # [G, 4] ground-truth human boxes
        go_ptr,  # [G, 4] ground-truth object boxes
        out_ptr,  # [P, G] output, row-major
        P, G,
        BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr,
    ):
        offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_g = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
        mask_p, mask_g = offs_p < P, offs_g < G
        iou_h = _box_iou_tile(h_ptr, gh_ptr, offs_p, offs_g, mask_p, mask_g)
        iou_o = _box_iou_tile(o_ptr, go_ptr, offs_p, offs_g, mask_p, mask_g)
        tl.store(out_ptr + offs_p[:, None] * G + offs_g[None, :], tl.minimum(iou_h, iou_o),
                 mask=mask_p[:, None] & mask_g[None, :])


# 32 x 32 tiles: the problem is tiny (P, G of a few hundred per image) and memory-bound; under the CPU
# interpreter larger tiles mean fewer programs, which is what costs time there.
_BLOCK = 32


def _pair_min_iou_triton(boxes_h, boxes_o, gt_h, gt_o) -> torch.Tensor:
    P, G = boxes_h.shape[0], gt_h.shape[0]
    out = torch.empty(P, G, dtype=torch.float32, device=boxes_h.device)
    if P == 0 or G == 0:
        return out
    args = [t.contiguous().float() for t in (boxes_h, boxes_o, gt_h, gt_o)]
    grid = (triton.cdiv(P, _BLOCK), triton.cdiv(G, _BLOCK))
    _pair_min_iou_kernel[grid](*args, out, P, G, BLOCK_P=_BLOCK, BLOCK_G=_BLOCK)
    return out


_warned = False


def pair_min_iou(boxes_h: torch.Tensor, boxes_o: torch.Tensor, gt_h: torch.Tensor, gt_o: torch.Tensor,
                 impl: str = "auto") -> torch.Tensor:
    """[P, G] min IoU of predicted pairs vs ground-truth pairs (see module docstring).

    impl: "auto" uses Triton for CUDA tensors (or under TRITON_INTERPRET=1 when asked for "triton"), else the
    reference; "triton" forces the kernel (error when it cannot run); "torch" forces the reference.
    Not differentiable (used for label assignment only).
    """
    if impl not in ("auto", "triton", "torch"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    for name, t in (("boxes_h", boxes_h), ("boxes_o", boxes_o), ("gt_h", gt_h), ("gt_o", gt_o)):
        if t.ndim != 2 or t.shape[1] != 4:
            raise ValueError(f"{name} must have shape [N, 4], got {tuple(t.shape)}")
    if boxes_h.shape[0] != boxes_o.shape[0] or gt_h.shape[0] != gt_o.shape[0]:
        raise ValueError("human and object boxes must come in pairs (same number of rows)")
    can_run = HAS_TRITON and (boxes_h.is_cuda or INTERPRET)
    if impl == "triton" and not can_run:
        raise RuntimeError("the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)")
    if impl == "triton" or (impl == "auto" and HAS_TRITON and boxes_h.is_cuda):
        return _pair_min_iou_triton(boxes_h, boxes_o, gt_h, gt_o)
    global _warned
    if impl == "auto" and boxes_h.is_cuda and not _warned:
        warnings.warn("Triton is not available; pair_min_iou uses the PyTorch reference")
        _warned = True
    return pair_min_iou_reference(boxes_h, boxes_o, gt_h, gt_o)
