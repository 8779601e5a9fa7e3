"""One cache rule and one way of writing, for every artefact the study stores.

The artefacts, each built from config fields and from other artefacts by some of hoilib's code:

    world        <- world.*                                   + the world generator's code
    detections   <- world key, detector.*                     + the simulated detector's code
    clip         <- world key, clip.* (pretraining fields)    + CLIP pretraining code and the model config JSON
    run          <- the result fields of the config, the keys / content digests of its inputs (world, detections
                    or HICO-DET files, CLIP checkpoint) + the training code (models, data, engine, kernels)
    predictions  <- run key, the inference-only fields        + the evaluator's code

The rule: an artefact's key is the digest of (the config fields that matter, the keys of its inputs, the digest
of the code that builds it). So an edit of the world generator changes the world key, hence the keys of the
detections, of the CLIP pretrained on it and of every run trained on it; nothing stale is reused. Paths never
enter a key: a checkpoint or annotation file given by path enters by the digest of its content, so a moved cache
or weights file is the same artefact. `CODE` lists the code of each artefact (files and folders under hoilib/,
every *.py and *.json in them).

Writing: `atomic_path` and `atomic_dir` give a temporary name next to the final one and rename when the block
completes, so an interruption never leaves a half-written file where a reader would take it for a result;
`sweep_stale` removes temporaries left behind by processes that were killed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

from .config import ExperimentConfig

HOILIB = Path(__file__).resolve().parent

# Code each artefact depends on, relative to hoilib/ (a folder means every *.py and *.json below it).
CODE = {
    "world": ("data/world/vocabulary.py", "data/world/raster.py", "data/world/objects.py", "data/world/people.py",
              "data/world/interactions.py", "data/world/backgrounds.py", "data/world/scene.py",
              "data/world/generate.py", "data/world/protocols.py", "data/world/store.py", "data/annotations.py",
              "data/detections.py", "data/vocab.py"),
    "detections": ("data/world/simdet.py",),
    "clip": ("models/clip_pretrain.py", "models/clip_backbone.py", "models/clip_configs"),
    "run": ("engine.py", "models", "data", "kernels"),
    "predictions": ("eval",),
}


def digest(obj) -> str:
    """16 hex digits of sha256 over the canonical JSON of `obj` (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_files(parts, root: Path = HOILIB) -> list:
    """The files of `parts` (paths relative to `root`; folders expand to their *.py and *.json), sorted."""
    files = set()
    for part in parts:
        p = root / part
        if p.is_file():
            files.add(p)
        elif p.is_dir():
            files.update(f for f in p.rglob("*") if f.suffix in (".py", ".json") and "__pycache__" not in f.parts)
        else:
            raise FileNotFoundError(f"code listed for a cache key does not exist: {p}")
    return sorted(files)


def code_digest(parts, root: Path = HOILIB) -> str:
    """Digest of the code of `parts`: every file's path (relative to `root`) and bytes."""
    h = hashlib.sha256()
    for f in code_files(parts, root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_file_digests: dict = {}


def file_digest(path) -> str:
    """Digest of a file's content (remembered per (path, size, mtime) within a process: weights files are large)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"file not found: {p}")
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _file_digests:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _file_digests[key] = h.hexdigest()[:16]
    return _file_digests[key]


def threads(n: int) -> int:
    """A thread-count setting as used: 0 means every core of this machine."""
    return int(n) if n > 0 else (os.cpu_count() or 1)


# ---- the keys ------------------------------------------------------------------------------------------------------
def world_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    return digest({"world": cfg.to_dict()["world"], "code": code_digest(CODE["world"], root)})


def detections_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    return digest({"world": world_key(cfg, root), "detector": cfg.to_dict()["detector"],
                   "code": code_digest(CODE["detections"], root)})


def clip_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    """Key of the world's pretrained CLIP: the world, the clip section (its threads as used) and the code."""
    clip = cfg.training_dict()["clip"]
    clip["pretrain_threads"] = threads(clip["pretrain_threads"])
    return digest({"world": world_key(cfg, root), "clip": clip, "code": code_digest(CODE["clip"], root)})


def data_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    """Identity of the data a config reads (for manifests): the world's detections key (which covers the world), or
    the content of the HICO-DET annotation files that exist under `data.hicodet_root`."""
    if cfg.data.dataset == "world":
        return detections_key(cfg, root)
    r = Path(cfg.data.hicodet_root)
    return digest({s: file_digest(r / f"instances_{s}2015.json") for s in ("train", "test")
                   if (r / f"instances_{s}2015.json").is_file()})


def run_inputs(cfg: ExperimentConfig, root: Path = HOILIB) -> dict:
    """What a training run reads besides its config: the data (world and detections keys, or the content of the
    HICO-DET training annotations and detection cache) and the CLIP weights (content digest; "random" without a
    checkpoint)."""
    if cfg.data.dataset == "world":
        data = {"world": world_key(cfg, root), "detections": detections_key(cfg, root)}
    else:
        r = Path(cfg.data.hicodet_root)
        det = cfg.data.detections_train or r / "detections_train2015.npz"
        data = {"annotations": file_digest(r / "instances_train2015.json"), "detections": file_digest(det)}
    clip = file_digest(cfg.clip.checkpoint) if cfg.clip.checkpoint else f"random:{cfg.clip.arch}"
    return {"data": data, "clip": clip}


def run_key_dict(cfg: ExperimentConfig, root: Path = HOILIB) -> dict:
    """Everything a trained model depends on: the result fields (the world and detector sections only for the
    world, the thread count as used), the inputs (`run_inputs`) and the training code."""
    d = cfg.training_dict()
    if cfg.data.dataset != "world":
        d.pop("world", None)
        d.pop("detector", None)
    d["train"]["num_threads"] = threads(d["train"]["num_threads"])
    return {"config": d, "inputs": run_inputs(cfg, root), "code": code_digest(CODE["run"], root)}


def run_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    return digest(run_key_dict(cfg, root))


def eval_inputs(cfg: ExperimentConfig, root: Path = HOILIB) -> dict:
    """What a trained model's metrics read besides the model: the evaluated split's data (the world's detections key,
    which covers the world and its validation and test splits; or, on HICO-DET, the content of the annotation file
    and the detection cache the split comes from)."""
    if cfg.data.dataset == "world":
        return {"detections": detections_key(cfg, root)}
    r = Path(cfg.data.hicodet_root)
    part = "test" if cfg.eval.split == "test" else "train"  # the validation images are training images
    det = getattr(cfg.data, f"detections_{part}") or r / f"detections_{part}2015.npz"
    return {"annotations": file_digest(r / f"instances_{part}2015.json"), "detections": file_digest(det)}


def predictions_key(cfg: ExperimentConfig, root: Path = HOILIB) -> str:
    """Key of a trained run's predictions and metrics: the inference-only fields, the evaluated split's data by
    content (`eval_inputs`) and the evaluator's code."""
    d = cfg.inference_dict()
    d["data"].pop("detections_test", None)  # a path: its content enters through eval_inputs
    return digest({"inference": d, "inputs": eval_inputs(cfg, root), "code": code_digest(CODE["predictions"], root)})


# ---- writing -------------------------------------------------------------------------------------------------------
_TMP = ".tmp-"


def temp_path(final, suffix: str = "") -> Path:
    """A hidden temporary name beside `final` that `sweep_stale` recognises (it carries this process's id);
    `suffix` keeps a tool that insists on an extension (papermill: ".ipynb") happy."""
    final = Path(final)
    return final.with_name(f".{final.name}{_TMP}{os.getpid()}-{random.getrandbits(32):08x}{suffix}")


@contextlib.contextmanager
def atomic_path(final):
    """Yield a temporary path beside `final`; when the block completes it is renamed to `final` (os.replace), when
    the block raises (or is interrupted) it is removed. Readers see the old file or the complete new one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text: str) -> Path:
    """Write a text file atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(final):
    """Yield a new temporary folder beside `final`; when the block completes it is renamed to `final`. If another
    process completed `final` first, theirs is kept (same key, same content) and ours removed. On an error or an
    interruption the temporary folder is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs. A zombie (a process that has ended but that nobody reaped: the orphaned
    workers of a killed parent in a container whose first process reaps nothing) counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask (not Linux): the signal test above is all there is
    return state not in ("Z", "X")


def sweep_stale(folder) -> list:
    """Remove temporaries in `folder` (not recursive) whose writing process no longer exists: what a killed
    process leaves behind. Returns the removed paths."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        name = p.name
        if not (name.startswith(".") and _TMP in name):
            continue
        try:
            pid = int(name.rsplit(_TMP, 1)[1].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed
