"""Benchmark of `evaluate` on the real HICO-DET test annotations: `python -m hoilib.eval.bench [--gt PATH]`.

Prints the machine's core count and, for each size (default 0.4 M and 5 M detections), the best and median wall time
of `evaluate` over a few repeats, plus how much matching work the predictions create (detections with candidate GT
pairs, GT x detection rows). Targets (issue 3): 5 M detections < 5 s and 0.4 M < 0.5 s on 2 cores.

The predictions are synthetic but shaped like LAIN's output (every kept pair x every valid verb): most detections sit
near annotated pairs with one of the HOI classes of the annotated object (so many share a (class, image) cell with
GT pairs and must be matched), the rest are random boxes and classes.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from hoilib.data.annotations import HOIAnnotations
from hoilib.eval.hoi_map import evaluate

DEFAULT_GT = Path(__file__).resolve().parents[2].parent / "shared" / "hicodet" / "instances_test2015.json"


def synthetic_predictions(gt: HOIAnnotations, n: int, seed: int = 0, near: float = 0.7,
                          same_class: float = 0.3) -> dict:
    """n detections over gt's annotated images in the prediction-file format.

    A fraction `near` copies a random GT pair with jittered boxes (sd 8% of the box size) and a class drawn among the
    HOI classes of that pair's object (the GT class itself with probability `same_class`); the rest are random boxes
    and classes on random annotated images. Scores are uniform float32.
    """
    rng = np.random.default_rng(seed)
    n_near = int(round(n * near))
    gh, go = gt.continuous_boxes()
    sizes = gt.sizes.astype(np.float64)

    r = rng.integers(0, gt.num_pairs, n_near)
    img_near = gt.image_index[r]

    def jitter(b):
        wh = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1)
        return b + rng.normal(0.0, 0.08, b.shape) * wh

    # A class sharing the annotated object: HOI classes grouped by object, one drawn uniformly.
    h2o = gt.hoi_to_object
    by_obj = np.argsort(h2o, kind="stable")
    n_per_obj = np.bincount(h2o, minlength=len(gt.objects))
    first = np.cumsum(n_per_obj) - n_per_obj
    o = gt.object[r]
    cls_near = by_obj[first[o] + (rng.random(n_near) * n_per_obj[o]).astype(np.int64)]
    cls_near = np.where(rng.random(n_near) < same_class, gt.hoi[r], cls_near)

    n_far = n - n_near
    imgs = np.unique(gt.image_index)
    img_far = imgs[rng.integers(0, len(imgs), n_far)]

    def random_boxes(img):
        wh = sizes[img]
        xy = rng.random((len(img), 2, 2)) * wh[:, None, :]
        lo, hi = xy.min(1), xy.max(1)
        return np.concatenate([lo, hi], axis=1)

    boxes_h = np.concatenate([jitter(gh[r]), random_boxes(img_far)])
    boxes_o = np.concatenate([jitter(go[r]), random_boxes(img_far)])
    # Keep boxes valid xyxy inside the image (as a detector's clipped output).
    img = np.concatenate([img_near, img_far])
    wh = np.concatenate([sizes[img]] * 2, axis=1)
    for b in (boxes_h, boxes_o):
        np.clip(b, 0.0, wh, out=b)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
    perm = rng.permutation(n)
    return dict(
        image_index=img[perm].astype(np.int64), boxes_h=boxes_h[perm].astype(np.float32),
        boxes_o=boxes_o[perm].astype(np.float32),
        hoi=np.concatenate([cls_near, rng.integers(0, gt.num_classes, n_far)])[perm].astype(np.int64),
        score=rng.random(n, dtype=np.float32),
    )


def matching_load(gt: HOIAnnotations, pred: dict) -> tuple[int, int]:
    """(detections with >= 1 GT pair of their class in their image, total GT x detection rows to compare)."""
    cell = np.bincount(gt.hoi * gt.num_images + gt.image_index, minlength=gt.num_classes * gt.num_images)
    cnt = cell[pred["hoi"] * gt.num_images + pred["image_index"]]
    return int((cnt > 0).sum()), int(cnt.sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hoilib.eval.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--gt", default=str(DEFAULT_GT), help="instances_test2015.json (default: %(default)s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[400_000, 5_000_000], help="detection counts")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per size (best and median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, os.cpu_count() = {os.cpu_count()}, "
          f"usable cores = {affinity}, load average = {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"numpy {np.__version__}; evaluate() is single-threaded numpy")
    t0 = time.perf_counter()
    gt = HOIAnnotations.from_json(args.gt)
    print(f"annotations: {args.gt}: {gt.num_images} images, {gt.num_pairs} pairs, {gt.num_classes} classes "
          f"(read in {time.perf_counter() - t0:.2f} s, not included below)")
    for n in args.sizes:
        pred = synthetic_predictions(gt, n, seed=args.seed)
        n_cand, rows = matching_load(gt, pred)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = evaluate(gt, pred)
            times.append(time.perf_counter() - t0)
        print(f"{n:>10,d} detections: best {min(times):.3f} s, median {float(np.median(times)):.3f} s "
              f"over {args.repeats} runs | {n_cand:,d} with candidates, {rows:,d} GT x det rows | {res.summary()}")


if __name__ == "__main__":
    main()
