"""Looking inside a LAIN model (notebook 03): the shapes its parts see (every dimension named), the attention mask,
the layout map and layout features of the Locality Adapter, the size of its update per patch, the Interaction
Adapter's context attention, the HO tokens' attention over the patches, and the parameter count per part.

The functions run the model's own forward pass and read its parts through hooks (on its reference implementation
when it has a faster one), so what they show is what the model computes.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..models.pairs import paint_layout

# The parts `trace_shapes` follows, in the order of the method (LAIN §3), with each tensor's dimensions named:
# (paper part, module path ({i}: the layer), input dims per tensor argument (None: not a tensor), output dims).
# Dimension names: B images, P pairs, K kept boxes (+ B full-image boxes for the IA's CLS pseudo-pairs), G = Gh x Gw
# patches, D ViT width, E CLIP embedding, F per-box feature, D_a adapter width, Q context tokens per box (the r x r
# ROI cells when there are no context queries), r ROIAlign size, T classes of the text side, V verbs.
TRACE = (
    ("HO tokens: MLP([f_h; f_o])", "query_proj", [("P", "2*F")], ("P", "D")),
    ("layout prior: MLP(score, box, e_obj)", "layout_mlp", [("B", "Gh", "Gw", "5+E")], ("B", "Gh", "Gw", "D_a")),
    ("LA: down-projection", "adapters.{i}.la.down", [("B", "G", "D")], ("B", "G", "D_a")),
    ("LA: Linear(LN(alpha F~ + P_layout))", "adapters.{i}.la.proj_in", [("B", "Gh", "Gw", "D_a")],
     ("B", "Gh", "Gw", "D_a")),
    ("LA: mixer {j} (multi-scale)", "adapters.{i}.la.mixers.{j}", [("B", "D_a", "Gh", "Gw")], ("B", "D_a", "Gh", "Gw")),
    ("LA: up-projection", "adapters.{i}.la.up", [("B", "Gh", "Gw", "D_a")], ("B", "Gh", "Gw", "D")),
    ("LA: dF = gamma_LA * up(M)", "adapters.{i}.la", [("B", "G", "D"), ("B", "Gh", "Gw", "D_a"), None], ("B", "G", "D")),
    ("IA: ROIAlign tokens R", "adapters.{i}.ia.roi_ln", [("K+B", "r*r", "D_a")], ("K+B", "r*r", "D_a")),
    ("IA: context queries -> R", "adapters.{i}.ia.context", [("K+B", "Q", "D_a"), ("K+B", "r*r", "D_a")],
     ("K+B", "Q", "D_a")),
    ("IA: IPRM (C_h <-> C_o, both directions)", "adapters.{i}.ia.iprm", [("2*(P+B)", "Q", "D_a"), ("2*(P+B)", "Q", "D_a")],
     ("2*(P+B)", "Q", "D_a")),
    ("IA: HO token -> H', O'", "adapters.{i}.ia.token_dec", [("2*(P+B)", "1", "D_a"), ("2*(P+B)", "Q", "D_a")],
     ("2*(P+B)", "1", "D_a")),
    ("IA: up-projection of [h; o]", "adapters.{i}.ia.up", [("P+B", "2*D_a")], ("P+B", "D")),
    ("IA: dT = gamma_IA * up([h; o])", "adapters.{i}.ia", [("B", "G", "D"), ("P+B", "D"), None, ("P+B",), ("P+B",)],
     ("P+B", "D")),
    ("text: prompt learner", "prompt_learner", [], ("T", "E")),
    ("HOICLIP: verb head", "verb_head", [("P", "E")], ("P", "V")),
)


def dimension_sizes(model, outputs: list) -> dict:
    """The named dimensions of `TRACE` for a forward of `model` whose output is `outputs` (every image with pairs).

    Returns {name: size}: B, P, K, Gh, Gw, G, D, E, F, D_a, Q, r, T, V."""
    gh, gw = model.grid
    sizes = dict(B=len(outputs), P=sum(int(o["pairs"].shape[0]) for o in outputs),
                 K=sum(int(o["boxes"].shape[0]) for o in outputs), Gh=gh, Gw=gw, G=gh * gw, D=model.width,
                 E=int(model.clip.visual.proj.shape[1]), T=model.num_targets, V=model.vocab.num_verbs,
                 r=model.ho_roi_size, F=model.det_feat_dim if model.ho_feature == "detector" else model.width)
    first = model.adapters[0] if model.adapters is not None else None
    if first is not None and first.la is not None:
        sizes["D_a"] = first.la.proj_in.in_features
    if first is not None and first.ia is not None:
        sizes["D_a"] = first.ia.roi_down.out_features
        sizes["Q"] = first.ia.queries.num_embeddings if first.ia.use_context else model.ho_roi_size ** 2
    return sizes


def named_shape(shape, dims, sizes: dict) -> str:
    """"[B=1, Gh=8, Gw=8, 5+E=133]" when `shape` has the named dims `dims` (expressions over `sizes`), else the raw
    shape with " (unnamed)"."""
    shape = tuple(int(n) for n in shape)
    try:
        values = tuple(int(eval(d, {"__builtins__": {}}, sizes)) for d in dims)  # noqa: S307 (TRACE's own names)
    except (NameError, SyntaxError):
        values = None
    if values != shape:
        return f"[{', '.join(map(str, shape))}] (unnamed)"
    return "[" + ", ".join(d if d.isdigit() else f"{d}={v}" for d, v in zip(dims, values)) + "]"


@contextlib.contextmanager
def _reference_path(model):
    """Run `model` on its reference implementation when it has a faster one (the hooks below read its layout)."""
    old = getattr(model, "fast_path", None)
    if old is not None:
        model.fast_path = False
    try:
        yield model
    finally:
        if old is not None:
            model.fast_path = old


@torch.no_grad()
def trace_shapes(model, images: torch.Tensor, detections: list, layers=(0,)):
    """Run `model(images, detections)` and record the shapes its parts see, with every dimension named.

    Args:
        images, detections: a forward input in which every image has at least one pair; layers: adapter layers
        to follow (negative counts from the end).
    Returns:
        (DataFrame with one row per call of a traced part, in call order: step (paper part), module (path), input,
        output (named shapes, e.g. "[B=1, Gh=8, Gw=8, 5+E=133]"); the model's outputs).
    """
    n_layers = len(model.clip.visual.transformer.resblocks)
    parts = []
    for step, path, ins, out in TRACE:
        if "{i}" not in path:
            parts.append((step, path, ins, out))
            continue
        for i in sorted({i % n_layers for i in layers}):
            if "{j}" in path:
                mixers = _module(model, path.format(i=i, j=0).rsplit(".", 1)[0])
                for j in range(len(mixers) if mixers is not None else 0):
                    parts.append((step.format(j=j), path.format(i=i, j=j), ins, out))
            else:
                parts.append((step, path.format(i=i), ins, out))
    calls, handles = [], []
    for step, path, ins, out in parts:
        mod = _module(model, path)
        if mod is None:
            continue
        handles.append(mod.register_forward_hook(
            lambda m, inp, o, key=(step, path, ins, out): calls.append((key, [_shape(x) for x in inp], _shape(o)))))
    try:
        with _reference_path(model):
            outputs = model(images, detections)
    finally:
        for h in handles:
            h.remove()
    if any(int(o["pairs"].shape[0]) == 0 for o in outputs):
        raise ValueError("trace_shapes needs images that each have at least one human-object pair")
    sizes = dimension_sizes(model, outputs)
    rows = []
    for (step, path, ins, out), in_shapes, out_shape in calls:
        named_in = [named_shape(s, d, sizes) for s, d in zip(in_shapes, ins) if d is not None and s is not None]
        rows.append({"step": step, "module": path, "input": "; ".join(named_in) or "-",
                     "output": named_shape(out_shape, out, sizes)})
    return pd.DataFrame(rows, columns=["step", "module", "input", "output"]), outputs


def _module(model, path: str):
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _shape(x):
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


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
        with _reference_path(model):
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


def attention_mask(model, n_pairs: int) -> np.ndarray:
    """The model's attention mask over [HO_1..HO_P, CLS, patch_1..patch_G] for one image with P pairs:
    bool [L, L], L = P + 1 + G, True = the row's token cannot attend to the column's token."""
    g = model.grid[0] * model.grid[1]
    return model._attention_mask(int(n_pairs), g, torch.device("cpu")).cpu().numpy()


@torch.no_grad()
def layout_features(model, images: torch.Tensor, detections: list) -> np.ndarray:
    """The per-cell input of the layout-prior MLP for the first image: [Gh, Gw, 5 + E] = (score, x1, y1, x2, y2 in
    grid units, e_obj) of the box painted on top of each cell (read from the MLP's own input)."""
    if model.layout_mlp is None:
        raise ValueError("this model has no layout prior (use_la=False or la_layout=False)")
    captured = {}
    h = model.layout_mlp.register_forward_hook(lambda m, i, o: captured.__setitem__("x", i[0]))
    try:
        with _reference_path(model):
            model(images[:1], detections[:1])
    finally:
        h.remove()
    return captured["x"][0].cpu().numpy()


@torch.no_grad()
def la_update_norms(model, images: torch.Tensor, detections: list) -> np.ndarray:
    """||dF|| per patch of every layer's Locality Adapter for the first image: [layers, Gh, Gw] (L2 norm over the
    D channels of the update the LA adds to each patch token)."""
    las = [a.la for a in model.adapters or () if a.la is not None]
    if not las:
        raise ValueError("this model has no Locality Adapter")
    norms = []
    handles = [la.register_forward_hook(lambda m, i, o: norms.append(o[0].norm(dim=-1))) for la in las]
    try:
        with _reference_path(model):
            model(images[:1], detections[:1])
    finally:
        for h in handles:
            h.remove()
    return torch.stack(norms).view(len(las), *model.grid).cpu().numpy()


@torch.no_grad()
def ho_patch_attention(model, images: torch.Tensor, detections: list, layer: int = -1) -> np.ndarray:
    """Attention of each HO token of the first image over the patches in one frozen CLIP layer: [P, Gh, Gw],
    averaged over heads (each row sums to 1 with its own weight, the only other token an HO token sees).

    This is how an HO token reads the image in every model, with or without adapters; the adapters change what the
    patches hold and the HO token itself."""
    blocks = model.clip.visual.transformer.resblocks
    blk = blocks[layer % len(blocks)]
    captured = {}
    h = blk.ln_1.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
    try:
        with _reference_path(model):
            outputs = model(images[:1], detections[:1])
    finally:
        h.remove()
    p, g = int(outputs[0]["pairs"].shape[0]), model.grid[0] * model.grid[1]
    if p == 0:
        raise ValueError("the first image has no human-object pair")
    x = captured["x"]  # [1, P + 1 + G, D]
    if not blk.attn.batch_first:
        x = x.transpose(0, 1)
    mask = model._attention_mask(p, g, x.device)
    _, w = blk.attn(x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=True)  # [1, L, L]
    return w[0, :p, p + 1:].reshape(p, *model.grid).cpu().numpy()


def gamma_history(log: list, steps_per_epoch: int) -> pd.DataFrame:
    """The mean |gamma| values an engine log recorded (`engine.read_log` of a LAIN run) on one axis of steps.

    Returns a frame with columns step, epoch, gamma_la, gamma_ia, source ("step" records of every
    `train.log_every` steps, "epoch" ends); records without gamma values (a model without adapters) are left out."""
    rows = []
    for r in log:
        if r.get("event") not in ("step", "epoch") or not ({"gamma_la", "gamma_ia"} & set(r)):
            continue
        step = (r["epoch"] - 1) * steps_per_epoch + r["step"] if r["event"] == "step" else r["epoch"] * steps_per_epoch
        rows.append(dict(step=int(step), epoch=int(r["epoch"]), gamma_la=r.get("gamma_la", np.nan),
                         gamma_ia=r.get("gamma_ia", np.nan), source=r["event"]))
    return pd.DataFrame(rows, columns=["step", "epoch", "gamma_la", "gamma_ia", "source"])


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


