"""The experiment cache: one directory per trained model, one metrics file per way of running inference on it.

`run_experiment(cfg)` trains (or resumes, or reuses) the model of `cfg` and evaluates it:

    <cache_dir>/runs/<training digest>/
        config.json                       the config of the first call (readable record)
        checkpoint.pt, log.jsonl          written by `engine.train` (resumable)
        predictions_<inference digest>.npz  the evaluator's input (`hoilib.eval.save_predictions` format)
        metrics_<inference digest>.json   the evaluator's output, plus timings

The training digest covers every field that changes the trained weights; the inference digest covers the fields
that only change inference (`model.lambda_test`, `model.zs_topk`, `eval.*`, `data.detections_test`), so a sweep
over them re-runs inference only. `run_grid` runs a table's worth of experiments and returns one long data frame.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hoilib.config import SPEED_ONLY, ExperimentConfig

__all__ = ["run_experiment", "run_grid", "run_dir", "training_dict", "inference_dict", "training_digest",
           "inference_digest", "code_digest", "METRICS"]

# Fields that never change the trained weights: labels, locations, the hardware, logging, and inference-only knobs.
_NOT_TRAINING = ("name", "profile", "eval", "model.lambda_test", "model.zs_topk", "data.cache_dir",
                 "data.detections_test", "train.log_every") + SPEED_ONLY
# Fields that change predictions or metrics of a trained model (eval.batch_size does not: batching is exact).
_INFERENCE = ("model.lambda_test", "model.zs_topk", "eval", "data.detections_test")
METRICS = ("full", "rare", "non_rare", "unseen", "seen")  # mAP columns of run_grid (percent)


def _drop(d: dict, dotted: str) -> None:
    *head, leaf = dotted.split(".")
    for h in head:
        d = d[h]
    d.pop(leaf, None)


def _pick(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def training_dict(cfg: ExperimentConfig) -> dict:
    """The config as a dict without the fields that cannot change the trained weights."""
    d = copy.deepcopy(cfg.to_dict())
    for key in _NOT_TRAINING:
        _drop(d, key)
    return d


def inference_dict(cfg: ExperimentConfig) -> dict:
    """The inference-only fields (dotted keys -> values), eval.batch_size excluded."""
    d = cfg.to_dict()
    out = {k: copy.deepcopy(_pick(d, k)) for k in _INFERENCE}
    out["eval"].pop("batch_size", None)
    return out


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# The code that produces a run's numbers: a cached run is reused only while these files are unchanged ("same
# config and code"). Plotting, tables and notebooks are not among them, so editing a figure retrains nothing.
_TRAINING_CODE = ("engine.py", "config.py", "models", "data", "kernels")
_INFERENCE_CODE = ("eval",)


def code_digest(parts=_TRAINING_CODE) -> str:
    """sha256 over the Python sources of the given hoilib files / packages (sorted, path-qualified)."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for part in parts:
        p = root / part
        for f in sorted([p] if p.is_file() else p.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def training_digest(cfg: ExperimentConfig) -> str:
    return _digest(dict(training_dict(cfg), code=code_digest()))


def inference_digest(cfg: ExperimentConfig) -> str:
    return _digest(dict(inference_dict(cfg), code=code_digest(_INFERENCE_CODE)))


def run_dir(cfg: ExperimentConfig) -> Path:
    """`<cache_dir>/runs/<training digest>`: where the model of `cfg` is (or will be) trained."""
    return Path(cfg.data.cache_dir) / "runs" / training_digest(cfg)


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
    from hoilib import engine

    d = run_dir(cfg)
    metrics_path = d / f"metrics_{inference_digest(cfg)}.json"
    info = engine.init_distributed(engine.resolve_device(cfg).type)  # a torchrun launch: join its group
    if redo and info.is_main and d.exists():
        shutil.rmtree(d)
    info.barrier()
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    if info.is_main:
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "config.json").exists():
            (d / "config.json").write_text(cfg.to_json())

    ck_path = d / engine.CHECKPOINT
    ck = torch.load(ck_path, map_location="cpu", weights_only=False) if ck_path.is_file() else None
    if ck is not None and ck.get("complete"):
        train_time = float(ck["time_s"])
    else:
        out = engine.train(cfg, d, progress=progress, resume=True)
        train_time = float(out["time_s"])

    from hoilib.data.dataset import build_dataset

    test = build_dataset(cfg, "test")
    model = engine.load_trained_model(cfg, d, data=test, progress=progress)
    t0 = time.perf_counter()
    pred = engine.infer(cfg, model, progress=progress, data=test)
    infer_time = time.perf_counter() - t0
    result = None
    if info.is_main:
        from hoilib.eval import save_predictions

        save_predictions(d / f"predictions_{inference_digest(cfg)}.npz", **pred)
        t0 = time.perf_counter()
        metrics = engine.evaluate_run(cfg, pred, data=test)
        result = dict(_plain(metrics), train_time_s=train_time, infer_time_s=infer_time,
                      eval_time_s=time.perf_counter() - t0, n_predictions=int(len(pred["score"])), run_dir=str(d),
                      train_digest=training_digest(cfg), infer_digest=inference_digest(cfg),
                      protocol=cfg.data.protocol, seed=cfg.train.seed, name=cfg.name)
        tmp = metrics_path.with_name(f".{metrics_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, metrics_path)
    if info.enabled:
        box = [result]
        torch.distributed.broadcast_object_list(box, src=0)
        result = box[0]
    return result


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
            Each process uses train.num_threads torch threads (0: the CPU count divided by the workers), so the
            numbers equal those of a sequential run with the same thread count.
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
    if redo:  # delete each run directory once, here, so that settings sharing a model do not retrain it twice
        for d in {run_dir(c) for c in cfgs}:
            shutil.rmtree(d, ignore_errors=True)
    _prepare_shared(cfgs, progress)

    # Settings that share a trained model (inference-only sweeps) run in one process, one after the other.
    groups: dict = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(training_digest(cfg), []).append(i)
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
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = base_cfg.train.num_threads or max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(threads,)) as pool:
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


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_group(cfgs: list) -> list:
    """One worker task of run_grid: experiments that share a trained model, in order."""
    return [run_experiment(c, progress=False) for c in cfgs]


def _prepare_shared(cfgs: list, progress: bool) -> None:
    """Build the worlds and pretrain the CLIPs the grid needs once, with their own progress bars (the runs'
    bars are off inside a grid)."""
    from hoilib.engine import resolve_clip

    done = set()
    for cfg in cfgs:
        key = cfg.digest("world", "detector", "clip", "data")
        if key in done:
            continue
        done.add(key)
        if cfg.data.dataset == "world":
            from hoilib.data.world import build_world
            build_world(cfg, progress=progress)
        resolve_clip(cfg, progress=progress)
