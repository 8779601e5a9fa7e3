"""The experiment cache: digests, reuse, inference-only re-runs, resume, redo, and the long-format grid.

The real LAIN model (random small CLIP from a checkpoint file) on the synthetic split of `_engine_standins`.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hoilib import cache, engine, runs
from hoilib.config import ExperimentConfig
from hoilib.models.clip_backbone import build_clip

from _engine_standins import tiny_split


@pytest.fixture
def setup(tmp_path, monkeypatch):
    splits = {"train": tiny_split(n=16, seed=0, split="train"), "test": tiny_split(n=10, seed=1, split="test")}
    calls = {"train": 0, "test": 0}

    def fake_build_dataset(cfg, split):
        calls[split] += 1
        return splits[split]

    for where in ("hoilib.engine.build_dataset", "hoilib.runs.build_dataset"):
        monkeypatch.setattr(where, fake_build_dataset)
    monkeypatch.setattr("hoilib.runs.build_world", lambda cfg, progress=True: None)
    torch.manual_seed(0)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, tmp_path / "clip.pt")
    cfg = ExperimentConfig().override({
        "data.cache_dir": str(tmp_path / "cache"), "clip.checkpoint": str(tmp_path / "clip.pt"),
        "train.epochs": 2, "train.batch_size": 4, "train.device": "cpu", "model.adapter_dim": 8,
        "model.n_context_queries": 2})
    return cfg, calls


def test_run_dir_and_prediction_path_follow_the_cache_keys(setup):
    cfg, _ = setup
    d = runs.run_dir(cfg)
    assert d == Path(cfg.data.cache_dir) / "runs" / cache.run_key(cfg)
    assert runs.prediction_path(cfg) == d / f"predictions_{cache.predictions_key(cfg)}.npz"
    assert runs.run_dir(cfg.override({"model.lambda_test": 1.0})) == d  # inference-only: the same trained model
    assert runs.prediction_path(cfg.override({"model.lambda_test": 1.0})) != runs.prediction_path(cfg)


def test_run_experiment_caches_and_reruns_inference_only(setup):
    cfg, calls = setup
    m = runs.run_experiment(cfg, progress=False)
    d = runs.run_dir(cfg)
    for k in ("full", "rare", "non_rare", "unseen", "seen", "per_class", "train_time_s", "infer_time_s"):
        assert k in m
    assert len(m["per_class"]) == 8 and 0 <= m["full"] <= 100 and m["train_time_s"] > 0
    assert json.loads((d / "config.json").read_text())["train"]["epochs"] == 2
    assert (d / engine.CHECKPOINT).is_file() and (d / engine.LOG).is_file()
    assert runs.prediction_path(cfg).is_file()
    ck_time = (d / engine.CHECKPOINT).stat().st_mtime_ns

    # the same config again: cached metrics, nothing is built
    before = dict(calls)
    assert runs.run_experiment(cfg, progress=False) == m
    assert calls == before

    # an inference-only change: same run directory, no training, a second metrics file
    cfg2 = cfg.override({"model.lambda_test": 1.0})
    m2 = runs.run_experiment(cfg2, progress=False)
    assert runs.run_dir(cfg2) == d and (d / engine.CHECKPOINT).stat().st_mtime_ns == ck_time
    assert calls["train"] == before["train"]
    assert m2["train_time_s"] == m["train_time_s"] and m2["infer_digest"] != m["infer_digest"]
    assert len(list(d.glob("metrics_*.json"))) == 2
    # a different lambda changes the scores, hence (in general) the predictions file
    p1 = np.load(d / f"predictions_{m['infer_digest']}.npz")
    p2 = np.load(d / f"predictions_{m2['infer_digest']}.npz")
    assert p1["score"].shape == p2["score"].shape and not np.allclose(p1["score"], p2["score"])

    # redo: retrain
    m3 = runs.run_experiment(cfg, redo=True, progress=False)
    assert (d / engine.CHECKPOINT).stat().st_mtime_ns != ck_time
    assert m3["full"] == pytest.approx(m["full"])  # deterministic on the CPU
    assert len(list(d.glob("metrics_*.json"))) == 1


def test_interrupted_run_resumes(setup):
    cfg, _ = setup
    d = runs.run_dir(cfg)
    # a first session that got through epoch 1 of 2 (same training config, so the checkpoint matches)
    engine.train(cfg.override({"train.epochs": 2}), d, progress=False,
                 data=tiny_split(n=16, seed=0, split="train"))
    ck = torch.load(d / engine.CHECKPOINT, weights_only=False)
    ck.update(epoch=1, complete=False, history=ck["history"][:1])
    torch.save(ck, d / engine.CHECKPOINT)
    m = runs.run_experiment(cfg, progress=False)
    ck = torch.load(d / engine.CHECKPOINT, weights_only=False)
    assert ck["complete"] and ck["epoch"] == 2 and len(ck["history"]) == 2
    assert np.isfinite(m["full"])


def test_run_grid_long_format(setup):
    cfg, _ = setup
    cfg = cfg.override({"train.epochs": 1})
    variants = {"LAIN": {}, "w/o adapters": {"model.use_la": False, "model.use_ia": False}}
    df = runs.run_grid(cfg, variants, seeds=(0, 1), protocols=["rf_uc"], progress=False)
    assert list(df.columns) == ["setting", "protocol", "seed", "metric", "value"]
    assert len(df) == 2 * 2 * 7  # settings x seeds x (5 mAPs + 2 timings)
    assert set(df.metric) == {"full", "rare", "non_rare", "unseen", "seen", "train_time_s", "infer_time_s"}
    full = df[df.metric == "full"].set_index(["setting", "seed"]).value
    assert full.notna().all()
    # every (setting, seed) is its own cached run
    assert len(list((runs.run_dir(cfg).parent).iterdir())) == 4
    # a second call reads the cache and gives the same frame
    pd.testing.assert_frame_equal(df, runs.run_grid(cfg, variants, seeds=(0, 1), protocols=["rf_uc"],
                                                    progress=False))
    with pytest.raises(ValueError, match="at least one variant"):
        runs.run_grid(cfg, {}, seeds=(0,))


def test_run_grid_workers_match_sequential_and_share_models(tmp_path):
    """Two worker processes give the numbers of one process (same thread count); inference-only variants share
    one trained model; a protocol -> seeds plan pairs each UC draw with its own seed."""
    torch.manual_seed(0)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, tmp_path / "clip.pt")
    base = ExperimentConfig.from_preset("smoke").override({
        "world.n_train": 24, "world.n_test": 12, "world.n_caption": 8, "clip.checkpoint": str(tmp_path / "clip.pt"),
        "train.epochs": 1, "train.batch_size": 4, "train.num_threads": 1, "model.adapter_dim": 8,
        "model.n_context_queries": 2})
    variants = {"LAIN": {}, "LAIN K=5": {"model.zs_topk": 5}, "w/o adapters": {"model.use_la": False}}
    plan = {"rf_uc": [0], "uc1": [1]}
    frames = {}
    for w in (1, 2):
        cfg = base.override({"data.cache_dir": str(tmp_path / f"cache{w}")})
        frames[w] = runs.run_grid(cfg, variants, protocols=plan, progress=False, workers=w)
        assert len(list((tmp_path / f"cache{w}" / "runs").iterdir())) == 4  # 2 models x 2 (protocol, seed)
    key = ["setting", "protocol", "seed", "metric"]
    a, b = (frames[w][~frames[w].metric.str.endswith("time_s")].set_index(key).value for w in (1, 2))
    assert list(a.index) == list(b.index)
    assert list(a.index.unique("protocol")) == ["rf_uc", "uc1"]
    assert sorted(set(zip(a.index.get_level_values(1), a.index.get_level_values(2)))) == [("rf_uc", 0), ("uc1", 1)]
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    # The variants are different runs (four run folders above); LAIN and "w/o adapters" (here IA only) start from
    # the same weights for what they share, so after six steps with gammas near 1e-9 they may score alike, while
    # the inference-only top-K (HOICLIP's rule) changes the scores of the same trained model.
    assert a.loc[("LAIN K=5", "rf_uc", 0, "full")] != a.loc[("LAIN", "rf_uc", 0, "full")]


_GRID = r"""
import sys, torch
from hoilib import runs
from hoilib.config import ExperimentConfig
from hoilib.models.clip_backbone import build_clip
tmp = sys.argv[1]
torch.manual_seed(0)
torch.save({"model": build_clip("hoi-world-vit").state_dict()}, tmp + "/clip.pt")
cfg = ExperimentConfig.from_preset("smoke").override({
    "world.n_train": 24, "world.n_test": 12, "world.n_caption": 8, "clip.checkpoint": tmp + "/clip.pt",
    "data.cache_dir": tmp + "/cache", "train.epochs": 500, "train.batch_size": 4, "train.num_threads": 1,
    "model.adapter_dim": 8, "model.n_context_queries": 2})
