"""HICO-DET on disk: the layout of the two-stage HOI community (fredzzhang/hicodet, UPT, LAIN).

    <root>/instances_train2015.json                  annotations (format: `hoilib.data.annotations`)
    <root>/instances_test2015.json
    <root>/hico_20160224_det/images/train2015/*.jpg  images (37,633 train / 9,658 test files are annotated)
    <root>/hico_20160224_det/images/test2015/*.jpg
    <root>/detections_{train,test}2015.npz           cached detections (`hoilib.data.detections`, `detr_import`)

Two versions of the annotation files circulate; they differ only in the object order. hoilib uses the one LAIN
ships (COCO-80 order, person = 0; fredzzhang/hicodet branch `class`, UPT's submodule). The file on
fredzzhang/hicodet's main branch lists the objects alphabetically (airplane = 0, person = 49).
`check_against_vocabulary` catches the mix-up and `to_coco_object_order` converts such a file.

`preflight` checks a root and a CLIP weights file before a run of the hicodet profiles starts (run_all.sh calls it
through `preflight_main`) and lists every problem at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import ExperimentConfig
from .annotations import AnnotationError, HOIAnnotations
from .detections import DetectionCacheError
from .images import FileImages
from .vocab import ASSETS, Vocabulary, hicodet_vocabulary

SPLITS = ("train", "test")

# Said by every "file not found" error of the real path, so a user knows what to fetch.
WHERE_FROM = (
    "HICO-DET images come from the dataset authors (http://www-personal.umich.edu/~ywchao/hico/, "
    "hico_20160224_det.tar.gz, unpacked into <root>); the instances_{train,test}2015.json files in the COCO-80 "
    "object order come with OreoChocolate/LAIN (hicodet/) or fredzzhang/hicodet (branch 'class'). "
    "Set data.hicodet_root to the folder that holds them."
)


def annotation_path(root: str | Path, split: str) -> Path:
    """`<root>/instances_{split}2015.json`."""
    _check_split(split)
    return Path(root) / f"instances_{split}2015.json"


# Where the study's own checkout keeps the real test annotations (a `shared/hicodet` folder beside the repository).
SHARED_HICODET = Path(__file__).resolve().parents[3] / "shared" / "hicodet"


def find_annotation_file(split: str, root: str | Path = "") -> tuple[Path | None, list]:
    """`instances_{split}2015.json` under `root` (when given), else in the shared folder beside the repository.

    Returns (the first existing path or None, every place looked at), so that a caller can say where it looked.
    """
    candidates = ([annotation_path(root, split)] if root else []) + [SHARED_HICODET / f"instances_{split}2015.json"]
    return next((p for p in candidates if p.is_file()), None), candidates


def image_dir(root: str | Path, split: str) -> Path:
    """`<root>/hico_20160224_det/images/{split}2015`."""
    _check_split(split)
    return Path(root) / "hico_20160224_det" / "images" / f"{split}2015"


def detection_path(root: str | Path, split: str) -> Path:
    """Default detection cache of a split: `<root>/detections_{split}2015.npz`."""
    _check_split(split)
    return Path(root) / f"detections_{split}2015.npz"


def load_hicodet(root: str | Path, split: str, *, check_vocabulary: bool = True):
    """Read one HICO-DET split.

    Args:
        root: folder holding `instances_{split}2015.json` and `hico_20160224_det/images/{split}2015/`.
        split: "train" or "test".
        check_vocabulary: also require the file's objects, verbs and HOI classes to be exactly
            `hicodet_vocabulary()` (COCO-80 object order); see `check_against_vocabulary`.

    Returns:
        (annotations, images): `HOIAnnotations` (boxes 1-based inclusive, as in the file; validated) and a
        `FileImages` over the split's image folder in the file's filename order. Images are read lazily, so the
        annotations alone work without the images (a missing image is reported when it is loaded).

    Raises:
        FileNotFoundError: the annotation file is missing (the message names the path and where HICO-DET comes from).
        AnnotationError: malformed content, naming the file and the first bad entry.
    """

    path = annotation_path(root, split)
    if not path.is_file():
        raise FileNotFoundError(f"HICO-DET annotation file not found: {path}. {WHERE_FROM}")
    ann = HOIAnnotations.from_json(path)
    if check_vocabulary:
        check_against_vocabulary(ann)
    return ann, FileImages(image_dir(root, split), ann.filenames)


def check_against_vocabulary(annotations: HOIAnnotations, vocab: Vocabulary | None = None) -> None:
    """Require the annotation file's `objects`, `verbs` and `correspondence` to equal the vocabulary's.

    The class indices of a file mean nothing without its tables, and the model, the prompts and the zero-shot lists
    index `vocab` (default: `hicodet_vocabulary()`). Raises AnnotationError naming the file and the first difference;
    for the alphabetical-object-order file the message says so and names the conversion.
    """
    vocab = vocab or hicodet_vocabulary()
    src = annotations.source
    objects, verbs = [str(o) for o in annotations.objects], [str(v) for v in annotations.verbs]
    if objects != list(vocab.objects):
        hint = ""
        if vocab.name == "hicodet" and objects == _alphabetical_objects():
            hint = (" The file lists the objects in alphabetical HICO order (airplane = 0, person = 49), as on "
                    "fredzzhang/hicodet's main branch; hoilib uses the COCO-80 order of LAIN's file (person = 0). "
                    "Use the LAIN / branch 'class' file, or convert with hoilib.data.hicodet.to_coco_object_order.")
        raise AnnotationError(f"{src}: {_first_difference('objects', objects, list(vocab.objects))}.{hint}")
    if verbs != list(vocab.verbs):
        raise AnnotationError(f"{src}: {_first_difference('verbs', verbs, list(vocab.verbs))}")
    corr, ref = annotations.correspondence, vocab.correspondence
    if corr.shape != ref.shape:
        raise AnnotationError(f"{src}: correspondence has {corr.shape[0]} HOI classes, the {vocab.name} vocabulary "
                              f"has {ref.shape[0]}")
    bad = np.flatnonzero((corr != ref).any(1))
    if bad.size:
        h = int(bad[0])
        raise AnnotationError(
            f"{src}: correspondence[{h}] is {corr[h].tolist()} (hoi, object, verb) but the {vocab.name} vocabulary "
            f"has {ref[h].tolist()} ({vocab.hoi_name(h)})")


def to_coco_object_order(annotations: HOIAnnotations) -> HOIAnnotations:
    """Convert an annotation set whose objects are in alphabetical HICO order to the COCO-80 order hoilib uses.

    Object indices of the pairs and of `correspondence` are remapped; HOI and verb indices, boxes and images are
    unchanged (both file versions share the official HOI order). Raises AnnotationError if the objects are not
    the alphabetical list.
    """
    if [str(o) for o in annotations.objects] != _alphabetical_objects():
        raise AnnotationError(f"{annotations.source}: objects are not in alphabetical HICO order; nothing to convert")
    # hico_alphabetical_index[c] = alphabetical index of COCO-80 object c; invert it to map alphabetical -> COCO.
    coco_of_alpha = np.empty(80, np.int64)
    coco_of_alpha[np.asarray(_categories()["object_index_conventions"]["hico_alphabetical_index"])] = np.arange(80)
    corr = annotations.correspondence.copy()
    corr[:, 1] = coco_of_alpha[corr[:, 1]]
    out = HOIAnnotations(
        filenames=list(annotations.filenames), sizes=annotations.sizes.copy(),
        image_index=annotations.image_index.copy(), boxes_h=annotations.boxes_h.copy(),
        boxes_o=annotations.boxes_o.copy(), hoi=annotations.hoi.copy(), object=coco_of_alpha[annotations.object],
        verb=annotations.verb.copy(), verbs=list(annotations.verbs), objects=list(hicodet_vocabulary().objects),
        correspondence=corr, empty=list(annotations.empty), source=annotations.source,
    )
    out.validate()
    return out


# ---- preflight ------------------------------------------------------------------------------------------------
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
    # Imported here: hoilib.models imports hoilib.data, which imports this module.
    from ..models.clip_backbone import checkpoint_mismatch, read_checkpoint

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
    p = argparse.ArgumentParser(prog="hoilib.data.hicodet.preflight_main",
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


# ---- helpers --------------------------------------------------------------------------------------------------
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _categories() -> dict:
    return json.loads((ASSETS / "hico_categories.json").read_text())


def _alphabetical_objects() -> list:
    return list(_categories()["object_index_conventions"]["hico_alphabetical_objects"])


def _first_difference(what: str, got: list, want: list) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"{what}[{i}] is {a!r} but the vocabulary has {b!r}"
    return f"{what} has {len(got)} entries, the vocabulary has {len(want)}"
