"""The study's design as data: table builders, seeds, schedules and the published numbers."""
import numpy as np
import pandas as pd
import pytest

from hoilib import stats, study
from hoilib.data.world import build_world


def test_summaries_use_sample_std_over_seeds():
    long = pd.DataFrame({"setting": ["LAIN"] * 3, "protocol": ["uc0", "uc1", "uc2"], "seed": [0, 1, 2],
                         "metric": ["full"] * 3, "value": [30.0, 32.0, 34.0]})
    s = study.summarise(study.collapse_uc(long))
    assert len(s) == 1 and s["protocol"].iloc[0] == "uc"
    assert s["mean"].iloc[0] == pytest.approx(32.0) and s["std"].iloc[0] == pytest.approx(2.0)
    assert s["n_runs"].iloc[0] == 3


def _long(values: dict, protocol="rf_uc", metrics=("full", "unseen")) -> pd.DataFrame:
    """{setting: [value per seed]} -> run_grid-like long rows (unseen = full - 1)."""
    return pd.DataFrame([dict(setting=k, protocol=protocol, seed=i, metric=m, value=v - (m == "unseen"))
                         for k, vs in values.items() for i, v in enumerate(vs) for m in metrics])


def test_main_table_puts_each_source_in_its_own_column():
    rows = []
    for seed, v in enumerate([30.0, 31.0, 32.0]):
        for m in ("unseen", "seen", "full"):
            rows += [dict(setting="LAIN", protocol="rf_uc", seed=seed, metric=m, value=v),
                     dict(setting="LAIN + HOICLIP components", protocol="uc1", seed=seed, metric=m, value=v)]
    t = study.main_table(pd.DataFrame(rows)).set_index(["method", "protocol"])
    r = t.loc[("LAIN", "RF-UC")]
    assert r["full_mean_map"] == pytest.approx(31.0) and r["full_sd_map"] == pytest.approx(1.0) and r["n_runs"] == 3
    assert r["paper_lain_full_map"] == 34.41 and r["released_lain_unseen_map"] == 32.34
    assert np.isnan(r["hoiclip_tab2_full_map"])  # a source never fills another method's cell
    h = t.loc[("LAIN + HOICLIP components", "UC")]
    assert h["hoiclip_tab2_full_map"] == 32.99 and np.isnan(h["paper_lain_full_map"])
    assert all(c.endswith(("_map", "method", "protocol", "n_runs")) for c in t.reset_index().columns)


def test_paired_tables_replicate_per_world_and_pool():
    frames = {0: _long({"w/o adapters": [10.0, 11.0, 12.0], "LAIN": [11.0, 12.5, 13.0]}),
              1: _long({"w/o adapters": [10.0, 11.0, 12.0], "LAIN": [9.0, 10.1, 10.9]})}
    t = study.replicated_table(frames, study.PRIMARY)
    assert t["world"].tolist() == ["0", "0", "1", "1", "pooled", "pooled"]
    full = t[t["metric"] == "full"].set_index("world")
    assert full.loc["0", "mean_diff_map"] == pytest.approx((1 + 1.5 + 1) / 3)
    assert full.loc["pooled", "n_pairs"] == 6 and full["primary"].all()
    # by hand: world 0 differences 1, 1.5, 1 -> mean 7/6, sd 0.2887, t(0.975, 2) = 4.3027
    assert full.loc["0", "half_width_map"] == pytest.approx(4.302653 * 0.288675 / np.sqrt(3), rel=1e-5)
    assert full.loc["0", "verdict"] == "supported" and full.loc["1", "verdict"] == "contradicted"
    v = study.replication_verdict(t).set_index("metric")
    assert v.loc["full", "worlds"] == "split: supported in world 0, contradicted in world 1"
    lines = study.verdict_lines(full.reset_index())
    assert lines[0].startswith("LAIN - w/o adapters (world 0, RF-UC, full): supported: +1.17 [")


def test_power_table_says_how_many_pairs_a_target_needs():
    frames = {0: _long({"w/o adapters": [10.0, 11.0, 12.0, 13.0], "LAIN": [11.0, 13.0, 12.0, 14.5]})}
    t = study.replicated_table(frames, study.PRIMARY)
    p = study.power_table(t, {"full": 1.0}).iloc[0]
    sd = np.std([1.0, 2.0, 0.0, 1.5], ddof=1)
    assert p["sd_diff_map"] == pytest.approx(sd) and p["pairs_for_target"] == stats.seeds_needed(sd, 1.0)
    assert not p["meets_target"] and p["mde80_map"] == pytest.approx(stats.minimum_detectable_effect(sd, 4))


