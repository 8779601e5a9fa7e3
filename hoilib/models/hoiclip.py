"""HOICLIP's components on top of LAIN (HOICLIP, CVPR 2023, §3.3-3.5; code: Artanic30/HOICLIP).

1. Verb classifier from visual semantic arithmetic (§3.3, eqs. 11-14). Every training HOI instance is cropped
   to the smallest box covering human and object, every object instance to its box; both are encoded with the
   frozen CLIP image encoder (f(R) = Proj(VisEnc(R))):
       E_h^{k,j} = L2Norm(sum_{R in HOI(k,j)} f(R)),   E_o^j = L2Norm(sum_{R in OBJ_j} f(R)),
       E_v^k     = L2Norm(sum_{j: (k,j) seen} (E_h^{k,j} - E_o^j)).
   Deviation: verbs without any training instance (e.g. the unseen verbs of the UV protocol) have no E_v; they
   fall back to the L2-normalised CLIP text embedding of their prompt.
2. Verb adapter (§3.3, eqs. 15-16): O_verb = MLP(O_inter) (HOICLIP's `inter2verb`: D -> D/2 -> D, 3 layers) and
   S_v = scale * cos(O_verb, E_v); the classifier weights start at E_v and train, as HOICLIP's `verb_projection`
   does (`trainable=False` keeps them fixed). Logits = S_inter + alpha * S_v (eq. 19).
3. Training-free enhancement (§3.4, eq. 17): S_zs = TopK(cos(V_g, E_inter)) of the global CLIP image embedding
   against the (frozen, context-free) HOI prompts; the kept K scores are added at inference to the logits of the
   matching (detected object, verb) entries, the others add nothing. K = 0 disables it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adapters import MLP


class VerbClassifierHead(nn.Module):
    """Verb adapter + visual-semantic-arithmetic verb classifier.

    forward(o_inter [P, E]) -> [P, V] cosine similarities (the caller applies the logit scale).
    """

    def __init__(self, embed_dim: int, init_weights: Tensor, trainable: bool = True):
        super().__init__()
        self.adapter = MLP(embed_dim, embed_dim // 2, embed_dim, 3)
        w = F.normalize(init_weights.detach().float(), dim=-1).clone()
        if trainable:
            self.weight = nn.Parameter(w)
        else:
            self.register_buffer("weight", w)

    @torch.no_grad()
    def set_classifier(self, weights: Tensor) -> None:
        """Replace E_v in place (keeps the parameter object, so an existing optimizer still holds it)."""
        if weights.shape != self.weight.shape:
            raise ValueError(f"verb classifier must be {tuple(self.weight.shape)}, got {tuple(weights.shape)}")
        self.weight.copy_(F.normalize(weights.float(), dim=-1))

    def forward(self, o_inter: Tensor) -> Tensor:
        v = F.normalize(self.adapter(o_inter), dim=-1)
        return v @ F.normalize(self.weight, dim=-1).t()


def union_box(box_h: np.ndarray, box_o: np.ndarray) -> np.ndarray:
    """Smallest xyxy box covering both boxes ([..., 4] each)."""
    return np.concatenate([np.minimum(box_h[..., :2], box_o[..., :2]), np.maximum(box_h[..., 2:], box_o[..., 2:])],
                          -1)


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Crop an [H, W, 3] image to a continuous xyxy pixel box (outward to whole pixels, at least 1 x 1)."""
    h, w = image.shape[:2]
    x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, h))
    return image[y1:y2, x1:x2]


def vsa_from_sums(hoi_sum: Tensor, hoi_count: Tensor, obj_sum: Tensor) -> tuple[Tensor, Tensor]:
    """HOICLIP eqs. 12-14 from accumulated features.

    Args:
        hoi_sum: [V, O, E] sum of f(union crop) per HOI (verb, object); hoi_count: [V, O] instances;
        obj_sum: [O, E] sum of f(object crop) per object class.
    Returns:
        E_v: [V, E] L2-normalised (zero rows for verbs without instances); has_instance: [V] bool.
    """
    e_h = F.normalize(hoi_sum, dim=-1)  # eq. 12
    e_o = F.normalize(obj_sum, dim=-1)  # eq. 13
    seen = hoi_count > 0
    diff = torch.where(seen[..., None], e_h - e_o[None], torch.zeros_like(e_h))
    return F.normalize(diff.sum(1), dim=-1), seen.any(1)  # eq. 14


def visual_semantic_arithmetic(hoi_feats: Tensor, hoi_verb: Tensor, hoi_object: Tensor, obj_feats: Tensor,
                               obj_label: Tensor, num_verbs: int, num_objects: int) -> tuple[Tensor, Tensor]:
    """HOICLIP eqs. 12-14 from per-instance features.

    Args:
        hoi_feats: [M, E] f(union crop) of every HOI instance, with its verb / object class in hoi_verb, hoi_object.
        obj_feats: [N, E] f(object crop) of every object instance, class obj_label.
    Returns:
        E_v: [V, E] L2-normalised (zero rows for verbs without instances); has_instance: [V] bool.
    """
    e = hoi_feats.shape[1]
    pair_id = hoi_verb * num_objects + hoi_object
    hoi_sum = hoi_feats.new_zeros(num_verbs * num_objects, e).index_add_(0, pair_id, hoi_feats)
    count = torch.bincount(pair_id, minlength=num_verbs * num_objects)
    obj_sum = obj_feats.new_zeros(num_objects, e).index_add_(0, obj_label, obj_feats)
    return vsa_from_sums(hoi_sum.view(num_verbs, num_objects, e), count.view(num_verbs, num_objects), obj_sum)


def zero_shot_topk(image_emb: Tensor, hoi_text: Tensor, k: int) -> Tensor:
    """HOICLIP eq. 17: cosine scores [B, C] of L2-normalised image / HOI-text embeddings, kept for the top-k classes
    per image and 0 elsewhere."""
    s = image_emb @ hoi_text.t()
    if k <= 0:
        return torch.zeros_like(s)
    k = min(k, s.shape[1])
    top = s.topk(k, dim=1).indices
    return torch.zeros_like(s).scatter(1, top, s.gather(1, top))
