"""Looking inside a LAIN model (notebook 03): the shapes its parts see, the layout map of the Locality Adapter, the
Interaction Adapter's context attention and the parameter count per part.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..models.pairs import paint_layout

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


def parameter_table(model) -> pd.DataFrame:
    """Parameters per part of a LAIN model: trainable (adapters, prompts, MLPs) vs frozen (CLIP)."""
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


