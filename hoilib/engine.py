"""Training, inference and evaluation of one experiment: the one engine for the built-in world and HICO-DET.

`train(cfg, out_dir)` follows the official LAIN recipe (lain-reference.md §10): AdamW over the trainable
parameters only, StepLR stepped once per epoch, max-norm gradient clipping (off under mixed precision, as in the
official code), `drop_last` batches of `cfg.train.batch_size` images per process, a checkpoint after every epoch.
`infer(cfg, checkpoint_or_model)` runs the test split and returns predictions in the evaluator's format;
`evaluate_run(cfg, predictions)` scores them.

Batches. The collate function turns dataset items into what the model contract wants: `model.preprocess` resizes
each image to the SxS CLIP frame (no aspect ratio kept, as LAIN's `IResize([224, 224])`), and detection and
ground-truth boxes are rescaled from original pixels to that frame by (S / W, S / H), the frame in which LAIN
computes every IoU (axis-aligned rescaling keeps IoUs unchanged). `model.postprocess` maps boxes back.

Reproducibility. The data order of epoch e is `randperm(n, seed=train.seed + e)` (torch's DistributedSampler
with one or several replicas), and the checkpoint holds the RNG states of every process, so resuming after an
interruption gives the same weights as an uninterrupted run, and a fixed seed gives identical numbers on the CPU.

Common random numbers. Runs compared with the same seed (LAIN and an ablation) share their randomness wherever
they share a part: `build_model` draws each module's initial weights from the module's own stream and leaves the
global generator alone; the global generators are seeded after the model is built and prepared; the batches come
from the seeded sampler; the training augmentation of an image depends only on (train.seed, epoch, image index)
(`Collator`, `data.augment`); and the model draws the same amount from the global generator on every training
step whatever its modules (its dropout has per-module streams, see `hoilib.models.build_model`).

Several processes. Launched by `torchrun` (WORLD_SIZE > 1), `train` wraps the model in DistributedDataParallel
(gloo on CPU, nccl on CUDA); each process takes every W-th image of the epoch's permutation, so the union of one
step's batches is the single-process batch of W x batch_size images; the model's loss is normalised by the number
of positives averaged over processes (official), so the averaged gradient equals the single-process gradient on
that union batch. Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from hoilib import cache
from hoilib.config import ExperimentConfig
from hoilib.data.augment import Augmentation
from hoilib.data.dataset import build_dataset
from hoilib.eval import evaluate
from hoilib.models import build_model

__all__ = ["train", "infer", "evaluate_run", "Batch", "Collator", "seen_class_mask", "resolve_device",
           "load_trained_model", "trainable_state", "DistInfo", "init_distributed", "training_loss", "Cancelled",
           "CHECKPOINT", "LOG"]

CHECKPOINT = "checkpoint.pt"  # file names inside a run directory
LOG = "log.jsonl"


class Cancelled(Exception):
    """`train` stopped because its `on_step` callback asked it to; the checkpoint of the last complete epoch stays,
    and a later `train` of the same run resumes from it."""


# ---- distributed ------------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    """Where this process stands in a torchrun launch (world_size 1 = a plain single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group of a torchrun launch (env vars RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Backend: nccl for CUDA, gloo for the CPU. Without WORLD_SIZE > 1 nothing is initialised.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world_size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def resolve_device(cfg: ExperimentConfig, info: DistInfo | None = None) -> torch.device:
    """cfg.train.device ("auto" = CUDA when available); one GPU per process (LOCAL_RANK) under torchrun."""
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", info.local_rank if info is not None else torch.cuda.current_device())
    return torch.device("cpu")


# ---- config helpers ---------------------------------------------------------------------------------------------
def _require_clip(cfg: ExperimentConfig) -> None:
    """The world's small CLIP has no weights of its own: it must have been pretrained (and its path set) first."""
    if cfg.clip.arch == "hoi-world-vit" and not cfg.clip.checkpoint:
        raise ValueError("clip.checkpoint is empty: the built-in world's CLIP is pretrained by hoilib first; use "
                         "cfg = hoilib.runs.resolve_clip(cfg) (or hoilib.runs.run_experiment, which does it)")


def seen_class_mask(num_classes: int, unseen) -> torch.Tensor:
    """BoolTensor [C]: True for the HOI classes that may be trained on (not in the protocol's unseen list)."""
    mask = torch.ones(num_classes, dtype=torch.bool)
    unseen = np.asarray(unseen if unseen is not None else [], dtype=np.int64)
    if unseen.size:
        if unseen.min() < 0 or unseen.max() >= num_classes:
            raise ValueError(f"unseen class indices must lie in [0, {num_classes}), got {unseen.min()}..{unseen.max()}")
        mask[torch.from_numpy(unseen)] = False
    return mask


def _set_threads(cfg: ExperimentConfig) -> None:
    torch.set_num_threads(cache.threads(cfg.train.num_threads))  # part of the run's key: it changes bits


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# ---- batches ----------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One collated batch.

    images: float [B, 3, S, S] (model.preprocess); detections: B dicts(boxes float32 [K, 4] xyxy in the SxS frame,
    scores [K], labels int64 [K], feats [K, F] or None); targets: B dicts(boxes_h, boxes_o [M, 4] SxS frame, verb,
    object, hoi int64 [M]); orig_sizes: B (W, H); image_index: B positions in the split's annotations.
    """

    images: torch.Tensor
    detections: list
    targets: list
    orig_sizes: list
    image_index: list

    def to(self, device: torch.device) -> "Batch":
        mv = lambda d: {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)  # noqa: E731
                        for k, v in d.items()}
        images = self.images.to(device, non_blocking=True) if isinstance(self.images, torch.Tensor) else self.images
        return Batch(images, [mv(d) for d in self.detections],
                     [mv(t) for t in self.targets], self.orig_sizes, self.image_index)

    def __len__(self) -> int:
        return len(self.orig_sizes)

    def preprocessed(self, preprocess) -> "Batch":
        """The batch with `images` run through `preprocess` if the collate function left them raw."""
        if isinstance(self.images, torch.Tensor):
            return self
        return Batch(preprocess(self.images), self.detections, self.targets, self.orig_sizes, self.image_index)


class Collator:
    """collate_fn: dataset items -> `Batch` (boxes rescaled from original pixels to the SxS CLIP frame).

    Args:
        preprocess: the model's `preprocess(list of uint8 [H, W, 3]) -> [B, 3, S, S]`; None leaves `images` a list of
            uint8 arrays for `Batch.preprocessed` in the main process (DataLoader workers must not touch CUDA).
        image_size: S.
        augment: training augmentation (`data.augment.Augmentation`) or None (inference: never augmented). It is
            applied to each item's image and boxes before the rescaling, with the randomness of (seed, `epoch`, item
            index); `orig_sizes` are then the augmented images' sizes. Set `epoch` before each epoch.
    """

    def __init__(self, preprocess, image_size: int, augment: Augmentation | None = None):
        self.preprocess = preprocess
        self.image_size = int(image_size)
        self.augment = augment if augment is not None and augment.active else None
        self.epoch = 0

    def __call__(self, items: list) -> Batch:
        s = float(self.image_size)
        dets, targets, sizes, images = [], [], [], []
        for it in items:
            d, g, image = it["dets"], it["gt"], it["image"]
            if d is None:
                raise ValueError(f"{it['filename']}: no detections; the two-stage model needs a detection cache")
            det = dict(boxes=np.asarray(d.boxes, np.float32).reshape(-1, 4), scores=np.asarray(d.scores, np.float32),
                       labels=np.asarray(d.labels, np.int64),
                       feats=None if d.feats is None else np.asarray(d.feats, np.float32))
            gt = dict(boxes_h=np.asarray(g["boxes_h"], np.float32).reshape(-1, 4),
                      boxes_o=np.asarray(g["boxes_o"], np.float32).reshape(-1, 4),
                      **{k: np.asarray(g[k], np.int64) for k in ("verb", "object", "hoi")})
            w, h = it["size"]
            if self.augment is not None:
                a = self.augment(image, det["boxes"], gt["boxes_h"], gt["boxes_o"], self.epoch, int(it["index"]))
                image, (w, h) = a["image"], a["size"]
                det = {k: (v if v is None or k == "boxes" else v[a["det_keep"]]) for k, v in det.items()}
                det["boxes"] = a["det_boxes"]
                gt = {k: v[a["gt_keep"]] for k, v in gt.items()}
                gt["boxes_h"], gt["boxes_o"] = a["gt_boxes_h"], a["gt_boxes_o"]
            scale = torch.tensor([s / w, s / h, s / w, s / h], dtype=torch.float32)
            dets.append(dict(boxes=torch.as_tensor(det["boxes"]) * scale, scores=torch.as_tensor(det["scores"]),
                             labels=torch.as_tensor(det["labels"]),
                             feats=None if det["feats"] is None else torch.as_tensor(det["feats"])))
            targets.append(dict(boxes_h=torch.as_tensor(gt["boxes_h"]) * scale,
                                boxes_o=torch.as_tensor(gt["boxes_o"]) * scale,
                                **{k: torch.as_tensor(gt[k]) for k in ("verb", "object", "hoi")}))
            sizes.append((int(w), int(h)))
            images.append(image)
        if self.preprocess is not None:
            images = self.preprocess(images)
        return Batch(images, dets, targets, sizes, [int(it.get("image_index", it["index"])) for it in items])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _trainable_named(model: nn.Module) -> list:
    """(name, parameter) of `model.trainable_parameters()` (falls back to requires_grad)."""
    params = list(model.trainable_parameters()) if hasattr(model, "trainable_parameters") else \
        [p for p in model.parameters() if p.requires_grad]
    ids = {id(p) for p in params}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in ids]
    if len(named) != len(ids):
        raise ValueError("model.trainable_parameters() returned tensors that are not parameters of the model")
    return named


def trainable_state(model: nn.Module) -> dict:
    """The part of the state dict that training changes or that is computed after construction: every trainable
    parameter and every persistent buffer (frozen CLIP weights are left out: they come from clip.checkpoint)."""
    model = _unwrap(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k not in frozen}


def _load_trainable_state(model: nn.Module, state: dict, where: str) -> None:
    missing, unexpected = _unwrap(model).load_state_dict(state, strict=False)
    expected = set(trainable_state(model))
    missing = [k for k in missing if k in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: checkpoint does not match the model: missing {missing[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")


def training_loss(model: nn.Module, batch: Batch, seen_mask: torch.Tensor | None, info: DistInfo | None = None,
                  amp: bool = False) -> tuple[torch.Tensor, dict]:
    """Forward + `compute_loss` for one batch; returns (loss to back-propagate, float stats).

    Under torchrun the model's `compute_loss` normalises by the positives averaged over processes (official LAIN),
    so that DDP's gradient average is the gradient of sum / n_pos over the union of the processes' batches;
    `stats["loss"]` is then averaged over processes too (= the loss of that union batch).
    """
    core = _unwrap(model)
    device = batch.images.device
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        outputs = model(batch.images, batch.detections, seen_mask)
        losses = core.compute_loss(outputs, batch.targets)
    loss = losses["loss"].float()
    stats = {"loss": loss.item(), "num_pos": float(losses.get("num_pos", 0))}
    for k, v in losses.items():
        if k.startswith("loss_") and isinstance(v, torch.Tensor) and v.numel() == 1:
            stats[k] = v.item()
    if info is not None and info.enabled:
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        stats = {k: (v if k == "num_pos" else v / info.world_size) for k, v in zip(keys, t.tolist())}
    return loss, stats


# ---- training ---------------------------------------------------------------------------------------------------
def train(cfg: ExperimentConfig, out_dir: str | Path, progress: bool = True, resume: bool = True, *,
          data=None, model: nn.Module | None = None, eval_each_epoch: bool = False, test_data=None,
          on_step=None) -> dict:
    """Train one experiment; write `out_dir/checkpoint.pt` (each epoch) and `out_dir/log.jsonl`.

    Args:
        cfg: the experiment (train.*, model.*, data.*, clip.*).
        out_dir: run directory (created; rank 0 writes).
        resume: continue from `out_dir/checkpoint.pt` if present (it must come from the same training config);
            False starts afresh (the old checkpoint and log are replaced).
        data: a prebuilt training split (`HOISplit` or anything with .dataset, .vocab, .unseen); default
            `build_dataset(cfg, "train")`.
        model: a freshly built model following the model contract; default `build_model(cfg, vocab, ...)`.
        eval_each_epoch: evaluate on `cfg.eval.split` after every epoch, as the official code does; adds <split>_full,
            <split>_rare, <split>_non_rare, <split>_unseen, <split>_seen (mAP, %) to the epoch records. The RNG state is
            put back afterwards, so the trained weights are the same as without it.
        test_data: a prebuilt evaluation split for eval_each_epoch; default `build_dataset(cfg, cfg.eval.split)`.
        on_step: called after every training step as on_step(epoch, step, steps_per_epoch) (1-based epoch and
            step); a true return value stops training there by raising `Cancelled` (single process only). Nothing
            of the unfinished epoch is written, so the run resumes from its last complete epoch.
    A model with an `epoch_stats()` method (LAIN: the mean |gamma| of its adapters) has that dict merged into every
    epoch and step record.
    Returns:
        dict(checkpoint=path, epochs, history=[per-epoch records], time_s (training wall time, all sessions),
        images_per_s, loss (last epoch's mean), config=resolved config dict).
    """
    info = init_distributed("cuda" if resolve_device(cfg).type == "cuda" else "cpu")
    device = resolve_device(cfg, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _set_threads(cfg)
    out_dir = Path(out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cache.sweep_stale(out_dir)  # temporaries of an earlier process that was killed while writing
    ckpt_path, log_path = out_dir / CHECKPOINT, out_dir / LOG
    show = progress and info.is_main
    key = cache.run_key_dict(cfg)  # what the weights depend on; a resumed checkpoint must have the same

    if data is None:
        data = build_dataset(cfg, "train")
    dataset = data.dataset
    if cfg.train.max_train_images > 0 and cfg.train.max_train_images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(cfg.train.max_train_images))
    seen = seen_class_mask(data.vocab.num_classes, data.unseen).to(device)

    if model is None:
        _require_clip(cfg)
        model = build_model(cfg, data.vocab, protocol_unseen=data.unseen)  # leaves the global RNG untouched
    resuming = resume and ckpt_path.is_file()
    if hasattr(model, "prepare") and not resuming:  # e.g. HOICLIP's E_v from the training images (a resume loads it)
        model.prepare(dataset, progress=show)
    # Training randomness (dropout, workers) starts from the seed whatever happened before: whether the model was
    # built here, and whatever its preparation drew, so that every arm of a comparison starts from the same state.
    _seed_all(cfg.train.seed + info.rank)  # official: seed 66 + rank
    model.to(device)
    named = _trainable_named(model)
    params = [p for _, p in named]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # One fused kernel for the whole update (and one norm for clipping): the study's models have hundreds of small
    # parameter tensors, for which the per-tensor optimiser loop took 22 ms of a ~200 ms world step (4.7 ms fused).
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.train.lr_step, gamma=cfg.train.lr_gamma)
    amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    start_epoch, history, time_spent = 0, [], 0.0
    if resuming:
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_same_training(key, ck, ckpt_path)
        _load_trainable_state(model, ck["model"], str(ckpt_path))
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if amp and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        rngs = ck["rng"]
        _set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
        start_epoch, history, time_spent = ck["epoch"], ck["history"], ck["time_s"]
        if info.is_main:  # drop log records of the interrupted epoch: they are recomputed
            _truncate_log(log_path, start_epoch)
    elif info.is_main:  # a fresh start: an old checkpoint must not be resumed by a later call
        for f in (ckpt_path, log_path):
            if f.exists():
                f.unlink()

    core = model
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # e.g. HO-token layers get no gradient on a step without pairs

    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.train.seed,
        drop_last=True)
    # model.preprocess puts its output on the model's device: in DataLoader workers only on the CPU
    in_workers = cfg.train.num_workers == 0 or device.type == "cpu"
    augment = Augmentation(flip=cfg.train.augment_flip, color=cfg.train.augment_color,
                           scale=tuple(cfg.train.augment_scale), seed=cfg.train.seed)
    collate = Collator(core.preprocess if in_workers else None, core.image_size, augment=augment)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler,
                                         collate_fn=collate, num_workers=cfg.train.num_workers,
                                         drop_last=cfg.train.drop_last, pin_memory=device.type == "cuda")
    steps = len(loader)
    if steps == 0:
        raise ValueError(f"the training set has {len(dataset)} images: not one batch of {cfg.train.batch_size} per "
                         f"process ({info.world_size} processes); lower train.batch_size")
    epochs = cfg.train.epochs
    bar = tqdm(total=epochs * steps, initial=start_epoch * steps, desc=f"train {cfg.name}", disable=not show,
               unit="step", dynamic_ncols=True)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        collate.epoch = epoch  # read by the workers, which start with each epoch's iterator
        model.train()
        t0 = time.perf_counter()
        sums, n_img, t_last, n_last = {}, 0, t0, 0
        for it, batch in enumerate(loader):
            batch = batch.preprocessed(core.preprocess).to(device)
            loss, stats = training_loss(model, batch, seen, info, amp)
            if not np.isfinite(stats["loss"]):  # stop before the update: the last checkpoint stays usable
                raise FloatingPointError(f"loss is {stats['loss']} at epoch {epoch + 1}, step {it + 1}")
            opt.zero_grad(set_to_none=True)
            if amp:  # official: no clipping under AMP
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if cfg.train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, cfg.train.grad_clip, foreach=True)
                opt.step()
            n_img += len(batch) * info.world_size
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{stats['loss']:.4f}")
            if info.is_main and cfg.train.log_every > 0 and (it + 1) % cfg.train.log_every == 0:
                now = time.perf_counter()
                _append_log(log_path, dict(event="step", epoch=epoch + 1, step=it + 1, lr=opt.param_groups[0]["lr"],
                                           images_per_s=(n_img - n_last) / max(now - t_last, 1e-9), **stats,
                                           **_model_stats(core)))
                t_last, n_last = now, n_img
            if on_step is not None and on_step(epoch + 1, it + 1, steps):
                bar.close()
                raise Cancelled(f"{out_dir}: training stopped at epoch {epoch + 1}, step {it + 1}; it resumes from "
                                f"epoch {epoch + 1}")
        dt = time.perf_counter() - t0
        time_spent += dt
        rec = dict(event="epoch", epoch=epoch + 1, lr=opt.param_groups[0]["lr"],
                   **{k: v / steps for k, v in sums.items()}, images_per_s=n_img / dt, time_s=dt, **_model_stats(core))
        sched.step()
        if eval_each_epoch:
            scores, test_data = _evaluate_epoch(cfg, core, test_data, info)
            rec.update(scores)
        history.append(rec)
        rngs = [_rng_state()]
        if info.enabled:
            rngs = [None] * info.world_size
            dist.all_gather_object(rngs, _rng_state())
        if info.is_main:
            _append_log(log_path, rec)
            with cache.atomic_path(ckpt_path) as tmp:
                torch.save(dict(model=trainable_state(core), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                                scaler=scaler.state_dict() if amp else None, rng=rngs, epoch=epoch + 1,
                                history=history, time_s=time_spent, config=cfg.to_dict(), key=key,
                                complete=epoch + 1 == epochs, world_size=info.world_size), tmp)
        info.barrier()
    bar.close()
    last = history[-1] if history else {}
    return dict(checkpoint=str(ckpt_path), epochs=epochs, history=history, time_s=time_spent,
                images_per_s=float(np.mean([h["images_per_s"] for h in history])) if history else float("nan"),
                loss=last.get("loss", float("nan")), config=cfg.to_dict())


def _model_stats(model: nn.Module) -> dict:
    """The model's own numbers for the training log (`epoch_stats()`, e.g. LAIN's mean |gamma|), floats."""
    stats = getattr(model, "epoch_stats", None)
    return {k: float(v) for k, v in stats().items()} if callable(stats) else {}


def _evaluate_epoch(cfg: ExperimentConfig, model: nn.Module, test_data, info: DistInfo) -> tuple[dict, object]:
    """Test mAP of the model in training (every process infers its share, all get the metrics) and the test split
    (built on first use); leaves the RNG states and the model's mode as they were."""
    state = _rng_state()
    if test_data is None:
        test_data = build_dataset(cfg, cfg.eval.split)
    pred = infer(cfg, model, progress=False, data=test_data)
    m = evaluate_run(cfg, pred, data=test_data) if info.is_main else None
    if info.enabled:
        box = [m]
        dist.broadcast_object_list(box, src=0)
        m = box[0]
    _set_rng_state(state)
    return {f"{cfg.eval.split}_{k}": m.get(k) for k in ("full", "rare", "non_rare", "unseen", "seen")}, test_data


def _check_same_training(key: dict, ck: dict, where: Path) -> None:
    """Refuse to resume a checkpoint made for a different run: its stored key (`cache.run_key_dict`: result fields,
    input contents, training code) must equal this run's. Paths are not compared, so a moved cache resumes."""
    if "key" not in ck:
        raise ValueError(f"{where}: not an engine checkpoint of this hoilib version (no 'key'); use another out_dir "
                         f"or resume=False")
    a, b = _flat(ck["key"]), _flat(key)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        raise ValueError(f"{where}: the checkpoint was trained for a different run ({', '.join(diff[:8])}); use "
                         f"another out_dir or resume=False")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _append_log(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def read_log(path) -> list:
    """The records of a run's log.jsonl. A last line cut short by an interruption is dropped (it is rewritten when
    the run resumes); a malformed line elsewhere is an error naming the file and the line."""
    path = Path(path)
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            out.append(json.loads(ln))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e.msg})") from None
    return out


def _truncate_log(path: Path, epochs_done: int) -> None:
    if not path.exists():
        return
    keep = [r for r in read_log(path) if r.get("epoch", 0) <= epochs_done]
    cache.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


# ---- inference --------------------------------------------------------------------------------------------------
def load_trained_model(cfg: ExperimentConfig, checkpoint: str | Path, data=None) -> nn.Module:
    """Build the model of `cfg` and load the trained state of an engine checkpoint (a file or a run directory).

    The model is built from `cfg` (not from the config stored in the checkpoint), so inference-only fields
    (model.lambda_test, model.zs_topk) can differ from the ones used in training. `cfg.clip.checkpoint` must be set
    (for the world's CLIP: `hoilib.runs.resolve_clip`).
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if "model" not in ck or "config" not in ck:
        raise ValueError(f"{path}: not an engine checkpoint (keys {sorted(ck)[:6]})")
    _require_clip(cfg)
    if data is None:
        data = build_dataset(cfg, cfg.eval.split)
    model = build_model(cfg, data.vocab, protocol_unseen=data.unseen)
    _load_trainable_state(model, ck["model"], str(path))
    return model


@torch.no_grad()
def infer(cfg: ExperimentConfig, checkpoint_or_model, split: str | None = None, progress: bool = True, *,
          data=None) -> dict:
    """Predictions of a trained model on a split, in the evaluator's format.

    Args:
        checkpoint_or_model: an engine checkpoint (file or run directory) or a model (nn.Module).
        split: "train" | "val" | "test"; None = `cfg.eval.split` (where runs are evaluated).
        data: a prebuilt split (`HOISplit`); default `build_dataset(cfg, split)`.
    Returns:
        dict(image_index int64 [R] (position in the split's annotations), boxes_h float32 [R, 4], boxes_o
        float32 [R, 4] (continuous xyxy, original-image pixels), hoi int64 [R], score float32 [R]).
    Under torchrun every process scores every W-th image and all processes return the gathered predictions.
    """
    info = DistInfo() if not dist.is_initialized() else DistInfo(dist.get_rank(), dist.get_world_size(),
                                                                 int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(cfg, info)
    _set_threads(cfg)
    if data is None:
        data = build_dataset(cfg, split or cfg.eval.split)
    if isinstance(checkpoint_or_model, nn.Module):
        model = _unwrap(checkpoint_or_model)
    else:
        model = load_trained_model(cfg, checkpoint_or_model, data=data)
    was_training = model.training
    model.eval().to(device)
    dataset = data.dataset
    index = list(range(info.rank, len(dataset), info.world_size))
    in_workers = cfg.train.num_workers == 0 or device.type == "cpu"
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, index), batch_size=cfg.eval.batch_size,
                                         shuffle=False, num_workers=cfg.train.num_workers,
                                         collate_fn=Collator(model.preprocess if in_workers else None,
                                                             model.image_size))
    amp = cfg.train.amp and device.type == "cuda"
    parts = []
    # model.gamma_scale (inference only): the trained gammas scaled for this pass, exactly restored afterwards
    scaled = model.scaled_gammas(cfg.model.gamma_scale) if hasattr(model, "scaled_gammas") else contextlib.nullcontext()
    with scaled:
        for batch in tqdm(loader, desc=f"infer {split}", disable=not (progress and info.is_main), unit="batch",
                          dynamic_ncols=True):
            batch = batch.preprocessed(model.preprocess).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                outputs = model(batch.images, batch.detections, None)
            results = model.postprocess(outputs, batch.orig_sizes)
            for img, r in zip(batch.image_index, results):
                n = int(len(r["score"]))
                parts.append(dict(image_index=np.full(n, img, np.int64),
                                  boxes_h=_np(r["boxes_h"], np.float32).reshape(n, 4),
                                  boxes_o=_np(r["boxes_o"], np.float32).reshape(n, 4),
                                  hoi=_np(r["hoi"], np.int64).reshape(n),
                                  score=_np(r["score"], np.float32).reshape(n)))
    if was_training:
        model.train()
    if info.enabled:
        gathered = [None] * info.world_size
        dist.all_gather_object(gathered, parts)
        parts = [p for g in gathered for p in g]
        parts.sort(key=lambda p: int(p["image_index"][0]) if len(p["image_index"]) else -1)
    keys = ("image_index", "boxes_h", "boxes_o", "hoi", "score")
    if not parts:
        return dict(image_index=np.zeros(0, np.int64), boxes_h=np.zeros((0, 4), np.float32),
                    boxes_o=np.zeros((0, 4), np.float32), hoi=np.zeros(0, np.int64), score=np.zeros(0, np.float32))
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _np(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def evaluate_run(cfg: ExperimentConfig, predictions: dict, *, data=None) -> dict:
    """mAP of predictions (the `infer` format) on the split `cfg.eval.split` under cfg.eval.*.

    Returns the evaluator's `EvalResult.to_dict()`: full / rare / non_rare / unseen / seen mAP (percent; unseen and
    seen None for the "supervised" protocol) and per-class AP.
    """
    if data is None:
        data = build_dataset(cfg, cfg.eval.split)
    unseen = np.asarray(data.unseen, np.int64)
    res = evaluate(data.annotations, predictions, rare=np.asarray(data.rare, np.int64),
                   unseen=unseen if unseen.size else None, iou_rule=cfg.eval.iou_rule, ap=cfg.eval.ap,
                   known_object=cfg.eval.known_object, include_empty=cfg.eval.include_empty)
    return res.to_dict()
