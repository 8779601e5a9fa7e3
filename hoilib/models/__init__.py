"""Models: open_clip CLIP backbones, LAIN (adapters, prompts, loss) and HOICLIP's components.

`build_model(cfg, vocab)` is the one place that reads `cfg.model`; every ablation row of the LAIN paper is a
switch read here (use_la / use_ia, la_visual, la_layout, la_mixer, ia_iprm, ia_context).

Common random numbers. The study compares LAIN with its ablations trained with the same seeds, and a paired
comparison only gains from the pairing if the two arms share their randomness. So, for a given `train.seed`:
- every parameter's initial value comes from its own stream, keyed by (seed, the parameter's path in the model)
  (`build_seeded`): a module that two arms share (the HO-token MLP, the layout MLP, the prompt contexts, the
  verb head, any layer of an LA or IA, down to each of their linear layers) starts from the same weights in both,
  whatever other modules exist or the order in which they are built;
- `build_model` leaves the global generators as they were;
- each module with dropout draws it from its own stream, keyed by (a number the model draws from the global
  generator once per training forward, the module's path, its call number) (`DropoutStreams`), so that a shared
  module drops the same units in both arms, and every arm draws the same amount from the global generator.
"""
from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from .adapters import MLP, CrossAttentionLayer, InteractionAdapter, LAINAdapter, LocalityAdapter
from .clip_backbone import build_clip, get_tokenizer, preprocess
from .ho_tokens import build_layout_mlp, build_query_proj
from .hoiclip import ZS_RULES, VerbClassifierHead
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


