"""Models: open_clip CLIP backbones, LAIN (adapters, prompts, loss) and HOICLIP's components.

`build_model(cfg, vocab)` is the one place that reads `cfg.model`; every ablation row of the LAIN paper is a
switch read here (use_la / use_ia, la_visual, la_layout, la_mixer, ia_iprm, ia_context).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .adapters import MLP, CrossAttentionLayer, InteractionAdapter, LAINAdapter, LocalityAdapter
from .clip_backbone import build_clip, get_tokenizer, preprocess
from .ho_tokens import build_layout_mlp, build_query_proj
from .hoiclip import VerbClassifierHead
from .lain import LAIN
from .text import FrozenTextEncoder, PromptLearner, tokenize_prompts

OFFICIAL_N_CTX = {"rf_uc": 24}  # every other protocol: 36 (official scripts)
OFFICIAL_CONTEXT_LENGTH = 77  # OpenAI CLIP's text context, which the official N_CTX values fill


def resolve_model_options(cfg, clip: nn.Module, texts: list, tokenizer) -> dict:
    """The "auto" (0) fields of cfg.model made concrete for this CLIP, vocabulary and protocol.

    - n_ctx = 0: official per protocol (24 for RF-UC, 36 otherwise), times context_length / 77 so that it takes
      the same share of a shorter text context (the world's 32 tokens: 10 / 15), and capped so that the longest
      prompt still fits.
    - class_specific_ctx = "auto": class-specific contexts except for UV (official scripts).
    - roi_size = 0: ceil(grid / 2), i.e. 7 on ViT-B/16's 14x14 grid (official) and 4 on the world's 8x8 grid.
    - ho_feature = "auto": detector features on HICO-DET (DETR decoder states), "clip_roi" in the world, whose
      simulated detector has no features.
    """
    m = cfg.model
    ctx_len = int(clip.context_length)
    n_ctx = m.n_ctx
    if n_ctx < 0:
        raise ValueError(f"model.n_ctx must be >= 0, got {n_ctx}")
    if n_ctx == 0:
        official = OFFICIAL_N_CTX.get(cfg.data.protocol, 36)
        n_ctx = max(1, round(official * ctx_len / OFFICIAL_CONTEXT_LENGTH))
        longest = max(len(tokenizer.encode(t.rstrip(". ") + ".")) for t in texts)
        n_ctx = max(1, min(n_ctx, ctx_len - 2 - longest))
    csc_choices = {"auto": cfg.data.protocol != "uv", "class": True, "shared": False}
    if m.class_specific_ctx not in csc_choices:
        raise ValueError(f"model.class_specific_ctx must be one of {tuple(csc_choices)}, got {m.class_specific_ctx!r}")
    grid = tuple(clip.visual.grid_size)
    roi = m.roi_size if m.roi_size > 0 else math.ceil(max(grid) / 2)
    ho = m.ho_feature
    if ho not in ("auto", "detector", "clip_roi"):
        raise ValueError(f"model.ho_feature must be 'auto', 'detector' or 'clip_roi', got {ho!r}")
    if ho == "auto":
        ho = "detector" if cfg.data.dataset == "hicodet" else "clip_roi"
    return dict(n_ctx=n_ctx, class_specific=csc_choices[m.class_specific_ctx], roi_size=roi, ho_feature=ho)


def build_model(cfg, vocab, clip: nn.Module | None = None, protocol_unseen: np.ndarray | None = None) -> LAIN:
    """Build LAIN (and HOICLIP's components when enabled) from an `ExperimentConfig`.

    Args:
        cfg: ExperimentConfig (reads cfg.model, cfg.clip, cfg.data.protocol and cfg.data.dataset).
        vocab: `Vocabulary` (verbs, objects, HOI classes, prompts).
        clip: an open_clip CLIP to adapt (frozen in place); None builds it from cfg.clip (arch, checkpoint).
        protocol_unseen: unseen HOI class indices; their (object, verb) combinations get no prior, hence no loss,
            in training mode (official zero-shot training).
    Returns:
        LAIN; only its adapters, prompt contexts, layout MLP, HO-token MLP, logit scale (and verb head) train.
    """
    m = cfg.model
    if clip is None:
        clip = build_clip(cfg.clip.arch, cfg.clip.checkpoint)
    for p in clip.parameters():
        p.requires_grad_(False)
    clip.eval()
    tokenizer = get_tokenizer(cfg.clip.arch)
    texts = list(vocab.verb_prompts if m.text_mode == "verb" else vocab.hoi_prompts)
    if m.text_mode not in ("verb", "hoi"):
        raise ValueError(f"model.text_mode must be 'verb' or 'hoi', got {m.text_mode!r}")
    opt = resolve_model_options(cfg, clip, texts, tokenizer)
    vis = clip.visual
    width = vis.conv1.out_channels
    embed = vis.proj.shape[1]
    n_layers = len(vis.transformer.resblocks)
    da = m.adapter_dim

    adapters = None
    if m.use_la or m.use_ia:
        layers = []
        for _ in range(n_layers):
            la = LocalityAdapter(width, da, tuple(m.la_kernels), m.layout_alpha, m.la_visual, m.la_layout,
                                 m.la_mixer, m.gamma_init, m.adapter_heads) if m.use_la else None
            ia = InteractionAdapter(width, da, opt["roi_size"], m.n_context_queries, m.ia_context, m.ia_iprm,
                                    m.adapter_heads, 2 * da, m.adapter_dropout, m.gamma_init) if m.use_ia else None
            layers.append(LAINAdapter(la, ia))
        adapters = nn.ModuleList(layers)

    encoder = FrozenTextEncoder(clip, causal=m.text_causal_mask)
    object_text, layout_mlp = None, None
    if m.use_la and m.la_layout:
        if len(vocab.object_prompts) != vocab.num_objects + 1:
            raise ValueError(f"vocabulary needs {vocab.num_objects + 1} object prompts (the last for 'nothing'), "
                             f"has {len(vocab.object_prompts)}")
        tok = tokenize_prompts(tokenizer, list(vocab.object_prompts), 0, int(clip.context_length))
        object_text = encoder.encode(tok.to(vis.proj.device)).float()  # raw, unnormalised (official)
        layout_mlp = build_layout_mlp(embed, da)  # official priors_downproj: 517 -> 128 -> 128 -> 32

    feat_dim = m.det_feat_dim if opt["ho_feature"] == "detector" else width
    query_proj = build_query_proj(feat_dim, width)  # official query_proj: 512 -> 128 -> 768
    prompts = PromptLearner(encoder, tokenizer, texts, opt["n_ctx"], opt["class_specific"],
                            int(clip.context_length))

    verb_head = None
    if m.use_verb_classifier:
        tok = tokenize_prompts(tokenizer, [p.rstrip(". ") + "." for p in vocab.verb_prompts], 0,
                               int(clip.context_length))
        # Text embeddings of the verbs until `hoiclip.fit_verb_classifier` replaces them (LAIN.prepare).
        verb_head = VerbClassifierHead(embed, encoder.encode(tok.to(vis.proj.device)).float(),
                                       m.verb_classifier_trainable)

    seen = torch.ones(vocab.num_classes, dtype=torch.bool)
    if protocol_unseen is not None and len(protocol_unseen):
        unseen = torch.as_tensor(np.asarray(protocol_unseen, np.int64))
        if int(unseen.min()) < 0 or int(unseen.max()) >= vocab.num_classes:
            raise ValueError(f"protocol_unseen holds indices outside [0, {vocab.num_classes})")
        seen[unseen] = False
    model = LAIN(clip=clip, vocab=vocab, tokenizer=tokenizer, adapters=adapters, layout_mlp=layout_mlp,
                 query_proj=query_proj, ho_feature=opt["ho_feature"], det_feat_dim=m.det_feat_dim,
                 ho_roi_size=opt["roi_size"], prompt_learner=prompts, text_encoder=encoder, text_mode=m.text_mode,
                 object_text=object_text, seen_hoi=seen, nms_thresh=m.nms_thresh,
                 box_score_thresh=m.box_score_thresh, min_instances=m.min_instances, max_instances=m.max_instances,
                 focal_alpha=m.focal_alpha, focal_gamma=m.focal_gamma, fg_iou=m.fg_iou,
                 lambda_train=m.lambda_train, lambda_test=m.lambda_test, image_mean=cfg.clip.image_mean,
                 image_std=cfg.clip.image_std, verb_head=verb_head, verb_alpha=m.verb_alpha, zs_topk=m.zs_topk,
                 fast_path=m.fast_path, kernel_impl=m.kernel_impl)
    model.resolved = opt  # the concrete values of the "auto" options, for logs and notebooks
    return model


__all__ = ["build_model", "resolve_model_options", "LAIN", "LAINAdapter", "LocalityAdapter", "InteractionAdapter",
           "CrossAttentionLayer", "MLP", "PromptLearner", "FrozenTextEncoder", "VerbClassifierHead", "build_clip",
           "get_tokenizer", "preprocess"]
