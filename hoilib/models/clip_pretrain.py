"""Contrastive pretraining of the world's small CLIP on the world's image-caption pairs.

The built-in world has no OpenAI weights, so hoilib trains its own CLIP ("hoi-world-vit", see
`clip_backbone.py`) the way CLIP itself was trained: open_clip's model and `open_clip.ClipLoss` (symmetric
InfoNCE over the batch with a learnable temperature) on image-caption pairs, AdamW with decoupled weight decay
(none on gains, biases, embeddings and the temperature, as in open_clip's `main.py`) and a cosine schedule with
linear warmup. The captions name every interaction in their image, so the text tower learns the world's verbs and
objects, and the image tower learns to see them: the same situation as CLIP before LAIN adapts it.

The result is a cached artefact, `<cache_dir>/clip/<digest of the world and clip sections>/clip.pt`
(`{"model": state_dict, "config": {...}, "metrics": {...}}`), that `build_clip(arch, checkpoint=path)` reads.
A checkpoint is written after every epoch (`partial.pt`); an interrupted pretraining resumes from it and ends with
the same weights as an uninterrupted one (every random draw of an epoch comes from a generator seeded by
(pretrain_seed, epoch)).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm.auto import tqdm

from hoilib import cache
from hoilib.config import ExperimentConfig
from hoilib.data.world import build_world, parse_caption
from hoilib.eval.ap import ranking_ap
from hoilib.models.clip_backbone import build_clip, get_tokenizer, preprocess

__all__ = ["pretrain_clip", "clip_cache_path", "train_clip", "retrieval_accuracy", "hoi_recognition", "split_holdout"]


def clip_cache_path(cfg: ExperimentConfig) -> Path:
    """Where `pretrain_clip(cfg)` writes its checkpoint: `<cache_dir>/clip/<clip key>/clip.pt` (`cache.clip_key`:
    the world, the clip section and the pretraining code)."""
    return Path(cfg.data.cache_dir) / "clip" / cache.clip_key(cfg) / "clip.pt"


def pretrain_clip(cfg: ExperimentConfig, progress: bool = True) -> Path:
    """Pretrain `cfg.clip.arch` on `build_world(cfg)`'s caption pairs (or return the cached result at once).

    Holds out `cfg.clip.pretrain_holdout` of the pairs and records `retrieval_accuracy` and `hoi_recognition`
    (zero-shot, image level, against the world's HOI prompts) on them in the checkpoint's "metrics".
    Returns the path of `clip.pt`.
    """
    final = clip_cache_path(cfg)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    cache.sweep_stale(final.parent)
    world = build_world(cfg, progress=progress)
    images, captions = world.caption_images, list(world.captions)
    if len(images) != len(captions):
        raise ValueError(f"world has {len(images)} caption images but {len(captions)} captions")
    c = cfg.clip
    train_idx, eval_idx = split_holdout(len(captions), c.pretrain_holdout, c.pretrain_seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(cache.threads(c.pretrain_threads))  # part of the CLIP's key: it changes bits
    try:
        model, metrics = train_clip(
            images, captions, train_idx, eval_idx,
            arch=c.arch, epochs=c.pretrain_epochs, batch_size=c.pretrain_batch_size, lr=c.pretrain_lr,
            weight_decay=c.pretrain_weight_decay, warmup=c.pretrain_warmup, augment=c.pretrain_augment,
            seed=c.pretrain_seed, mean=c.image_mean, std=c.image_std, work_dir=final.parent, progress=progress)
    finally:
        torch.set_num_threads(threads)
    if len(eval_idx) and hasattr(world, "vocab"):  # image-level zero-shot HOI recognition on the held-out images
        ev = np.sort(eval_idx)
        labels = [sorted(set(parse_caption(captions[i]))) for i in ev]
        metrics.update(hoi_recognition(model, images[ev], labels, list(world.vocab.hoi_prompts),
                                       tokenizer=get_tokenizer(c.arch), mean=c.image_mean, std=c.image_std))
    state = {"model": model.state_dict(), "config": {"world": cfg.to_dict()["world"], "clip": cfg.to_dict()["clip"]},
             "metrics": metrics}
    with cache.atomic_path(final) as tmp:
        torch.save(state, tmp)
    cache.atomic_write_text(final.parent / "metrics.json", json.dumps(metrics, indent=2))
    partial = final.parent / "partial.pt"
    if partial.exists():
        partial.unlink()
    return final


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of range(n) into (train indices, held-out indices), both sorted."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    n_eval = int(round(n * fraction))
    if fraction > 0 and n_eval == 0 and n > 1:
        n_eval = 1
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def train_clip(images: np.ndarray, captions: list[str], train_idx: np.ndarray, eval_idx: np.ndarray, *,
               arch: str = "hoi-world-vit", epochs: int = 5, batch_size: int = 256, lr: float = 1e-3,
               weight_decay: float = 0.1, warmup: float = 0.1, augment: bool = True, seed: int = 0,
               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), work_dir: Path | None = None,
               progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Contrastive training of a randomly initialised open_clip `arch` on (images[i], captions[i]), i in train_idx.

    Args:
        images: uint8 [N, S, S, 3] (array or memmap). captions: N strings.
        train_idx / eval_idx: indices into images/captions (eval_idx may be empty).
        warmup: linear-warmup length as a fraction of all steps (cosine decay to 0 afterwards).
        augment: random translations by up to S/16 pixels (edge padding).
        work_dir: where `partial.pt` (per-epoch checkpoint) and `log.jsonl` go; None = no checkpoints.
    Returns:
        (model in eval mode, metrics dict: held-out retrieval accuracy, final train loss, time, sizes, and
        history: one record per epoch with loss, lr, images/s and the held-out retrieval accuracy).
    """
    if epochs < 1:
        raise ValueError(f"pretraining needs >= 1 epoch, got {epochs}")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if len(train_idx) < 2:
        raise ValueError(f"contrastive pretraining needs >= 2 training pairs, got {len(train_idx)}")
    torch.manual_seed(seed)  # model initialisation
    model = build_clip(arch).train()
    tokenizer = get_tokenizer(arch)
    tokens = _tokenize_all(tokenizer, captions)  # [N, L]
    size = int(images.shape[1])  # the caption images are made at the CLIP input size: used as they are

    # open_clip main.py: no weight decay on gains, biases, embeddings tables and the temperature
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name \
            or "embedding" in name
        (no_decay if exclude else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)
    steps_per_epoch = max(1, len(train_idx) // batch_size)  # drop_last: ClipLoss wants full batches
    total = steps_per_epoch * epochs
    n_warm = int(round(warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_warmup(s, n_warm, total))
    loss_fn = open_clip.ClipLoss()

    start_epoch, history, t_spent = 0, [], 0.0
    # identifies the run a partial checkpoint belongs to (a stale one is ignored)
    signature = hashlib.sha256(json.dumps([arch, len(captions), train_idx.tolist(), epochs, batch_size, lr,
                                           weight_decay, warmup, augment, seed, list(mean), list(std)]).encode()
                               ).hexdigest()
    partial = Path(work_dir) / "partial.pt" if work_dir is not None else None
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    if partial is not None and partial.is_file():
        ck = torch.load(partial, map_location="cpu", weights_only=False)
        if ck.get("signature") == signature:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["rng"])
            start_epoch, history, t_spent = ck["epoch"], ck["history"], ck["time_s"]
    log_path = Path(work_dir) / "log.jsonl" if work_dir is not None else None
    if log_path is not None:  # keep the records of the epochs the checkpoint holds, drop the rest
        log_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="CLIP pretraining", disable=not progress,
               unit="step", dynamic_ncols=True)
    for epoch in range(start_epoch, epochs):
        model.train()
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)  # epoch's data order and augmentations
        order = train_idx[torch.randperm(len(train_idx), generator=g).numpy()]
        losses = []
        for s in range(steps_per_epoch):
            idx = np.sort(order[s * batch_size:(s + 1) * batch_size])  # sorted: faster memmap reads
            x = preprocess(images[idx], size, mean, std)
            if augment:
                x = _augment(x, g)
            img_f, txt_f, scale = model(x, tokens[idx])
            loss = loss_fn(img_f, txt_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():  # CLIP clamps the temperature at 100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        dt = time.perf_counter() - t0
        t_spent += dt
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0],
               "images_per_s": steps_per_epoch * batch_size / dt, "time_s": dt}
        if len(eval_idx):
            rec.update(retrieval_accuracy(model, images[np.sort(eval_idx)], [captions[i] for i in np.sort(eval_idx)],
                                          tokenizer=tokenizer, mean=mean, std=std))
        history.append(rec)
        if log_path is not None:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if partial is not None:
            _save({"signature": signature,
                          "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history, "time_s": t_spent},
                         partial)
    bar.close()
    model.eval()
    last = history[-1]
    metrics = {k: v for k, v in last.items() if k not in ("epoch", "lr", "images_per_s", "time_s")}
    metrics.update(train_loss=last["loss"], epochs=epochs, n_train=int(len(train_idx)), n_eval=int(len(eval_idx)),
                   time_s=t_spent, images_per_s=float(np.mean([h["images_per_s"] for h in history])),
                   history=history)
    metrics.pop("loss", None)
    return model, metrics


@torch.no_grad()
def retrieval_accuracy(model: torch.nn.Module, images, captions: list[str], *, tokenizer=None,
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch_size: int = 500) -> dict:
    """Zero-shot image<->caption retrieval on held-out pairs (image i belongs with captions[i]).

    Several images can share one caption text (a world image showing one interaction has a short caption), so
    retrieval runs against the set of distinct caption texts:
    - i2t_top1 / i2t_top5: fraction of images whose own caption text is among the 1 / 5 most similar texts;
    - t2i_top1 / t2i_top5: fraction of distinct texts whose most similar image (any of the 5 most similar) has
      exactly that caption;
    - i2t_chance / t2i_chance: the same numbers for random rankings (top-1).

    Args:
        images: uint8 [N, S, S, 3] (normalised here with mean/std) or float [N, 3, S, S] (already normalised).
        tokenizer: open_clip tokenizer; None = open_clip's BPE tokenizer at the model's context length.
    """
    if len(images) != len(captions) or len(captions) == 0:
        raise ValueError(f"need one caption per image and >= 1 pair, got {len(images)} images, "
                         f"{len(captions)} captions")
    was_training = model.training
    model.eval()
    if tokenizer is None:
        tokenizer = open_clip.SimpleTokenizer(context_length=getattr(model, "context_length", 77))
    texts = sorted(set(captions))
    text_id = {t: i for i, t in enumerate(texts)}
    target = torch.tensor([text_id[c] for c in captions])  # [N] index of each image's caption text
    size = int(images.shape[1])  # the caption images are made at the CLIP input size: used as they are
    img_f = []
    for s in range(0, len(captions), batch_size):
        idx = np.arange(s, min(s + batch_size, len(captions)))
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            x = images[idx]
        else:
            x = preprocess(images[idx], size, mean, std)
        img_f.append(model.encode_image(x, normalize=True))
    img_f = torch.cat(img_f)  # [N, E]
    tok = tokenizer(texts)
    txt_f = torch.cat([model.encode_text(tok[s:s + batch_size], normalize=True)
                       for s in range(0, len(texts), batch_size)])  # [T, E]
    sim = img_f @ txt_f.T  # [N, T]
    k = min(5, len(texts))
    i2t = sim.topk(k, dim=1).indices  # [N, k]
    i2t_hit = i2t == target[:, None]
    kk = min(5, len(captions))
    t2i = sim.T.topk(kk, dim=1).indices  # [T, kk] image indices
    t2i_hit = target[t2i] == torch.arange(len(texts))[:, None]
    counts = torch.bincount(target, minlength=len(texts)).float()
    if was_training:
        model.train()
    return {
        "i2t_top1": float(i2t_hit[:, 0].float().mean()),
        "i2t_top5": float(i2t_hit.any(1).float().mean()),
        "t2i_top1": float(t2i_hit[:, 0].float().mean()),
        "t2i_top5": float(t2i_hit.any(1).float().mean()),
        "i2t_chance": 1.0 / len(texts),
        "t2i_chance": float((counts / len(captions)).mean()),
        "n_images": len(captions),
        "n_texts": len(texts),
    }


@torch.no_grad()
def hoi_recognition(model: torch.nn.Module, images, labels: list, prompts: list[str], *, tokenizer=None,
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), batch_size: int = 500) -> dict:
    """Image-level zero-shot HOI recognition: rank the class prompts ("a photo of a person riding a horse") by
    cosine similarity with each image.

    Args:
        images: uint8 [N, S, S, 3]; labels: N lists of the HOI classes present; prompts: C class texts.
    Returns:
        hoi_top1 / hoi_top5: fraction of images with a present class ranked first / among the first 5;
        hoi_map: mean over classes (with >= 1 positive image) of the average precision of ranking images by
        similarity; hoi_top1_chance / hoi_map_chance: the same for random scores (mean label density).
    """
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need one label list per image and >= 1 image, got {len(images)} and {len(labels)}")
    was_training = model.training
    model.eval()
    if tokenizer is None:
        tokenizer = open_clip.SimpleTokenizer(context_length=getattr(model, "context_length", 77))
    size = int(images.shape[1])  # the caption images are made at the CLIP input size: used as they are
    img_f = torch.cat([model.encode_image(preprocess(images[s:s + batch_size], size, mean, std), normalize=True)
                       for s in range(0, len(labels), batch_size)])
    txt_f = model.encode_text(tokenizer(list(prompts)), normalize=True)
    sim = (img_f @ txt_f.T).numpy()  # [N, C]
    y = np.zeros(sim.shape, bool)
    for i, cls in enumerate(labels):
        y[i, list(cls)] = True
    if was_training:
        model.train()
    top = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    aps = [ranking_ap(sim[:, c], y[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    return {"hoi_top1": float(y[np.arange(len(y)), top[:, 0]].mean()),
            "hoi_top5": float(np.take_along_axis(y, top, 1).any(1).mean()),
            "hoi_map": float(np.mean(aps)),
            "hoi_top1_chance": float(y.mean(1).mean()),
            "hoi_map_chance": float(np.mean([y[:, c].mean() for c in range(y.shape[1]) if y[:, c].any()]))}


# ---- helpers ---------------------------------------------------------------------------------------------------
def _cosine_warmup(step: int, n_warm: int, total: int) -> float:
    if step < n_warm:
        return (step + 1) / n_warm
    return 0.5 * (1.0 + math.cos(math.pi * (step - n_warm) / max(1, total - n_warm)))


def _tokenize_all(tokenizer, captions: list[str]) -> torch.Tensor:
    """[N, L] token ids; each distinct text is tokenised once (world captions repeat a lot)."""
    texts = sorted(set(captions))
    tok = tokenizer(texts)
    pos = {t: i for i, t in enumerate(texts)}
    return tok[torch.tensor([pos[c] for c in captions], dtype=torch.long)]


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random translation by up to S/16 pixels per image (edges replicated). No flips: world captions list the
    people left to right, so a mirrored image would contradict its caption."""
    n, _, h, w = x.shape
    pad = max(1, h // 16)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def _save(obj, path: Path) -> None:
    with cache.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def main(argv=None) -> dict:
    """`python -m hoilib.models.clip_pretrain [--profile default] [--cache-dir cache]`: pretrain (or load) the
    profile's small CLIP and print its held-out retrieval accuracy."""
    ap = argparse.ArgumentParser(description="Pretrain the built-in world's CLIP on the world's captions (cached).")
    ap.add_argument("--profile", default="default", help="preset name (default: default)")
    ap.add_argument("--cache-dir", default="", help="override data.cache_dir")
    args = ap.parse_args(argv)
    cfg = ExperimentConfig.from_preset(args.profile)
    if args.cache_dir:
        cfg = cfg.override({"data.cache_dir": args.cache_dir})
    path = pretrain_clip(cfg)
    metrics = torch.load(path, map_location="cpu", weights_only=False)["metrics"]
    print(f"{path}\n" + json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
