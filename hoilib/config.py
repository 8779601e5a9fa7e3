"""The one configuration tree of the study.

Every run (world generation, CLIP pretraining, LAIN training, inference, evaluation) is described by an
`ExperimentConfig`. Defaults follow the official LAIN code (see `../shared/docs/lain-reference.md`) wherever it
applies; fields whose default deviates for the built-in world say so in their comment.

Presets (`hoilib/presets/<name>.json`) hold only differences from the defaults; profiles (`smoke`, `default`,
`hicodet`) are presets too. Overrides are dotted keys: `{"model.use_la": False, "train.epochs": 3}`.
Only `build_*` functions read a config; classes take plain keyword arguments.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"

PROTOCOLS = ("rf_uc", "nf_uc", "uo", "uv", "uc0", "uc1", "uc2", "uc3", "uc4", "supervised")

# ---- every field's role, declared once (dotted keys; a section name covers all its fields) ----------------------
# A field that is in none of these tuples is a RESULT field: it changes what a computation produces (the generated
# world, a pretrained CLIP, trained weights) and is part of the cache key of everything built from it.
# Thread counts are result fields: CPU kernels reduce in a thread-count-dependent order, so they change bits.
#
# Inference only: changes the predictions or metrics of a trained model, never its weights; a sweep over them
# re-runs inference on the cached training run (`hoilib.runs`).
INFERENCE_ONLY = ("model.lambda_test", "model.gamma_scale", "model.zs_topk", "model.zs_rule", "eval", "data.detections_test")
# Speed only: decides where and how fast a computation runs, never a number; left out of every cache key.
SPEED_ONLY = ("train.device", "train.num_workers", "train.grid_workers", "model.kernel_impl", "model.fast_path",
              "eval.batch_size")
# Labels and places: names a run or says where files are; the content behind a path enters the keys instead
# (`hoilib.cache`), so a moved cache or checkpoint file is still the same artefact.
LABELS = ("name", "profile", "data.cache_dir", "data.hicodet_root", "data.detections_train", "clip.checkpoint",
          "train.log_every")


@dataclass
class WorldConfig:
    """The procedurally generated HOI world (the embedded default data set)."""

    # 2: crowded scenes (overlapping groups, long-range evidence, bystanders) whose background scene misleads a
    # whole-image judgement (`scene_bias`); 1: the first world, byte for byte (its defaults: max_people 3,
    # long_tail 1.2, as `hoilib.data.world.VERSION_1`)
    version: int = 2
    seed: int = 0  # every image, label and split of the world follows from this seed
    image_size: int = 64  # square images, pixels; small so that CLIP-scale work runs on 2 CPU cores
    n_train: int = 3000  # HOI training images (HICO-DET: 37,633)
    n_val: int = 500  # validation images, drawn like the training images from their own stream (HICO-DET: none)
    n_test: int = 1000  # HOI test images (HICO-DET: 9,658)
    n_caption: int = 20000  # image-caption pairs for pretraining the small CLIP ("the web")
    min_people: int = 2  # version 2: min_people..max_people people per HOI image (version 1 ignores it)
    max_people: int = 4  # version 1: 1..max_people people per image (1 most often; its default was 3)
    max_objects: int = 4  # up to max_objects objects besides people per image (people can be targets too)
    # Zipf exponent of the HOI class frequencies. Rare classes (< 10 training pairs; HICO-DET: 23%) at 3,000
    # training images: version 2 at 1.4, 15-27 of 95 over world seeds 0-3 (at 1.2 none: its ~3 people per image
    # give 1.7x the pairs); version 1 at 1.2, 23
    long_tail: float = 1.4
    clutter: float = 1.0  # background clutter strength (0 = flat background)
    caption_long_tail: float = 0.5  # Zipf exponent of the caption pool ("the web" covers every class more evenly)
    # fraction of the caption pool that are close-ups (one person and their object, or two people, filling the
    # frame), the rest scenes like the HOI splits. With scenes only (0) the small CLIP stayed near chance: held-out
    # retrieval 0.5% top-1 after 6 epochs; with close-ups only, 22% after one.
    caption_close_up: float = 1.0
    # version 2: each verb has a home scene (sky, ground, clutter); a caption image shows the home scene of one of
    # its verbs with this probability, an HOI image (train, val, test) the home scene of a verb that none of its
    # pairs does. 0 = scenes independent of the verbs
    scene_bias: float = 0.8


@dataclass
class DetectorSimConfig:
    """The simulated detector that turns world ground truth into cached detections."""

    box_jitter: float = 0.05  # std of box-corner noise, as a fraction of box width/height
    miss_rate: float = 0.05  # probability that a ground-truth instance is not detected
    false_positives: float = 0.5  # mean number of spurious boxes per image (Poisson)
    class_confusion: float = 0.05  # probability that an object is given a wrong label
    score_true: float = 0.85  # mean score of a correct detection
    score_false: float = 0.35  # mean score of a spurious or mislabelled detection
    score_noise: float = 0.1  # std of the score noise (scores are clipped to (0, 1))


@dataclass
class DataConfig:
    dataset: str = "world"  # "world" (built-in, offline) | "hicodet" (real data, paths below)
    protocol: str = "rf_uc"  # one of PROTOCOLS; "supervised" = no unseen classes
    hicodet_root: str = "data/hicodet"  # holds instances_{train,test}2015.json and hico_20160224_det/images
    detections_train: str = ""  # detection cache (.npz) for train images; "" = <root>/detections_train2015.npz
    detections_test: str = ""  # detection cache for test images
    cache_dir: str = "cache"  # generated world, CLIP checkpoints, runs (git-ignored)


@dataclass
class ClipConfig:
    """The CLIP backbone (open_clip)."""

    arch: str = "hoi-world-vit"  # open_clip model name: "hoi-world-vit" (built-in config) | "ViT-B-16" | "ViT-L-14"
    checkpoint: str = ""  # local weights file (OpenAI .pt or open_clip state dict); "" = pretrain in the world
    image_mean: tuple = (0.485, 0.456, 0.406)  # LAIN normalises with ImageNet statistics, not CLIP's
    image_std: tuple = (0.229, 0.224, 0.225)
    # Pretraining of the small CLIP on the world's captions (ignored when a checkpoint is given).
    pretrain_epochs: int = 4  # 19k pairs x 4 epochs x batch 64 (1,184 steps): ~9 min on 2 CPU cores
    pretrain_batch_size: int = 64  # small batches: 4x the steps of 256 for the same time; from scratch the loss
    # sits at ln(batch) for the first ~250 steps, so the number of steps is what the budget buys
    pretrain_lr: float = 1e-3
    pretrain_weight_decay: float = 0.1
    pretrain_seed: int = 0
    pretrain_warmup: float = 0.05  # linear warmup as a fraction of all steps, then cosine decay to 0
    pretrain_augment: bool = False  # random +-S/16 px shifts of caption images (off: ~1800 steps underfit anyway)
    pretrain_holdout: float = 0.05  # fraction of the caption pairs held out for the retrieval accuracy
    pretrain_threads: int = 0  # torch CPU threads while pretraining (0 = every core); in the CLIP's cache key


@dataclass
class ModelConfig:
    """LAIN and HOICLIP's components. Each ablation row of LAIN's Table (paper §4.3) is a switch here."""

    # Adapters (LAIN Tab. ablation rows)
    use_la: bool = True  # "+ LA"; False with use_ia=False is the "w/o adapters" baseline
    use_ia: bool = True  # "+ IA"
    la_visual: bool = True  # False = "LA: w/o visual info" (layout prior only)
    la_layout: bool = True  # False = "LA: w/o spatial layout" (patch features only)
    la_mixer: str = "conv"  # "conv" (multi-scale convolution) | "local_attn" = "LA: Local Attention"
    la_kernels: tuple = (3, 5)  # official code: {3x3, 5x5}
    ia_iprm: bool = True  # False = "IA: w/o IPRM" (no mutual human<->object attention)
    ia_context: bool = True  # False = "IA: w/o context extraction" (no learnable context queries)
    adapter_dim: int = 32  # D_a; official scripts pass --adapt_dim 32
    n_context_queries: int = 10  # learnable IA context queries
    roi_size: int = 0  # ROIAlign output size; 0 = ceil(grid / 2): official 7 on ViT-B/16's 14x14, 4 on the world's 8x8
    gamma_init: float = 1e-9  # gamma_LA / gamma_IA init (official: per-channel vectors at 1e-9)
    layout_alpha: float = 1.0  # F_hat = alpha * F_tilde + P_layout
    ho_feature: str = "auto"  # "detector" (cache feature vectors) | "clip_roi" (ROI-pooled CLIP patch embedding) | "auto"
    det_feat_dim: int = 256  # F of the detector's per-box features (DETR decoder states: 256); HO MLP is 2F -> 128 -> width
    adapter_heads: int = 2  # heads of the IA decoder layers (official: 2; their FFN is 2 * adapter_dim wide)
    adapter_dropout: float = 0.1  # dropout of the IA decoder layers (official: 0.1)
    # Text side
    text_mode: str = "verb"  # "verb" (official: 117 verb prompts) | "hoi" (paper: one prompt per HOI class)
    n_ctx: int = 0  # learnable prompt tokens; 0 = official per protocol (24 RF-UC, 36 otherwise) x text context / 77
    class_specific_ctx: str = "auto"  # "auto" (official: class-specific except UV) | "class" | "shared"
    text_causal_mask: bool = True  # False = as the official code, whose modified CLIP drops the text causal mask
    # Detections -> pairs (official values)
    box_score_thresh: float = 0.2
    min_instances: int = 3
    max_instances: int = 15
    nms_thresh: float = 0.5
    # Scoring and loss
    focal_alpha: float = 0.5
    focal_gamma: float = 0.2  # official code; the paper leaves it open (2.0 is the class default)
    lambda_train: float = 1.0  # detector-score exponent inside the training loss (official)
    lambda_test: float = 2.8  # S * S_H^lambda * S_O^lambda at inference (official hyper_lambda)
    gamma_scale: float = 1.0  # gamma_LA and gamma_IA times this at inference only: 0 = what the trained adapters add
    fg_iou: float = 0.5  # positive if min(IoU_h, IoU_o) >= fg_iou
    # HOICLIP components (HOICLIP §3.3-3.5)
    use_verb_classifier: bool = False  # visual-semantic-arithmetic verb classifier + verb adapter
    verb_alpha: float = 0.5  # S = S_inter + alpha * S_v (HOICLIP Tab. 7 best: 0.5)
    zs_topk: int = 0  # training-free enhancement: keep top-K global CLIP HOI scores (HOICLIP best: 10); 0 = off
    # how the kept scores enter the final score: "hoiclip" (HOICLIP's rule: (sigmoid(logit) + sigmoid(zs)) * prior,
    # probability space, sigmoid(0) = 0.5 added for the classes outside the top K too) | "logit"
    # (sigmoid(logit + zs) * prior, about exp(s) ~ 14x weaker than HOICLIP's)
    zs_rule: str = "hoiclip"
    verb_classifier_trainable: bool = True  # HOICLIP trains its verb_projection (initialised at E_v); False = fixed E_v
    kernel_impl: str = "auto"  # "auto" | "triton" | "torch": Triton kernels on CUDA when available; speed only
    fast_path: bool = True  # False = the reference implementation (padded masked sequence, per-image loops); speed only


@dataclass
class TrainConfig:
    epochs: int = 20  # official: 20
    batch_size: int = 8  # official: 8 on 1 GPU
    lr: float = 1e-3  # official: 1e-3 for every group
    weight_decay: float = 1e-4
    lr_step: int = 10  # StepLR step (epochs); official: 10
    lr_gamma: float = 0.1
    grad_clip: float = 0.1  # max-norm; official: 0.1
    amp: bool = False  # mixed precision (CUDA only)
    seed: int = 66  # official: 66 + rank
    num_workers: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    max_train_images: int = 0  # 0 = all; >0 truncates the training set (smoke runs)
    drop_last: bool = True  # official: the last incomplete batch of an epoch is dropped
    log_every: int = 20  # training steps between JSON-lines log records (epoch summaries are always logged)
    num_threads: int = 0  # torch CPU threads for train/infer (0 = every core); in the run's cache key
    grid_workers: int = 1  # run_grid: experiments trained side by side, one process each (CPU tables)
    # Training augmentation (official LAIN, lain-reference §2), applied to each training image and, with it, to the
    # boxes of its cached detections and of its ground truth. The official code re-runs DETR on the augmented
    # image; here the cached detection boxes are transformed instead. Randomness comes from (seed, epoch, image
    # index) only, so two runs with the same seed see the same augmented images. Defaults are the official ones.
    augment_flip: bool = True  # RandomHorizontalFlip (p = 0.5)
    augment_color: float = 0.4  # ColorJitter strength for brightness, contrast and saturation; 0 = off
    # random crop: width and height each a fraction in [min, max] of the image's, taken for half of the images (the
    # official RandomSizeCrop branch; its crops span about 0.5-1.0 of HICO-DET images); (1.0, 1.0) = off. The
    # official multi-scale resize has no counterpart: it only rescales DETR's input, and CLIP's is resized to S x S.
    augment_scale: tuple = (0.5, 1.0)


@dataclass
class EvalConfig:
    split: str = "test"  # where runs are evaluated: "test" (reported tables) | "val" (every choice is made here)
    iou_rule: str = "official"  # "official" (>= 0.5) | "pocket" (> 0.5, UPT/LAIN)
    ap: str = "11p"  # "11p" (VOC-2007, HICO-DET toolkit) | "area" (all-point)
    known_object: bool = False
    include_empty: bool = False  # count detections on images without annotations as false positives
    batch_size: int = 16


@dataclass
class ExperimentConfig:
    name: str = "lain"
    profile: str = "default"
    world: WorldConfig = field(default_factory=WorldConfig)
    detector: DetectorSimConfig = field(default_factory=DetectorSimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        self.validate()

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        cfg = cls()
        return cfg.override(d)

    @classmethod
    def from_preset(cls, name: str) -> "ExperimentConfig":
        """Defaults updated with `hoilib/presets/<name>.json` (a nested or dotted dict of differences)."""
        return cls().apply_preset(name)

    def apply_preset(self, name: str) -> "ExperimentConfig":
        path = PRESET_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
            raise ValueError(f"unknown preset {name!r}; known presets: {known}")
        d = json.loads(path.read_text())
        d.pop("_doc", None)
        out = self.override(d)
        if "profile" not in _flatten(d):
            out.profile = self.profile
        return out

    def override(self, *updates: Any) -> "ExperimentConfig":
        """Return a copy with updates applied. Each update is a preset/profile name or a dict of (dotted or
        nested) keys. Unknown keys and wrongly typed values raise ValueError."""
        out = copy.deepcopy(self)
        for upd in updates:
            if upd is None:
                continue
            if isinstance(upd, str):
                out = out.apply_preset(upd)
                continue
            for key, value in _flatten(upd).items():
                _set(out, key, value)
        out.validate()
        return out

    def validate(self) -> None:
        """Check the type and the range of every field; the message names the field (dotted key)."""
        flat = _flatten(self.to_dict())
        defaults = _flatten(_DEFAULTS)
        for key, value in flat.items():
            _check_type(key, value, defaults.get(key))
        for key, check in _CHECKS.items():
            problem = check(flat[key])
            if problem:
                raise ValueError(f"{key} {problem}, got {flat[key]!r}")
        if self.world.min_people > self.world.max_people:
            raise ValueError(f"world.min_people ({self.world.min_people}) must be <= world.max_people "
                             f"({self.world.max_people})")
        m = self.model
        if m.adapter_dim % m.adapter_heads:
            raise ValueError(f"model.adapter_dim ({m.adapter_dim}) must be divisible by model.adapter_heads "
                             f"({m.adapter_heads})")
        if m.max_instances < m.min_instances:
            raise ValueError(f"model.max_instances ({m.max_instances}) must be >= model.min_instances "
                             f"({m.min_instances})")

    def roles(self) -> dict:
        """{dotted key: "result" | "inference" | "speed" | "label"} for every field (see the role tuples above)."""
        return {k: field_role(k) for k in _flatten(self.to_dict())}

    def training_dict(self) -> dict:
        """The result fields: what a trained model depends on (inference-only, speed-only and label fields removed;
        the content behind label paths enters the cache keys in `hoilib.cache`)."""
        return _select(self.to_dict(), lambda k: field_role(k) == "result")

    def inference_dict(self) -> dict:
        """The inference-only fields (speed-only ones removed): what a trained model's metrics also depend on."""
        return _select(self.to_dict(), lambda k: field_role(k) == "inference")

    # ---- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def diff(self, other: "ExperimentConfig | None" = None) -> dict:
        """Dotted keys whose values differ from `other` (default: the plain defaults)."""
        a, b = _flatten(self.to_dict()), _flatten((other or ExperimentConfig()).to_dict())
        return {k: v for k, v in a.items() if b.get(k) != v}


