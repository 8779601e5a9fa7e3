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
import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"

# Settings that decide where and how fast a computation runs, never its result: left out of every cache key.
SPEED_ONLY = ("train.device", "train.num_workers", "train.num_threads", "train.grid_workers", "clip.pretrain_threads",
              "model.fast_path", "model.kernel_impl")
PROTOCOLS = ("rf_uc", "nf_uc", "uo", "uv", "uc0", "uc1", "uc2", "uc3", "uc4", "supervised")


@dataclass
class WorldConfig:
    """The procedurally generated HOI world (the embedded default data set)."""

    seed: int = 0  # every image, label and split of the world follows from this seed
    image_size: int = 64  # square images, pixels; small so that CLIP-scale work runs on 2 CPU cores
    n_train: int = 3000  # HOI training images (HICO-DET: 37,633)
    n_test: int = 1000  # HOI test images (HICO-DET: 9,658)
    n_caption: int = 20000  # image-caption pairs for pretraining the small CLIP ("the web")
    max_people: int = 3  # 1..max_people people per image
    max_objects: int = 4  # up to max_objects objects besides people per image (people can be targets too)
    long_tail: float = 1.2  # Zipf exponent of the HOI class frequencies (1.2: ~25% rare classes, HICO-DET: 23%)
    clutter: float = 1.0  # background clutter strength (0 = flat background)
    caption_long_tail: float = 0.5  # Zipf exponent of the caption pool ("the web" covers every class more evenly)
    # fraction of the caption pool that are close-ups (one person and their object, or two people, filling the
    # frame), the rest scenes like the HOI splits. With scenes only (0) the small CLIP stayed near chance: held-out
    # retrieval 0.5% top-1 after 6 epochs; with close-ups only, 22% after one.
    caption_close_up: float = 1.0


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
    pretrain_threads: int = 0  # torch CPU threads while pretraining (one job: 0 = every core); not in the cache key


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
    fg_iou: float = 0.5  # positive if min(IoU_h, IoU_o) >= fg_iou
    # HOICLIP components (HOICLIP §3.3-3.5)
    use_verb_classifier: bool = False  # visual-semantic-arithmetic verb classifier + verb adapter
    verb_alpha: float = 0.5  # S = S_inter + alpha * S_v (HOICLIP Tab. 7 best: 0.5)
    zs_topk: int = 0  # training-free enhancement: keep top-K global CLIP HOI scores (HOICLIP best: 10); 0 = off
    verb_classifier_trainable: bool = True  # HOICLIP trains its verb_projection (initialised at E_v); False = fixed E_v
    kernel_impl: str = "auto"  # "auto" | "triton" | "torch"
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
    num_threads: int = 0  # torch CPU threads for train/infer; 0 = torch's default (1 is faster on a busy CPU)
    grid_workers: int = 1  # run_grid: experiments trained side by side, one process each (CPU tables)


@dataclass
class EvalConfig:
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
        if self.data.dataset not in ("world", "hicodet"):
            raise ValueError(f"data.dataset must be 'world' or 'hicodet', got {self.data.dataset!r}")
        if self.data.protocol not in PROTOCOLS:
            raise ValueError(f"data.protocol must be one of {PROTOCOLS}, got {self.data.protocol!r}")
        _choice("model.la_mixer", self.model.la_mixer, ("conv", "local_attn"))
        _choice("model.text_mode", self.model.text_mode, ("verb", "hoi"))
        _choice("model.ho_feature", self.model.ho_feature, ("auto", "detector", "clip_roi"))
        _choice("model.kernel_impl", self.model.kernel_impl, ("auto", "triton", "torch"))
        _choice("eval.iou_rule", self.eval.iou_rule, ("official", "pocket"))
        _choice("eval.ap", self.eval.ap, ("11p", "area"))
        _choice("train.device", self.train.device, ("auto", "cpu", "cuda"))

    # ---- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def digest(self, *sections: str) -> str:
        """Short hash of the given sections (all when none): the cache key of artefacts built from them."""
        d = self.to_dict()
        if sections:
            d = {s: d[s] for s in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def diff(self, other: "ExperimentConfig | None" = None) -> dict:
        """Dotted keys whose values differ from `other` (default: the plain defaults)."""
        a, b = _flatten(self.to_dict()), _flatten((other or ExperimentConfig()).to_dict())
        return {k: v for k, v in a.items() if b.get(k) != v}


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


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
