"""DETR-R50, the frozen object detector of UPT and LAIN, and its inference for the detection cache.

The model reproduces facebookresearch/detr (`models/{detr,transformer,backbone,position_encoding}.py`) module for
module, so `state_dict()` has exactly the keys of the official checkpoints (458 tensors for R50):

    backbone.0.body.{conv1,bn1,layer1..layer4}.*   torchvision ResNet-50 without avgpool/fc, FrozenBatchNorm2d
                                                   (weight, bias, running_mean, running_var; no num_batches_tracked)
    transformer.encoder.layers.{0..5}.{self_attn.{in_proj_weight,in_proj_bias,out_proj.*},linear1,linear2,norm1,norm2}.*
    transformer.decoder.layers.{0..5}.{self_attn,multihead_attn,linear1,linear2,norm1,norm2,norm3}.*
    transformer.decoder.norm.*                     (no encoder norm: post-norm DETR has none)
    input_proj.*  query_embed.weight  class_embed.*  bbox_embed.layers.{0,1,2}.*

The same list is what huggingface/transformers' `convert_detr_original_pytorch_checkpoint_to_pytorch.py` renames one
by one and loads strictly. `backbone.1` (sine position encoding) has no tensors.

What the HOI code uses, and how the HICO-DET checkpoint came about (short commit hashes in brackets):
- OreoChocolate/LAIN `models/LAIN.py` `build_detector` [4cd75ac]: `DETR(num_classes=80)` (91 only for V-COCO with the
  COCO checkpoint), 100 queries, hidden 256, 6 + 6 layers, FFN 2048, dropout 0.1, post-norm, sine encoding
  (`utils/args.py`); weights from `torch.load(path)['model']` for `detr-r50-e632da11.pth` and
  `['model_state_dict']` otherwise (`checkpoints/pretrained_detr/detr-r50-hicodet.pth`). `forward` feeds
  `{'pred_logits', 'pred_boxes', 'feats': hs[-1]}` to a DETR `PostProcess` (softmax, max over all but the last
  column); `hs[-1]` is the decoder output after the final `decoder.norm`. fredzzhang/upt `upt.py` [38cb045] does
  the same with `['model_state_dict']` and `hidden_states=hs[-1]`.
- fredzzhang/hicodet `detections/main_detr.py` [745d394], the fine-tuning that produced `detr-r50-hicodet.pth`:
  the COCO head (92 rows: category ids 0..90 + no-object) is cut to 81 rows with `keep` = the 80 used COCO category
  ids followed by 91 (no-object), and HICO-DET object labels are converted to that contiguous COCO-80 order
  (`conversion`, person = 0). Its classes 0..79 are therefore hoilib's object order (the COCO-80 order of LAIN's
  annotation files, `hoilib/data/assets/hico_categories.json`), and class 80 is no-object: labels need no mapping.
  `load_detr(..., from_coco91=True)` applies the same cut to the COCO checkpoint.

Inference (`detect`) follows DETR's test transform (shorter side 800, longer side at most 1333, PIL bilinear,
ImageNet mean/std) and `PostProcess` (boxes scaled by the original image size), and keeps every query by default:
LAIN's own filtering (class-wise NMS 0.5, score >= 0.2, 3..15 per group) runs later in the model.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import batched_nms

from ..data.detections import Detections
from ..data.detr_import import detr_postprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The 80 COCO category ids in use, then 91 = the no-object column of the 92-way COCO head (fredzzhang/hicodet
# `detections/main_detr.py` `keep`): row r of the 81-way HICO-DET head is row COCO91_KEEP[r] of the COCO head.
COCO91_KEEP = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
               33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
               60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
               91)
WHERE_FROM = (
    "The HICO-DET-fine-tuned DETR-R50 (detr-r50-hicodet.pth) is linked from fredzzhang/hicodet "
    "(detections/README.md) and ships with LAIN's checkpoints (checkpoints/pretrained_detr/); the COCO model "
    "detr-r50-e632da11.pth comes from facebookresearch/detr (load it with from_coco91=True / --coco91)."
)


# ---- backbone ---------------------------------------------------------------------------------------------------
class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine terms (DETR's copy of torchvision's, eps 1e-5 inside the rsqrt).

    Buffers only, so the backbone is frozen by construction; `num_batches_tracked` entries of a checkpoint are dropped.
    """

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class NestedTensor:
    """A padded image batch: `tensors` [B, C, H, W] and `mask` [B, H, W] bool, True on padding (DETR `util/misc.py`)."""

    def __init__(self, tensors: Tensor, mask: Tensor):
        self.tensors, self.mask = tensors, mask

    def to(self, device) -> "NestedTensor":
        return NestedTensor(self.tensors.to(device), self.mask.to(device))

    def decompose(self) -> tuple[Tensor, Tensor]:
        return self.tensors, self.mask


