"""Splits: HOI class frequencies, the class quotas of a split, and the rendering of a split into images,
annotations (HICO-DET format) and every drawn instance.

HOI class frequencies are long-tailed (Zipf with exponent `cfg.world.long_tail` over a seeded class ranking): per
split a shuffled list of class quotas (>= 1 training and >= 2 test pairs for every class), then i.i.d. draws.
Default world (version 2, 3,000 training images): ~10,800 training pairs, 26 of 95 classes rare (< 10 pairs;
HICO-DET: 138 of 600), counts from 5 to ~3,000; version 1 (VERSION_1): ~6,500 pairs, 23 rare, 5 to ~1,300.
The validation split (`cfg.world.n_val` images) follows the training distribution in a stream of its own.

Captions for CLIP pretraining name every interaction of an image ("a photo of a person riding a horse and sitting
on a horse, a person feeding a horse"); they come from a separate pool of `cfg.world.n_caption` images drawn with a
flatter class distribution (`cfg.world.caption_long_tail`), covering every class, including the ones a zero-shot
protocol hides from HOI training. A fraction `cfg.world.caption_close_up` of them are close-ups, one person and
their object filling the frame, as object-centric photos are on the web; the rest are scenes like the HOI images.
"""
from __future__ import annotations

import contextlib
import gc
import random
import time

import numpy as np
from tqdm.auto import tqdm

from ...config import WorldConfig
from ..annotations import HOIAnnotations
from ..detections import DetectionCache, Detections
from .raster import _Raster
from .scene import _ClassStream, _render_image, recipe
from .vocabulary import OBJECTS, PERSON, world_vocabulary

# Each split is its own random stream of the same world.
_SPLIT_IDS = {"train": 1, "test": 2, "caption": 3, "bench": 4, "val": 5}
# The world fields whose defaults changed with version 2: WorldConfig(**VERSION_1) is the first world's default.
VERSION_1 = {"version": 1, "max_people": 3, "long_tail": 1.2}


def _classes_per_image(wc, split: str) -> float:
    """Mean number of sampled classes per image. Version 1, measured: 1.0 / 1.27 / 1.52 at max_people 1 / 2 / 3
    (every split). Version 2, measured on 400 images: scenes 1.0 / 1.33 / 2.24 / 2.67 / 3.54 at 1 / 1-2 / 2-3 /
    2-4 / 3-5 people (0.9 per person), close-ups 1.24, so the caption pool mixes the two. It only sizes the quota
    list; the rest of a split is drawn i.i.d. from the same distribution."""
    if wc.version == 1:
        return 1.0 + 0.26 * (wc.max_people - 1)
    scene = max(1.0, 0.9 * (wc.min_people + wc.max_people) / 2)
    close = wc.caption_close_up if split == "caption" else 0.0
    return close * 1.24 + (1.0 - close) * scene


def class_distribution(seed: int, exponent: float, num_classes: int) -> np.ndarray:
    """[C] Zipf class probabilities p_c ~ (rank_c + 1)^-exponent over a seeded random ranking of the classes."""
    rank = np.random.RandomState(seed).permutation(num_classes)
    p = (rank + 1.0) ** -float(exponent)
    return p / p.sum()


def _split_quotas(n_images, probs, min_count, rs, per_image):
    n = int(n_images * per_image * 0.9)
    q = np.where(probs > 0, np.maximum(min_count, np.round(n * probs)), 0).astype(np.int64)
    return rs.permutation(np.repeat(np.arange(len(probs)), q)).tolist()