runs.run_grid(cfg, {"A": {}, "B": {"model.use_la": False}}, progress=False, workers=2)
"""


def _children(pid: int) -> list:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_grid_workers_end_with_their_parent(tmp_path):
    """The process that runs a grid (a Jupyter kernel, in the study) is killed: its workers must not live on and keep
    writing to the cache, and nothing they leave can be taken for a result."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", _GRID, str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def workers():
        return [c for c in _children(proc.pid) if "spawn_main" in (Path("/proc") / str(c) / "cmdline").read_text()]

    deadline = time.time() + 300  # generous: the machine may be busy
    while time.time() < deadline and not (len(workers()) == 2 and list((tmp_path / "cache").glob("runs/*/log.jsonl"))):
        assert proc.poll() is None, "the grid ended before it could be killed"
        time.sleep(0.5)
    pids = workers()
    assert len(pids) == 2, pids
    proc.send_signal(signal.SIGKILL)  # the parent alone: its workers are not in the signal
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in pids):
        time.sleep(0.2)
    assert not any(_alive(w) for w in pids)
    for d in (tmp_path / "cache" / "runs").iterdir():
        names = {p.name for p in d.iterdir()}
        assert not any(n.startswith(("metrics_", "predictions_")) for n in names)  # no result of a cut run
        assert names - {"config.json", "checkpoint.pt", "log.jsonl"} == {n for n in names if ".tmp-" in n}
        cache.sweep_stale(d)
        assert not any(".tmp-" in p.name for p in d.iterdir())