def test_validation_chooses_on_both_arms(monkeypatch):
    """The value with the best mean validation Full over both arms wins, not LAIN's favourite."""
    calls = []

    def fake_grid(cfg, grid, seeds, protocols, progress=True):
        calls.append((cfg.eval.split, protocols, {k: dict(v) for k, v in grid.items()}))
        lr = grid["LAIN"].get("train.lr", 0.02)
        lam = grid["LAIN"].get("model.lambda_test", 2.8)
        aug = grid["LAIN"].get("train.augment_flip", False)
        score = {"w/o adapters": {0.01: 10.0, 0.02: 14.0, 0.04: 9.0}, "LAIN": {0.01: 16.0, 0.02: 13.0, 0.04: 9.0}}
        return pd.DataFrame([dict(setting=k, protocol=protocols[0], seed=s, metric="full",
                                  value=score[k][lr] + (1.0 if aug else 0.0) - abs(lam - 1.0)) for k in grid
                             for s in seeds])

    monkeypatch.setattr(study.runs, "run_grid", fake_grid)
    v = study.validation(study.experiment_config("default"), progress=False)
    # lr 0.01: mean 13.0; 0.02: 13.5 -> 0.02 although LAIN alone prefers 0.01
    assert v.chosen["train.lr"] == 0.02 and v.chosen["model.lambda_test"] == 1.0
    assert v.chosen["train.augment_flip"] is True and v.chosen["train.augment_scale"] == (0.5, 1.0)
    assert {c[0] for c in calls} == {"val"} and {c[1][0] for c in calls} == {study.VALIDATION_PROTOCOL}
    s = v.summary()
    assert s[s["chosen"]]["tried"].tolist() == ["0.02", "official", "1.0"]
    cfg = study.with_choices(study.experiment_config("default"))
    assert cfg.eval.split == "test" and cfg.train.lr == 0.02


def test_ablation_comparisons_carry_the_papers_differences():
    vals = {k: [20.0 + i, 21.0 + i, 22.0 + i] for i, k in enumerate(study.ABLATIONS)}
    t = study.ablation_comparisons(_long(vals, protocol=study.ABLATION_PROTOCOL))
    r = t[(t["comparison"] == "+ LA only - w/o adapters") & (t["metric"] == "unseen")].iloc[0]
    assert r["paper_diff_map"] == pytest.approx(27.71 - 24.88) and r["mean_diff_map"] == pytest.approx(1.0)
    r = t[(t["comparison"] == "IA: w/o IPRM - + LA + IA") & (t["metric"] == "unseen")].iloc[0]
    assert r["direction"] == -1 and r["paper_diff_map"] == pytest.approx(24.32 - 30.50)
    assert len(t) == 2 * len(study.ABLATION_COMPARISONS)


def test_sweep_table_compares_every_value_with_the_papers_choice():
    rows = [dict(setting=float(v), protocol="nf_uc", seed=s, metric=m, value=10.0 + v + s)
            for v in study.TOPKS for s in (0, 1, 2) for m in ("full", "rare", "unseen")]
    t = study.sweep_table(pd.DataFrame(rows), "topk").set_index("topk")
    assert t.loc[10.0, "full_verdict"] == "(the paper's value)"
    assert t.loc[20.0, "full_diff_map"] == pytest.approx(10.0) and t.loc[20.0, "full_verdict"] == "contradicted"
    assert t.loc[0.0, "full_diff_map"] == pytest.approx(-10.0) and t.loc[0.0, "full_verdict"] == "supported"
    assert t.loc[5.0, "hoiclip_tab7_full_map"] == 32.25


def test_ablation_rows_match_the_paper_table():
    assert list(study.ABLATIONS) == list(study.PAPER_ABLATION)
    assert len(study.ABLATIONS) == 9


def test_per_class_table_one_row_per_class_and_run():
    rows = [dict(setting=s, protocol="nf_uc", seed=0, metric=m, value=v)
            for s in ("LAIN", "base") for m, v in (("full", 9.0), ("ap_0", 10.0), ("ap_1", 0.0), ("ap_2", 55.5))]
    t = study.per_class_table(pd.DataFrame(rows), train_counts=[12, 0, 3], unseen=[1])
    assert list(t.columns) == ["setting", "protocol", "seed", "hoi", "ap", "train_pairs", "unseen"]
    assert t["hoi"].tolist() == [0, 1, 2, 0, 1, 2] and t["setting"].tolist() == ["LAIN"] * 3 + ["base"] * 3
    assert t["ap"].tolist() == [10.0, 0.0, 55.5] * 2 and t["train_pairs"].tolist() == [12, 0, 3] * 2
    assert t["unseen"].tolist() == [False, True, False] * 2
    with pytest.raises(ValueError, match="per_class=True"):
        study.per_class_table(pd.DataFrame(rows[:1]), [1], [])
    with pytest.raises(ValueError, match="class 2 but train_counts has 2 classes"):
        study.per_class_table(pd.DataFrame(rows), [1, 1], [])


