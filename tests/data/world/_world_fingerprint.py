"""sha256 of every artefact of a built world, for byte-identity checks across code changes.

`python tests/data/world/_world_fingerprint.py OUT.json` writes the fingerprints of the reference configs below in
world version 1 (VERSION_1 under each); comparing the files written before and after a change of the generator
shows which artefacts moved. (Before version 2 existed, the reference fields alone gave the same worlds: VERSION_1
held the defaults then.)
Images, annotation and caption JSON and protocols are hashed as files; .npz archives (entities, detections) by
their arrays (names, dtypes, shapes, bytes), because a zip member carries the time it was written. meta.json holds
the cache key and the whole world section, which change with the code and the config fields: only its counts are
hashed.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from hoilib.config import ExperimentConfig
from hoilib.data.world import VERSION_1, build_world

# Reference configs: the full default size, a small and a tiny one, and two with every other world field changed.
REFERENCE = {
    "full_default": {},
    "default_60_30_40": {"n_train": 60, "n_test": 30, "n_caption": 40},
    "tiny_8_4_4": {"n_train": 8, "n_test": 4, "n_caption": 4},
    "other_fields": {"n_train": 40, "n_test": 20, "n_caption": 30, "seed": 3, "image_size": 48, "max_people": 2,
                     "max_objects": 2, "long_tail": 0.8, "clutter": 0.5, "caption_long_tail": 1.0,
                     "caption_close_up": 0.5},
    "one_person_96px": {"n_train": 20, "n_test": 10, "n_caption": 10, "seed": 11, "image_size": 96, "max_people": 1,
                        "max_objects": 3},
}
FILES = ("train_images.npy", "test_images.npy", "caption_images.npy", "instances_train.json", "instances_test.json",
         "captions.json", "protocols.json")
ARCHIVES = ("entities_train.npz", "entities_test.npz")
DETECTIONS = ("detections_train.npz", "detections_test.npz")


def _npz_digest(path: Path) -> str:
    h = hashlib.sha256()
    with np.load(path) as z:
        for name in sorted(z.files):
            a = z[name]
            h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def fingerprint(world: dict, cache_dir) -> dict:
    """{artefact name: sha256 hex} of the world of `world` (WorldConfig fields) built under `cache_dir`."""
    cfg = ExperimentConfig().override({**{f"world.{k}": v for k, v in world.items()}, "data.cache_dir": str(cache_dir)})
    w = build_world(cfg, progress=False)
    out = {name: hashlib.sha256((w.root / name).read_bytes()).hexdigest() for name in FILES}
    out.update({name: _npz_digest(w.root / name) for name in ARCHIVES})
    det_dir = next(w.root.glob("det_*"))
    out.update({name: _npz_digest(det_dir / name) for name in DETECTIONS})
    meta = json.loads((w.root / "meta.json").read_text())
    counts = {k: meta[k] for k in ("counts", "rare_classes", "num_classes")}
    counts["counts"] = {k: v for k, v in counts["counts"].items() if not k.startswith("val")}
    out["meta.json:counts"] = hashlib.sha256(json.dumps(counts, sort_keys=True).encode()).hexdigest()
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = {name: fingerprint({**VERSION_1, **world}, Path(tmp) / name) for name, world in REFERENCE.items()}
    Path(sys.argv[1]).write_text(json.dumps(result, indent=2, sort_keys=True))
    print(json.dumps(result, indent=2, sort_keys=True))