def field_role(key: str) -> str:
    """Role of a dotted config key: "label", "speed", "inference" or "result" (the role tuples above)."""
    for role, keys in (("label", LABELS), ("speed", SPEED_ONLY), ("inference", INFERENCE_ONLY)):
        if any(key == k or key.startswith(k + ".") for k in keys):
            return role
    return "result"


def _select(d: dict, keep) -> dict:
    """The nested dict restricted to the dotted keys for which keep(key) is true (empty sections dropped)."""
    out: dict = {}
    for key, value in _flatten(d).items():
        if keep(key):
            node = out
            *head, leaf = key.split(".")
            for h in head:
                node = node.setdefault(h, {})
            node[leaf] = copy.deepcopy(value)
    return out


# ---- ranges (types come from the defaults) -----------------------------------------------------------------------
def _at_least(lo):
    return lambda v: None if v >= lo else f"must be >= {lo}"


def _between(lo, hi, open_lo: bool = False, open_hi: bool = False):
    def check(v):
        ok = (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
        return None if ok else f"must be in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
    return check


def _one_of(*allowed):
    return lambda v: None if v in allowed else f"must be one of {allowed}"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _finite(v):
    return None if math.isfinite(v) else "must be a finite number"


def _odd_kernels(v):
    if len(v) == 0 or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0 for k in v):
        return "must be a non-empty list of odd positive integers (kernel sizes)"
    return None


