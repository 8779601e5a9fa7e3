"""Probes of what a CLIP model knows, used by notebook 02.

`clip_probe` tests LAIN's motivating claim (paper §1: CLIP's image-level pretraining makes it encode global
semantics and miss local interaction cues) with a frozen CLIP and its HOI prompts:

- image level: does the image contain HOI class c? Score = cos(image, prompt_c); multi-label mAP over classes.
- pair level: which class does *this* human-object pair have? Among the classes valid for the pair's object, rank
  by the score of one of three views of the pair, each encoded by the same frozen CLIP:
    whole   the whole image (identical for every pair of the image: what a global model can say);
    masked  the whole image at the same scale, everything outside the pair's region (its union box grown by
            `CROP_PAD`) filled with the image's mean colour: the pair's local evidence without enlarging it;
    crop    the same region cut out and resized to the CLIP's input (local evidence, enlarged).
  "crop beats whole" alone mixes two causes, locality and scale (the crop shows the pair bigger); masked vs whole
  is locality at full-image scale, crop vs masked is the scale. Top-1 accuracy of each view, beside chance.
  Pairs whose image holds another pair with the same object class but a different interaction are *ambiguous*:
  image-level cues cannot tell who does what there; they are reported separately.

`probe_summary` and `probe_differences` turn a probe into the rows of notebook 02's tables (Wilson intervals of
the accuracies; paired bootstrap over images of the differences, `hoilib.stats`). `probe_sweep` runs the probe on
test splits rendered for other world settings (`render_split`): how the gaps move with the scene shortcut and the
crowding.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.annotations import HOIAnnotations
from ..data.detections import DetectionCache
from ..data.images import crop, union_box
from ..data.vocab import Vocabulary
from ..data.world import crowding, generate_split, scene_verb_association, world_vocabulary
# The world's split writers are private to its package; they are used here, outside it, so that the world's cache
# keys (which cover the bytes of hoilib/data) do not change for an in-memory helper of the analyses.
from ..data.world.generate import _annotations, _entities
from ..data.world.stats import image_verbs
from ..eval.ap import ranking_ap
from ..models.clip_backbone import preprocess
from ..stats import binomial_interval, paired_accuracy_difference, verdict

CROP_PAD = 0.1  # the pair's region: its union box grown by 10% of its width / height on each side
VIEWS = ("whole", "masked", "crop")
VIEW_NAMES = {"whole": "whole image", "masked": "in-place masked", "crop": "union-box crop"}
# Paired comparisons of two views on the same pairs (b - a) and the direction LAIN §1 predicts: local evidence
# beats the whole image (+1); the scale comparison has no claimed direction (0: no verdict).
COMPARISONS = {"crop - whole image": ("whole", "crop", 1), "in-place masked - whole image": ("whole", "masked", 1),
               "crop - in-place masked": ("masked", "crop", 0)}
SUBSETS = ("all pairs", "ambiguous pairs")
GREY = (128, 128, 128)


@torch.no_grad()
def encode_images(clip, images, size: int, mean, std, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP image embeddings [N, E] of uint8 images (an array [N, H, W, 3] or a list of [H, W, 3]
    arrays of any sizes: `clip_backbone.preprocess` resizes them)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size], size, mean, std)
        out.append(F.normalize(clip.encode_image(x), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, clip.text_projection.shape[1])


@torch.no_grad()
def encode_texts(clip, tokenizer, texts: list, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised CLIP text embeddings [T, E]."""
    out = [F.normalize(clip.encode_text(tokenizer(list(texts[i:i + batch_size]))), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


def input_size(clip) -> int:
    """The square input size of an open_clip model's image tower, in pixels."""
    s = clip.visual.image_size
    return int(s[0] if isinstance(s, (tuple, list)) else s)


def mask_outside(image: np.ndarray, box, pad: float = CROP_PAD, fill: str = "mean") -> np.ndarray:
    """The whole image with every pixel outside `data.images.crop(image, box, pad)`'s region replaced.

    Args:
        image: uint8 [H, W, 3]; box: continuous xyxy; fill: "mean" (the image's mean colour, so that the filled
            area adds no colour of its own) or "grey" (128, 128, 128).
    Returns uint8 [H, W, 3], the region's pixels unchanged and at their place.
    """
    if fill not in ("mean", "grey"):
        raise ValueError(f"fill must be 'mean' or 'grey', got {fill!r}")
    h, w = image.shape[:2]
    # the crop of a grid of pixel coordinates is the crop's window, by crop's own rounding rule
    window = crop(np.stack(np.indices((h, w)), -1), box, pad)  # [h', w', 2] (y, x)
    (y1, x1), (y2, x2) = window[0, 0], window[-1, -1] + 1
    colour = np.round(image.reshape(-1, 3).mean(0)) if fill == "mean" else np.array(GREY)
    out = np.empty_like(image)
    out[:] = colour.astype(np.uint8)
    out[y1:y2, x1:x2] = image[y1:y2, x1:x2]
    return out


def distinct_pairs(annotations: HOIAnnotations) -> dict:
    """The distinct human-object pairs of an annotation set, with their labels and whether they are ambiguous.

    A pair is one (image, human box, object box); its labels are every HOI class annotated on it. A pair is
    ambiguous when its image holds another pair with the same object class and a different set of labels: the image
    shows both interactions, and only where they happen tells which pair does which.
    Returns {"image": [P], "box_h": [P, 4], "box_o": [P, 4] (continuous xyxy), "object": [P] object class,
    "labels": P frozensets of HOI classes, "ambiguous": [P] bool}, pairs sorted by image, then boxes.
    """
    bh, bo = annotations.continuous_boxes()
    rows = np.concatenate([annotations.image_index[:, None].astype(np.float64), bh, bo], 1)
    keys, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)  # [P, 9]
    inverse = inverse.reshape(-1)
    labels = [set() for _ in range(len(keys))]
    for p, c in zip(inverse.tolist(), annotations.hoi.tolist()):
        labels[p].add(c)
    labels = [frozenset(s) for s in labels]
    image, obj = keys[:, 0].astype(np.int64), annotations.object[first].astype(np.int64)
    # ambiguous = its (image, object) group holds at least two different label sets
    groups: dict = {}
    for p, key in enumerate(zip(image.tolist(), obj.tolist())):
        groups.setdefault(key, set()).add(labels[p])
    ambiguous = np.array([len(groups[k]) > 1 for k in zip(image.tolist(), obj.tolist())], bool)
    return {"image": image, "box_h": keys[:, 1:5], "box_o": keys[:, 5:9], "object": obj, "labels": labels,
            "ambiguous": ambiguous}


def _load(images, i: int) -> np.ndarray:
    """Image i of an array [N, H, W, 3] or of an image source with `.load(i)` (HICO-DET's files)."""
    return np.asarray(images.load(i) if hasattr(images, "load") else images[i])


@torch.no_grad()
def clip_probe(clip, tokenizer, vocab: Vocabulary, annotations: HOIAnnotations, images, size: int | None = None,
               mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), max_images: int = 500, fill: str = "mean",
               chunk: int = 64, progress: bool = False) -> dict:
    """Image-level and pair-level HOI recognition by a frozen CLIP (see the module docstring).

    Args:
        annotations: ground truth (HICO-DET file convention); images: uint8 [N, H, W, 3] in the same order, or an
            image source with `.load(i)` (images of any sizes).
        size: the CLIP's input size (None = `input_size(clip)`); every view is resized to it by
            `clip_backbone.preprocess` (PIL bicubic; an image already of that size is used as it is).
        max_images: the first `max_images` images with at least one pair are probed.
        fill: what replaces the outside of the pair's region in the masked view (`mask_outside`).
        chunk: images loaded and encoded at a time (bounds memory on large images).
    Returns {"images": images probed, "image_map": image-level mAP (percent), "pairs": DataFrame with one row per
    distinct pair: image, object, ambiguous, chance (the expected top-1 accuracy of a uniform guess among the
    classes of the pair's object) and whole / masked / crop (bool: the view's top class is one of the pair's
    labels)}.
    """
    size = int(size or input_size(clip))
    idx = annotations.nonempty_images()[:max_images]
    text = encode_texts(clip, tokenizer, list(vocab.hoi_prompts))  # [C, E]
    pairs = distinct_pairs(annotations)
    keep = np.flatnonzero(np.isin(pairs["image"], idx))
    obj_of = vocab.hoi_classes[:, 1]
    img_scores, masked_scores, crop_scores = [], [], []
    bar = tqdm(range(0, len(idx), chunk), desc="CLIP probe", unit="chunk", disable=not progress, leave=False)
    for s in bar:
        chunk_images = {int(i): _load(images, int(i)) for i in idx[s:s + chunk]}
        here = keep[np.isin(pairs["image"][keep], list(chunk_images))]
        regions = [union_box(pairs["box_h"][p], pairs["box_o"][p]) for p in here]
        img_scores.append(encode_images(clip, list(chunk_images.values()), size, mean, std) @ text.T)
        masked_scores.append(encode_images(clip, [mask_outside(chunk_images[int(pairs["image"][p])], r, fill=fill)
                                                  for p, r in zip(here, regions)], size, mean, std) @ text.T)
        crop_scores.append(encode_images(clip, [crop(chunk_images[int(pairs["image"][p])], r, pad=CROP_PAD)
                                                for p, r in zip(here, regions)], size, mean, std) @ text.T)
    C = len(obj_of)
    img_scores = torch.cat(img_scores).numpy() if img_scores else np.zeros((0, C))  # [n, C]
    view_scores = {"masked": torch.cat(masked_scores).numpy() if masked_scores else np.zeros((0, C)),  # [P', C]
                   "crop": torch.cat(crop_scores).numpy() if crop_scores else np.zeros((0, C))}

    # Image level: multi-label presence of each class.
    pos = {int(i): k for k, i in enumerate(idx)}
    present = np.zeros(img_scores.shape, bool)
    rows = np.flatnonzero(np.isin(annotations.image_index, idx))
    present[[pos[int(i)] for i in annotations.image_index[rows]], annotations.hoi[rows]] = True
    aps = [ranking_ap(img_scores[:, c], present[:, c]) for c in range(C)]
    image_map = 100.0 * float(np.nanmean(aps)) if len(idx) else float("nan")

    # Pair level: the top class among those of the pair's object, per view. `keep` is sorted by image and the
    # chunks follow `idx`'s order, which is sorted too, so row k of the view scores is pair keep[k].
    out = {"image": pairs["image"][keep], "object": pairs["object"][keep],
           "ambiguous": pairs["ambiguous"][keep], "chance": [], "whole": [], "masked": [], "crop": []}
    for k, p in enumerate(keep):
        gt = pairs["labels"][p]
        cand = np.flatnonzero(obj_of == obj_of[next(iter(gt))])
        scores = {"whole": img_scores[pos[int(pairs["image"][p])]], "masked": view_scores["masked"][k],
                  "crop": view_scores["crop"][k]}
        for v in VIEWS:
            out[v].append(int(cand[np.argmax(scores[v][cand])]) in gt)
        out["chance"].append(len(gt) / len(cand))
    table = pd.DataFrame(out).astype({"whole": bool, "masked": bool, "crop": bool, "chance": float})
    return {"images": int(len(idx)), "image_map": image_map, "pairs": table}