def generate_split(wc, split: str, n: int, progress: bool = False, out: np.ndarray | None = None):
    """Render one split of the world.

    Args:
        wc: WorldConfig. split: "train" | "val" | "test" | "caption" (different random streams; "val" follows the
            training distribution, "caption" the flatter `wc.caption_long_tail` one with a larger minimum count per
            class).
        n: number of images. out: optional preallocated uint8 [n, S, S, 3] array (e.g. a memmap) to fill.
    Returns (images [n, S, S, 3] uint8, list of `_Rendered` without pixels).
    """
    S = int(wc.image_size)
    if S < 16:
        raise ValueError(f"world.image_size must be >= 16 pixels, got {S}")
    if wc.max_people < 1 or wc.max_objects < 1:
        raise ValueError(f"world.max_people and world.max_objects must be >= 1, got {wc.max_people}, {wc.max_objects}")
    if wc.version >= 2 and not 1 <= wc.min_people <= wc.max_people:
        raise ValueError(f"world.min_people must lie in [1, world.max_people = {wc.max_people}], got {wc.min_people}")
    vocab = world_vocabulary()
    hoi = [(int(v), int(o)) for v, o in vocab.hoi_classes]
    lut = vocab.object_verb_to_hoi
    sid = _SPLIT_IDS[split]
    exponent = wc.caption_long_tail if split == "caption" else wc.long_tail
    probs = class_distribution(wc.seed, exponent, len(hoi))
    if wc.max_people < 2:  # a person can only be a target when two people fit in an image
        probs = probs * np.array([o != PERSON for v, o in hoi])
    rs = np.random.RandomState([wc.seed, sid, 1])
    per_image = _classes_per_image(wc, split)
    # every class appears in every split: >= 1 training pair, >= 2 test pairs (HICO-DET's test minimum), and a
    # quarter of the mean in the caption pool
    min_count = {"caption": max(1, int(0.25 * n * per_image / len(hoi))), "test": 2}.get(split, 1)
    stream = _ClassStream(_split_quotas(n, probs, min_count, rs, per_image), probs,
                          random.Random(wc.seed * 7919 + sid))
    # which caption images are close-ups (their own random stream: the scene images keep theirs)
    close = np.random.RandomState([wc.seed, sid, 2]).random_sample(n) < (wc.caption_close_up if split == "caption"
                                                                         else 0.0)
    ras = _Raster(S)
    rec = recipe(wc, split)
    images = np.empty((n, S, S, 3), np.uint8) if out is None else out
    meta = []
    with _no_cyclic_gc():
        for i in tqdm(range(n), desc=f"world {split}", unit="img", leave=False, disable=not progress):
            R = random.Random((wc.seed * 1_000_003 + sid) * 10_000_019 + i)
            r = _render_image(R, ras, stream, hoi, lut, S, rec, bool(close[i]))
            images[i] = r.image
            r.image = None
            meta.append(r)
    return images, meta


@contextlib.contextmanager
def _no_cyclic_gc():
    """Pause the cyclic garbage collector: rendering allocates many small containers and keeps every image's
    meta, so collections would traverse an ever larger heap (measured: 4% of the time at 2,000 images) while
    the renderer leaves no cycles to collect (reference counting frees everything)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _annotations(meta, split, S, vocab) -> HOIAnnotations:
    """The annotated pairs of a rendered split (`generate_split`'s meta) in the HICO-DET file convention
    (1-based inclusive boxes; image i is "WORLD_<split>_<i:08d>.png")."""
    rows = [(i, r.boxes[h], r.boxes[t], v, r.labels[t]) for i, r in enumerate(meta) for h, t, v in r.pairs]
    lut = vocab.object_verb_to_hoi
    n = len(meta)
    return HOIAnnotations(
        filenames=[f"WORLD_{split}_{i:08d}.png" for i in range(n)], sizes=np.full((n, 2), S, np.int64),
        image_index=np.array([r[0] for r in rows], np.int64).reshape(-1),
        boxes_h=np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
        boxes_o=np.array([r[2] for r in rows], np.float64).reshape(-1, 4),
        hoi=np.array([lut[r[4], r[3]] for r in rows], np.int64).reshape(-1),
        object=np.array([r[4] for r in rows], np.int64).reshape(-1),
        verb=np.array([r[3] for r in rows], np.int64).reshape(-1),
        verbs=list(vocab.verbs), objects=list(vocab.objects), correspondence=vocab.correspondence,
        empty=[i for i, r in enumerate(meta) if not r.pairs], source=f"world:{split}")


def _entities(meta, filenames) -> DetectionCache:
    """Every drawn instance (annotated or not) as a DetectionCache with score 1 (continuous pixel boxes)."""
    dets = []
    for r in meta:
        b = np.array(r.boxes, np.float32).reshape(-1, 4) - np.array([1, 1, 0, 0], np.float32)
        dets.append(Detections(b, np.ones(len(b), np.float32), np.array(r.labels, np.int64)))
    return DetectionCache.from_list(filenames, dets, num_classes=len(OBJECTS))


def bench(n: int = 2000, image_size: int = 64, seed: int = 0, version: int = WorldConfig.version) -> dict:
    """Generation speed on one core: renders n training-like images of the default world of `version` (version 1
    with its own defaults, VERSION_1; no caching, no torch)."""
    wc = WorldConfig(**{"seed": seed, "image_size": image_size, "version": version,
                        **(VERSION_1 if version == 1 else {})})
    generate_split(wc, "bench", 20)  # warm caches (texture patterns, noise bank)
    t0, c0 = time.perf_counter(), time.process_time()
    generate_split(wc, "bench", n)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"version": version, "images": n, "image_size": image_size, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "images_per_s_wall": round(n / wall, 1), "images_per_s_cpu": round(n / cpu, 1)}
