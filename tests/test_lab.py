"""The ablation lab: re-scored stored outputs equal the model's own inference, a cancelled run resumes to the same
weights, and the lab's table and controls follow the library.

A tiny built-in world with a random small CLIP (no pretraining), as in tests/test_engine.py; runs are cached in
one module-wide folder, so the tests share them.
"""
import threading
import time

import numpy as np
import pytest
import torch

from hoilib import engine, lab, runs
from hoilib.config import ExperimentConfig
from hoilib.data.dataset import build_dataset


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    from hoilib.models.clip_backbone import build_clip

    root = tmp_path_factory.mktemp("lab")
    torch.manual_seed(0)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, root / "clip.pt")
    return ExperimentConfig().override({
        "profile": "smoke", "data.cache_dir": str(root / "cache"), "clip.checkpoint": str(root / "clip.pt"),
        "data.protocol": "nf_uc", "world.n_train": 32, "world.n_test": 12, "world.n_caption": 0,
        "train.epochs": 2, "train.batch_size": 4, "train.lr_step": 1, "train.lr": 0.02, "train.device": "cpu",
        "train.num_threads": 1, "train.seed": 0, "eval.batch_size": 5})


def _infer(cfg, model=None, **attrs):
    """engine.infer of the run of cfg, with model attributes (verb_alpha, ...) changed for the call."""
    model = model or engine.load_trained_model(cfg, runs.run_dir(cfg))
    for k, v in attrs.items():
        setattr(model, k, v)
    return engine.infer(cfg, model, progress=False)


