"""Orchestration: the experiment cache, grids of experiments, sweeps. The engine trains one resolved config; this
module decides what needs training and where it lives.

`run_experiment(cfg)` resolves the CLIP (`resolve_clip`: the world's small CLIP is pretrained once, cached),
trains (or resumes, or reuses) the model of `cfg` and evaluates it:

    <cache_dir>/runs/<run key>/
        config.json                        the config of the first call (readable record)
        checkpoint.pt, log.jsonl           written by `engine.train` (resumable)
        predictions_<predictions key>.npz  the evaluator's input (`hoilib.eval.save_predictions` format)
        metrics_<predictions key>.json     the evaluator's output, plus timings

The keys follow the one cache rule of `hoilib.cache`: the run key covers every result field, the content of the
run's inputs and the training code; the predictions key covers the inference-only fields (`model.lambda_test`,
`model.zs_topk`, `eval.*`, `data.detections_test`) and the evaluator's code, so a sweep over them re-runs inference
only. `run_grid` runs a table's worth of experiments (side by side in worker processes) and returns one long data
frame; `run_sweeps` runs several one-parameter sweeps; `detection_quality_sweep` re-evaluates trained models on test
detections of several noise levels, and `detector_box_ap` scores those detections in COCO's terms;
`shortcut_sweep` re-evaluates them on test splits of other worlds (`shortcut_worlds` describes those worlds).
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hoilib import cache, engine
from hoilib.config import ExperimentConfig
from hoilib.data.dataset import HOIDataset, HOISplit, build_dataset
from hoilib.data.images import ArrayImages
from hoilib.data.world import build_world, crowding, scene_verb_association
from hoilib.data.world.stats import image_verbs
from hoilib.eval import load_predictions, save_predictions
from hoilib.eval.coco import box_ap
from hoilib.models.clip_pretrain import clip_cache_path, pretrain_clip

__all__ = ["resolve_clip", "run_experiment", "run_grid", "run_sweeps", "run_dir", "prediction_path",
           "trained_model", "training_curves", "clip_metrics", "load_run_predictions", "scaled_detector",
           "detection_quality_sweep", "detector_box_ap", "shortcut_sweep", "shortcut_worlds", "METRICS"]

METRICS = ("full", "rare", "non_rare", "unseen", "seen")  # mAP columns of run_grid (percent)


# ---- the CLIP a config uses ---------------------------------------------------------------------------------------
def resolve_clip(cfg: ExperimentConfig, progress: bool = True) -> ExperimentConfig:
    """The config with `clip.checkpoint` filled in: the world's small CLIP is pretrained on the world's captions
    (`models.clip_pretrain.pretrain_clip`, cached under its key) when no checkpoint is given. Under torchrun rank 0
    pretrains and the other processes wait for it."""
    if cfg.clip.checkpoint or cfg.clip.arch != "hoi-world-vit":
        return cfg
    info = engine.init_distributed(engine.resolve_device(cfg).type)
    if info.is_main:
        path = pretrain_clip(cfg, progress=progress)
    info.barrier()
    if not info.is_main:
        path = clip_cache_path(cfg)
    return cfg.override({"clip.checkpoint": str(path)})


def run_dir(cfg: ExperimentConfig) -> Path:
    """`<cache_dir>/runs/<run key>`: where the model of `cfg` is (or will be) trained (resolves the CLIP first)."""
    cfg = resolve_clip(cfg, progress=False)
    return Path(cfg.data.cache_dir) / "runs" / cache.run_key(cfg)


def prediction_path(cfg: ExperimentConfig) -> Path:
    """The cached test predictions of `cfg` (written by `run_experiment`)."""
    return run_dir(cfg) / f"predictions_{cache.predictions_key(cfg)}.npz"


def _metrics_path(cfg: ExperimentConfig) -> Path:
    return run_dir(cfg) / f"metrics_{cache.predictions_key(cfg)}.json"


# ---- one experiment -----------------------------------------------------------------------------------------------
def run_experiment(cfg: ExperimentConfig, redo: bool = False, progress: bool = True) -> dict:
    """Train (resume / reuse) and evaluate one experiment; the cached metrics are returned at once when present.

    Args:
        redo: delete the run directory first (retrain and re-evaluate).
    Returns:
        dict with the evaluator's metrics (full, rare, non_rare, unseen, seen in percent; unseen/seen None without
        a protocol; per_class: AP per class in percent) plus train_time_s (training wall time of the model, summed
        over sessions), infer_time_s, eval_time_s, run_dir, train_digest, infer_digest, protocol, seed, name.
    Under torchrun every process trains and infers its share; rank 0 evaluates and writes, every rank returns.
    """
    cfg = resolve_clip(cfg, progress=progress)
    d = run_dir(cfg)
    metrics_path = _metrics_path(cfg)
    info = engine.init_distributed(engine.resolve_device(cfg).type)  # a torchrun launch: join its group
    if redo and info.is_main and d.exists():
        shutil.rmtree(d)
    info.barrier()
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    if info.is_main:
        d.mkdir(parents=True, exist_ok=True)
        cache.sweep_stale(d)
        if not (d / "config.json").exists():
            cache.atomic_write_text(d / "config.json", cfg.to_json())

    ck_path = d / engine.CHECKPOINT
    ck = torch.load(ck_path, map_location="cpu", weights_only=False) if ck_path.is_file() else None
    if ck is not None and ck.get("complete"):
        train_time = float(ck["time_s"])
    else:
        out = engine.train(cfg, d, progress=progress, resume=True)
        train_time = float(out["time_s"])

    test = build_dataset(cfg, cfg.eval.split)  # "test" for the reported tables, "val" for every choice
    model = engine.load_trained_model(cfg, d, data=test)
    t0 = time.perf_counter()
    pred = engine.infer(cfg, model, progress=progress, data=test)
    infer_time = time.perf_counter() - t0
    result = None
    if info.is_main:
        with cache.atomic_path(prediction_path(cfg)) as tmp:
            save_predictions(tmp, **pred)
        t0 = time.perf_counter()
        metrics = engine.evaluate_run(cfg, pred, data=test)
        result = dict(_plain(metrics), train_time_s=train_time, infer_time_s=infer_time,
                      eval_time_s=time.perf_counter() - t0, n_predictions=int(len(pred["score"])), run_dir=str(d),
                      train_digest=d.name, infer_digest=cache.predictions_key(cfg),
                      protocol=cfg.data.protocol, seed=cfg.train.seed, name=cfg.name)
        cache.atomic_write_text(metrics_path, json.dumps(result, indent=1))
    if info.enabled:
        box = [result]
        torch.distributed.broadcast_object_list(box, src=0)
        result = box[0]
    return result


def training_curves(cfg: ExperimentConfig, progress: bool = False) -> dict:
    """Train the model of `cfg` with a test evaluation after every epoch (as the official code does) and return
    `engine.train`'s result plus `steps` (the log's step records). The evaluation leaves the RNG as it was, so the
    weights are those of `run_experiment(cfg)`; the run is kept in `<run dir>/curves` (resumable, cached)."""
    cfg = resolve_clip(cfg, progress=progress)
    d = run_dir(cfg) / "curves"
    out = engine.train(cfg, d, progress=progress, resume=True, eval_each_epoch=True)
    out["steps"] = [r for r in engine.read_log(d / engine.LOG) if r.get("event") == "step"]
    return out


def clip_metrics(cfg: ExperimentConfig, progress: bool = False) -> dict:
    """What the world's CLIP of `cfg` measured on its held-out caption pairs when it was pretrained (retrieval and
    image-level HOI recognition; `models.clip_pretrain`), pretraining it first if needed. Empty for a CLIP that
    hoilib did not pretrain (OpenAI's weights)."""
    if cfg.clip.checkpoint or cfg.clip.arch != "hoi-world-vit":
        return {}
    path = resolve_clip(cfg, progress=progress).clip.checkpoint
    return torch.load(path, map_location="cpu", weights_only=False).get("metrics", {})


def trained_model(cfg: ExperimentConfig, progress: bool = False):
    """(the trained model of `cfg`, its resolved config), training it first if the cache does not hold it."""
    cfg = resolve_clip(cfg, progress=progress)
    run_experiment(cfg, progress=progress)
    return engine.load_trained_model(cfg, run_dir(cfg)), cfg


def _plain(x):
    """numpy scalars / arrays -> JSON-friendly Python values."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---- grids --------------------------------------------------------------------------------------------------------
def run_grid(base_cfg: ExperimentConfig, variants: dict, seeds=(0,), protocols=None, *, redo: bool = False,
             progress: bool = True, per_class: bool = False, workers: int | None = None) -> pd.DataFrame:
    """Run every (variant, protocol, seed) combination (cached) and collect the metrics in long format.

    Args:
        base_cfg: the profile's config.
        variants: setting name -> dotted overrides, e.g. {"LAIN": {}, "w/o adapters": {"model.use_la": False, ...}}.
        seeds: training seeds (train.seed).
        protocols: data.protocol values, each run with every seed; or a dict protocol -> its own seeds (the UC
            draws: {"uc0": [0], "uc1": [1]}); None = base_cfg's protocol.
        per_class: also emit one row per HOI class (metric "ap_<class>").
        workers: experiments trained side by side in separate processes; None = base_cfg.train.grid_workers.
            Each process uses train.num_threads torch threads, as a sequential run would, so the numbers are the
            same. Worker processes end with the process that started them (also when it is killed).
    Returns:
        DataFrame with columns setting, protocol, seed, metric, value (metrics: full, rare, non_rare, unseen, seen
        in percent; train_time_s; infer_time_s), one row per (setting, protocol, seed, metric), in job order.
    """
    if not variants:
        raise ValueError("run_grid needs at least one variant")
    if protocols is None:
        protocols = [base_cfg.data.protocol]
    plan = dict(protocols) if isinstance(protocols, dict) else {p: list(seeds) for p in protocols}
    jobs = [(name, p, int(s)) for name in variants for p, ss in plan.items() for s in ss]
    cfgs = [base_cfg.override(variants[name], {"data.protocol": p, "train.seed": s}) for name, p, s in jobs]
    cfgs = _prepare_shared(cfgs, progress)
    dirs = [run_dir(c) for c in cfgs]
    if redo:  # delete each run directory once, here, so that settings sharing a model do not retrain it twice
        for d in set(dirs):
            shutil.rmtree(d, ignore_errors=True)

    # Settings that share a trained model (inference-only sweeps) run in one process, one after the other.
    groups: dict = {}
    for i, d in enumerate(dirs):
        groups.setdefault(d, []).append(i)
    workers = base_cfg.train.grid_workers if workers is None else int(workers)
    workers = max(1, min(workers, len(groups)))
    results: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="experiments", disable=not progress, unit="run", dynamic_ncols=True)

    def finish(idx: list, out: list) -> None:
        for i, m in zip(idx, out):
            results[i] = m
        name, p, s = jobs[idx[-1]]
        bar.set_postfix_str(f"{name} | {p} | seed {s}")
        bar.update(len(idx))

    if workers == 1:
        for idx in groups.values():
            finish(idx, _run_group([cfgs[i] for i in idx]))
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_run_group, [cfgs[i] for i in idx]): idx for idx in groups.values()}
            for fut in as_completed(futures):
                idx = futures[fut]
                try:
                    out = fut.result()
                except Exception as e:
                    for f in futures:
                        f.cancel()
                    name, p, s = jobs[idx[0]]
                    raise RuntimeError(f"run_grid: the experiment {name!r} | {p} | seed {s} failed: {e}") from e
                finish(idx, out)
    bar.close()

    rows = []
    for (name, p, s), m in zip(jobs, results):
        for metric in METRICS + ("train_time_s", "infer_time_s"):
            v = m.get(metric)
            rows.append(dict(setting=name, protocol=p, seed=s, metric=metric,
                             value=float("nan") if v is None else float(v)))
        if per_class and m.get("per_class") is not None:
            rows.extend(dict(setting=name, protocol=p, seed=s, metric=f"ap_{c}", value=float(v))
                        for c, v in enumerate(m["per_class"]))
    return pd.DataFrame(rows, columns=["setting", "protocol", "seed", "metric", "value"])


_PR_SET_PDEATHSIG = 1


def _worker_init(parent: int) -> None:
    """Grid worker set-up: end this process when the one that started the grid ends, however it ends (the kernel
    sends SIGKILL on the parent's death on Linux; a watchdog thread covers other systems and a parent that died
    before the signal was armed)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _run_group(cfgs: list) -> list:
    """One worker task of run_grid: experiments that share a trained model, in order."""
    return [run_experiment(c, progress=False) for c in cfgs]


def _prepare_shared(cfgs: list, progress: bool) -> list:
    """Build the worlds and pretrain the CLIPs the grid needs, once each, with their own progress bars (the runs'
    bars are off inside a grid). Returns the configs with their CLIPs resolved."""
    done: dict = {}
    out = []
    for cfg in cfgs:
        key = (cache.world_key(cfg), cache.detections_key(cfg), cache.clip_key(cfg), cfg.data.dataset,
               cfg.data.cache_dir, cfg.clip.checkpoint, cfg.clip.arch)
        if key not in done:
            if cfg.data.dataset == "world":
                build_world(cfg, progress=progress)
            done[key] = resolve_clip(cfg, progress=progress).clip.checkpoint
        out.append(cfg.override({"clip.checkpoint": done[key]}) if done[key] else cfg)
    return out


def run_sweeps(base_cfg: ExperimentConfig, sweeps: dict, seeds, protocol: str, progress: bool = True) -> dict:
    """Several one-parameter sweeps: {name: (dotted key, values)} -> {name: run_grid's long frame}, whose `setting`
    column holds the value (float). A value that only changes inference reuses the trained runs."""
    out = {}
    for name, (key, values) in sweeps.items():
        long = run_grid(base_cfg, {str(v): {key: v} for v in values}, seeds, [protocol], progress=progress)
        long["setting"] = long["setting"].astype(float)
        out[name] = long
    return out


# ---- detection quality --------------------------------------------------------------------------------------------
def scaled_detector(cfg: ExperimentConfig, level: float) -> dict:
    """Overrides that scale every noise parameter of the simulated detector by `level` (0 = ground-truth boxes
    with constant scores, 1 = `cfg.detector` as it is)."""
    d = cfg.detector
    return {"detector.box_jitter": d.box_jitter * level, "detector.miss_rate": min(1.0, d.miss_rate * level),
            "detector.false_positives": d.false_positives * level,
            "detector.class_confusion": min(1.0, d.class_confusion * level), "detector.score_noise": d.score_noise * level}


def detection_quality_sweep(base: ExperimentConfig, variants: dict, seeds, levels, progress: bool = False):
    """mAP of trained models (trained once on `base`'s detections, cached) evaluated on test detections of
    several noise levels (`scaled_detector`). Returns the long frame setting, level, seed, metric, value."""
    rows = []
    for name, overrides in variants.items():
        for seed in seeds:
            model, cfg = trained_model(base.override(overrides, {"train.seed": int(seed)}), progress=progress)
            for level in levels:
                cl = cfg.override(scaled_detector(cfg, level))
                test = build_dataset(cl, cl.eval.split)
                m = engine.evaluate_run(cl, engine.infer(cl, model, progress=progress, data=test), data=test)
                for metric in ("unseen", "seen", "full"):
                    if m.get(metric) is not None:
                        rows.append(dict(setting=name, level=float(level), seed=int(seed), metric=metric,
                                         value=float(m[metric])))
    return pd.DataFrame(rows, columns=["setting", "level", "seed", "metric", "value"])


def load_run_predictions(cfg: ExperimentConfig) -> dict:
    """The cached test predictions of `cfg` (training and inferring first when they are missing)."""
    run_experiment(cfg, progress=False)
    return load_predictions(prediction_path(cfg))


# ---- the detector in COCO terms; the world's shortcut (notebook 08) ------------------------------------------------
def detector_box_ap(base: ExperimentConfig, levels=(1.0,)) -> pd.DataFrame:
    """COCO box AP (`hoilib.eval.coco.box_ap`) of the test detections the models are evaluated on, against the
    test split's annotated boxes.

    The built-in world: the simulated detector scaled by each level (`scaled_detector`, as in
    `detection_quality_sweep`); it also gets box_ap_all / box_ap50_all against every drawn instance (bystanders and
    unused objects included), which HICO-DET does not annotate. HICO-DET: the cached DETR detections as they are,
    one row at level 1.0 (there is nothing to scale; other levels are an error).
    Returns one row per level: detector, level, box_ap, box_ap50, box_ap75 (percent), box_ap_all, box_ap50_all
    (percent; NaN on HICO-DET), n_images, n_gt, n_det.
    """
    if base.data.dataset != "world" and tuple(float(v) for v in levels) != (1.0,):
        raise ValueError(f"detector_box_ap: the detections of {base.data.dataset!r} are a fixed cache; only level "
                         f"1.0 exists, got levels {tuple(levels)}")
    rows = []
    for level in levels:
        cl = base.override(scaled_detector(base, level)) if base.data.dataset == "world" else base
        test = build_dataset(cl, "test")
        dets = test.dataset.detections
        r = box_ap(test.annotations, dets)
        name = "simulated detector" if base.data.dataset == "world" else f"DETR cache ({Path(dets.source).name})"
        every = (box_ap(build_world(cl, progress=False).test_entities, dets) if base.data.dataset == "world"
                 else {"ap": float("nan"), "ap50": float("nan")})
        rows.append(dict(detector=name, level=float(level), box_ap=r["ap"], box_ap50=r["ap50"], box_ap75=r["ap75"],
                         box_ap_all=every["ap"], box_ap50_all=every["ap50"], n_images=r["n_images"], n_gt=r["n_gt"],
                         n_det=r["n_det"]))
    return pd.DataFrame(rows)


# The world fields a shortcut setting may not change, and what a test world leaves out: one training image (the
# protocols need a training split; the models are trained on `base`'s world), no validation or caption images.
_TEST_ONLY = {"world.n_train": 1, "world.n_val": 0, "world.n_caption": 0}


def _test_world(base: ExperimentConfig, overrides: dict, progress: bool):
    """The world of `base` changed by `overrides` (world.* keys), generated with its test split only (cached by
    `build_world` under its own world key). The test split depends on none of _TEST_ONLY, so with no overrides it is
    `base`'s test split image for image, with the same simulated detections."""
    bad = [k for k in overrides if not k.startswith("world.") or k in _TEST_ONLY]
    if bad:
        raise ValueError(f"a shortcut setting changes world.* fields of the test split only, got {bad}")
    return build_world(base.override(overrides, _TEST_ONLY), progress=progress)


def shortcut_sweep(base: ExperimentConfig, variants: dict, seeds, settings: dict,
                   progress: bool = False) -> pd.DataFrame:
    """mAP of models trained on `base`'s world (cached; trained if missing) on test splits of other worlds, by
    inference only: the locality gap as the whole-image shortcut (`world.scene_bias`) or the crowding changes.

    Args:
        variants: method name -> dotted overrides (e.g. `study.MAIN_METHODS` entries).
        seeds: training seeds; every method runs every seed, so methods pair up seed by seed.
        settings: test-world name -> world.* overrides, e.g. {"scene bias 0": {"world.scene_bias": 0.0}}; {} is
            `base`'s own test split. Each test world keeps `base`'s size (world.n_test unless overridden) and its
            own simulated detections (`base`'s detector); unseen classes are `base`'s protocol's, rare classes
            those of `base`'s training split.
    Returns:
        long frame setting (method), world (setting name), seed, metric (unseen, seen, full, rare, non_rare), value
        (percent), in the order methods x seeds x worlds.
    """
    if base.data.dataset != "world":
        raise ValueError(f"shortcut_sweep: test worlds exist for data.dataset 'world' only, not {base.data.dataset!r}")
    like = build_dataset(base, "test")
    splits = {}
    for name, overrides in settings.items():
        w = _test_world(base, overrides, progress)
        splits[name] = HOISplit(dataset=HOIDataset(w.test, ArrayImages(w.test_images), w.det_test), vocab=like.vocab,
                                annotations=w.test, unseen=like.unseen, rare=like.rare, split="test",
                                protocol=like.protocol, kept_images=np.arange(w.test.num_images))
    rows = []
    bar = tqdm(total=len(variants) * len(seeds) * len(splits), desc="shortcut sweep", unit="eval",
               disable=not progress, dynamic_ncols=True)
    for method, overrides in variants.items():
        for seed in seeds:
            model, cfg = trained_model(base.override(overrides, {"train.seed": int(seed)}), progress=False)
            for world, split in splits.items():
                m = engine.evaluate_run(cfg, engine.infer(cfg, model, progress=False, data=split), data=split)
                rows += [dict(setting=method, world=world, seed=int(seed), metric=k, value=float(m[k]))
                         for k in ("unseen", "seen", "full", "rare", "non_rare") if m.get(k) is not None]
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows, columns=["setting", "world", "seed", "metric", "value"])


def shortcut_worlds(base: ExperimentConfig, settings: dict, progress: bool = False) -> pd.DataFrame:
    """What each test world of `shortcut_sweep` asks of a model, one row per setting: world, images, pairs,
    crowded (fraction of pairs whose union box holds the centre of another instance, `world.crowding`),
    people_per_image, scene_home and scene_chance (fraction of images whose background is the home scene of one of
    their verbs, and that fraction when scenes ignore the verbs: `world.scene_verb_association`; NaN in version 1,
    which has no scenes)."""
    rows = []
    for name, overrides in settings.items():
        w = _test_world(base, overrides, progress)
        c = crowding(w.test, w.test_entities)
        s = scene_verb_association(w.scenes["test"], image_verbs(w.test))
        rows.append(dict(world=name, images=w.test.num_images, pairs=c["pairs"], crowded=c["crowded"],
                         people_per_image=c["people_per_image"], scene_home=s["home"], scene_chance=s["chance"]))
    return pd.DataFrame(rows)
