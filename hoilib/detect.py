"""Cache the detections of a HICO-DET-fine-tuned DETR for one HICO-DET split (command line and function).

    python -m hoilib.detect --checkpoint checkpoints/detr-r50-hicodet.pth --root HICODET_ROOT --split test

reads `<root>/instances_{split}2015.json` and the images in `<root>/hico_20160224_det/images/{split}2015/`, runs
`hoilib.models.detr.detect` (DETR's test resize 800 / 1333, all 100 queries with their `hs[-1]` features unless
`--score-floor` shrinks the cache) and writes `<root>/detections_{split}2015.npz` (`hoilib.data.detections`), the file
`build_dataset` reads. With `--max-images N` the default output is `detections_{split}2015_first{N}.npz`, so a trial
run never stands in for the full cache.

Work is saved in shards of `--shard-size` images under `<out>.parts/`; an interrupted run continues from the finished
shards when started again with the same options (a run with other options stops with an error naming the option).
The shards are merged and the cache written atomically at the end; then the parts folder is removed.

Images are processed in order of their resized shape so that a batch holds images of one shape: no padding, and the
result of every image equals running it alone (`--pad-batches` restores DETR's padded batching instead).

How this cache relates to LAIN: LAIN runs the frozen DETR inside its forward pass, on the augmented training image
(flip, colour jitter, random resize / crop) and with the DETR in train mode, so dropout is active (lain-reference.md
§2, §3). A cache holds one deterministic eval-mode pass over the un-augmented image, the same as LAIN's test time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.detections import DetectionCache, DetectionCacheError
from .data.detr_import import cache_detections
from .data.hicodet import WHERE_FROM, detection_path, image_dir, load_hicodet
from .models import detr

NUM_CLASSES = 80  # HICO-DET objects in the COCO-80 order (person = 0)


class _OrderedView:
    """An `ImageSource` over `images[indices[j]]`, decoding the next `ahead` images in background threads (PIL
    releases the GIL while decoding JPEGs, so loading overlaps with the detector)."""

    def __init__(self, images, indices: list, pool: ThreadPoolExecutor, ahead: int = 16):
        self.images, self.indices, self.pool, self.ahead = images, list(indices), pool, ahead
        self._futures: dict = {}

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, j: int) -> np.ndarray:
        for k in range(j, min(j + 1 + self.ahead, len(self.indices))):
            if k not in self._futures:
                self._futures[k] = self.pool.submit(self.images.load, self.indices[k])
        return self._futures.pop(j).result()


def _settings_digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def cache_split(checkpoint: str | Path, root: str | Path, split: str, out: str | Path | None = None, *,
                device: str | None = None, batch_size: int = 8, max_images: int | None = None, min_size: int = 800,
                max_size: int = 1333, score_floor: float = 0.0, keep_top: int = 3, pad_batches: bool = False,
                coco91: bool = False, shard_size: int = 1000, workers: int = 4, progress: bool = True) -> Path:
    """Run DETR over a HICO-DET split and write its detection cache; returns the path written.

    Args:
        checkpoint: DETR weights (`hoilib.models.detr.load_detr`), normally detr-r50-hicodet.pth.
        root: the HICO-DET root (`hoilib.data.hicodet`). split: "train" or "test".
        out: output .npz (default `<root>/detections_{split}2015.npz`; `..._first{N}.npz` with max_images).
        device: "cuda", "cpu", ... (default: cuda when available).
        batch_size: images per forward pass.
        max_images: only the first N images of the annotation file.
        min_size, max_size: DETR's test resize.
        score_floor, keep_top: shrink the cache (`hoilib.models.detr.lain_safe_subset`); 0 keeps all queries.
        pad_batches: DETR's padded batching instead of same-shape batches (see `detect`).
        coco91: the checkpoint is a COCO model with a 92-row head; cut it to the COCO-80 classes.
        shard_size: images per resumable shard. workers: image-decoding threads.
    Raises:
        FileNotFoundError for a missing annotation file, image or checkpoint; ValueError when existing shards were
        written with other settings.
    """
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"DETR checkpoint not found: {checkpoint}. {detr.WHERE_FROM}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available here; use --device cpu")

    ann, images = load_hicodet(root, split)
    if not image_dir(root, split).is_dir():  # fail before the model is loaded
        raise FileNotFoundError(f"HICO-DET image folder not found: {image_dir(root, split)}. {WHERE_FROM}")
    n = ann.num_images if max_images is None else min(max_images, ann.num_images)
    if out is None:
        out = detection_path(root, split)
        if max_images is not None:
            out = out.with_name(f"{out.stem}_first{n}.npz")
    out = Path(out)
    filenames = list(ann.filenames[:n])
    sizes = np.asarray(ann.sizes[:n])

    # Same-shape images next to each other: batches are (almost always) unpadded.
    shapes = [detr.resize_shape(int(w), int(h), min_size, max_size) for w, h in sizes]
    order = sorted(range(n), key=lambda i: (shapes[i], i))
    shards = [order[s:s + shard_size] for s in range(0, n, shard_size)]

    settings = dict(split=split, images=n, filenames_sha1=hashlib.sha1("\n".join(filenames).encode()).hexdigest(),
                    checkpoint_name=checkpoint.name, checkpoint_bytes=checkpoint.stat().st_size, min_size=min_size,
                    max_size=max_size, score_floor=score_floor, keep_top=keep_top, pad_batches=pad_batches,
                    coco91=coco91, shard_size=shard_size)
    parts = out.with_name(out.name + ".parts")
    meta = parts / "settings.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            changes = ", ".join(f"{k}: {old.get(k)!r} now {settings[k]!r}" for k in diff)
            raise ValueError(f"{parts} holds shards written with other settings ({changes}); rerun with the same "
                             f"options or delete it")
    else:
        parts.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(settings, indent=1))

    def shard_path(k: int) -> Path:
        return parts / f"shard_{k:05d}.npz"

    todo = [k for k in range(len(shards)) if not shard_path(k).is_file()]
    done = sum(len(shards[k]) for k in range(len(shards)) if k not in todo)
    bar = tqdm(total=n, initial=done, desc=f"DETR {split}2015", unit="img", disable=not progress)
    t0 = time.time()
    if todo:
        model = detr.load_detr(checkpoint, NUM_CLASSES, from_coco91=coco91).to(device)

        def model_fn(batch: list) -> list:
            dets = detr.detect(model, batch, min_size=min_size, max_size=max_size, score_floor=score_floor,
                          keep_top=keep_top, pad_batches=pad_batches, device=device)
            bar.update(len(batch))
            return [dict(boxes=d.boxes, scores=d.scores, labels=d.labels, feats=d.feats) for d in dets]

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for k in todo:
                idx = shards[k]
                # Writes the shard atomically (temp name, then rename), so a killed run leaves only whole shards.
                cache_detections(model_fn, _OrderedView(images, idx, pool), [filenames[i] for i in idx],
                                 batch_size=batch_size, path=shard_path(k), num_classes=NUM_CLASSES, progress=False)
    bar.close()
    cache = _merge(parts, shards, filenames, sizes, shard_path)
    cache.save(out)
    shutil.rmtree(parts)
    if progress:
        d = int(cache.offsets[-1])
        print(f"wrote {out}: {n} images, {d} detections ({d / max(n, 1):.1f} per image), feats "
              f"{cache.feats.shape[1] if cache.feats is not None else 0}-d, {time.time() - t0:.0f} s", file=sys.stderr)
    return out


def _merge(parts: Path, shards: list, filenames: list, sizes: np.ndarray, shard_path) -> DetectionCache:
    """The shards, back in annotation order, as one validated cache."""
    dets: list = [None] * len(filenames)
    for k, idx in enumerate(shards):
        shard = DetectionCache.load(shard_path(k))
        want = [filenames[i] for i in idx]
        if shard.filenames != want:
            raise DetectionCacheError(f"{shard_path(k)}: holds other images than expected (first {shard.filenames[:1]}"
                                      f" vs {want[:1]}); delete {parts} and rerun")
        for j, i in enumerate(idx):
            dets[i] = shard[j]
    cache = DetectionCache.from_list(filenames, dets, NUM_CLASSES)
    cache.validate(sizes)
    return cache


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hoilib.detect",
                                description="Cache DETR detections (boxes, scores, labels, 256-d hs[-1] features) "
                                            "for one HICO-DET split.")
    p.add_argument("--checkpoint", required=True, help="DETR weights, e.g. detr-r50-hicodet.pth")
    p.add_argument("--root", required=True, help="HICO-DET root (instances_*.json, hico_20160224_det/images/)")
    p.add_argument("--split", required=True, choices=("train", "test"))
    p.add_argument("--out", default=None, help="output .npz (default <root>/detections_{split}2015.npz)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-images", type=int, default=None, help="only the first N images (trial runs)")
    p.add_argument("--min-size", type=int, default=800, help="shorter image side after resizing (DETR: 800)")
    p.add_argument("--max-size", type=int, default=1333, help="longest side after resizing (DETR: 1333)")
    p.add_argument("--score-floor", type=float, default=0.0,
                   help="store detections scoring at least this (0 = all queries); <= 0.2 keeps LAIN's filtering "
                        "unchanged")
    p.add_argument("--keep-top", type=int, default=3,
                   help="also store the top N post-NMS detections per group (humans / others) below the floor")
    p.add_argument("--pad-batches", action="store_true", help="DETR's padded batching instead of same-shape batches")
    p.add_argument("--coco91", action="store_true", help="the checkpoint is the 91-class COCO model")
    p.add_argument("--shard-size", type=int, default=1000, help="images per resumable shard")
    p.add_argument("--workers", type=int, default=4, help="image-decoding threads")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cache_split(a.checkpoint, a.root, a.split, a.out, device=a.device, batch_size=a.batch_size,
                max_images=a.max_images, min_size=a.min_size, max_size=a.max_size, score_floor=a.score_floor,
                keep_top=a.keep_top, pad_batches=a.pad_batches, coco91=a.coco91, shard_size=a.shard_size,
                workers=a.workers, progress=not a.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