# ---- notebooks 01 and 02: the worlds of a profile, their versions, the probe sweep --------------------------------
def test_world_configs_follow_the_profile_and_skip_hicodet():
    cfg = study.experiment_config("default")
    worlds = study.world_configs(cfg)
    assert list(worlds) == list(study.WORLD_SEEDS["default"]) == [0, 1]
    assert [c.world.seed for c in worlds.values()] == [0, 1]
    assert worlds[1].diff(cfg) == {"world.seed": 1}  # nothing else changes
    assert study.world_configs(study.experiment_config("hicodet-smoke")) == {}
    assert set(study.PROBE_SWEEP_IMAGES) == set(study.PROFILES) == set(study.WORLD_SEEDS)


def test_world_tables_on_a_tiny_world(tmp_path):
    cfg = study.experiment_config("smoke", {"world.n_train": 40, "world.n_val": 12, "world.n_test": 10,
                                            "world.n_caption": 30}, cache_dir=str(tmp_path))
    configs = study.world_configs(cfg)
    worlds = {s: build_world(c, progress=False) for s, c in configs.items()}
    w = worlds[0]
    splits = study.world_splits_table(w, 0)
    row = splits.set_index("setting").loc["rf_uc"]
    assert row["world_seed"] == 0 and row["val_images"] == len(w.val.nonempty_images())
    unseen = np.isin(w.val.hoi, w.protocols["rf_uc"])
    assert (row["val_set_pairs"], row["val_other_pairs"]) == (int(unseen.sum()), int((~unseen).sum()))

    t = study.world_versions_table(configs, worlds)
    assert list(t.columns) == list(study.VERSION_COLUMNS)
    assert t[["world_seed", "version"]].values.tolist() == [[0, 2], [0, 1]]
    v2, v1 = t.iloc[0], t.iloc[1]
    assert v2["test_images"] == v1["test_images"] == 10
    assert v2["people_per_image"] > v1["people_per_image"]
    # version 2's captions show a verb's home scene far above chance, its HOI images below; version 1 has no scenes
    assert v2["caption_scene_home_pct"] > v2["caption_scene_chance_pct"]
    assert v2["hoi_scene_home_pct"] < v2["hoi_scene_chance_pct"]
    assert np.isnan([v1["caption_scene_home_pct"], v1["hoi_scene_home_pct"]]).all()
    assert 0 <= v1["crowded_pct"] <= 100 and 0 <= v2["ambiguous_pct"] <= 100


def test_clip_pretraining_table_units():
    metrics = {0: {"i2t_top1": 0.5, "i2t_chance": 0.004, "time_s": 12.5, "epochs": 4, "history": []},
               1: {"i2t_top1": 0.3}}
    t = study.clip_pretraining_table(metrics)
    assert t.values.tolist() == [[0, "i2t_top1", 50.0, "%"], [0, "i2t_chance", 0.4, "%"], [0, "epochs", 4.0, "epochs"],
                                 [0, "time_s", 12.5, "s"], [1, "i2t_top1", 30.0, "%"]]


@pytest.mark.parametrize("profile", ["default", "hicodet"])
def test_main_runs_trains_hoiclip_on_its_protocols_only(monkeypatch, profile):
    calls = []

    def fake_grid(cfg, variants, seeds=(0,), protocols=None, progress=True):
        calls.append((tuple(variants), dict(protocols)))
        return pd.DataFrame([dict(setting=v, protocol=p, seed=s, metric="full", value=1.0)
                             for v in variants for p, ss in protocols.items() for s in ss])

    monkeypatch.setattr(study.runs, "run_grid", fake_grid)
    long = study.main_runs(study.experiment_config(profile), progress=False)
    (pair, plan), (hoiclip, kept) = calls
    assert pair == ("w/o adapters", "LAIN") and hoiclip == ("LAIN + HOICLIP components",)
    draws = study.UC_DRAWS[profile]
    assert plan == {**{p: list(study.SEEDS[profile]) for p in study.MAIN_PROTOCOLS if p != "uc"},
                    **{d: [k] for k, d in enumerate(draws)}}
    want = {"rf_uc", "nf_uc"} if profile == "default" else set(plan)
    assert set(kept) == want and all(kept[p] == plan[p] for p in kept)
    # the main table then has LAIN + HOICLIP components only where it was trained, and compares it only there
    t = study.paired_table(long, study.MAIN_COMPARISONS, metrics=("full",))
    hoiclip_rows = t[t.comparison == "HOICLIP components - LAIN"]
    assert len(hoiclip_rows) == len({("uc" if p.startswith("uc") else p) for p in want})