def stream_seed(*key) -> int:
    """A 63-bit seed for a key of ints and strings: the same on every machine and in every Python process (unlike
    `hash`), and unrelated for different keys."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def build_seeded(factory, seed: int, prefix: str) -> nn.Module:
    """`factory()`, with the random initial values of each parameter drawn from the stream of (seed, its path).

    Args:
        factory: builds a module (the same structure on every call).
        seed: the run's seed; prefix: the module's path in the model ("query_proj", "adapters", ...).
    Returns:
        the module; the global generator is left as it was.

    How: a module registers a parameter before it draws the parameter's initial values (torch's layers and ours
    do), and torch calls the global parameter-registration hooks at each registration. A first build records the
    order of the registrations, whose paths are known once the module is complete; a second build reseeds the
    global generator at each registration with the stream of that parameter's path. What a layer draws is then a
    function of the seed and of its own parameters' paths, not of the modules built before it. A value drawn
    before its parameter is registered (`nn.Parameter(torch.randn(...))`) comes from the stream of the parameter
    registered just before it, or from the stream of `prefix` when it is the first.
    """
    def build(on_register):
        handle = register_module_parameter_registration_hook(on_register)
        try:
            with torch.random.fork_rng(devices=[]):  # modules are built on the CPU
                torch.default_generator.manual_seed(stream_seed(seed, prefix))
                return factory()
        finally:
            handle.remove()

    order = []
    first = build(lambda module, name, param: order.append((module, name)))
    where = {id(m): path for path, m in first.named_modules(remove_duplicate=False)}
    keys = [".".join(p for p in (prefix, where.get(id(m), f"<unattached {i}>"), name) if p)
            for i, (m, name) in enumerate(order)]
    done = []

    def reseed(module, name, param):
        if len(done) == len(keys):
            raise RuntimeError(f"{prefix}: the module registered more parameters on its second build")
        torch.default_generator.manual_seed(stream_seed(seed, keys[len(done)]))
        done.append(name)

    module = build(reseed)
    if done != [name for _, name in order]:
        raise RuntimeError(f"{prefix}: the module's two builds registered different parameters")
    return module


def _owns_dropout(module: nn.Module) -> bool:
    # The smallest modules whose forward draws dropout: those with a Dropout or attention child (their forward
    # may also call a functional attention dropout, as `CrossAttentionLayer` does).
    return any(isinstance(c, (nn.Dropout, nn.MultiheadAttention)) for c in module.children())


class DropoutStreams:
    """Per-module dropout streams of a model (see the module docstring), installed as forward hooks.

    In training mode, each forward of the model draws one number (the key) from the global CPU generator; each call
    of a dropout-owning module then runs with the CPU (and its CUDA device's) generator seeded from (key, module
    path, number of calls of that module in this forward), and the generators are put back afterwards. Eval-mode
    forwards draw nothing. The key follows the global generator, so a resumed run (which restores it) sees the
    dropout of an uninterrupted one. `paths` lists the modules so handled (the frozen CLIP's are left alone).
    """

    def __init__(self, model: nn.Module):
        self.key, self.calls, self.saved = 0, {}, []
        self.paths = []
        model.register_forward_pre_hook(self._new_forward)
        for path, m in model.named_modules():
            if path.split(".")[0] == "clip" or not _owns_dropout(m):
                continue
            self.paths.append(path)
            m.register_forward_pre_hook(functools.partial(self._enter, path))
            m.register_forward_hook(functools.partial(self._leave, path), always_call=True)

    def _new_forward(self, model, args):
        if model.training:
            self.key = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            self.calls = {}

    @staticmethod
    def _generators(module) -> list:
        gens = [torch.default_generator]
        t = next(module.parameters(), None)
        if t is not None and t.device.type == "cuda":
            gens.append(torch.cuda.default_generators[t.device.index if t.device.index is not None
                                                      else torch.cuda.current_device()])
        return gens

    def _enter(self, path, module, args):
        if not module.training:
            return
        n = self.calls.get(path, 0)
        self.calls[path] = n + 1
        gens = self._generators(module)
        self.saved.append([(g, g.get_state()) for g in gens])
        seed = stream_seed(self.key, path, n)
        for g in gens:
            g.manual_seed(seed)

    def _leave(self, path, module, args, output):
        if module.training and self.saved:
            for g, state in self.saved.pop():
                g.set_state(state)


def build_model(cfg, vocab, clip: nn.Module | None = None, protocol_unseen: np.ndarray | None = None) -> LAIN:
    """Build LAIN (and HOICLIP's components when enabled) from an `ExperimentConfig`.

    Args:
        cfg: ExperimentConfig (reads cfg.model, cfg.clip, cfg.data.protocol, cfg.data.dataset and cfg.train.seed,
            the seed of every initial weight).
        vocab: `Vocabulary` (verbs, objects, HOI classes, prompts).
        clip: an open_clip CLIP to adapt (frozen in place); None builds it from cfg.clip (arch, checkpoint).
        protocol_unseen: unseen HOI class indices; their (object, verb) combinations get no prior, hence no loss,
            in training mode (official zero-shot training).
    Returns:
        LAIN; only its adapters, prompt contexts, layout MLP, HO-token MLP, logit scale (and verb head) train. Each
        parameter starts from the stream of (cfg.train.seed, its path), its dropout follows `DropoutStreams`, and
        the global generators are left as they were (module docstring: common random numbers).
    """
    m = cfg.model
    seed = cfg.train.seed
    if clip is None:
        with torch.random.fork_rng(devices=[]):  # random weights only until the checkpoint's are loaded
            torch.default_generator.manual_seed(stream_seed(seed, "clip"))
            clip = build_clip(cfg.clip.arch, cfg.clip.checkpoint)
    for p in clip.parameters():
        p.requires_grad_(False)
    clip.eval()
    tokenizer = get_tokenizer(cfg.clip.arch)
    texts = list(vocab.verb_prompts if m.text_mode == "verb" else vocab.hoi_prompts)
    if m.text_mode not in ("verb", "hoi"):
        raise ValueError(f"model.text_mode must be 'verb' or 'hoi', got {m.text_mode!r}")
    if m.zs_rule not in ZS_RULES:
        raise ValueError(f"model.zs_rule must be one of {ZS_RULES}, got {m.zs_rule!r}")
    opt = resolve_model_options(cfg, clip, texts, tokenizer)
    vis = clip.visual
    width = vis.conv1.out_channels
    embed = vis.proj.shape[1]
    n_layers = len(vis.transformer.resblocks)
    da = m.adapter_dim

    def layer_adapters():
        layers = []
        for _ in range(n_layers):
            la = LocalityAdapter(width, da, tuple(m.la_kernels), m.layout_alpha, m.la_visual, m.la_layout,
                                 m.la_mixer, m.gamma_init, m.adapter_heads) if m.use_la else None
            ia = InteractionAdapter(width, da, opt["roi_size"], m.n_context_queries, m.ia_context, m.ia_iprm,
                                    m.adapter_heads, 2 * da, m.adapter_dropout, m.gamma_init) if m.use_ia else None
            layers.append(LAINAdapter(la, ia))
        return nn.ModuleList(layers)

    adapters = build_seeded(layer_adapters, seed, "adapters") if (m.use_la or m.use_ia) else None

    encoder = FrozenTextEncoder(clip, causal=m.text_causal_mask)
    object_text, layout_mlp = None, None
    if m.use_la and m.la_layout:
        if len(vocab.object_prompts) != vocab.num_objects + 1:
            raise ValueError(f"vocabulary needs {vocab.num_objects + 1} object prompts (the last for 'nothing'), "
                             f"has {len(vocab.object_prompts)}")
        tok = tokenize_prompts(tokenizer, list(vocab.object_prompts), 0, int(clip.context_length))
        object_text = encoder.encode(tok.to(vis.proj.device)).float()  # raw, unnormalised (official)
        # official priors_downproj: 517 -> 128 -> 128 -> 32
        layout_mlp = build_seeded(lambda: build_layout_mlp(embed, da), seed, "layout_mlp")

    feat_dim = m.det_feat_dim if opt["ho_feature"] == "detector" else width
    # official query_proj: 512 -> 128 -> 768
    query_proj = build_seeded(lambda: build_query_proj(feat_dim, width), seed, "query_proj")
    prompts = build_seeded(lambda: PromptLearner(encoder, tokenizer, texts, opt["n_ctx"], opt["class_specific"],
                                                 int(clip.context_length)), seed, "prompt_learner")

    verb_head = None
    if m.use_verb_classifier:
        tok = tokenize_prompts(tokenizer, [p.rstrip(". ") + "." for p in vocab.verb_prompts], 0,
                               int(clip.context_length))
        # Text embeddings of the verbs until `hoiclip.fit_verb_classifier` replaces them (LAIN.prepare).
        verb_text = encoder.encode(tok.to(vis.proj.device)).float()
        verb_head = build_seeded(lambda: VerbClassifierHead(embed, verb_text, m.verb_classifier_trainable), seed,
                                 "verb_head")

    seen = torch.ones(vocab.num_classes, dtype=torch.bool)
    if protocol_unseen is not None and len(protocol_unseen):
        unseen = torch.as_tensor(np.asarray(protocol_unseen, np.int64))
        if int(unseen.min()) < 0 or int(unseen.max()) >= vocab.num_classes:
            raise ValueError(f"protocol_unseen holds indices outside [0, {vocab.num_classes})")
        seen[unseen] = False
    with torch.random.fork_rng(devices=[]):  # LAIN's own parameters (the logit scale) are constants
        model = LAIN(clip=clip, vocab=vocab, tokenizer=tokenizer, adapters=adapters, layout_mlp=layout_mlp,
                     query_proj=query_proj, ho_feature=opt["ho_feature"], det_feat_dim=m.det_feat_dim,
                     ho_roi_size=opt["roi_size"], prompt_learner=prompts, text_encoder=encoder,
                     text_mode=m.text_mode, object_text=object_text, seen_hoi=seen, nms_thresh=m.nms_thresh,
                     box_score_thresh=m.box_score_thresh, min_instances=m.min_instances,
                     max_instances=m.max_instances, focal_alpha=m.focal_alpha, focal_gamma=m.focal_gamma,
                     fg_iou=m.fg_iou, lambda_train=m.lambda_train, lambda_test=m.lambda_test,
                     image_mean=cfg.clip.image_mean, image_std=cfg.clip.image_std, verb_head=verb_head,
                     verb_alpha=m.verb_alpha, zs_topk=m.zs_topk, zs_rule=m.zs_rule,
                 fast_path=m.fast_path, kernel_impl=m.kernel_impl)
    model.dropout_streams = DropoutStreams(model)
    model.resolved = opt  # the concrete values of the "auto" options, for logs and notebooks
    return model


__all__ = ["build_model", "build_seeded", "stream_seed", "DropoutStreams", "resolve_model_options", "LAIN",
           "LAINAdapter", "LocalityAdapter", "InteractionAdapter", "CrossAttentionLayer", "MLP", "PromptLearner",
           "FrozenTextEncoder", "VerbClassifierHead", "build_clip", "get_tokenizer", "preprocess"]
