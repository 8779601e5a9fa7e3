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

`hoilib.preflight` checks a root and a CLIP weights file before a run of the hicodet profiles starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .annotations import AnnotationError, HOIAnnotations
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
