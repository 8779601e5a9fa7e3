"""The on-disk cache of the world: `build_world(cfg)` generates (first call) or loads (later calls) everything the
study needs: images of the train, val and test splits with annotations in the HICO-DET `instances_*.json` format,
captions, simulated detections, the zero-shot protocols and the background scene of every image."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import cache
from ..annotations import HOIAnnotations
from ..detections import DetectionCache
from ..vocab import Vocabulary
from .generate import _annotations, _entities, generate_split
from .protocols import make_protocols
from .simdet import simulate_detections
from .vocabulary import OBJECTS, world_vocabulary

@dataclass
class WorldData:
    """Everything the study reads from the built-in world (see `build_world`).

    Attributes:
        vocab: `world_vocabulary()`. root: cache folder of this world. digest: its cache key.
        train, val, test: HOIAnnotations in the HICO-DET file convention (1-based inclusive boxes); val holds
            `world.n_val` images drawn like the training ones (its own stream: no image of train or test).
        train_images, val_images, test_images: uint8 [N, S, S, 3] (read-only memmaps).
        det_train, det_val, det_test: simulated detections (DetectionCache, continuous pixel boxes, no feats).
        train_entities, val_entities, test_entities: every drawn instance, annotated or not (DetectionCache with
            score 1).
        caption_images: uint8 [Nc, S, S, 3]; captions: Nc image-level captions (CLIP pretraining pairs).
        protocols: {"rf_uc", "nf_uc", "uo", "uv", "uc0".."uc4": sorted unseen HOI indices} (from the training split).
        scenes: {"train", "val", "test", "caption": int64 [N] background scene per image (`backgrounds.SCENES`;
            -1 in version 1)}.
    """

    vocab: Vocabulary
    root: Path
    train: HOIAnnotations
    test: HOIAnnotations
    train_images: np.ndarray
    test_images: np.ndarray
    det_train: DetectionCache
    det_test: DetectionCache
    caption_images: np.ndarray
    captions: list
    protocols: dict
    digest: str
    train_entities: DetectionCache
    test_entities: DetectionCache
    val: HOIAnnotations
    val_images: np.ndarray
    det_val: DetectionCache
    val_entities: DetectionCache
    scenes: dict


def _load_images(path: Path) -> np.ndarray:
    """uint8 [N, S, S, 3] as a read-only memmap (an empty array is loaded plainly: nothing to map)."""
    arr = np.load(path, mmap_mode="r")
    return np.load(path) if arr.size == 0 else arr


def _write_world(cfg, root: Path, progress: bool) -> None:
    wc = cfg.world
    vocab, S = world_vocabulary(), int(wc.image_size)
    with cache.atomic_dir(root) as tmp:
        counts, anns, scenes = {}, {}, {}
        for split, n in (("train", wc.n_train), ("val", wc.n_val), ("test", wc.n_test), ("caption", wc.n_caption)):
            path = tmp / f"{split}_images.npy"
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, S, S, 3)) if n else None
            images, meta = generate_split(wc, split, n, progress=progress, out=out)
            if out is not None:
                out.flush()
                del out
            else:
                np.save(path, images)
            scenes[split] = [r.scene for r in meta]
            if split == "caption":
                (tmp / "captions.json").write_text(json.dumps([r.caption for r in meta]))
                counts["caption_pairs"] = int(sum(len(r.pairs) for r in meta))
                continue
            ann = _annotations(meta, split, S, vocab)
            ann.validate()
            ann.to_json(tmp / f"instances_{split}.json")
            _entities(meta, ann.filenames).save(tmp / f"entities_{split}.npz")
            anns[split] = ann
            counts[f"{split}_pairs"] = ann.num_pairs
        protocols = make_protocols(anns["train"].class_counts(), vocab, wc.seed)
        (tmp / "protocols.json").write_text(json.dumps({k: v.tolist() for k, v in protocols.items()}))
        (tmp / "scenes.json").write_text(json.dumps(scenes))
        meta = {"key": root.name, "world": cfg.to_dict()["world"], "num_classes": vocab.num_classes,
                "counts": counts, "rare_classes": int((anns["train"].class_counts() < 10).sum())}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def _write_detections(cfg, root: Path, det_dir: Path, anns: dict) -> None:
    with cache.atomic_dir(det_dir) as tmp:
        # each split its own detector seed (val comes last: train and test keep the seeds they had without it)
        for k, split in enumerate(("train", "test", "val")):
            ann = anns[split]
            ents = DetectionCache.load(root / f"entities_{split}.npz")
            det = simulate_detections(ann, cfg.detector, seed=cfg.world.seed * 1000 + 17 + k, instances=ents,
                                      num_classes=len(OBJECTS))
            det.save(tmp / f"detections_{split}.npz")
        (tmp / "meta.json").write_text(json.dumps({"detector": cfg.to_dict()["detector"]}, indent=2, sort_keys=True))


def build_world(cfg, progress: bool = True) -> WorldData:
    """Generate (first call) or load (later calls) the built-in world of `cfg.world`, with the simulated
    detections of `cfg.detector`.

    Cache layout (under `cfg.data.cache_dir`, relative to the working directory unless absolute):
        world/<world key>/{train,val,test,caption}_images.npy, instances_{train,val,test}.json,
                          entities_{train,val,test}.npz, captions.json, protocols.json, scenes.json, meta.json
        world/<world key>/det_<detections key>/detections_{train,val,test}.npz, meta.json
    The keys follow `hoilib.cache` (config section + the generator's or the detector's code). Folders are written
    under a temporary name and renamed when complete (`cache.atomic_dir`), so an interrupted build leaves no half
    cache, and what a killed build left behind is removed by the next one. The same cfg.world gives byte-identical
    images and JSON on any run.
    """
    root = Path(cfg.data.cache_dir).expanduser() / "world" / cache.world_key(cfg)
    if not (root / "meta.json").is_file():
        cache.sweep_stale(root.parent)
        _write_world(cfg, root, progress)
    anns = {s: HOIAnnotations.from_json(root / f"instances_{s}.json") for s in ("train", "val", "test")}
    det_dir = root / f"det_{cache.detections_key(cfg)}"
    if not (det_dir / "meta.json").is_file():
        cache.sweep_stale(root)
        _write_detections(cfg, root, det_dir, anns)
    protocols = {k: np.asarray(v, np.int64) for k, v in json.loads((root / "protocols.json").read_text()).items()}
    scenes = {k: np.asarray(v, np.int64) for k, v in json.loads((root / "scenes.json").read_text()).items()}
    per_split = {}
    for s, ann in anns.items():
        per_split.update({s: ann, f"{s}_images": _load_images(root / f"{s}_images.npy"),
                          f"det_{s}": DetectionCache.load(det_dir / f"detections_{s}.npz", sizes=ann.sizes),
                          f"{s}_entities": DetectionCache.load(root / f"entities_{s}.npz", sizes=ann.sizes)})
    return WorldData(
        vocab=world_vocabulary(), root=root, caption_images=_load_images(root / "caption_images.npy"),
        captions=json.loads((root / "captions.json").read_text()), protocols=protocols, digest=root.name,
        scenes=scenes, **per_split)
