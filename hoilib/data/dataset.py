"""Images + annotations + cached detections as one indexable dataset, and `build_dataset`, the data factory.

The same `HOIDataset` serves the built-in world (images in one uint8 array) and HICO-DET (JPEG files), so the
model and the engine never ask which one they hold. Boxes leave the dataset as continuous 0-based xyxy pixels of
the original image (annotation files store HICO-DET's 1-based inclusive pixel indices).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotations import HOIAnnotations
from .detections import DetectionCache, DetectionCacheError
from .images import ArrayImages, FileImages, ImageSource
from .vocab import Vocabulary


class HOIDataset:
    """One split: annotations, the matching images and (optionally) cached detections (a map-style dataset:
    `torch.utils.data.DataLoader` takes it as it is).

    Args:
        annotations: the split's `HOIAnnotations` (file conventions: 1-based inclusive boxes).
        images: an `ImageSource` with one image per annotated file name, in the same order.
        detections: a `DetectionCache` holding (at least) every file name of `annotations`; rows are matched by
            file name, so a cache of the unfiltered split serves a filtered one.
        skip_empty: leave images without pairs out of the index (LAIN / UPT skip the 112 empty HICO-DET test images).

    `ds[i]` is a dict:
        index      i (position in this dataset)
        image_index  position of the image in `annotations` (differs from i when empty images are skipped;
                   predictions for the evaluator use this one)
        filename   str
        image      uint8 [H, W, 3] RGB
        size       (W, H)
        gt         dict(boxes_h, boxes_o: float32 [M, 4] continuous 0-based xyxy pixels; hoi, verb, object: int64 [M])
        dets       `Detections` (boxes float32 [K, 4] continuous xyxy pixels of the original image, scores [K],
                   labels int64 [K], feats [K, F] or None), or None without a cache
    """

    def __init__(self, annotations: HOIAnnotations, images: ImageSource, detections: DetectionCache | None = None,
                 skip_empty: bool = True):
        if len(images) != annotations.num_images:
            raise ValueError(f"{annotations.source}: {annotations.num_images} annotated images but the image source "
                             f"has {len(images)}")
        self.annotations = annotations
        self.images = images
        self.detections = detections
        self.skip_empty = skip_empty
        self.image_ids = (annotations.nonempty_images() if skip_empty
                          else np.arange(annotations.num_images)).astype(np.int64)
        self._det_rows = None if detections is None else _match_detections(detections, annotations)
        # Continuous boxes once for all: stored (1-based inclusive) - [1, 1, 0, 0].
        bh, bo = annotations.continuous_boxes()
        self._boxes_h, self._boxes_o = bh.astype(np.float32), bo.astype(np.float32)
        # Pairs grouped by image once, so an item costs two lookups instead of a scan over all M pairs.
        order = np.argsort(annotations.image_index, kind="stable")
        bounds = np.searchsorted(annotations.image_index[order], np.arange(annotations.num_images + 1))
        self._pair_order, self._pair_bounds = order, bounds

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def filenames(self) -> list:
        return [self.annotations.filenames[int(j)] for j in self.image_ids]

    def pairs(self, i: int) -> np.ndarray:
        """Rows of `annotations` holding the pairs of dataset item i."""
        j = int(self.image_ids[i])
        return self._pair_order[self._pair_bounds[j]:self._pair_bounds[j + 1]]

    def target(self, i: int) -> dict:
        """The ground truth of item i (the `gt` entry of `ds[i]`) without loading the image."""
        rows = self.pairs(i)
        a = self.annotations
        return dict(boxes_h=self._boxes_h[rows], boxes_o=self._boxes_o[rows], hoi=a.hoi[rows], verb=a.verb[rows],
                    object=a.object[rows])

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range [0, {len(self)})")
        i = int(i) % len(self)
        j = int(self.image_ids[i])
        fname = self.annotations.filenames[j]
        w, h = (int(v) for v in self.annotations.sizes[j])
        image = self.images.load(j)
        # A mismatch means image and annotation files disagree (wrong folder, resized copies): boxes would be off.
        if image.shape != (h, w, 3):
            raise ValueError(f"{fname}: image is {image.shape[1]}x{image.shape[0]} (shape {image.shape}) but the "
                             f"annotations ({self.annotations.source}) say {w}x{h}")
        dets = None if self._det_rows is None else self.detections[int(self._det_rows[j])]
        return dict(index=i, image_index=j, filename=fname, image=image, size=(w, h), gt=self.target(i), dets=dets)


@dataclass
class HOISplit:
    """What `build_dataset` returns.

    dataset: the `HOIDataset`; vocab: the data set's `Vocabulary`; annotations: the dataset's annotations (training:
    after protocol filtering; test: unfiltered); unseen: unseen HOI classes of the protocol (empty for "supervised");
    rare: HOI classes with fewer than 10 pairs in the unfiltered training annotations (HICO-DET: the official 138);
    kept_images: positions of the dataset's images in the unfiltered split (training filter; all for test).
    """

    dataset: HOIDataset
    vocab: Vocabulary
    annotations: HOIAnnotations
    unseen: np.ndarray
    rare: np.ndarray
    split: str = "train"
    protocol: str = "supervised"
    kept_images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def build_dataset(cfg, split: str) -> HOISplit:
    """The "train" or "test" split of `cfg.data.dataset` under protocol `cfg.data.protocol`.

    "world": generated (or loaded from the disk cache) by `hoilib.data.world.build_world(cfg)`.
    "hicodet": `<cfg.data.hicodet_root>/instances_{split}2015.json`, images under
    `hico_20160224_det/images/{split}2015`, detections from `cfg.data.detections_{split}` or
    `<root>/detections_{split}2015.npz` (build one with `hoilib.data.detr_import`).
    The training split is filtered by the protocol (`filter_training`); the test split never is.
    """
    from .splits import filter_training, hicodet_protocol, hicodet_rare, rare_classes, seen_image_mask

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    protocol = cfg.data.protocol
    if cfg.data.dataset == "world":
        from .world import build_world  # imported lazily: generating the world is not needed for HICO-DET

        world = build_world(cfg)
        vocab = world.vocab
        ann = world.train if split == "train" else world.test
        array = world.train_images if split == "train" else world.test_images
        dets = world.det_train if split == "train" else world.det_test
        unseen = (np.zeros(0, np.int64) if protocol == "supervised"
                  else np.unique(np.asarray(world.protocols[protocol], np.int64)))
        rare = rare_classes(world.train)

        def images_for(kept):
            return ArrayImages(array, index=kept)
    elif cfg.data.dataset == "hicodet":
        from .hicodet import WHERE_FROM, detection_path, image_dir, load_hicodet
        from .vocab import hicodet_vocabulary

        root = Path(cfg.data.hicodet_root)
        vocab = hicodet_vocabulary()
        ann, files = load_hicodet(root, split)
        if not files.image_dir.is_dir():
            raise FileNotFoundError(f"HICO-DET image folder not found: {image_dir(root, split)}. {WHERE_FROM}")
        det_file = getattr(cfg.data, f"detections_{split}") or detection_path(root, split)
        if not Path(det_file).is_file():
            raise FileNotFoundError(
                f"detection cache not found: {det_file}. Cache the detections of a HICO-DET-fine-tuned DETR with "
                f"hoilib.data.detr_import (cache_detections, or import_detection_dir for per-image JSON files), "
                f"or set data.detections_{split}.")
        dets = DetectionCache.load(det_file)
        unseen = hicodet_protocol(protocol)
        # The official list is what LAIN's evaluation reproduces from instances_train2015.json (< 10 pairs).
        rare = hicodet_rare() if ann.num_classes == 600 else np.zeros(0, np.int64)

        def images_for(kept):
            return FileImages(files.image_dir, [files.filenames[k] for k in kept])
    else:
        raise ValueError(f"data.dataset must be 'world' or 'hicodet', got {cfg.data.dataset!r}")

    # Training sees only the protocol's kept images; the detection cache of the unfiltered split still serves them,
    # because HOIDataset matches cache rows by file name.
    if split == "train":
        kept = np.flatnonzero(seen_image_mask(ann, unseen))
        ann = filter_training(ann, unseen)
    else:
        kept = np.arange(ann.num_images)
    dataset = HOIDataset(ann, images_for(kept), dets, skip_empty=True)
    return HOISplit(dataset=dataset, vocab=vocab, annotations=ann, unseen=unseen, rare=rare, split=split,
                    protocol=protocol, kept_images=kept)


def _match_detections(dets: DetectionCache, ann: HOIAnnotations) -> np.ndarray:
    """[N] row of each annotated image in the detection cache, matched by file name."""
    if list(dets.filenames) == list(ann.filenames):  # the usual case: a cache written for this very file list
        return np.arange(ann.num_images)
    row = {f: r for r, f in enumerate(dets.filenames)}
    out = np.empty(ann.num_images, np.int64)
    for i, f in enumerate(ann.filenames):
        if f not in row:
            raise DetectionCacheError(f"{dets.source}: no detections for image {i} ({f}) of {ann.source}; the cache "
                                      f"holds {dets.num_images} images")
        out[i] = row[f]
    return out