def nested_tensor_from_tensor_list(tensors: list) -> NestedTensor:
    """Pad [3, H_i, W_i] images at the bottom and right to the largest H and W of the batch; mask marks the padding."""
    if not tensors or any(t.ndim != 3 for t in tensors):
        raise ValueError("expected a non-empty list of [C, H, W] tensors")
    c = tensors[0].shape[0]
    h = max(t.shape[1] for t in tensors)
    w = max(t.shape[2] for t in tensors)
    batch = tensors[0].new_zeros(len(tensors), c, h, w)
    mask = torch.ones(len(tensors), h, w, dtype=torch.bool, device=tensors[0].device)
    for img, pad_img, m in zip(tensors, batch, mask):
        pad_img[:, :img.shape[1], :img.shape[2]].copy_(img)
        m[:img.shape[1], :img.shape[2]] = False
    return NestedTensor(batch, mask)


class Backbone(nn.Module):
    """ResNet-50 up to layer4 with frozen BN; returns {"0": NestedTensor([B, 2048, H/32, W/32], mask)}.

    `weights=None`: the weights always come from a DETR checkpoint, never from a download.
    """

    def __init__(self, name: str = "resnet50", dilation: bool = False):
        super().__init__()

        if name not in ("resnet50", "resnet101"):
            raise ValueError(f"backbone must be 'resnet50' or 'resnet101', got {name!r}")
        resnet = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d,
                                                   replace_stride_with_dilation=[False, False, dilation])
        # Same module names as DETR (`body.conv1`, `body.layer4.2.bn3`, ...); avgpool and fc are dropped.
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.num_channels = 2048
        for p in self.parameters():  # DETR-for-HOI never trains the backbone
            p.requires_grad_(False)

    def forward(self, x: NestedTensor) -> "OrderedDict[str, NestedTensor]":
        out = OrderedDict()
        for name, feat in self.body(x.tensors).items():
            # Nearest-neighbour downsampling of the padding mask, exactly as DETR does.
            mask = F.interpolate(x.mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
            out[name] = NestedTensor(feat, mask)
        return out


class PositionEmbeddingSine(nn.Module):
    """DETR's 2-D sine encoding: [B, 2 * num_pos_feats, H, W] (y half first), coordinates = cumulative count of
    unpadded cells, normalised to (0, 2*pi] by the count at the last cell, so padding leaves valid cells unchanged."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats, self.temperature, self.normalize, self.scale = num_pos_feats, temperature, normalize, scale

    def forward(self, x: NestedTensor) -> Tensor:
        not_mask = ~x.mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)  # [B, H, W]
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x_embed[..., None] / dim_t  # [B, H, W, F]
        pos_y = y_embed[..., None] / dim_t
        # Interleave sin (even channels) and cos (odd channels).
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class Joiner(nn.Sequential):
    """backbone (index 0) + position encoding (index 1): the `backbone.0.` / `backbone.1.` key prefixes."""

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(self, x: NestedTensor) -> tuple[list, list]:
        feats = list(self[0](x).values())
        return feats, [self[1](f).to(f.tensors.dtype) for f in feats]


# ---- transformer (post-norm, positional encodings added to queries and keys in every attention) ------------------
class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        attn = self.self_attn(q, k, value=src, key_padding_mask=key_padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor,
                query_pos: Tensor) -> Tensor:
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt, need_weights=False)[0]))
        attn = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory,
                                   key_padding_mask=memory_key_padding_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src


class TransformerDecoder(nn.Module):
    def __init__(self, layer: nn.Module, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor,
                query_pos: Tensor) -> Tensor:
        """Returns [L, Q, B, D]: every layer's output after the shared final norm (DETR's return_intermediate)."""
        out = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos)
            out.append(self.norm(tgt))
        return torch.stack(out)


class Transformer(nn.Module):
    """DETR's encoder-decoder (a torch.nn.Transformer with positions added in attention and no encoder norm)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_encoder_layers)
        self.decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout),
                                          num_decoder_layers, d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model, self.nhead = d_model, nhead

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor) -> tuple[Tensor, Tensor]:
        """src [B, D, H, W], mask [B, H, W] (True = padding), query_embed [Q, D], pos_embed [B, D, H, W] ->
        (hs [L, B, Q, D] decoder outputs of every layer, memory [B, D, H, W]), as DETR's `Transformer.forward`."""
        b, d, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # [HW, B, D]
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, b, 1)  # [Q, B, D]
        mask = mask.flatten(1)  # [B, HW]
        memory = self.encoder(src, mask, pos_embed)
        hs = self.decoder(torch.zeros_like(query_pos), memory, mask, pos_embed, query_pos)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(b, d, h, w)


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box head: 256 -> 256 -> 256 -> 4)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class DETR(nn.Module):
    """DETR detector (`models/detr.py:DETR`); attribute order and names give the official state_dict keys."""

    def __init__(self, backbone: Joiner, transformer: Transformer, num_classes: int = 80, num_queries: int = 100):
        super().__init__()
        self.num_queries, self.num_classes = num_queries, num_classes
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)  # last column = no-object
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels, hidden_dim, kernel_size=1)
        self.backbone = backbone

    def forward(self, samples: NestedTensor) -> dict:
        """samples: padded normalised images [B, 3, H, W] + padding mask [B, H, W].

        Returns dict(pred_logits [B, Q, C+1], pred_boxes [B, Q, 4] (cx, cy, w, h) in [0, 1] relative to each image's
        unpadded size, hidden_states [B, Q, D] = `hs[-1]`, the last decoder layer after the decoder norm, which
        UPT / LAIN use as the per-detection feature).
        """
        if isinstance(samples, (list, tuple)):
            samples = nested_tensor_from_tensor_list(list(samples))
        features, pos = self.backbone(samples)
        src, mask = features[-1].decompose()
        hs = self.transformer(self.input_proj(src), mask, self.query_embed.weight, pos[-1])[0][-1]  # [B, Q, D]
        return dict(pred_logits=self.class_embed(hs), pred_boxes=self.bbox_embed(hs).sigmoid(), hidden_states=hs)