def _subset(pairs: pd.DataFrame, subset: str) -> pd.DataFrame:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    return pairs[pairs["ambiguous"]] if subset == "ambiguous pairs" else pairs


SUMMARY_COLUMNS = ("metric", "subset", "n", "correct", "value_pct", "ci95_low_pct", "ci95_high_pct")


def probe_summary(probe: dict) -> pd.DataFrame:
    """The probe's accuracies, long: one row per (metric, subset).

    Rows: image-level mAP over the probed images, then for all pairs and for the ambiguous ones the top-1 accuracy
    of each view with its 95% Wilson interval (`stats.binomial_interval`; pairs taken as independent) and chance
    (the mean of the pairs' chance accuracies: an expectation, no interval); a subset without pairs is left out.
    Columns: `SUMMARY_COLUMNS` (values in percent; n = images or pairs; correct = pairs right).
    """
    rows = [dict(metric="image-level mAP", subset="test images", n=probe["images"], correct=pd.NA,
                 value_pct=probe["image_map"], ci95_low_pct=np.nan, ci95_high_pct=np.nan)]
    for subset in SUBSETS:
        p = _subset(probe["pairs"], subset)
        n = len(p)
        if not n:
            continue
        for v in VIEWS:
            k = int(p[v].sum())
            lo, hi = binomial_interval(k, n)
            rows.append(dict(metric=f"top-1: {VIEW_NAMES[v]}", subset=subset, n=n, correct=k, value_pct=100.0 * k / n,
                             ci95_low_pct=100.0 * lo, ci95_high_pct=100.0 * hi))
        rows.append(dict(metric="top-1: chance", subset=subset, n=n, correct=pd.NA,
                         value_pct=100.0 * p["chance"].mean(), ci95_low_pct=np.nan, ci95_high_pct=np.nan))
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return out.astype({"n": "Int64", "correct": "Int64"})


