"""Throughput benchmark: training and inference images/s of the engine's LAIN step.

    python -m hoilib.bench                # the built-in world's default profile + ViT-B/16 at 224 px, on the CPU
    python -m hoilib.bench --gpu          # the same on CUDA as well (mixed precision, as the engine uses it)
    python -m hoilib.bench --only vit --pairs 30 152 435 --gpu --batch-size 8

(a) "world": the default profile's model on real batches of the built-in world (the pretrained small CLIP when it
    is cached, random CLIP weights otherwise: the speed is the same).
(b) "vit-b16": CLIP ViT-B/16 at 224 px with random weights, HICO-DET's vocabulary (117 verb prompts, 600
    classes, RF-UC seen mask) and synthetic images and detections with 256-d detector features, at a given number
    of human-object pairs per image: 30 (3 people, 8 objects: a typical HICO-DET image) and 152 (8 people, 12
    objects: a crowded one; LAIN keeps at most 15 + 15 boxes, i.e. up to 435 pairs).
A training step is the engine's: forward, focal loss, backward, gradient clipping (off under AMP), AdamW.
Inference is forward + postprocess. Timings exclude `warmup` steps; the CPU is shared, so compare ratios within
one run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hoilib.config import ExperimentConfig

# (people, objects) per synthetic image -> number of LAIN pairs = people * (people + objects - 1)
PAIR_LAYOUTS = {30: (3, 8), 152: (8, 12), 435: (15, 15)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, batches: list, device: torch.device, steps: int, warmup: int = 1, amp: bool = False,
               grad_clip: float = 0.1, seen_mask=None) -> dict:
    """Training and inference throughput of `model` over `batches` (engine `Batch`es, cycled).

    Returns dict(train_images_per_s, infer_images_per_s, pairs_per_image (as kept by the model), batch_size).
    """
    from hoilib import engine

    model.to(device).train()
    params = list(model.trainable_parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    seen = None if seen_mask is None else seen_mask.to(device)
    dev_batches = [b.to(device) for b in batches]
    n_img = 0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0, n_img = time.perf_counter(), 0
        b = dev_batches[i % len(dev_batches)]
        loss, _ = engine.training_loss(model, b, seen, None, amp)
        opt.zero_grad(set_to_none=True)
        if amp:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
        n_img += len(b)
    _sync(device)
    train_ips = n_img / (time.perf_counter() - t0)

    model.eval()
    pairs = []
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0, n_img = time.perf_counter(), 0
            b = dev_batches[i % len(dev_batches)]
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                out = model(b.images, b.detections, None)
            model.postprocess(out, b.orig_sizes)
            n_img += len(b)
            pairs += [int(o["pairs"].shape[0]) for o in out]
        _sync(device)
        infer_ips = n_img / (time.perf_counter() - t0)
    return dict(train_images_per_s=train_ips, infer_images_per_s=infer_ips, pairs_per_image=float(np.mean(pairs)),
                batch_size=len(batches[0]))


# ---- (a) the built-in world ---------------------------------------------------------------------------------
def bench_world(cfg: ExperimentConfig, device: torch.device, steps: int = 10, amp: bool = False) -> dict:
    from hoilib import engine
    from hoilib.data.dataset import build_dataset
    from hoilib.models import build_model
    from hoilib.models.clip_backbone import build_clip
    from hoilib.models.clip_pretrain import clip_cache_path

    train = build_dataset(cfg, "train")
    ck = cfg.clip.checkpoint or (str(clip_cache_path(cfg)) if clip_cache_path(cfg).is_file() else "")
    clip = build_clip(cfg.clip.arch, ck)
    torch.manual_seed(0)
    model = build_model(cfg, train.vocab, clip=clip, protocol_unseen=train.unseen)
    col = engine.Collator(model.preprocess, model.image_size)
    bs = cfg.train.batch_size
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(train.dataset))[:bs * min(steps + 1, 20)]
    batches = [col([train.dataset[int(i)] for i in idx[s:s + bs]]) for s in range(0, len(idx) - bs + 1, bs)]
    seen = engine.seen_class_mask(train.vocab.num_classes, train.unseen)
    r = time_steps(model, batches, device, steps, amp=amp, grad_clip=cfg.train.grad_clip, seen_mask=seen)
    r.update(setting="world", clip_weights="pretrained" if ck else "random", device=str(device), amp=amp)
    return r


# ---- (b) ViT-B/16 at 224 px ---------------------------------------------------------------------------------
def synthetic_items(n: int, n_people: int, n_objects: int, size: int = 224, seed: int = 0,
                    num_objects: int = 80, feat_dim: int = 256, vocab=None) -> list:
    """Dataset-like items (image, size, gt, dets) with boxes on a grid of cells (so NMS keeps them all)."""
    from hoilib.data.detections import Detections

    rng = np.random.default_rng(seed)
    k = n_people + n_objects
    cols = int(np.ceil(np.sqrt(k)))
    cell = size / cols
    items = []
    for i in range(n):
        cells = rng.permutation(cols * cols)[:k]
        x0, y0 = (cells % cols) * cell, (cells // cols) * cell
        w, h = rng.uniform(0.5, 0.95, k) * cell, rng.uniform(0.5, 0.95, k) * cell
        boxes = np.stack([x0, y0, x0 + w, y0 + h], 1).astype(np.float32)
        labels = np.concatenate([np.zeros(n_people, np.int64), rng.integers(1, num_objects, n_objects)])
        scores = rng.uniform(0.5, 0.99, k).astype(np.float32)
        dets = Detections(boxes, scores, labels, rng.normal(size=(k, feat_dim)).astype(np.float32))
        # ground truth: each person interacts with one object, with a verb valid for that object
        gt_h, gt_o, verb, obj, hoi = [], [], [], [], []
        for p in range(n_people):
            o = n_people + int(rng.integers(n_objects))
            if vocab is not None:
                classes = np.flatnonzero(vocab.hoi_classes[:, 1] == labels[o])
                c = int(rng.choice(classes))
                verb.append(int(vocab.hoi_classes[c, 0])), hoi.append(c)
            else:
                verb.append(0), hoi.append(0)
            gt_h.append(boxes[p]), gt_o.append(boxes[o]), obj.append(int(labels[o]))
        gt = dict(boxes_h=np.array(gt_h, np.float32), boxes_o=np.array(gt_o, np.float32),
                  verb=np.array(verb, np.int64), object=np.array(obj, np.int64), hoi=np.array(hoi, np.int64))
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        items.append(dict(index=i, image_index=i, filename=f"synthetic_{i}", image=image, size=(size, size), gt=gt,
                          dets=dets))
    return items


def bench_vit(device: torch.device, n_pairs: int = 30, steps: int = 3, batch_size: int = 2, amp: bool = False,
              arch: str = "ViT-B-16") -> dict:
    from hoilib import engine
    from hoilib.data.splits import hicodet_protocol
    from hoilib.data.vocab import hicodet_vocabulary
    from hoilib.models import build_model
    from hoilib.models.clip_backbone import build_clip

    if n_pairs not in PAIR_LAYOUTS:
        raise ValueError(f"n_pairs must be one of {sorted(PAIR_LAYOUTS)}, got {n_pairs}")
    cfg = ExperimentConfig.from_preset("hicodet").override({"clip.arch": arch, "clip.checkpoint": ""})
    vocab = hicodet_vocabulary()
    unseen = hicodet_protocol(cfg.data.protocol)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, clip=build_clip(arch), protocol_unseen=unseen)
    n_people, n_objects = PAIR_LAYOUTS[n_pairs]
    items = synthetic_items(batch_size * 2, n_people, n_objects, size=model.image_size, vocab=vocab)
    col = engine.Collator(model.preprocess, model.image_size)
    batches = [col(items[s:s + batch_size]) for s in range(0, len(items), batch_size)]
    seen = engine.seen_class_mask(vocab.num_classes, unseen)
    r = time_steps(model, batches, device, steps, amp=amp, grad_clip=cfg.train.grad_clip, seen_mask=seen)
    r.update(setting=f"{arch}@{model.image_size}", device=str(device), amp=amp)
    return r


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="also benchmark on CUDA (with mixed precision)")
    ap.add_argument("--only", choices=("world", "vit"), help="run only one of the two settings")
    ap.add_argument("--profile", default="default", help="preset of the world setting (default: default)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: 10 world, 3 ViT on CPU, 20 on GPU)")
    ap.add_argument("--pairs", type=int, nargs="+", default=[30, 152],
                    help=f"pairs per image, of {sorted(PAIR_LAYOUTS)}")
    ap.add_argument("--batch-size", type=int, default=0, help="ViT batch size (default: 2 on CPU, 8 on GPU)")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    devices = [torch.device("cpu")]
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA device is available")
        devices.append(torch.device("cuda"))
    results = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name(0)}" if args.gpu else ""))
    for dev in devices:
        gpu = dev.type == "cuda"
        if args.only in (None, "world"):
            cfg = ExperimentConfig.from_preset(args.profile)
            results.append(bench_world(cfg, dev, steps=args.steps or (20 if gpu else 10), amp=gpu))
            _print(results[-1])
        if args.only in (None, "vit"):
            for n in args.pairs:
                results.append(bench_vit(dev, n, steps=args.steps or (20 if gpu else 3),
                                         batch_size=args.batch_size or (8 if gpu else 2), amp=gpu))
                _print(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def _print(r: dict) -> None:
    print(f"{r['setting']:<16} {r['device']:<7} amp={str(r['amp']):<5} batch {r['batch_size']:>2}  "
          f"pairs/img {r['pairs_per_image']:6.1f}  train {r['train_images_per_s']:8.2f} img/s  "
          f"infer {r['infer_images_per_s']:8.2f} img/s", flush=True)


if __name__ == "__main__":
    main()