def build_detr(num_classes: int = 80, num_queries: int = 100, hidden_dim: int = 256, nheads: int = 8,
               enc_layers: int = 6, dec_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
               backbone: str = "resnet50", dilation: bool = False) -> DETR:
    """A randomly initialised DETR; the defaults are DETR-R50 as UPT and LAIN run it (HICO-DET: 80 classes)."""
    joiner = Joiner(Backbone(backbone, dilation), PositionEmbeddingSine(hidden_dim // 2, normalize=True))
    transformer = Transformer(hidden_dim, nheads, enc_layers, dec_layers, dim_feedforward, dropout)
    return DETR(joiner, transformer, num_classes=num_classes, num_queries=num_queries)


# ---- checkpoints ----------------------------------------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint whose tensors do not fit the DETR being built; the message lists the differences."""


def _unwrap(ckpt, path: Path) -> dict:
    """The detector's state dict inside a checkpoint file (several layouts are in circulation)."""
    if isinstance(ckpt, nn.Module):
        ckpt = ckpt.state_dict()
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors or a training checkpoint, got {type(ckpt).__name__}")
    # 'model_state_dict': pocket engines (UPT, LAIN, fredzzhang/hicodet fine-tuning); 'model': facebookresearch/detr.
    for key in ("model_state_dict", "model", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt
    raise CheckpointError(f"{path}: no state dict found (top-level keys {sorted(map(str, ckpt))[:8]}); expected "
                          f"'model_state_dict' (UPT / LAIN / hicodet), 'model' (facebookresearch/detr) or raw tensors")


def _strip_prefix(sd: dict, expected: set) -> dict:
    """Remove a wrapper prefix ('module.' from DDP, 'detector.' from a full UPT / LAIN checkpoint) when that makes
    the keys match; with a prefix, keys outside it (the HOI head) are left out."""
    best, best_hits = "", sum(k in expected for k in sd)
    for prefix in ("module.", "detector.", "module.detector.", "detr."):
        hits = sum(k.startswith(prefix) and k[len(prefix):] in expected for k in sd)
        if hits > best_hits:
            best, best_hits = prefix, hits
    if not best:
        return dict(sd)
    return {k[len(best):]: v for k, v in sd.items() if k.startswith(best)}


def load_detr(checkpoint_path: str | Path, num_classes: int = 80, *, from_coco91: bool = False,
              map_location="cpu", **arch) -> DETR:
    """Build DETR and load a checkpoint strictly; returns the model in eval mode with gradients off.

    Args:
        checkpoint_path: a `.pth` file: `{'model_state_dict': ...}` (detr-r50-hicodet.pth, UPT, LAIN),
            `{'model': ...}` (facebookresearch/detr releases) or a plain state dict; a 'module.' / 'detector.'
            prefix is removed.
        num_classes: real classes of the head (80 for HICO-DET; the head has num_classes + 1 rows).
        from_coco91: the file is a COCO model (92-row head, category ids 0..90 + no-object); keep the rows of the
            80 used categories plus no-object, giving an 81-row head in the COCO-80 order (requires num_classes=80).
        **arch: other `build_detr` arguments (num_queries, hidden_dim, backbone, ...).
    Raises:
        FileNotFoundError: the file is missing (the message says where the weights come from).
        CheckpointError: missing / unexpected keys or shape mismatches (the first few of each are named).
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"DETR checkpoint not found: {path}. {WHERE_FROM}")
    # Built on the meta device (no memory, no random init) and filled with the checkpoint's tensors below.
    with torch.device("meta"):
        model = build_detr(num_classes=num_classes, **arch)
    expected = model.state_dict()
    try:
        # weights_only=False: the official releases also pickle their argparse Namespace ('args').
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # pickle / zip errors of a broken or non-torch file
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {type(e).__name__}: {e}") from None
    sd = _strip_prefix(_unwrap(ckpt, path), set(expected))
    # fp32 throughout (a half-precision copy would otherwise be assigned as is); BatchNorm counters are not used.
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    if from_coco91:
        if num_classes != 80:
            raise ValueError(f"from_coco91 cuts the COCO head to 80 classes, but num_classes={num_classes}")
        for name in ("class_embed.weight", "class_embed.bias"):
            if name in sd:
                if sd[name].shape[0] != 92:
                    raise CheckpointError(f"{path}: from_coco91 expects a 92-row COCO head, {name} has "
                                          f"{sd[name].shape[0]} rows")
                sd[name] = sd[name][list(COCO91_KEEP)]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
        hint = ""
        head = sd.get("class_embed.weight")
        if head is not None and head.shape[0] == 92 and num_classes == 80:
            hint = (" The class head has 92 rows: this is the COCO model (e.g. detr-r50-e632da11.pth). Use the "
                    "HICO-DET-fine-tuned detr-r50-hicodet.pth, or pass from_coco91=True (CLI: --coco91) to cut the "
                    "head to the COCO-80 classes.")
        raise CheckpointError(f"{path}: checkpoint does not fit DETR ({arch.get('backbone', 'resnet50')}, "
                              f"{num_classes} classes): " + "; ".join(parts) + "." + hint)
    model.load_state_dict(sd, strict=True, assign=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---- inference ----------------------------------------------------------------------------------------------------
def resize_shape(width: int, height: int, min_size: int = 800, max_size: int | None = 1333) -> tuple[int, int]:
    """(height, width) of DETR's resize (`datasets/transforms.py:get_size_with_aspect_ratio`): the shorter side
    becomes `min_size` unless the longer one would exceed `max_size`; the other side is truncated, not rounded."""
    w, h = int(width), int(height)
    size = min_size
    if max_size is not None:
        short, long = float(min(w, h)), float(max(w, h))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def preprocess(image: np.ndarray, min_size: int = 800, max_size: int | None = 1333) -> Tensor:
    """uint8 [H, W, 3] RGB -> float32 [3, H', W'] resized with PIL bilinear (as torchvision's `resize` on the PIL
    image in DETR's test transform) and normalised with the ImageNet mean / std."""

    h, w = image.shape[:2]
    oh, ow = resize_shape(w, h, min_size, max_size)
    pil = Image.fromarray(image)
    if (oh, ow) != (h, w):
        pil = pil.resize((ow, oh), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def lain_safe_subset(boxes: Tensor, scores: Tensor, labels: Tensor, score_floor: float = 0.0, keep_top: int = 3,
                     nms_iou: float = 0.5, human: int = 0) -> Tensor:
    """Bool mask [K] of the detections to store when shrinking a cache without changing LAIN's filtering.

    Kept: every detection with score >= `score_floor`, plus the `keep_top` highest-scoring survivors of class-wise NMS
    at `nms_iou` in each group (humans = label `human`, everything else). LAIN's filtering (class-wise NMS 0.5,
    score >= 0.2, at least 3 and at most 15 per group, `hoilib.models.pairs.select_detections`) then picks the same
    boxes from the subset as from all queries whenever score_floor <= 0.2, keep_top >= 3 and nms_iou = 0.5: a box is
    suppressed only by a higher-scoring one, so NMS restricted to the subset keeps exactly the full run's survivors
    in it, and the below-threshold top-3 fill-ups are stored explicitly.
    """
    keep = scores >= score_floor
    if keep_top > 0 and not bool(keep.all()):

        order = batched_nms(boxes.float(), scores.float(), labels, nms_iou)  # survivors, descending score
        is_h = labels[order] == human
        keep[order[is_h][:keep_top]] = True
        keep[order[~is_h][:keep_top]] = True
    return keep


@torch.no_grad()
def detect(model: DETR, images: list, *, min_size: int = 800, max_size: int | None = 1333, score_floor: float = 0.0,
           keep_top: int = 3, nms_iou: float = 0.5, pad_batches: bool = False, device=None) -> list:
    """Run DETR on a list of images and post-process like DETR's `PostProcess` for the detection cache.

    Args:
        model: a `DETR` (see `load_detr`); it runs in eval mode (dropout off) whatever its mode.
        images: B uint8 [H, W, 3] RGB arrays of any sizes.
        min_size, max_size: DETR's test resize (800 / 1333 in DETR, UPT and LAIN).
        score_floor, keep_top, nms_iou: shrink the output with `lain_safe_subset`; the default floor 0 keeps all
            Q queries.
        pad_batches: False (default) runs the images in sub-batches of equal resized shape, so nothing is padded and
            every result equals running that image alone. True pads the whole batch as DETR's `NestedTensor`
            batching does; padding then leaks into the ResNet features near the image border (the CNN sees it, the
            mask only hides it from the transformer), so results differ slightly from batch size 1, as in DETR.
        device: where the images go (default: the model's device; the model must already be there).

    Returns:
        B `Detections` (hoilib.data.detections): boxes float32 [K, 4] continuous xyxy in pixels of the original image
        (DETR's normalised boxes times the original width / height, clipped to the image), scores float32 [K] (max
        softmax probability over the real classes), labels int64 [K] (its argmax; class indices of the head, i.e.
        hoilib's COCO-80 object order for the HICO-DET model), feats float32 [K, D] (`hs[-1]`).
        K = Q unless shrunk; detections keep query order.
    """

    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a list of uint8 [H, W, 3] arrays, got {type(images).__name__}")
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"image {i}: expected a uint8 [H, W, 3] RGB array, got {desc}")
    if not images:
        return []
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        shapes = [resize_shape(img.shape[1], img.shape[0], min_size, max_size) for img in images]
        if pad_batches:
            groups = [list(range(len(images)))]
        else:
            by_shape: dict = {}
            for i, s in enumerate(shapes):
                by_shape.setdefault(s, []).append(i)
            groups = list(by_shape.values())
        out: list = [None] * len(images)
        for idx in groups:
            batch = nested_tensor_from_tensor_list([preprocess(images[i], min_size, max_size) for i in idx])
            raw = model(batch.to(device))
            sizes = [(images[i].shape[1], images[i].shape[0]) for i in idx]  # (W, H) of the originals
            results = detr_postprocess(raw["pred_logits"], raw["pred_boxes"], sizes, raw["hidden_states"], clip=True)
            for i, r in zip(idx, results):
                boxes, scores, labels = (torch.from_numpy(r[k]) for k in ("boxes", "scores", "labels"))
                keep = lain_safe_subset(boxes, scores, labels, score_floor, keep_top, nms_iou).numpy()
                out[i] = Detections(boxes=r["boxes"][keep], scores=r["scores"][keep], labels=r["labels"][keep],
                                    feats=np.ascontiguousarray(r["feats"][keep], dtype=np.float32))
        return out
    finally:
        model.train(was_training)