def _crop_range(v):
    if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
        return "must be 2 numbers (min, max)"
    return None if 0 < v[0] <= v[1] <= 1 else "must satisfy 0 < min <= max <= 1"


def _rgb(positive: bool):
    def check(v):
        if len(v) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)
                              for x in v):
            return "must be 3 finite numbers (R, G, B)"
        return "must be > 0 per channel" if positive and min(v) <= 0 else None
    return check


_CHECKS = {
    "world.version": _one_of(1, 2), "world.seed": _at_least(0), "world.image_size": _at_least(16),
    "world.n_train": _at_least(1), "world.n_val": _at_least(0), "world.n_test": _at_least(1),
    "world.n_caption": _at_least(0), "world.min_people": _at_least(1), "world.max_people": _at_least(1),
    "world.max_objects": _at_least(1), "world.long_tail": _at_least(0.0), "world.clutter": _at_least(0.0),
    "world.caption_long_tail": _at_least(0.0), "world.caption_close_up": _between(0.0, 1.0),
    "world.scene_bias": _between(0.0, 1.0),
    "detector.box_jitter": _at_least(0.0), "detector.miss_rate": _between(0.0, 1.0),
    "detector.false_positives": _at_least(0.0), "detector.class_confusion": _between(0.0, 1.0),
    "detector.score_true": _between(0.0, 1.0), "detector.score_false": _between(0.0, 1.0),
    "detector.score_noise": _at_least(0.0),
    "data.dataset": _one_of("world", "hicodet"), "data.protocol": _one_of(*PROTOCOLS),
    "clip.image_mean": _rgb(False), "clip.image_std": _rgb(True), "clip.pretrain_epochs": _at_least(1),
    "clip.pretrain_batch_size": _at_least(2), "clip.pretrain_lr": _positive, "clip.pretrain_weight_decay": _at_least(0.0),
    "clip.pretrain_seed": _at_least(0), "clip.pretrain_warmup": _between(0.0, 1.0),
    "clip.pretrain_holdout": _between(0.0, 1.0, open_hi=True), "clip.pretrain_threads": _at_least(0),
    "model.la_mixer": _one_of("conv", "local_attn"), "model.la_kernels": _odd_kernels,
    "model.adapter_dim": _at_least(1), "model.n_context_queries": _at_least(1), "model.roi_size": _at_least(0),
    "model.gamma_init": _finite, "model.layout_alpha": _finite,
    "model.ho_feature": _one_of("auto", "detector", "clip_roi"), "model.det_feat_dim": _at_least(1),
    "model.adapter_heads": _at_least(1), "model.adapter_dropout": _between(0.0, 1.0, open_hi=True),
    "model.text_mode": _one_of("verb", "hoi"), "model.n_ctx": _at_least(0),
    "model.class_specific_ctx": _one_of("auto", "class", "shared"),
    "model.box_score_thresh": _between(0.0, 1.0), "model.min_instances": _at_least(0),
    "model.max_instances": _at_least(1), "model.nms_thresh": _between(0.0, 1.0),
    "model.focal_alpha": _between(0.0, 1.0), "model.focal_gamma": _at_least(0.0),
    "model.lambda_train": _at_least(0.0), "model.lambda_test": _at_least(0.0),
    "model.fg_iou": _between(0.0, 1.0, open_lo=True), "model.verb_alpha": _at_least(0.0),
    "model.zs_topk": _at_least(0), "model.gamma_scale": _at_least(0.0), "model.zs_rule": _one_of("hoiclip", "logit"),
    "model.kernel_impl": _one_of("auto", "triton", "torch"),
    "train.epochs": _at_least(1), "train.batch_size": _at_least(1), "train.lr": _positive,
    "train.weight_decay": _at_least(0.0), "train.lr_step": _at_least(1), "train.lr_gamma": _between(0.0, 1.0, True),
    "train.augment_color": _between(0.0, 1.0), "train.augment_scale": _crop_range,
    "train.grad_clip": _at_least(0.0), "train.seed": _at_least(0), "train.num_workers": _at_least(0),
    "train.device": _one_of("auto", "cpu", "cuda"), "train.max_train_images": _at_least(0),
    "train.log_every": _at_least(0), "train.num_threads": _at_least(0), "train.grid_workers": _at_least(1),
    "eval.split": _one_of("test", "val"), "eval.iou_rule": _one_of("official", "pocket"), "eval.ap": _one_of("11p", "area"),
    "eval.batch_size": _at_least(1),
}


