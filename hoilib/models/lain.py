"""LAIN: Locality-Aware zero-shot HOI detection (CVPR 2025) on any open_clip VisionTransformer.

Two-stage pipeline of the official code (lain-reference.md §1-9):
detections -> kept boxes (NMS, thresholds; `pairs.select_detections`) -> every (human, other box) pair -> one HO
token per pair = MLP([f_h; f_o]) -> the sequence [HO_1..HO_N, CLS, patches] through the frozen CLIP vision layers
with one LA + IA adapter in front of each layer -> ln_post, proj, L2-normalise -> cosine with the prompt-learned
class embeddings times exp(s) -> sigmoid(logit) * s_h^lambda * s_o^lambda.

Differences from the released code, all keeping its results for ViT-B/16 at 224 px:
- sizes (width, grid, layers, G/S) come from the CLIP model, so the same code runs the world's 8x8 ViT, ViT-B/16
  and ViT-L/14; the IA's full-image box is [0, 0, S, S] (the official [0, 0, 224, 244] is a typo);
- images are encoded as one batch: HO tokens are padded to the batch maximum; a padded slot, like every HO token,
  sees only itself and the patches and is seen by nothing, so a batch gives what image-by-image encoding gives.
Attention (True = blocked, the same mask in all layers): HO_i sees itself and the patches; CLS and the patches see
CLS and the patches. The image path therefore stays vanilla CLIP plus the adapters' updates.

Two implementations of the same model, chosen by `fast_path` (config `model.fast_path`, speed only):
- reference (`fast_path=False`): the above, literally: per-image detection dicts, the padded masked sequence
  through open_clip's layers (`attention.block_reference`), per-image layout prior, outputs and loss targets;
- fast (default): the whole batch as flat tensors (kept boxes [K, ...], pairs [P, ...] with their image index),
  CLS and patches attended once per image and the HO rows as P x (G + 1) (`attention.block_split`), one merged
  LA convolution, one layout-prior MLP call over distinct cell features, one min-IoU matrix for the loss targets.
  Equal to the reference up to float summation order (tests/models/test_fast_paths.py).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.ho_attention import pair_layout
from . import hoiclip
from .adapters import AdapterContext, plan_rois
from .attention import block_reference, block_split, check_block
from .clip_backbone import preprocess
from .ho_tokens import box_features, ho_tokens, layout_prior, layout_prior_batched
from .hoiclip import VerbClassifierHead
from .losses import interaction_loss
from .pairs import (assign_positives, assign_positives_batched, make_pairs, make_pairs_batched, scale_boxes,
                    select_detections)
from .text import FrozenTextEncoder, PromptLearner, tokenize_prompts


class LAIN(nn.Module):
    """The LAIN model (plus optional HOICLIP components). Built by `hoilib.models.build_model`.

    Args (keyword only):
        clip: open_clip CLIP (frozen here). vocab: `Vocabulary`. tokenizer: open_clip tokenizer of `clip`.
        adapters: one `LAINAdapter` per vision layer, or None ("w/o adapters").
        layout_mlp: the shared layout-prior MLP (5 + E -> 128 -> 128 -> D_a) or None (no layout prior).
        query_proj: HO-token MLP (2F -> 128 -> width). ho_feature: "detector" | "clip_roi"; det_feat_dim: F of
            detector features. ho_roi_size: ROIAlign size r of the IA regions and of the "clip_roi"
            features.
        prompt_learner: `PromptLearner` over the class texts; text_mode: "verb" | "hoi".
        object_text: [O + 1, E] frozen raw CLIP text embeddings of the object prompts ("nothing" last) or None.
        seen_hoi: [C] bool, seen HOI classes of the protocol (training validity).
        nms_thresh, box_score_thresh, min_instances, max_instances: detection filtering.
        focal_alpha, focal_gamma, fg_iou, lambda_train, lambda_test: loss and scoring.
        image_mean, image_std: input normalisation.
        verb_head: `VerbClassifierHead` or None; verb_alpha: weight of S_v; zs_topk: training-free top-K;
            zs_rule: how its scores enter the final score ("hoiclip" | "logit", `hoiclip.final_scores`).
        text_encoder: the `FrozenTextEncoder` (for HOICLIP's frozen prompt embeddings).
    """

    def __init__(self, *, clip: nn.Module, vocab, tokenizer, adapters: nn.ModuleList | None,
                 layout_mlp: nn.Module | None, query_proj: nn.Module, ho_feature: str, det_feat_dim: int,
                 ho_roi_size: int, prompt_learner: PromptLearner, text_encoder: FrozenTextEncoder, text_mode: str,
                 object_text: Tensor | None, seen_hoi: Tensor, nms_thresh: float = 0.5,
                 box_score_thresh: float = 0.2, min_instances: int = 3, max_instances: int = 15,
                 focal_alpha: float = 0.5, focal_gamma: float = 0.2, fg_iou: float = 0.5,
                 lambda_train: float = 1.0, lambda_test: float = 2.8, image_mean=(0.485, 0.456, 0.406),
                 image_std=(0.229, 0.224, 0.225), verb_head: VerbClassifierHead | None = None,
                 verb_alpha: float = 0.5, zs_topk: int = 0, zs_rule: str = "hoiclip", fast_path: bool = True,
                 kernel_impl: str = "auto"):
        super().__init__()
        check_vision_tower(clip)
        vis = clip.visual
        self.clip = clip.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.vocab, self.tokenizer = vocab, tokenizer
        self.width = vis.conv1.out_channels
        self.grid = tuple(int(g) for g in vis.grid_size)
        size = tuple(int(s) for s in vis.image_size)
        if size[0] != size[1] or self.grid[0] * size[1] != self.grid[1] * size[0]:
            raise ValueError(f"square CLIP inputs are required (image size {size}, grid {self.grid})")
        self._size = size[0]
        self.spatial_scale = self.grid[0] / self._size
        self.adapters = adapters
        if adapters is not None and len(adapters) != len(vis.transformer.resblocks):
            raise ValueError(f"{len(adapters)} adapters for {len(vis.transformer.resblocks)} CLIP layers")
        self.layout_mlp, self.query_proj = layout_mlp, query_proj
        if ho_feature not in ("detector", "clip_roi"):
            raise ValueError(f"ho_feature must be 'detector' or 'clip_roi', got {ho_feature!r}")
        self.ho_feature, self.det_feat_dim, self.ho_roi_size = ho_feature, det_feat_dim, ho_roi_size
        self.prompt_learner, self.text_encoder = prompt_learner, text_encoder
        if text_mode not in ("verb", "hoi"):
            raise ValueError(f"text_mode must be 'verb' or 'hoi', got {text_mode!r}")
        self.text_mode = text_mode
        self.num_targets = vocab.num_verbs if text_mode == "verb" else vocab.num_classes
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))  # official logit_scale_text
        if object_text is not None:
            self.register_buffer("object_text", object_text.detach().clone(), persistent=False)
        else:
            self.object_text = None
        self.nms_thresh, self.box_score_thresh = nms_thresh, box_score_thresh
        self.min_instances, self.max_instances = min_instances, max_instances
        self.focal_alpha, self.focal_gamma, self.fg_iou = focal_alpha, focal_gamma, fg_iou
        self.lambda_train, self.lambda_test = lambda_train, lambda_test
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.verb_head, self.verb_alpha, self.zs_topk = verb_head, verb_alpha, zs_topk
        if zs_rule not in hoiclip.ZS_RULES:
            raise ValueError(f"zs_rule must be one of {hoiclip.ZS_RULES}, got {zs_rule!r}")
        self.zs_rule = zs_rule

        # Class bookkeeping (derived from the vocabulary, not saved).
        ov = torch.as_tensor(vocab.object_verb_to_hoi)  # [O, V], -1 = not a class
        hoi = torch.as_tensor(vocab.hoi_classes)  # [C, 2] (verb, object)
        if text_mode == "verb":
            valid = ov >= 0
        else:
            valid = hoi[:, 1][None, :] == torch.arange(vocab.num_objects)[:, None]  # [O, C]
        self.register_buffer("ov_to_hoi", ov, persistent=False)
        self.register_buffer("hoi_verb", hoi[:, 0].clone(), persistent=False)
        self.register_buffer("hoi_object", hoi[:, 1].clone(), persistent=False)
        self.register_buffer("valid_all", valid, persistent=False)
        seen_hoi = torch.as_tensor(seen_hoi, dtype=torch.bool)
        if seen_hoi.shape != (vocab.num_classes,):
            raise ValueError(f"seen_hoi must have {vocab.num_classes} entries, got {tuple(seen_hoi.shape)}")
        self.register_buffer("seen_hoi", seen_hoi, persistent=False)
        self._text_cache = None
        self._hoi_text = None
        self._masks = {}
        if kernel_impl not in ("auto", "triton", "torch"):
            raise ValueError(f"kernel_impl must be 'auto', 'triton' or 'torch', got {kernel_impl!r}")
        self.kernel_impl = kernel_impl
        self.fast_path = fast_path

    @property
    def fast_path(self) -> bool:
        """True: the fast implementation (default); False: the reference one (see the module docstring)."""
        return self._fast_path

    @fast_path.setter
    def fast_path(self, value: bool) -> None:
        self._fast_path = bool(value)
        self.text_encoder.fast = self._fast_path

    # ---- properties and helpers for the engine ---------------------------------------------------------
    @property
    def image_size(self) -> int:
        """S: CLIP input size; every box the model sees or returns (before `postprocess`) is in the S x S frame."""
        return self._size

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def train(self, mode: bool = True) -> "LAIN":
        super().train(mode)
        self.clip.eval()  # frozen: CLIP never switches to training behaviour
        return self

    @torch.no_grad()
    def epoch_stats(self) -> dict:
        """Mean |gamma_LA| and mean |gamma_IA| over layers and channels (what the engine logs after each epoch);
        empty without adapters, one key per adapter kind present."""
        out = {}
        for key, kind in (("gamma_la", "la"), ("gamma_ia", "ia")):
            g = [getattr(a, kind).gamma for a in self.adapters or () if getattr(a, kind) is not None]
            if g:
                out[key] = float(torch.cat(g).abs().mean())
        return out

    @contextlib.contextmanager
    def scaled_gammas(self, scale: float):
        """Multiply every gamma_LA and gamma_IA by `scale` inside the block (0: the model without what its adapters
        add; `model.gamma_scale` at inference); the exact values come back afterwards."""
        params = [getattr(a, kind).gamma for a in self.adapters or () for kind in ("la", "ia")
                  if getattr(a, kind) is not None]
        saved = [p.detach().clone() for p in params]
        try:
            with torch.no_grad():
                for p in params:
                    p.mul_(float(scale))
            yield self
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)

    def trainable_parameters(self) -> list:
        """Adapters, prompt contexts, layout MLP, HO-token MLP, logit scale (and the HOICLIP verb head)."""
        return [p for p in self.parameters() if p.requires_grad]

    def adapter_state_dict(self) -> dict:
        """The model's state without the frozen CLIP weights (what a checkpoint needs; ~0.3% of ViT-B/16's)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}

    def load_adapter_state_dict(self, state: dict) -> None:
        """Inverse of `adapter_state_dict` (strict over the non-CLIP entries)."""
        own = set(self.adapter_state_dict())
        missing, unexpected = own - set(state), set(state) - own
        if missing or unexpected:
            raise ValueError(f"adapter state does not match the model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        self.load_state_dict(state, strict=False)

    def preprocess(self, images: list) -> Tensor:
        """uint8 [H, W, 3] RGB images -> [B, 3, S, S] float (CPU), `clip_backbone.preprocess` at this model's size
        and normalisation (on the CPU: the engine's collate function may run in worker processes)."""
        return preprocess(images, self._size, self.image_mean, self.image_std)

    def detections_input(self, dets: list, sizes: list) -> list:
        """`Detections` of original images (xyxy pixels, sizes (W, H)) -> the forward's detection dicts (S frame)."""
        out = []
        for d, wh in zip(dets, sizes):
            boxes = torch.as_tensor(np.asarray(d.boxes, np.float32).reshape(-1, 4), device=self.device)
            feats = None if d.feats is None else torch.as_tensor(np.asarray(d.feats, np.float32), device=self.device)
            out.append(dict(boxes=scale_boxes(boxes, tuple(wh), (self._size, self._size)),
                            scores=torch.as_tensor(np.asarray(d.scores, np.float32), device=self.device),
                            labels=torch.as_tensor(np.asarray(d.labels, np.int64), device=self.device),
                            feats=feats))
        return out

    def targets_input(self, gts: list, sizes: list) -> list:
        """Ground-truth dicts (boxes_h, boxes_o [M, 4] original pixels; verb, object, hoi [M]) -> S frame."""
        out = []
        for g, wh in zip(gts, sizes):
            t = {k: torch.as_tensor(np.asarray(g[k], np.int64), device=self.device) for k in ("verb", "object", "hoi")}
            for k in ("boxes_h", "boxes_o"):
                b = torch.as_tensor(np.asarray(g[k], np.float32).reshape(-1, 4), device=self.device)
                t[k] = scale_boxes(b, tuple(wh), (self._size, self._size))
            out.append(t)
        return out

    # ---- text -----------------------------------------------------------------------------------------
    def text_features(self) -> Tensor:
        """[T, E] L2-normalised class embeddings from the prompt learner (cached while nothing can change them)."""
        ctx = self.prompt_learner.ctx
        key = (ctx._version, ctx.data_ptr(), ctx.device)
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable and self._text_cache is not None and self._text_cache[0] == key:
            return self._text_cache[1]
        t = self.prompt_learner()
        if cacheable:
            self._text_cache = (key, t)
        return t

    def hoi_text_features(self) -> Tensor:
        """[C, E] frozen, L2-normalised CLIP embeddings of the plain HOI prompts (HOICLIP's E_inter)."""
        if self._hoi_text is None or self._hoi_text.device != self.device:
            tok = tokenize_prompts(self.tokenizer, [p.rstrip(". ") + "." for p in self.vocab.hoi_prompts], 0,
                                   int(self.clip.context_length)).to(self.device)
            self._hoi_text = F.normalize(self.text_encoder.encode(tok), dim=-1)
        return self._hoi_text

    # ---- forward --------------------------------------------------------------------------------------
    def forward(self, images: Tensor, detections: list, seen_mask: Tensor | None = None) -> list:
        """
        Args:
            images: [B, 3, S, S] preprocessed CLIP inputs.
            detections: B dicts: boxes [K, 4] float xyxy in the S x S frame, scores [K] in [0, 1], labels [K]
                int64 (0 = person), feats [K, F] or None (needed when ho_feature == "detector").
            seen_mask: [C] bool of seen HOI classes; restricts the (object, class) validity of the prior. None:
                the protocol's seen classes in training mode, every class in eval mode.
        Returns:
            B dicts: boxes [K', 4] (kept, S frame), scores [K'], labels [K'], pairs [P, 2] (human, object indices
            into the kept boxes), logits [P, T] (T = verbs, or HOI classes in "hoi" text mode), prior [P, T]
            (s_h^lam * s_o^lam on valid (object, class) entries; lam = lambda_train in training mode, else
            lambda_test); in eval mode with zs_topk > 0 also zs [P, T], HOICLIP's training-free scores of the
            entries (`hoiclip.zs_for_pairs`), which `postprocess` combines with the logits.
        """
        s = self._size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"images must be [B, 3, {s}, {s}], got {tuple(images.shape)}")
        if len(detections) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(detections)} detection sets")
        if self.fast_path:
            return self._forward_fast(images, detections, seen_mask)
        kept = [self._select(d) for d in detections]
        valid = self._validity(seen_mask)
        lam = self.lambda_train if self.training else self.lambda_test
        active = [b for b, k in enumerate(kept) if len(k["pairs"])]
        ho = dict(zip(active, self.encode(images[active], [kept[b] for b in active]))) if active else {}
        zs = None
        if active and not self.training and self.zs_topk > 0:
            zs = self.zero_shot_scores(images)
        text = self.text_features() if active else None
        scale = self.logit_scale.exp()
        outputs = []
        for b, k in enumerate(kept):
            pairs = k["pairs"]
            if b in ho:
                o = ho[b]
                logits = scale * F.normalize(o, dim=-1) @ text.t()
                if self.verb_head is not None:
                    logits = hoiclip.add_verb_scores(logits, scale * self.verb_head(o), self.verb_alpha,
                                                     None if self.text_mode == "verb" else self.hoi_verb)
            else:
                logits = images.new_zeros(0, self.num_targets)
            outputs.append(dict(boxes=k["boxes"], scores=k["scores"], labels=k["labels"], pairs=pairs,
                                logits=logits, prior=self._prior(k["scores"], k["labels"], pairs, valid, lam)))
            if zs is not None:
                outputs[-1]["zs"] = hoiclip.zs_for_pairs(zs[b], k["labels"][pairs[:, 1]], self.ov_to_hoi,
                                                         self.hoi_object, self.text_mode)
        return outputs

    def _select(self, d: dict) -> dict:
        boxes, scores, labels = d["boxes"], d["scores"], d["labels"]
        feats = d.get("feats")
        keep, n_h = select_detections(boxes, scores, labels.long(), nms_thresh=self.nms_thresh,
                                      score_thresh=self.box_score_thresh, min_instances=self.min_instances,
                                      max_instances=self.max_instances)
        out = dict(boxes=boxes[keep].float(), scores=scores[keep].float(), labels=labels[keep].long(),
                   feats=None if feats is None else feats[keep].float())
        out["pairs"] = make_pairs(n_h, int(keep.numel()), device=boxes.device)
        return out

    # ---- the fast path: the whole batch as flat tensors ---------------------------------------------------------
    def _forward_fast(self, images: Tensor, detections: list, seen_mask: Tensor | None) -> list:
        """`forward` on flat tensors: one encode of every image with pairs, one logit and prior computation."""
        if not detections:
            return []
        k = self._select_batch(detections)
        valid = self._validity(seen_mask)
        lam = self.lambda_train if self.training else self.lambda_test
        pairs = k["pairs"]
        if pairs.shape[0]:
            active = [b for b, c in enumerate(k["n_pair"]) if c]
            enc = k if len(active) == len(detections) else _flat_subset(k, active)
            o = self._encode_flat(images[active] if len(active) < len(detections) else images, enc)  # [P, E]
            scale = self.logit_scale.exp()
            logits = scale * F.normalize(o, dim=-1) @ self.text_features().t()
            if self.verb_head is not None:
                logits = hoiclip.add_verb_scores(logits, scale * self.verb_head(o), self.verb_alpha,
                                                 None if self.text_mode == "verb" else self.hoi_verb)
        else:
            logits = images.new_zeros(0, self.num_targets)
        zs = None
        if pairs.shape[0] and not self.training and self.zs_topk > 0:  # HOICLIP's training-free scores, per pair
            zs = hoiclip.zs_for_pairs(self.zero_shot_scores(images)[k["pair_img"]], k["labels"][k["po"]],
                                      self.ov_to_hoi, self.hoi_object, self.text_mode)
        s = k["scores"]
        prior = (s[k["ph"]].pow(lam) * s[k["po"]].pow(lam))[:, None] * valid[k["labels"][k["po"]]].to(s.dtype)
        split = lambda t, n: t.split(n)  # noqa: E731  views, image after image
        out = [dict(boxes=bx, scores=sc, labels=lb, pairs=pr, logits=lg, prior=pp) for bx, sc, lb, pr, lg, pp in zip(
            split(k["boxes"], k["n_box"]), split(s, k["n_box"]), split(k["labels"], k["n_box"]),
            split(pairs, k["n_pair"]), split(logits, k["n_pair"]), split(prior, k["n_pair"]))]
        if zs is not None:
            for o, z in zip(out, split(zs, k["n_pair"])):
                o["zs"] = z
        return out

    def _select_batch(self, detections: list) -> dict:
        """`_select` of a batch as one flat dict (see `_flat_index` for the fields).

        The class-wise NMS and the per-group score/count rules stay one call per image: torchvision's batched_nms
        separates classes by offsetting boxes by (class x largest coordinate), so one call over a whole batch
        would compute IoUs at other float offsets than the per-image call and could flip a decision at IoU 0.5.
        """
        keeps, n_h = [], []
        for d in detections:
            keep, nh = select_detections(d["boxes"], d["scores"], d["labels"].long(), nms_thresh=self.nms_thresh,
                                         score_thresh=self.box_score_thresh, min_instances=self.min_instances,
                                         max_instances=self.max_instances)
            keeps.append(keep)
            n_h.append(nh)
        dev = self.device
        n_det = torch.as_tensor([int(d["boxes"].shape[0]) for d in detections], device=dev)
        n_box = [int(kp.numel()) for kp in keeps]
        idx = torch.cat(keeps) + torch.repeat_interleave(torch.cumsum(n_det, 0) - n_det,
                                                         torch.as_tensor(n_box, device=dev))
        feats = None
        if all(d.get("feats") is not None for d in detections):
            feats = torch.cat([d["feats"] for d in detections])[idx].float()
        pairs = make_pairs_batched(torch.as_tensor(n_h, device=dev), torch.as_tensor(n_box, device=dev))
        n_pair = torch.bincount(pairs[:, 0], minlength=len(detections)).tolist()
        return _flat_index(dict(boxes=torch.cat([d["boxes"] for d in detections])[idx].float(),
                                scores=torch.cat([d["scores"] for d in detections])[idx].float(),
                                labels=torch.cat([d["labels"] for d in detections])[idx].long(), feats=feats,
                                n_box=n_box, pairs=pairs[:, 1:], n_pair=n_pair))

    def _patch_tokens(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The frozen patch embedding with positions: patches [B, G, D] and the CLS token [B, 1, D]."""
        vis = self.clip.visual
        b, d = images.shape[0], self.width
        gh, gw = self.grid
        with torch.no_grad():
            pe = vis.conv1(images.to(vis.conv1.weight.dtype))  # [B, D, Gh, Gw]
            pe = pe + vis.positional_embedding[1:].t().reshape(1, d, gh, gw).to(pe.dtype)
        patches = pe.flatten(2).transpose(1, 2)  # [B, G, D]
        cls = (vis.class_embedding + vis.positional_embedding[0]).to(patches.dtype).expand(b, 1, d)
        return patches, cls

    def _encode_flat(self, images: Tensor, k: dict, return_tokens: bool = False):
        """`encode` on the flat form: [P, E] projected HO tokens (and the final [B, 1 + G, D] image tokens)."""
        vis = self.clip.visual
        b, d = images.shape[0], self.width
        gh, gw = self.grid
        dev = images.device
        patches, cls = self._patch_tokens(images)
        boxes, n_all = k["boxes"], k["boxes"].shape[0]
        img = torch.arange(b, device=dev)
        full = images.new_tensor([0.0, 0.0, self._size, self._size]).expand(b, 4)
        rois = torch.cat([torch.cat([k["box_img"][:, None].to(boxes.dtype), boxes], 1),
                          torch.cat([img[:, None].to(boxes.dtype), full], 1)])
        pair_h, pair_o = torch.cat([k["ph"], n_all + img]), torch.cat([k["po"], n_all + img])

        uses_ia = self.adapters is not None and any(a.ia is not None for a in self.adapters)
        plan = None
        if uses_ia or self.ho_feature == "clip_roi":
            plan = plan_rois(rois, b, self.grid, self.ho_roi_size, self.spatial_scale)
        f = box_features(self.ho_feature, k, patches, plan, self.det_feat_dim)  # [K, F]
        tok = ho_tokens(self.query_proj, f, k["ph"], k["po"])  # [P, D]
        n = 1 + gh * gw
        x = vis.ln_pre(torch.cat([torch.cat([cls, patches], 1).reshape(b * n, d), tok.to(patches.dtype)]))
        ctx = None
        if self.adapters is not None:
            layout = None
            if self.layout_mlp is not None:
                layout = layout_prior_batched(self.layout_mlp, k, b, self.object_text, self.grid, self._size)
            ctx = AdapterContext(n_tok=1, grid=self.grid, layout=layout, rois=plan, tok_batch=None, tok_slot=None,
                                 pair_h=pair_h, pair_o=pair_o)
        layout_p = pair_layout(k["n_pair"], dev)
        for i, blk in enumerate(vis.transformer.resblocks):
            if ctx is not None:
                x = self.adapters[i].forward_flat(x, b, ctx)
            x = block_split(blk, x, b, layout_p, self.kernel_impl)
        out = vis.ln_post(x[b * n:]) @ vis.proj  # [P, E]
        return (out, x[:b * n].view(b, n, d)) if return_tokens else out

    def _validity(self, seen_mask: Tensor | None) -> Tensor:
        if seen_mask is None and not self.training:
            return self.valid_all
        seen = self.seen_hoi if seen_mask is None else torch.as_tensor(seen_mask, dtype=torch.bool,
                                                                      device=self.valid_all.device)
        if seen.shape != (self.vocab.num_classes,):
            raise ValueError(f"seen_mask must have {self.vocab.num_classes} entries, got {tuple(seen.shape)}")
        if self.text_mode == "verb":
            return self.valid_all & seen[self.ov_to_hoi.clamp_min(0)]
        return self.valid_all & seen[None, :]

    @staticmethod
    def _prior(scores: Tensor, labels: Tensor, pairs: Tensor, valid: Tensor, lam: float) -> Tensor:
        s = scores[pairs[:, 0]].pow(lam) * scores[pairs[:, 1]].pow(lam)  # [P]
        return s[:, None] * valid[labels[pairs[:, 1]]].to(s.dtype)

    @torch.no_grad()
    def zero_shot_scores(self, images: Tensor) -> Tensor:
        """HOICLIP's training-free scores [B, C]: top-`zs_topk` cosines of the global CLIP image embedding."""
        emb = F.normalize(self.clip.encode_image(images), dim=-1)
        return hoiclip.zero_shot_topk(emb, self.hoi_text_features(), self.zs_topk)

    # ---- the vision side ------------------------------------------------------------------------------
    def encode(self, images: Tensor, kept: list, return_tokens: bool = False):
        """Run the adapted CLIP vision tower on a batch.

        Args:
            images: [B, 3, S, S]; kept: B dicts from `_select` (boxes, scores, labels, feats, pairs), each with
                at least one pair.
            return_tokens: also return the final image tokens [B, 1 + G, D] (CLS, patches; for tests).
        Returns:
            B tensors [P_b, E]: the projected (unnormalised) HO tokens.
        """
        if self.fast_path:
            flat = _flat_index(dict(
                boxes=torch.cat([k["boxes"] for k in kept]), scores=torch.cat([k["scores"] for k in kept]),
                labels=torch.cat([k["labels"] for k in kept]),
                feats=None if any(k["feats"] is None for k in kept) else torch.cat([k["feats"] for k in kept]),
                n_box=[int(k["boxes"].shape[0]) for k in kept], pairs=torch.cat([k["pairs"] for k in kept]),
                n_pair=[int(k["pairs"].shape[0]) for k in kept]))
            out = self._encode_flat(images, flat, return_tokens)
            feats = list((out[0] if return_tokens else out).split(flat["n_pair"]))
            return (feats, out[1]) if return_tokens else feats
        vis = self.clip.visual
        b, d = images.shape[0], self.width
        gh, gw = self.grid
        counts = [int(k["pairs"].shape[0]) for k in kept]
        n_max = max(counts)
        dev = images.device
        patches, cls = self._patch_tokens(images)

        # Flat bookkeeping: kept boxes of all images, then one full-image box per image (the CLS pseudo-pair).
        n_box = [int(k["boxes"].shape[0]) for k in kept]
        offs = np.concatenate([[0], np.cumsum(n_box)])
        bidx = torch.repeat_interleave(torch.arange(b, device=dev), torch.as_tensor(n_box, device=dev))
        boxes = torch.cat([k["boxes"] for k in kept])
        full = images.new_tensor([0.0, 0.0, self._size, self._size]).expand(b, 4)
        rois = torch.cat([torch.cat([bidx[:, None].to(boxes.dtype), boxes], 1),
                          torch.cat([torch.arange(b, device=dev)[:, None].to(boxes.dtype), full], 1)])
        n_all = int(offs[-1])
        ph = torch.cat([k["pairs"][:, 0] + int(o) for k, o in zip(kept, offs)])
        po = torch.cat([k["pairs"][:, 1] + int(o) for k, o in zip(kept, offs)])
        p_tot = int(ph.numel())
        img = torch.arange(b, device=dev)
        tok_batch = torch.cat([torch.repeat_interleave(img, torch.as_tensor(counts, device=dev)), img])
        tok_slot = torch.cat([torch.cat([torch.arange(c, device=dev) for c in counts]),
                              torch.full((b,), n_max, dtype=torch.long, device=dev)])
        full_row = n_all + torch.arange(b, device=dev)
        pair_h, pair_o = torch.cat([ph, full_row]), torch.cat([po, full_row])

        uses_ia = self.adapters is not None and any(a.ia is not None for a in self.adapters)
        plan = None
        if uses_ia or self.ho_feature == "clip_roi":  # ROIAlign weights, shared by every layer
            plan = plan_rois(rois, b, self.grid, self.ho_roi_size, self.spatial_scale)
        # HO tokens = MLP([f_h; f_o]), no positional embedding (ho_tokens.py).
        f = box_features(self.ho_feature, kept, patches, plan, self.det_feat_dim)  # [K, F]
        tok = ho_tokens(self.query_proj, f, ph, po)  # [P, D]
        ho_seq = torch.index_put(patches.new_zeros(b, n_max, d), (tok_batch[:p_tot], tok_slot[:p_tot]),
                                 tok.to(patches.dtype))
        x = vis.ln_pre(torch.cat([ho_seq, cls, patches], 1))
        mask = self._attention_mask(n_max, gh * gw, dev)

        ctx = None
        if self.adapters is not None:
            layout = self.layout_prior(kept) if self.layout_mlp is not None else None
            ctx = AdapterContext(n_tok=n_max + 1, grid=self.grid, layout=layout, rois=plan, tok_batch=tok_batch,
                                 tok_slot=tok_slot, pair_h=pair_h, pair_o=pair_o)
        for i, blk in enumerate(vis.transformer.resblocks):
            if ctx is not None:
                x = self.adapters[i](x, ctx)
            x = block_reference(blk, x, mask)
        out = vis.ln_post(x[tok_batch[:p_tot], tok_slot[:p_tot]]) @ vis.proj  # [P, E]
        feats = list(out.split(counts))
        return (feats, x[:, n_max:]) if return_tokens else feats

    def _attention_mask(self, n: int, g: int, device) -> Tensor:
        """[L, L] bool, True = blocked, L = n + 1 + g: HO_i sees itself and the patches; CLS and the patches see
        CLS and the patches (the official mask, lain-reference §4)."""
        key = (n, g, str(device))
        if key not in self._masks:
            m = torch.zeros(n + 1 + g, n + 1 + g, dtype=torch.bool, device=device)
            m[:n, :n + 1] = True
            idx = torch.arange(n, device=device)
            m[idx, idx] = False
            m[n:, :n] = True
            self._masks = {key: m}  # one entry: the batch maximum N changes from step to step
        return self._masks[key]

    def layout_prior(self, kept: list) -> Tensor:
        """P_layout [B, Gh, Gw, D_a] of the kept boxes (see `ho_tokens.layout_prior`)."""
        return layout_prior(self.layout_mlp, kept, self.object_text, self.grid, self._size)

    # ---- loss and post-processing ---------------------------------------------------------------------
    def compute_loss(self, outputs: list, targets: list) -> dict:
        """Official LAIN loss (see `losses.interaction_loss`).

        Args:
            outputs: the forward's output (training mode: prior at lambda_train, seen-class validity).
            targets: B dicts: boxes_h, boxes_o [M, 4] (S frame), verb, object, hoi [M] int64.
        Returns:
            dict(loss=scalar tensor, loss_focal=detached copy, num_pos=int positives of this process).
            Under torch.distributed the normaliser is the positives averaged over processes, as in the official code.
        """
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs but {len(targets)} targets")
        key = "verb" if self.text_mode == "verb" else "hoi"
        if self.fast_path:
            return self._loss_fast(outputs, targets, key)
        logits, prior, labels = [], [], []
        for out, tgt in zip(outputs, targets):
            pairs = out["pairs"]
            if pairs.shape[0] == 0:
                continue
            labels.append(assign_positives(out["boxes"][pairs[:, 0]], out["boxes"][pairs[:, 1]],
                                           tgt["boxes_h"], tgt["boxes_o"], torch.as_tensor(tgt[key]).long(),
                                           self.num_targets, self.fg_iou))
            logits.append(out["logits"])
            prior.append(out["prior"])
        if not logits:
            # No pair in the whole batch: a zero loss that still reaches a trainable parameter.
            zero = self.logit_scale * 0.0
            self._sync_num_pos(0)  # every process must join the all-reduce
            return dict(loss=zero, loss_focal=zero.detach(), num_pos=0)
        logits, prior, labels = torch.cat(logits), torch.cat(prior), torch.cat(labels)
        n_local = int((labels[prior > 0] > 0).sum())
        loss, n_pos = interaction_loss(logits.float(), prior.float(), labels.float(), alpha=self.focal_alpha,
                                       gamma=self.focal_gamma, num_pos=self._sync_num_pos(n_local))
        return dict(loss=loss, loss_focal=loss.detach(), num_pos=n_pos)

    def _loss_fast(self, outputs: list, targets: list, key: str) -> dict:
        """`compute_loss` with the positives of the whole batch from one min-IoU matrix."""
        n_pair = [int(o["pairs"].shape[0]) for o in outputs]
        if not sum(n_pair):
            zero = self.logit_scale * 0.0
            self._sync_num_pos(0)
            return dict(loss=zero, loss_focal=zero.detach(), num_pos=0)
        dev = outputs[0]["boxes"].device
        boxes = torch.cat([o["boxes"] for o in outputs])
        n_box = torch.as_tensor([int(o["boxes"].shape[0]) for o in outputs], device=dev)
        pair_img = torch.repeat_interleave(torch.arange(len(outputs), device=dev), torch.as_tensor(n_pair, device=dev))
        rows = torch.cat([o["pairs"] for o in outputs]) + (torch.cumsum(n_box, 0) - n_box)[pair_img, None]
        n_gt = torch.as_tensor([int(len(t[key])) for t in targets], device=dev)
        gt_img = torch.repeat_interleave(torch.arange(len(targets), device=dev), n_gt)
        labels = assign_positives_batched(
            boxes[rows[:, 0]], boxes[rows[:, 1]], pair_img, torch.cat([t["boxes_h"] for t in targets]),
            torch.cat([t["boxes_o"] for t in targets]), torch.cat([torch.as_tensor(t[key]) for t in targets]).long(),
            gt_img, self.num_targets, self.fg_iou, impl=self.kernel_impl)
        logits = torch.cat([o["logits"] for o in outputs])
        prior = torch.cat([o["prior"] for o in outputs])
        n_local = int((labels[prior > 0] > 0).sum())
        loss, n_pos = interaction_loss(logits.float(), prior.float(), labels.float(), alpha=self.focal_alpha,
                                       gamma=self.focal_gamma, num_pos=self._sync_num_pos(n_local))
        return dict(loss=loss, loss_focal=loss.detach(), num_pos=n_pos)

    @staticmethod
    def _sync_num_pos(n: int) -> float:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            backend = dist.get_backend()
            dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
            t = torch.tensor([float(n)], device=dev)
            dist.all_reduce(t)
            return float(t.item()) / dist.get_world_size()
        return float(n)

    @torch.no_grad()
    def postprocess(self, outputs: list, orig_sizes: list) -> list:
        """Forward outputs -> detections of the original images (the evaluator's format, per image).

        Args:
            outputs: the forward's output; orig_sizes: B (W, H) of the original images.
        Returns:
            B dicts of numpy arrays: boxes_h, boxes_o [R, 4] float32 (continuous xyxy, original pixels), hoi [R]
            int64, score [R] float32 = sigmoid(logit) * s_h^lambda_test * s_o^lambda_test (with HOICLIP's
            training-free scores, when the outputs hold them, by `zs_rule`: `hoiclip.final_scores`), one row per
            (pair, class) entry valid for the detected object (verbs map to HOIs through (object, verb)).
        """
        if len(outputs) != len(orig_sizes):
            raise ValueError(f"{len(outputs)} outputs but {len(orig_sizes)} image sizes")
        res = []
        for out, wh in zip(outputs, orig_sizes):
            pairs = out["pairs"]
            prior = self._prior(out["scores"], out["labels"], pairs, self.valid_all, self.lambda_test)
            p, hoi, score = entry_scores(out["logits"], prior, out["labels"][pairs[:, 1]],
                                         None if self.text_mode == "hoi" else self.ov_to_hoi, out.get("zs"),
                                         self.zs_rule)
            boxes = scale_boxes(out["boxes"].float(), (self._size, self._size), tuple(wh))
            res.append(dict(boxes_h=boxes[pairs[p, 0]].cpu().numpy().astype(np.float32),
                            boxes_o=boxes[pairs[p, 1]].cpu().numpy().astype(np.float32),
                            hoi=hoi.cpu().numpy().astype(np.int64), score=score.cpu().numpy().astype(np.float32)))
        return res

    # ---- preparation before training ------------------------------------------------------------------
    def prepare(self, train_dataset, progress: bool = True) -> dict:
        """What the model computes from its training set before the first step (the engine calls it once; a resumed
        run loads the result from its checkpoint instead): HOICLIP's verb classifier E_v when the model has one
        (`hoiclip.fit_verb_classifier`), nothing otherwise."""
        if self.verb_head is None:
            return {}
        return hoiclip.fit_verb_classifier(self, train_dataset, progress=progress)

    @torch.no_grad()
    def verb_text_features(self) -> Tensor:
        """[V, E] L2-normalised frozen CLIP embeddings of the plain verb prompts (E_v's fallback)."""
        tok = tokenize_prompts(self.tokenizer, [p.rstrip(". ") + "." for p in self.vocab.verb_prompts], 0,
                               int(self.clip.context_length)).to(self.device)
        return F.normalize(self.text_encoder.encode(tok).float(), dim=-1)


def entry_scores(logits: Tensor, prior: Tensor, objects: Tensor, ov_to_hoi: Tensor | None, zs: Tensor | None = None,
                 rule: str = "hoiclip") -> tuple:
    """The final scores of `LAIN.postprocess` on P pairs (of one image or of many, flattened).

    Args:
        logits: [P, T]; prior: [P, T] (`LAIN._prior` at lambda_test); objects: [P] object class of each pair;
        ov_to_hoi: [O, V] HOI of each (object, verb), or None when T = C (HOI text mode);
        zs, rule: HOICLIP's training-free scores [P, T] (or None) and how they enter (`hoiclip.final_scores`).
    Returns:
        p [R] (pair of each row), hoi [R], score [R] (`hoiclip.final_scores`): one row per entry with prior > 0, in
        row-major (pair, class) order.
    """
    p, t = torch.nonzero(prior).unbind(1)
    score = hoiclip.final_scores(logits[p, t].float(), prior[p, t], None if zs is None else zs[p, t].float(), rule)
    return p, (t if ov_to_hoi is None else ov_to_hoi[objects[p], t]), score


def check_vision_tower(clip: nn.Module) -> None:
    """Raise unless `clip.visual` is a plain open_clip VisionTransformer whose layers LAIN can run itself."""
    vis = getattr(clip, "visual", None)
    need = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj")
    if vis is None or any(not hasattr(vis, a) for a in need) or vis.proj is None:
        raise ValueError("LAIN needs an open_clip VisionTransformer (conv1, class/positional embeddings, ln_pre, "
                         "transformer, ln_post, proj)")
    if getattr(vis, "attn_pool", None) is not None or getattr(vis, "pool_type", "tok") != "tok":
        raise ValueError("LAIN needs CLS-token pooling (no attentional pooling)")
    g = tuple(vis.grid_size)
    if vis.positional_embedding.shape[0] != g[0] * g[1] + 1:
        raise ValueError(f"positional embedding has {vis.positional_embedding.shape[0]} rows, expected "
                         f"{g[0] * g[1] + 1} for a {g[0]}x{g[1]} grid")
    for i, blk in enumerate(vis.transformer.resblocks):
        if not check_block(blk):
            raise ValueError(f"CLIP vision layer {i} is not an open_clip ResidualAttentionBlock "
                             f"(ln_1, attn, ls_1, ln_2, mlp, ls_2) with plain self-attention; LAIN cannot run it")


def _flat_index(k: dict) -> dict:
    """Complete a flat batch of kept detections with its index tensors.

    In: boxes [K, 4], scores [K], labels [K], feats [K, F] or None (image after image, kept order), n_box (B ints),
    pairs [P, 2] (human, object) indices within each image, n_pair (B ints).
    Adds: box_img [K] and pair_img [P] (image of each box / pair); ph, po [P] rows of each pair's boxes in [K].
    """
    dev = k["boxes"].device
    n_box = torch.as_tensor(k["n_box"], device=dev)
    img = torch.arange(len(k["n_box"]), device=dev)
    k["box_img"] = torch.repeat_interleave(img, n_box)
    k["pair_img"] = torch.repeat_interleave(img, torch.as_tensor(k["n_pair"], device=dev))
    rows = k["pairs"] + (torch.cumsum(n_box, 0) - n_box)[k["pair_img"], None]
    k["ph"], k["po"] = rows[:, 0], rows[:, 1]
    return k


def _flat_subset(k: dict, images: list) -> dict:
    """The flat batch `k` restricted to the given images (in order)."""
    keep = torch.zeros(len(k["n_box"]), dtype=torch.bool, device=k["boxes"].device)
    keep[images] = True
    box = keep[k["box_img"]]
    pair = keep[k["pair_img"]]
    return _flat_index(dict(boxes=k["boxes"][box], scores=k["scores"][box], labels=k["labels"][box],
                            feats=None if k["feats"] is None else k["feats"][box],
                            n_box=[k["n_box"][b] for b in images], pairs=k["pairs"][pair],
                            n_pair=[k["n_pair"][b] for b in images]))

