"""Probes of what a CLIP model knows, used by the notebooks.

`clip_probe` tests LAIN's motivating claim (paper §1: CLIP's image-level pretraining makes it encode global
semantics and miss local interaction cues) with a frozen CLIP and its HOI prompts:

- image level: does the image contain HOI class c? Score = cos(image, prompt_c); multi-label mAP over classes.
- pair level: which class does *this* human-object pair have? Among the classes valid for the pair's object,
  rank by (a) the whole-image score (identical for every pair of the image: what a global model can say),
  (b) the score of the pair's union-box crop (local evidence, still frozen CLIP). Top-1 accuracy of each,
  beside chance. Pairs whose image holds another pair with the same object class but a different interaction
  are the ones where image-level cues cannot tell who does what; they are reported separately.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.annotations import HOIAnnotations
from ..data.images import crop, union_box
from ..data.vocab import Vocabulary
from ..eval.ap import ranking_ap
from ..models.clip_backbone import preprocess


@torch.no_grad()
def encode_images(clip, images, size: int, mean, std, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP image embeddings [N, E] of uint8 images (an array [N, H, W, 3] or a list of [H, W, 3]
    arrays of any sizes: `clip_backbone.preprocess` resizes them)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size], size, mean, std)
        out.append(F.normalize(clip.encode_image(x), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, clip.text_projection.shape[1])


@torch.no_grad()
def encode_texts(clip, tokenizer, texts: list, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised CLIP text embeddings [T, E]."""
    out = [F.normalize(clip.encode_text(tokenizer(list(texts[i:i + batch_size]))), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


@torch.no_grad()
def clip_probe(clip, tokenizer, vocab: Vocabulary, annotations: HOIAnnotations, images: np.ndarray, size: int,
               mean, std, max_images: int = 500) -> dict:
    """Image-level vs pair-level HOI recognition by a frozen CLIP (see the module docstring).

    Args:
        annotations: ground truth (HICO-DET file convention); images: uint8 [N, H, W, 3] in the same order.
    Returns dict with image_map (percent), pair_top1_global, pair_top1_crop, pair_top1_chance (fractions),
        the same three restricted to "ambiguous" pairs, and the counts.
    """
    idx = annotations.nonempty_images()[:max_images]
    text = encode_texts(clip, tokenizer, list(vocab.hoi_prompts))  # [C, E]
    img_emb = encode_images(clip, np.asarray(images[idx]), size, mean, std)  # [n, E]
    img_scores = (img_emb @ text.T).numpy()  # [n, C]

    # Image level: multi-label presence of each class.
    present = np.zeros_like(img_scores, dtype=bool)
    pos = {int(i): k for k, i in enumerate(idx)}
    rows = np.flatnonzero(np.isin(annotations.image_index, idx))
    present[[pos[int(i)] for i in annotations.image_index[rows]], annotations.hoi[rows]] = True
    aps = [ranking_ap(img_scores[:, c], present[:, c]) for c in range(vocab.num_classes)]
    image_map = 100.0 * float(np.nanmean(aps))

    # Pair level: one entry per distinct (image, human box, object box), multi-label GT.
    bh, bo = annotations.continuous_boxes()
    pairs: dict = {}
    for r in rows:
        key = (int(annotations.image_index[r]), tuple(bh[r]), tuple(bo[r]))
        pairs.setdefault(key, set()).add(int(annotations.hoi[r]))
    keys = list(pairs)
    crops = [_resize(crop(np.asarray(images[i]), union_box(np.asarray(h), np.asarray(o)), pad=0.1), size)
             for (i, h, o) in keys]
    crop_scores = (encode_images(clip, crops, size, mean, std) @ text.T).numpy() if crops else None

    obj_of = vocab.hoi_classes[:, 1]
    res = {"global": [], "crop": [], "chance": [], "ambiguous": []}
    for k, (i, h, o) in enumerate(keys):
        gt = pairs[(i, h, o)]
        obj = obj_of[next(iter(gt))]
        cand = np.flatnonzero(obj_of == obj)
        g = cand[np.argmax(img_scores[pos[i], cand])]
        c = cand[np.argmax(crop_scores[k, cand])]
        res["global"].append(g in gt)
        res["crop"].append(c in gt)
        res["chance"].append(len(gt & set(cand.tolist())) / len(cand))
        others = [pairs[kk] for kk in keys if kk[0] == i and kk != (i, h, o) and obj_of[next(iter(pairs[kk]))] == obj]
        res["ambiguous"].append(any(s != gt for s in others))
    amb = np.array(res["ambiguous"], bool)
    mean_ = lambda v, m=None: float(np.mean(np.asarray(v, float)[m] if m is not None else v)) if len(v) else float("nan")  # noqa: E731
    return {
        "images": int(len(idx)), "pairs": int(len(keys)), "ambiguous_pairs": int(amb.sum()),
        "image_map": image_map,
        "pair_top1_global": mean_(res["global"]), "pair_top1_crop": mean_(res["crop"]),
        "pair_top1_chance": mean_(res["chance"]),
        "ambiguous_top1_global": mean_(res["global"], amb) if amb.any() else float("nan"),
        "ambiguous_top1_crop": mean_(res["crop"], amb) if amb.any() else float("nan"),
        "ambiguous_top1_chance": mean_(res["chance"], amb) if amb.any() else float("nan"),
    }