def _check_type(key: str, value: Any, default: Any) -> None:
    """The value must have its default's type (an int is accepted for a float field)."""
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{key} must be of type {type(default).__name__}, got {value!r}")


def _to_plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set(cfg: Any, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    obj = cfg
    for p in parts[:-1]:
        if not is_dataclass(obj) or p not in {f.name for f in fields(obj)}:
            raise ValueError(f"unknown config key {dotted!r}")
        obj = getattr(obj, p)
    leaf = parts[-1]
    if not is_dataclass(obj) or leaf not in {f.name for f in fields(obj)}:
        raise ValueError(f"unknown config key {dotted!r}")
    old = getattr(obj, leaf)
    if is_dataclass(old):
        raise ValueError(f"config key {dotted!r} is a section; set its fields")
    setattr(obj, leaf, _coerce(dotted, old, value))


def _coerce(key: str, old: Any, value: Any) -> Any:
    if isinstance(old, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} expects a bool, got {value!r}")
        return value
    if isinstance(old, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} expects an int, got {value!r}")
        return value
    if isinstance(old, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} expects a number, got {value!r}")
        return float(value)
    if isinstance(old, str):
        if not isinstance(value, str):
            raise ValueError(f"{key} expects a string, got {value!r}")
        return value
    if isinstance(old, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} expects a list, got {value!r}")
        return tuple(value)
    return value



def _default_dict() -> dict:
    """The defaults as a plain dict, built from the field declarations (without constructing ExperimentConfig,
    whose construction validates against this very dict)."""
    out = {}
    for f in fields(ExperimentConfig):
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out[f.name] = dataclasses.asdict(value) if is_dataclass(value) else value
    return _to_plain(out)


_DEFAULTS = _default_dict()
