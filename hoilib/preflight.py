"""Everything a HICO-DET run reads, checked before it starts (`./run_all.sh hicodet` / `hicodet-smoke` runs this
first; notebooks call `check_ready`): the annotation files, the image folders, the detection caches and the CLIP
weights, with one clear message per problem and all problems listed at once.

    python -m hoilib.preflight --profile hicodet --root $HICODET_ROOT --clip-weights $CLIP_WEIGHTS

exits 2 with the list of problems, 0 when the data and weights are ready.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .config import ExperimentConfig
from .data.annotations import AnnotationError, HOIAnnotations
from .data.detections import DetectionCacheError
from .data.hicodet import (SPLITS, WHERE_FROM, annotation_path, check_against_vocabulary, detection_path,
                           image_dir)
from .models.clip_backbone import checkpoint_mismatch, read_checkpoint

# Images listed by the real annotation files (empty images included): LAIN's / fredzzhang's instances_*2015.json.
HICODET_IMAGES = {"train": 38118, "test": 9658}
PREFLIGHT_PROFILES = ("hicodet", "hicodet-smoke")
_SIZE_SAMPLE = 20  # images per split whose size on disk is compared with the annotations


def preflight(root: str | Path, clip_weights: str | Path, arch: str, profile: str, det_feat_dim: int = 256,
              detection_files: dict | None = None) -> list:
    """Everything a hicodet-profile run reads, checked before it starts: [] when ready, else one message per problem.

    Args:
        root: the HICO-DET root (layout in the module doc).
        clip_weights: the CLIP weights file (OpenAI's ViT-B-16.pt for `hicodet`).
        arch: the open_clip architecture the weights must fit (`clip.arch` of the profile).
        profile: "hicodet" (the annotation files must have the real image counts, `HICODET_IMAGES`) or
            "hicodet-smoke" (any non-empty, consistent pair of files, e.g. `hoilib.fixture`'s).
        det_feat_dim: the width the detection caches' feature vectors must have (`model.det_feat_dim`).
        detection_files: {split: cache path} where the profile does not read `<root>/detections_{split}2015.npz`.

    Checks, per split: the annotation file (readable, HICO-DET's 600-class tables in the COCO-80 object order,
    the image count), the image folder (every annotated file present; the size of a sample of images equal to the
    annotated size), the detection cache (present, naming every annotated file, with feature vectors of
    `det_feat_dim`); then the weights (readable and of `arch`'s shapes). Detection caches are read lazily (file
    names and the header of the feature array only): the real training cache holds about 4 GB of features.
    """
    if profile not in PREFLIGHT_PROFILES:
        raise ValueError(f"preflight checks the profiles {PREFLIGHT_PROFILES}, got {profile!r}")
    detection_files = detection_files or {}
    problems = []
    if not str(root):
        problems.append(f"HICODET_ROOT is not set: give the folder that holds instances_{{train,test}}2015.json and "
                        f"hico_20160224_det/. {WHERE_FROM}")
    elif not Path(root).is_dir():
        problems.append(f"HICODET_ROOT {root} is not a folder. {WHERE_FROM}")
    else:
        for split in SPLITS:
            problems += _preflight_split(Path(root), split, profile, det_feat_dim, detection_files.get(split))
    if not str(clip_weights):
        problems.append("CLIP_WEIGHTS is not set: give the local OpenAI weights file (e.g. ViT-B-16.pt); nothing "
                        "is downloaded")
    else:
        try:
            problem = checkpoint_mismatch(arch, read_checkpoint(clip_weights))
            if problem:
                problems.append(f"{clip_weights}: {problem}")
        except (FileNotFoundError, ValueError) as e:
            problems.append(f"CLIP_WEIGHTS: {e}")
    return problems


def check_ready(cfg) -> None:
    """`preflight` for an `ExperimentConfig` of a hicodet profile; raises RuntimeError listing every problem.

    Notebooks call it before they read the data, so that a wrong root fails at once and says everything wrong."""
    d = cfg.data
    files = {s: getattr(d, f"detections_{s}") for s in SPLITS if getattr(d, f"detections_{s}")}
    problems = preflight(d.hicodet_root, cfg.clip.checkpoint, cfg.clip.arch, cfg.profile, cfg.model.det_feat_dim,
                         files)
    if problems:
        raise RuntimeError(f"the {cfg.profile} profile cannot run ({len(problems)} problems):\n  "
                           + "\n  ".join(problems))


def _preflight_split(root: Path, split: str, profile: str, det_feat_dim: int, det_file) -> list:
    """preflight's checks of one split: annotation file, images, detection cache."""
    problems, ann = [], None
    path = annotation_path(root, split)
    if not path.is_file():
        problems.append(f"{path} is missing. {WHERE_FROM}")
    else:
        try:
            ann = HOIAnnotations.from_json(path)
            check_against_vocabulary(ann)
        except AnnotationError as e:
            problems.append(str(e))
            ann = None
    if ann is not None:
        if profile == "hicodet" and ann.num_images != HICODET_IMAGES[split]:
            problems.append(f"{path}: {ann.num_images} images, but HICO-DET's {split}2015 file lists "
                            f"{HICODET_IMAGES[split]} (a truncated or different file?)")
        if ann.num_pairs == 0:
            problems.append(f"{path}: no annotated human-object pairs")
    return problems + _check_images(root, split, ann) + _check_detections(root, split, ann, det_feat_dim, det_file)


def _check_images(root: Path, split: str, ann: HOIAnnotations | None) -> list:
    folder = image_dir(root, split)
    if not folder.is_dir():
        return [f"image folder {folder} is missing. {WHERE_FROM}"]
    if ann is None:
        return []
    present = set(os.listdir(folder))
    missing = [f for f in ann.filenames if f not in present]
    if missing:
        return [f"{folder}: {len(missing)} of the {ann.num_images} annotated images are missing (first: "
                f"{', '.join(missing[:3])})"]
    # A resized copy of the data set would shift every box; the sizes of a spread-out sample reveal it.
    wrong = []
    for i in np.unique(np.linspace(0, ann.num_images - 1, min(_SIZE_SAMPLE, ann.num_images)).astype(int)):
        name = ann.filenames[i]
        try:
            with Image.open(folder / name) as im:
                size = im.size
        except OSError as e:
            return [f"{folder / name}: not a readable image ({e})"]
        if size != tuple(int(v) for v in ann.sizes[i]):
            wrong.append(f"{name} is {size[0]}x{size[1]}, annotated {int(ann.sizes[i][0])}x{int(ann.sizes[i][1])}")
    if wrong:
        return [f"{folder}: {len(wrong)} of the sampled images differ in size from {annotation_path(root, split).name}"
                f" (first: {wrong[0]}); resized copies?"]
    return []


def _check_detections(root: Path, split: str, ann: HOIAnnotations | None, feat_dim: int, path=None) -> list:
    path = Path(path) if path else detection_path(root, split)
    make = (f"python -m hoilib.detect --checkpoint detr-r50-hicodet.pth --root {root} --split {split}"
            + (f" --out {path}" if path != detection_path(root, split) else ""))
    if not path.is_file():
        return [f"detection cache {path} is missing: cache the DETR detections with `{make}` (or import per-image "
                f"JSON files with hoilib.data.import_detection_dir)"]
    try:
        names, dim = _cache_summary(path)
    except DetectionCacheError as e:
        return [f"{e}; rebuild it with `{make}`"]
    problems = []
    if ann is not None:
        missing = sorted(set(ann.filenames) - set(names))
        if missing:
            problems.append(f"{path}: no detections for {len(missing)} of the {ann.num_images} annotated images "
                            f"(first: {', '.join(missing[:3])}); rebuild it with `{make}`")
    if dim is None:
        problems.append(f"{path}: no feature vectors ('feats'); LAIN's HO tokens are built from DETR's 256-d decoder "
                        f"states: rebuild it with `{make}`")
    elif dim != feat_dim:
        problems.append(f"{path}: {dim}-d feature vectors, but model.det_feat_dim is {feat_dim}")
    return problems


def _cache_summary(path: Path) -> tuple[list, int | None]:
    """(file names, feature width or None) of a detection cache, reading only those (DetectionCacheError if the file
    is not a cache)."""
    try:
        with zipfile.ZipFile(path) as z:
            members = set(z.namelist())
            if "filenames.npy" not in members:
                raise DetectionCacheError(f"{path}: not a detection cache (no 'filenames' array)")
            with z.open("filenames.npy") as f:
                names = np.lib.format.read_array(f, allow_pickle=False)
            dim = None
            if "feats.npy" in members:
                with z.open("feats.npy") as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape = read(f)[0]
                dim = int(shape[1]) if len(shape) == 2 else -1
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DetectionCacheError(f"{path}: not a readable .npz detection cache ({type(e).__name__}: {e})") from None
    return [str(n) for n in names.reshape(-1)], dim


def preflight_main(argv: list | None = None) -> int:
    """Command line of `preflight` (run_all.sh): prints every problem; exit status 2 when there are any."""
    p = argparse.ArgumentParser(prog="python -m hoilib.preflight",
                                description="Check a HICO-DET root and CLIP weights before a hicodet-profile run.")
    p.add_argument("--profile", required=True, choices=PREFLIGHT_PROFILES)
    p.add_argument("--root", required=True, help="HICODET_ROOT")
    p.add_argument("--clip-weights", required=True, help="CLIP_WEIGHTS")
    a = p.parse_args(argv)
    cfg = ExperimentConfig.from_preset(a.profile)
    problems = preflight(a.root, a.clip_weights, cfg.clip.arch, a.profile, cfg.model.det_feat_dim)
    if problems:
        print(f"preflight ({a.profile}): {len(problems)} problem(s) with HICODET_ROOT={a.root} "
              f"CLIP_WEIGHTS={a.clip_weights}:", file=sys.stderr)
        for msg in problems:
            print(f"  - {msg}", file=sys.stderr)
        return 2
    print(f"preflight ({a.profile}): HICODET_ROOT={a.root} and CLIP_WEIGHTS={a.clip_weights} ({cfg.clip.arch}) "
          f"are ready")
    return 0


if __name__ == "__main__":
    sys.exit(preflight_main())