VARIANTS = {
    "LAIN": {},
    "LAIN + HOICLIP": {"model.use_verb_classifier": True, "model.verb_alpha": 0.5, "model.zs_topk": 3},
    "HOI prompts": {"model.text_mode": "hoi", "model.use_verb_classifier": True, "model.zs_topk": 2},
    "w/o adapters": lab.BASELINE,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rescored_outputs_equal_infer(cfg, variant):
    c = cfg.override(VARIANTS[variant])
    out = lab.run_outputs(c)
    assert out.has_verb_head == c.model.use_verb_classifier
    assert out.scales == (lab.GAMMA_SCALES if variant != "w/o adapters" else (1.0,))
    test = build_dataset(c, "test")
    p = out.pairs.shape[0]
    assert p > 0 and out.s_inter.shape[:2] == (len(out.scales), p)
    assert out.zs_cos.shape == (len(test.dataset), test.vocab.num_classes)
    # the run's own settings: exactly the predictions of engine.infer (scores to the last bit, see lab's docstring)
    own = lab.rescore(out)
    ref = _infer(c)
    assert lab.predictions_match(own, ref) and len(ref["score"]) > 0
    # other inference-time settings: equal to infer of the same model with those settings
    model = engine.load_trained_model(c, runs.run_dir(c))
    knobs = dict(lam=1.3, topk=4, alpha=0.25 if out.has_verb_head else None)
    got = lab.rescore(out, **knobs)
    want = _infer(c, model, lambda_test=1.3, zs_topk=4, verb_alpha=0.25 if out.has_verb_head else c.model.verb_alpha)
    assert lab.predictions_match(got, want)
    assert not np.allclose(got["score"], own["score"])  # the knobs did change the scores
    if variant != "w/o adapters":
        with model.scaled_gammas(0.5):
            want = _infer(c, model, lambda_test=c.model.lambda_test, zs_topk=c.model.zs_topk,
                          verb_alpha=c.model.verb_alpha)
        assert lab.predictions_match(lab.rescore(out, gamma=0.5), want)
        g = [a.la.gamma for a in model.adapters]
        assert all(torch.equal(x, y) for x, y in zip(g, [a.la.gamma for a in engine.load_trained_model(
            c, runs.run_dir(c)).adapters]))  # scaled_gammas puts the exact values back
    # timing is measured, not asserted
    t0 = time.perf_counter()
    m = lab.evaluate(c, out, test, lam=2.0)
    print(f"\n{variant}: {p} pairs, re-score + evaluate {time.perf_counter() - t0:.4f} s ({m['time_s']:.4f} s inside)")


def test_stored_outputs_are_cached_and_the_grid_is_checked(cfg):
    out = lab.run_outputs(cfg)
    path = lab.outputs_path(cfg)
    stamp = path.stat().st_mtime_ns
    again = lab.run_outputs(cfg)
    assert path.stat().st_mtime_ns == stamp and torch.equal(again.s_inter, out.s_inter)
    assert out.gamma_index(0.25) == 1
    with pytest.raises(ValueError, match="not in the stored grid"):
        out.gamma_index(0.3)
    # gamma 0 removes every adapter update: the scores move
    assert not torch.equal(out.s_inter[0], out.s_inter[-1])


def test_cancelled_run_leaves_a_resumable_cache_entry(cfg, tmp_path):
    c = cfg.override({"train.seed": 7})
    stop = threading.Event()
    seen = []

    def progress(frac, text):
        seen.append(frac)
        if frac > 0.6:  # in the second of two epochs
            stop.set()

    with pytest.raises(engine.Cancelled, match="epoch 2"):
        lab.train_runs([c], on_progress=progress, stop=stop)
    d = runs.run_dir(c)
    ck = torch.load(d / engine.CHECKPOINT, weights_only=False)
    assert ck["epoch"] == 1 and not ck["complete"] and not lab.is_trained(c)
    assert not list(d.glob("metrics_*.json")) and not list(d.glob("predictions_*.npz"))
    assert [r["epoch"] for r in engine.read_log(d / engine.LOG) if r["event"] == "epoch"] == [1]
    assert seen == sorted(seen) and 0.6 < seen[-1] < 1.0

    (m,) = lab.train_runs([c])  # resumes at epoch 2, then infers and evaluates
    assert lab.is_trained(c) and 0 <= m["full"] <= 100
    ref = engine.train(c, tmp_path / "uninterrupted", progress=False)
    done = torch.load(d / engine.CHECKPOINT, weights_only=False)
    assert [h["loss"] for h in done["history"]] == [h["loss"] for h in ref["history"]]
    state = torch.load(tmp_path / "uninterrupted" / engine.CHECKPOINT, weights_only=False)["model"]
    assert all(torch.equal(v, state[k]) for k, v in done["model"].items())
    # the engine records the adapters' mean |gamma| with every epoch: LAIN's epoch_stats of the final weights
    model = engine.load_trained_model(c, d)
    last = done["history"][-1]
    assert last["gamma_la"] == pytest.approx(model.epoch_stats()["gamma_la"], rel=1e-6)
    assert last["gamma_ia"] == pytest.approx(model.epoch_stats()["gamma_ia"], rel=1e-6)
    assert last["gamma_la"] > c.model.gamma_init  # the adapters moved off their initial 1e-9


def test_selections_and_labels():
    assert lab.selection_overrides({}) == {}
    assert lab.selection_overrides({"model.use_ia": False, "model.use_la": True}) == {"model.use_ia": False}
    assert lab.setting_label({"model.use_ia": False}) == "LAIN: use_ia=False"
    assert lab.setting_label(dict(lab.BASELINE, **{"model.la_mixer": "local_attn"})) == "w/o adapters"
    assert lab.setting_label(dict(lab.BASELINE, **{"model.use_verb_classifier": True})).startswith("LAIN: ")
    with pytest.raises(ValueError, match="visual info, the spatial layout or both"):
        lab.selection_overrides({"model.la_visual": False, "model.la_layout": False})
    with pytest.raises(ValueError, match="unknown lab switches"):
        lab.selection_overrides({"model.lambda_test": 1.0})


def test_lab_table_and_controls(cfg):
    the_lab = lab.Lab(cfg, n_seeds=1)
    table = the_lab.run_training()
    assert list(table["selection"]) == ["LAIN", "LAIN"] and list(table["metric"]) == ["full", "unseen"]
    assert (table["vs LAIN (95% CI)"] == "-").all()
    assert table["vs w/o adapters (95% CI)"].str.contains("unbounded: one seed").all()
    ui = the_lab.widget  # builds without a browser; shows LAIN seed 0 at its own settings
    assert the_lab.w_run.value == ("LAIN", 0)
    assert the_lab.w_map.value == lab.map_text(the_lab.inference("LAIN", 0))
    the_lab.w_lambda.value = 1.0
    assert the_lab.w_map.value == lab.map_text(the_lab.inference("LAIN", 0, lam=1.0))
    assert the_lab.w_alpha.disabled and not the_lab.w_gamma.disabled  # no verb head; adapters present
    # Run in the background with the Interaction Adapter off: a new selection row and a new run choice
    the_lab.w_switches["model.use_ia"].value = False
    the_lab.start_training()
    the_lab.wait(300)
    assert "done" in the_lab.w_status.value, the_lab.w_status.value
    assert list(the_lab.table["selection"]) == ["LAIN"] * 2 + ["LAIN: use_ia=False"] * 2
    assert "LAIN: use_ia=False" in the_lab.w_results.value and len(the_lab.w_figure.value) > 0
    assert ("LAIN: use_ia=False", 0) in [v for _, v in the_lab.w_run.options]
    assert ui is the_lab.widget
