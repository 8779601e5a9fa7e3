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

from .data.annotations import HOIAnnotations
from .data.vocab import Vocabulary


def images_to_tensor(images: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, size, size], resized (bicubic, aspect not kept) and normalised."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


@torch.no_grad()
def encode_images(clip, images: np.ndarray, size: int, mean, std, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP image embeddings [N, E] of uint8 images [N, H, W, 3]."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images_to_tensor(np.asarray(images[i:i + batch_size]), size, mean, std)
        out.append(F.normalize(clip.encode_image(x), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, clip.text_projection.shape[1])


@torch.no_grad()
def encode_texts(clip, tokenizer, texts: list, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised CLIP text embeddings [T, E]."""
    out = [F.normalize(clip.encode_text(tokenizer(list(texts[i:i + batch_size]))), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


def crop(image: np.ndarray, box: np.ndarray, pad: float = 0.1) -> np.ndarray:
    """Crop a continuous xyxy box (padded by `pad` of its size on each side) from an [H, W, 3] image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    px, py = pad * (x2 - x1), pad * (y2 - y1)
    x1, y1 = int(max(0, np.floor(x1 - px))), int(max(0, np.floor(y1 - py)))
    x2, y2 = int(min(w, np.ceil(x2 + px))), int(min(h, np.ceil(y2 + py)))
    return image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """All-point AP of one class (labels boolean); NaN without positives."""
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = labels[order].astype(np.float64)
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    return float((prec * tp).sum() / tp.sum())


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
    aps = [_average_precision(img_scores[:, c], present[:, c]) for c in range(vocab.num_classes)]
    image_map = 100.0 * float(np.nanmean(aps))

    # Pair level: one entry per distinct (image, human box, object box), multi-label GT.
    bh, bo = annotations.continuous_boxes()
    pairs: dict = {}
    for r in rows:
        key = (int(annotations.image_index[r]), tuple(bh[r]), tuple(bo[r]))
        pairs.setdefault(key, set()).add(int(annotations.hoi[r]))
    crops, keys = [], list(pairs)
    for (i, h, o) in keys:
        u = np.array([min(h[0], o[0]), min(h[1], o[1]), max(h[2], o[2]), max(h[3], o[3])])
        crops.append(_resize(crop(np.asarray(images[i]), u), size))
    crop_scores = (encode_images(clip, np.stack(crops), size, mean, std) @ text.T).numpy() if crops else None

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


# ---------------------------------------------------------------------------------------------------------
# Looking inside LAIN (notebook 03)
# ---------------------------------------------------------------------------------------------------------
def _shape(x):
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return [_shape(v) for v in x if isinstance(v, (torch.Tensor, list, tuple))]
    return None


@torch.no_grad()
def trace_shapes(model, images: torch.Tensor, detections: list, layers=(0,)):
    """Run `model(images, detections)` and record input/output shapes of its main parts, in call order.

    Returns a DataFrame (module, input shapes, output shape) and the model outputs."""
    import pandas as pd

    names = {"query_proj": model.query_proj, "layout_mlp": model.layout_mlp, "prompt_learner": model.prompt_learner}
    n_layers = len(model.clip.visual.transformer.resblocks)
    for i in layers:
        i = i % n_layers
        if model.adapters is not None:
            if model.adapters[i].la is not None:
                names[f"adapters[{i}].la (Locality Adapter)"] = model.adapters[i].la
            if model.adapters[i].ia is not None:
                names[f"adapters[{i}].ia (Interaction Adapter)"] = model.adapters[i].ia
    rows, handles = [], []
    for name, mod in names.items():
        if mod is None:
            continue
        handles.append(mod.register_forward_hook(
            lambda m, inp, out, name=name: rows.append({"module": name, "inputs": _shape(list(inp)),
                                                        "output": _shape(out)})))
    try:
        outputs = model(images, detections)
    finally:
        for h in handles:
            h.remove()
    return pd.DataFrame(rows), outputs


@torch.no_grad()
def layout_map(model, detections: dict) -> dict:
    """The LA layout for one image: which kept box is painted on top of each patch cell.

    Args: detections: one forward-input dict (S frame). Returns dict(index [Gh, Gw] (K = no box), boxes [K, 4]
    (S frame), labels [K], scores [K])."""
    from .models.pairs import paint_layout

    kept = model._select(detections)
    index, _ = paint_layout(kept["boxes"], model.grid, (model.image_size, model.image_size))
    return {"index": index.cpu().numpy(), "boxes": kept["boxes"].cpu().numpy(),
            "labels": kept["labels"].cpu().numpy(), "scores": kept["scores"].cpu().numpy(),
            "pairs": kept["pairs"].cpu().numpy()}


@torch.no_grad()
def ia_context_attention(model, images: torch.Tensor, detections: list, layer: int = -1) -> np.ndarray:
    """Attention of one layer's IA context queries over each kept box's r x r ROI cells (first image).

    The IA's learnable queries cross-attend to every box's ROIAlign tokens (context extraction, LAIN §3.3); this
    returns their attention weights averaged over heads and queries: [K, r, r] for the K kept boxes of image 0
    (the full-image pseudo-boxes are dropped). The model must be in eval mode (no dropout) and use context queries.
    """
    layer = layer % len(model.adapters)
    ia = model.adapters[layer].ia
    if ia is None or not ia.use_context:
        raise ValueError("this model has no IA context queries (use_ia=False or ia_context=False)")
    captured = {}
    h = ia.roi_ln.register_forward_hook(lambda m, i, o: captured.__setitem__("r", o))
    try:
        model(images[:1], detections[:1])
    finally:
        h.remove()
    r = captured["r"]  # [K + 1, r*r, Da]: kept boxes, then the full-image box
    a, d = ia.context.attn, r.shape[-1]
    heads = a.num_heads
    q = F.linear(ia.queries.weight, a.in_proj_weight[:d], a.in_proj_bias[:d])  # [Q, Da]
    k = F.linear(r, a.in_proj_weight[d:2 * d], a.in_proj_bias[d:2 * d])  # [K, rr, Da]
    qh = q.view(q.shape[0], heads, d // heads).transpose(0, 1)  # [h, Q, d/h]
    kh = k.view(k.shape[0], k.shape[1], heads, d // heads).permute(0, 2, 1, 3)  # [K, h, rr, d/h]
    w = torch.softmax(qh[None] @ kh.transpose(-1, -2) / np.sqrt(d // heads), -1)  # [K, h, Q, rr]
    s = ia.roi_size
    return w.mean((1, 2))[:-1].view(-1, s, s).cpu().numpy()


def parameter_table(model) -> "pd.DataFrame":
    """Parameters per part of a LAIN model: trainable (adapters, prompts, MLPs) vs frozen (CLIP)."""
    import pandas as pd

    groups: dict = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "adapters":
            key = f"adapters.{parts[2]}" if len(parts) > 2 else "adapters"
            key = {"adapters.la": "Locality Adapters (all layers)",
                   "adapters.ia": "Interaction Adapters (all layers)"}.get(key, key)
        elif parts[0] == "clip":
            key = "CLIP (frozen)"
        else:
            key = parts[0]
        g = groups.setdefault(key, {"part": key, "parameters": 0, "trainable": 0})
        g["parameters"] += p.numel()
        g["trainable"] += p.numel() if p.requires_grad else 0
    t = pd.DataFrame(list(groups.values()))
    total = t[["parameters", "trainable"]].sum()
    t = pd.concat([t, pd.DataFrame([{"part": "total", **total.to_dict()}])], ignore_index=True)
    t["share_of_total_%"] = 100.0 * t["parameters"] / float(total["parameters"])
    return t


# ---------------------------------------------------------------------------------------------------------
# Qualitative results and detection quality (notebook 08)
# ---------------------------------------------------------------------------------------------------------
def prediction_correct(annotations: HOIAnnotations, pred: dict, rows: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For prediction rows `rows`: True where a ground-truth pair of the same image and HOI class overlaps the
    predicted pair with min(IoU_h, IoU_o) >= iou (GT boxes converted to continuous coordinates)."""
    from .kernels import pair_min_iou_reference

    bh, bo = annotations.continuous_boxes()
    out = np.zeros(len(rows), bool)
    for j, r in enumerate(np.asarray(rows)):
        i, c = int(pred["image_index"][r]), int(pred["hoi"][r])
        g = annotations.pairs_of(i)
        g = g[annotations.hoi[g] == c]
        if len(g):
            t = lambda a: torch.as_tensor(np.asarray(a, np.float32).reshape(-1, 4))  # noqa: E731
            v = pair_min_iou_reference(t(pred["boxes_h"][r]), t(pred["boxes_o"][r]), t(bh[g]), t(bo[g]))
            out[j] = bool((v >= iou).any())
    return out


def top_predictions(pred: dict, image: int, top: int) -> np.ndarray:
    """Rows of the `top` highest-scoring predictions of one image (stable order on ties)."""
    rows = np.flatnonzero(pred["image_index"] == image)
    return rows[np.argsort(-pred["score"][rows], kind="stable")[:top]]


def pick_qualitative_images(annotations: HOIAnnotations, pred: dict, unseen, n: int = 8) -> list:
    """The first `n` test images (in file order) that contain an unseen class and have predictions; padded with
    other predicted images when fewer exist."""
    unseen = set(np.asarray(unseen, np.int64).tolist())
    has_pred = set(np.unique(pred["image_index"]).tolist())
    with_unseen = [i for i in annotations.nonempty_images().tolist()
                   if i in has_pred and unseen & set(annotations.hoi[annotations.pairs_of(i)].tolist())]
    rest = [i for i in sorted(has_pred) if i not in set(with_unseen)]
    return (with_unseen + rest)[:n]


def scaled_detector(cfg, level: float) -> dict:
    """Overrides that scale every noise parameter of the simulated detector by `level` (0 = ground-truth boxes
    with constant scores, 1 = `cfg.detector` as it is)."""
    d = cfg.detector
    return {"detector.box_jitter": d.box_jitter * level, "detector.miss_rate": min(1.0, d.miss_rate * level),
            "detector.false_positives": d.false_positives * level,
            "detector.class_confusion": min(1.0, d.class_confusion * level), "detector.score_noise": d.score_noise * level}


def detection_quality_sweep(base, variants: dict, seeds, levels, progress: bool = False):
    """mAP of trained models (trained once on `base`'s detections, cached) evaluated on test detections of
    several noise levels (`scaled_detector`). Returns a summary DataFrame: method, level, <metric>_mean/_std."""
    import pandas as pd

    from . import engine, runs
    from .data.dataset import build_dataset
    from .study import summarise, wide_table

    rows = []
    for name, overrides in variants.items():
        for seed in seeds:
            cfg = base.override(overrides, {"train.seed": int(seed)})
            run = runs.run_experiment(cfg, progress=progress)  # trains once (cached)
            cfg = engine.resolve_clip(cfg, progress=progress)
            model = engine.load_trained_model(cfg, run["run_dir"])
            for level in levels:
                cl = cfg.override(scaled_detector(cfg, level))
                test = build_dataset(cl, "test")
                m = engine.evaluate_run(cl, engine.infer(cl, model, progress=progress, data=test), data=test)
                for metric in ("unseen", "seen", "full"):
                    if m.get(metric) is not None:
                        rows.append(dict(setting=name, protocol=float(level), seed=int(seed), metric=metric,
                                         value=float(m[metric])))
    long = pd.DataFrame(rows)
    t = wide_table(summarise(long), ["setting", "protocol"])
    return t.rename(columns={"setting": "method", "protocol": "level"})
