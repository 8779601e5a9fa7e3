"""HOICLIP's components on top of LAIN (HOICLIP, CVPR 2023, §3.3-3.5; code: Artanic30/HOICLIP): all of them live
here, and LAIN calls them (`add_verb_scores`, `zs_for_pairs`, `zero_shot_topk`, `final_scores`,
`fit_verb_classifier`).

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
   against the (frozen, context-free) HOI prompts, the other classes' scores set to 0. HOICLIP's code adds
   sigmoid(S_zs) to the HOI probabilities (so sigmoid(0) = 0.5 is added for the classes outside the top K too):
       score = (sigmoid(logit) + sigmoid(S_zs)) * prior                           (rule "hoiclip", the default)
   The other rule adds the raw score to the logit, sigmoid(logit + S_zs) * prior ("logit"); with logits that are
   cosines times exp(s) ~ 14, the enhancement is then about exp(s) times weaker. Inference only; K = 0 disables it
   under either rule (`final_scores`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.images import crop, union_box
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
    return keep_topk(image_emb @ hoi_text.t(), k)


def keep_topk(s: Tensor, k: int) -> Tensor:
    """Scores [B, C] kept for the top-k classes of each row and 0 elsewhere (k <= 0: all 0)."""
    if k <= 0:
        return torch.zeros_like(s)
    k = min(k, s.shape[1])
    top = s.topk(k, dim=1).indices
    return torch.zeros_like(s).scatter(1, top, s.gather(1, top))


ZS_RULES = ("hoiclip", "logit")


def final_scores(logits: Tensor, prior: Tensor, zs: Tensor | None = None, rule: str = "hoiclip") -> Tensor:
    """The detection scores of (pair, class) entries: sigmoid(logit) * prior, with HOICLIP's training-free scores
    when given.

    Args:
        logits, prior: the entries' logits and detector priors (s_h^lambda * s_o^lambda); any shape, the same.
        zs: the entries' training-free scores (top-K masked cosines, 0 outside the top K; `zs_for_pairs`), same shape,
            or None (enhancement off).
        rule: "hoiclip": (sigmoid(logit) + sigmoid(zs)) * prior; "logit": sigmoid(logit + zs) * prior.
    """
    if rule not in ZS_RULES:
        raise ValueError(f"zero-shot rule must be one of {ZS_RULES}, got {rule!r}")
    if zs is None:
        return torch.sigmoid(logits) * prior
    if zs.shape != logits.shape:
        raise ValueError(f"zero-shot scores {tuple(zs.shape)} and logits {tuple(logits.shape)} differ in shape")
    if rule == "hoiclip":
        return (torch.sigmoid(logits) + torch.sigmoid(zs)) * prior
    return torch.sigmoid(logits + zs) * prior


def add_verb_scores(logits: Tensor, verb_scores: Tensor, alpha: float, hoi_verb: Tensor | None = None) -> Tensor:
    """HOICLIP eq. 19: S = S_inter + alpha * S_v.

    Args:
        logits: [P, T] S_inter (T = verbs, or HOI classes in LAIN's "hoi" text mode).
        verb_scores: [P, V] S_v (already multiplied by the logit scale).
        hoi_verb: [C] verb of each HOI class when T = C (S_v is read per class's verb); None when T = V.
    """
    return logits + alpha * (verb_scores if hoi_verb is None else verb_scores[:, hoi_verb])


def zs_for_pairs(zs: Tensor, objects: Tensor, ov_to_hoi: Tensor, hoi_object: Tensor, text_mode: str) -> Tensor:
    """Training-free HOI scores -> [P, T] entries of P pairs whose object classes are `objects`.

    zs: [C] (one image's scores, shared by its pairs) or [P, C] (each pair's image's scores).
    Verb mode (T = V): entry (p, v) gets the score of HOI (objects[p], v), 0 where that is not a class
    (`ov_to_hoi` [O, V], -1 = none). HOI mode (T = C): entry (p, c) gets zs[c] when c's object is the pair's object.
    """
    if text_mode == "verb":
        idx = ov_to_hoi[objects]  # [P, V]
        got = zs[idx.clamp_min(0)] if zs.ndim == 1 else zs.gather(1, idx.clamp_min(0))
        return torch.where(idx >= 0, got, zs.new_zeros(()))
    return (zs[None, :] if zs.ndim == 1 else zs) * (hoi_object[None, :] == objects[:, None]).to(zs.dtype)


@torch.no_grad()
def fit_verb_classifier(model, train_dataset, batch_size: int = 128, progress: bool = True) -> dict:
    """Compute HOICLIP's verb classifier E_v by visual semantic arithmetic over a training set (§3.3) and install it in
    `model.verb_head`.

    Args:
        model: a LAIN model with a verb head (uses its frozen CLIP image encoder, `preprocess` and vocabulary).
        train_dataset: indexable; item i is a dict with image (uint8 [H, W, 3]) and gt (boxes_h, boxes_o [M, 4]
            continuous xyxy pixels; verb, object [M]), e.g. `HOIDataset`.
    Returns:
        dict(num_hoi_crops, num_object_crops, verbs_from_images, verbs_from_text (indices of the verbs that fell back to
        their text embedding)).
    """
    if model.verb_head is None:
        raise ValueError("the model has no verb classifier (model.use_verb_classifier is False)")
    device = model.device
    nv, no = model.vocab.num_verbs, model.vocab.num_objects
    e = model.verb_head.weight.shape[1]
    hoi_sum = torch.zeros(nv * no, e, device=device)
    hoi_count = torch.zeros(nv * no, device=device)
    obj_sum = torch.zeros(no, e, device=device)
    crops, rows = [], []  # rows: (is_object, class id)

    def flush():
        if not crops:
            return
        f = model.clip.encode_image(model.preprocess(crops).to(device)).float()
        is_obj = torch.tensor([r[0] for r in rows], device=device)
        cid = torch.tensor([r[1] for r in rows], device=device)
        hoi_sum.index_add_(0, cid[~is_obj], f[~is_obj])
        hoi_count.index_add_(0, cid[~is_obj], torch.ones_like(cid[~is_obj], dtype=torch.float))
        obj_sum.index_add_(0, cid[is_obj], f[is_obj])
        crops.clear()
        rows.clear()

    n_hoi = n_obj = 0
    for i in tqdm(range(len(train_dataset)), desc="HOICLIP verb classifier", disable=not progress):
        item = train_dataset[i]
        image, gt = np.asarray(item["image"]), item["gt"]
        bh = np.asarray(gt["boxes_h"], np.float32).reshape(-1, 4)
        bo = np.asarray(gt["boxes_o"], np.float32).reshape(-1, 4)
        verb, obj = np.asarray(gt["verb"], np.int64), np.asarray(gt["object"], np.int64)
        for box, v, o in zip(union_box(bh, bo), verb, obj):
            crops.append(crop(image, box))
            rows.append((False, int(v) * no + int(o)))
            n_hoi += 1
        # Each object instance once, even when it takes part in several pairs.
        for j in np.unique(np.concatenate([bo, obj[:, None].astype(np.float32)], 1), axis=0, return_index=True)[1]:
            crops.append(crop(image, bo[j]))
            rows.append((True, int(obj[j])))
            n_obj += 1
        if len(crops) >= batch_size:
            flush()
    flush()
    e_v, has = vsa_from_sums(hoi_sum.view(nv, no, e), hoi_count.view(nv, no), obj_sum)
    e_v = torch.where(has[:, None], e_v, model.verb_text_features())
    model.verb_head.set_classifier(e_v)
    return dict(num_hoi_crops=n_hoi, num_object_crops=n_obj,
                verbs_from_images=torch.nonzero(has).flatten().tolist(),
                verbs_from_text=torch.nonzero(~has).flatten().tolist())
