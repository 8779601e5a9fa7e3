"""HO tokens and the layout prior: what LAIN feeds the CLIP vision tower about the detected pairs (paper §3.1-3.2).

HO tokens (lain-reference §4). Every (human, other box) pair p of an image becomes one token that enters the ViT
beside CLS and the patches, without a positional embedding:

    t_p = MLP([f_h(p); f_o(p)])          MLP: 2F -> 128 -> D (official `query_proj`, ReLU between)

where f is a per-box feature: DETR's 256-d decoder state on HICO-DET (`source="detector"`, official), or, in the
built-in world whose simulated detector has no features, the box's ROIAlign of the frozen CLIP patch embedding
averaged over its r x r bins (`source="clip_roi"`, F = D).

Layout prior (lain-reference §6). Once per image, the kept boxes are painted onto the patch grid in kept order
(later boxes on top, `pairs.paint_layout`), and every cell gets the feature of the box on top of it,

    [score, x1, y1, x2, y2, e_obj]       5 + E values (ViT-B/16: 5 + 512 = 517)

with the box in grid units (+0.5 on x2, y2) and e_obj the frozen, unnormalised CLIP text embedding of "a photo of
a <object>" ("a photo of nothing", score -1 and box -1s for empty cells). One MLP shared by all layers,
5 + E -> 128 -> 128 -> D_a (official `priors_downproj`), turns it into P_layout [B, Gh, Gw, D_a], which every
Locality Adapter adds to its down-projected patches.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .adapters import MLP, RoiPlan
from .pairs import paint_layout

HO_HIDDEN = 128  # hidden width of the HO-token MLP (official query_proj: 512 -> 128 -> 768)
LAYOUT_HIDDEN = 128  # hidden width of the layout MLP (official priors_downproj: 517 -> 128 -> 128 -> 32)
SOURCES = ("detector", "clip_roi")


def build_query_proj(feat_dim: int, width: int) -> MLP:
    """The HO-token MLP: [f_h; f_o] (2 * feat_dim) -> 128 -> width (the ViT's width D)."""
    return MLP(2 * feat_dim, HO_HIDDEN, width, 2)


def build_layout_mlp(embed_dim: int, adapter_dim: int) -> MLP:
    """The layout-prior MLP: 5 + E (score, grid box, object text embedding) -> 128 -> 128 -> D_a."""
    return MLP(5 + embed_dim, LAYOUT_HIDDEN, adapter_dim, 3)


def box_features(source: str, kept: list | dict, patches: Tensor, rois: RoiPlan | None, det_feat_dim: int) -> Tensor:
    """Per-box features f [K, F] of the kept boxes of a batch, in kept order image after image.

    Args:
        source: "detector" (each kept dict's `feats` [K_b, F]) | "clip_roi" (ROIAlign of `patches`).
        kept: B dicts of kept detections (boxes, feats, ...), or the fast path's one dict of the whole batch
            (boxes [K, 4], feats [K, F] or None).
        patches: [B, G, D] the frozen patch embedding (with positional embedding), row-major grid.
        rois: the ROIAlign plan of the kept boxes followed by one full-image box per image (needed for "clip_roi").
        det_feat_dim: F the model was built for (checked against detector features).
    """
    kept = [kept] if isinstance(kept, dict) else kept
    if source == "detector":
        if any(k["feats"] is None for k in kept):
            raise ValueError("model.ho_feature='detector' needs per-detection feats; these detections have none "
                             "(set model.ho_feature='clip_roi')")
        f = torch.cat([k["feats"] for k in kept])
        if f.shape[1] != det_feat_dim:
            raise ValueError(f"detector feats have {f.shape[1]} dims, the model was built for {det_feat_dim} "
                             f"(model.det_feat_dim)")
        return f
    if source != "clip_roi":
        raise ValueError(f"HO-token source must be one of {SOURCES}, got {source!r}")
    n_boxes = sum(int(k["boxes"].shape[0]) for k in kept)
    with torch.no_grad():  # = roi_align(patch embedding, box).mean over the r x r bins
        return rois.apply(patches)[:n_boxes].mean(1)  # [K, D]


def ho_tokens(query_proj: nn.Module, feats: Tensor, pair_h: Tensor, pair_o: Tensor) -> Tensor:
    """HO tokens [P, D] = MLP([f_h; f_o]) of P pairs (pair_h, pair_o: [P] rows of `feats`)."""
    return query_proj(torch.cat([feats[pair_h], feats[pair_o]], -1))


def layout_prior(layout_mlp: nn.Module, kept: list, object_text: Tensor, grid: tuple, image_size: int) -> Tensor:
    """P_layout [B, Gh, Gw, D_a] of a batch.

    Args:
        layout_mlp: `build_layout_mlp`'s MLP. kept: B dicts (boxes [K, 4] in the S x S frame, scores [K], labels [K]).
        object_text: [O + 1, E] raw CLIP text embeddings of the object prompts, "nothing" last.
        grid: (Gh, Gw). image_size: S.
    """
    none_label = object_text.shape[0] - 1
    cells = []
    for k in kept:
        index, g = paint_layout(k["boxes"], grid, (image_size, image_size))
        sb = torch.cat([torch.cat([k["scores"][:, None], g], 1), g.new_full((1, 5), -1.0)])  # [K+1, 5]
        lab = torch.cat([k["labels"], k["labels"].new_full((1,), none_label)])
        cells.append(torch.cat([sb[index], object_text[lab[index]].to(sb.dtype)], -1))  # [Gh, Gw, 5+E]
    return layout_mlp(torch.stack(cells))


def layout_prior_batched(layout_mlp: nn.Module, kept: dict, n_images: int, object_text: Tensor, grid: tuple,
                         image_size: int) -> Tensor:
    """`layout_prior` of a whole batch at once (the fast path; same values).

    kept: boxes [K, 4] (S x S frame, kept order image after image), scores [K], labels [K], box_img [K] image of
    each box. The MLP runs on the K + B distinct cell features (every box's, and one "nothing" per image), which
    are then gathered onto the grid, instead of on all B * Gh * Gw cells.
    """
    gh, gw = grid
    boxes, box_img = kept["boxes"], kept["box_img"]
    k, dev = boxes.shape[0], boxes.device
    g = boxes * boxes.new_tensor([gw / image_size, gh / image_size, gw / image_size, gh / image_size])
    g = torch.cat([g[:, :2], g[:, 2:] + 0.5], 1)  # as `pairs.paint_layout`
    r = torch.round(g).long()
    ys = torch.arange(gh, device=dev)[None, :, None]
    xs = torch.arange(gw, device=dev)[None, None, :]
    cover = ((ys >= r[:, 1, None, None]) & (ys < r[:, 3, None, None])
             & (xs >= r[:, 0, None, None]) & (xs < r[:, 2, None, None]))  # [K, Gh, Gw]
    # Boxes are in kept order within an image, so the last one painted has the highest row among its image's.
    rows = torch.where(cover, torch.arange(k, device=dev)[:, None, None], -1)
    top = torch.full((n_images, gh, gw), -1, dtype=torch.long, device=dev)
    top = top.scatter_reduce(0, box_img[:, None, None].expand(-1, gh, gw), rows, "amax")
    top = torch.where(top < 0, k + torch.arange(n_images, device=dev)[:, None, None], top)  # "nothing" rows
    none_label = object_text.shape[0] - 1
    sb = torch.cat([torch.cat([kept["scores"][:, None], g], 1), g.new_full((n_images, 5), -1.0)])  # [K + B, 5]
    lab = torch.cat([kept["labels"], kept["labels"].new_full((n_images,), none_label)])
    table = layout_mlp(torch.cat([sb, object_text[lab].to(sb.dtype)], -1))  # [K + B, Da]
    return table[top]  # [B, Gh, Gw, Da]