DIFFERENCE_COLUMNS = ("comparison", "subset", "n_pairs", "n_images", "diff_pp", "ci95_low_pp", "ci95_high_pp",
                      "verdict")


def probe_differences(probe: dict, replicates: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Paired differences of the views' accuracies on the same pairs (`COMPARISONS`), per subset.

    Each difference b - a has a 95% percentile interval from a bootstrap over images (`stats.
    paired_accuracy_difference`: the pairs of an image share its whole-image score, so images are resampled
    whole). Comparisons with a claimed direction get `stats.verdict`'s word; the scale comparison gets "".
    Returns (DataFrame with `DIFFERENCE_COLUMNS`; {(comparison, subset): (stats.AccuracyDifference, direction)}
    for `stats.verdict_line(interval, direction, unit="pp")`), differences in percentage points. Subsets without
    pairs are left out.
    """
    rows, intervals = [], {}
    for subset in SUBSETS:
        p = _subset(probe["pairs"], subset)
        if not len(p):
            continue
        for name, (a, b, direction) in COMPARISONS.items():
            iv = paired_accuracy_difference(p[a].to_numpy(), p[b].to_numpy(), clusters=p["image"].to_numpy(),
                                            replicates=replicates, seed=seed, names=("pairs", "images"))
            iv = dataclasses.replace(iv, mean=100.0 * iv.mean, low=100.0 * iv.low, high=100.0 * iv.high)  # pp
            intervals[(name, subset)] = (iv, direction)
            rows.append(dict(comparison=name, subset=subset, n_pairs=iv.n, n_images=iv.clusters, diff_pp=iv.mean,
                             ci95_low_pp=iv.low, ci95_high_pp=iv.high,
                             verdict=verdict(iv, direction) if direction else ""))
    return pd.DataFrame(rows, columns=list(DIFFERENCE_COLUMNS)), intervals


# ---- other world settings ------------------------------------------------------------------------------------------
class RenderedSplit(NamedTuple):
    """One split of a world rendered in memory (`render_split`)."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    annotations: HOIAnnotations  # the annotated pairs (HICO-DET file convention)
    entities: DetectionCache  # every drawn instance, annotated or not (score 1, continuous pixel boxes)
    scenes: np.ndarray  # int64 [N] background scene per image (-1 in version 1)


def render_split(wc, split: str, n: int, progress: bool = False) -> RenderedSplit:
    """Render n images of one split of world `wc` (a WorldConfig) with their labels, in memory.

    The images and labels are those `build_world` would cache for the same `wc` (the same generator), here without
    the rest of the world (no 20,000 caption images for a statistic of the test split) and without writing."""
    images, meta = generate_split(wc, split, n, progress=progress)
    ann = _annotations(meta, split, int(wc.image_size), world_vocabulary())
    return RenderedSplit(images, ann, _entities(meta, ann.filenames), np.array([r.scene for r in meta], np.int64))


SWEEP_COLUMNS = ("setting", "version", "scene_bias", "people_per_image", "crowded_pct", "scene_home_pct",
                 "comparison", "subset", "n_pairs", "n_images", "diff_pp", "ci95_low_pp", "ci95_high_pp",
                 "a_top1_pct", "b_top1_pct", "chance_pct")


def probe_sweep(clip, tokenizer, base_world, settings: dict, n_images: int, size: int | None = None,
                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), replicates: int = 4000,
                progress: bool = True) -> pd.DataFrame:
    """The probe's gaps on test splits rendered for several world settings, with one frozen CLIP.

    Args:
        clip, tokenizer: the CLIP (inference only) and its tokenizer.
        base_world: the WorldConfig the settings modify (e.g. the world the CLIP was pretrained in).
        settings: {name: {WorldConfig field: value}}, e.g. {"v2, scene bias 1": {"scene_bias": 1.0}}.
        n_images: test images rendered per setting (`render_split`, nothing cached).
    Returns a long DataFrame with `SWEEP_COLUMNS`, one row per (setting, comparison, subset) of
    `probe_differences`, the setting described by its version, scene bias, people per image, percentage of
    crowded pairs (`data.world.crowding`) and of test images whose scene is the home scene of one of their verbs
    (`data.world.scene_verb_association`; NaN in version 1), and the two views' accuracies (percent).
    """
    if not settings:
        raise ValueError("probe_sweep: no settings")
    frames = []
    for name, changes in tqdm(settings.items(), desc="probe sweep", unit="setting", disable=not progress):
        unknown = set(changes) - {f.name for f in dataclasses.fields(base_world)}
        if unknown:
            raise ValueError(f"probe_sweep: setting {name!r} changes unknown world fields {sorted(unknown)}")
        wc = dataclasses.replace(base_world, **changes)
        split = render_split(wc, "test", n_images)
        probe = clip_probe(clip, tokenizer, world_vocabulary(), split.annotations, split.images, size, mean, std,
                           max_images=n_images)
        crowd = crowding(split.annotations, split.entities)
        scene = scene_verb_association(split.scenes, image_verbs(split.annotations))
        diffs, _ = probe_differences(probe, replicates=replicates)
        acc = probe["pairs"]
        for col, view in (("a_top1_pct", 0), ("b_top1_pct", 1)):
            diffs[col] = [100.0 * _subset(acc, s)[COMPARISONS[c][view]].mean()
                          for c, s in zip(diffs["comparison"], diffs["subset"])]
        diffs["chance_pct"] = [100.0 * _subset(acc, s)["chance"].mean() for s in diffs["subset"]]
        diffs.insert(0, "setting", name)
        diffs.insert(1, "version", int(wc.version))
        diffs.insert(2, "scene_bias", float(wc.scene_bias) if wc.version >= 2 else np.nan)
        diffs.insert(3, "people_per_image", crowd["people_per_image"])
        diffs.insert(4, "crowded_pct", 100.0 * crowd["crowded"])
        diffs.insert(5, "scene_home_pct", 100.0 * scene["home"])
        frames.append(diffs.drop(columns="verdict"))
    return pd.concat(frames, ignore_index=True)[list(SWEEP_COLUMNS)]
