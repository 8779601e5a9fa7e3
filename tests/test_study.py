"""The study's design as data: table builders, seeds, schedules and the published numbers."""
import numpy as np
import pandas as pd
import pytest

from hoilib import plotting, study
from hoilib.data.world import build_world


def test_summaries_use_sample_std_over_seeds():
    long = pd.DataFrame({"setting": ["LAIN"] * 3, "protocol": ["uc0", "uc1", "uc2"], "seed": [0, 1, 2],
                         "metric": ["full"] * 3, "value": [30.0, 32.0, 34.0]})
    s = study.summarise(study.collapse_uc(long))
    assert len(s) == 1 and s["protocol"].iloc[0] == "uc"
    assert s["mean"].iloc[0] == pytest.approx(32.0) and s["std"].iloc[0] == pytest.approx(2.0)
    assert s["n_runs"].iloc[0] == 3


def test_main_table_puts_paper_values_beside_ours():
    rows = []
    for seed, v in enumerate([30.0, 31.0, 32.0]):
        for m in ("unseen", "seen", "full"):
            rows.append(dict(setting="LAIN", protocol="rf_uc", seed=seed, metric=m, value=v))
    t = study.main_table(pd.DataFrame(rows), ours="world")
    r = t.iloc[0]
    assert r["protocol"] == "RF-UC" and r["full_mean"] == pytest.approx(31.0) and r["full_std"] == pytest.approx(1.0)
    assert r["paper_full"] == 34.41 and r["paper_unseen"] == 32.34 and r["ours_from"] == "world"


def test_gain_table_differences_and_standard_errors():
    rows = []
    for setting, vals in (("A", {"rf_uc": [30.0, 32.0], "supervised": [40.0, 40.0]}),
                          ("B", {"rf_uc": [27.0, 29.0], "supervised": [41.0, 43.0]})):
        for protocol, vs in vals.items():
            for seed, v in enumerate(vs):
                for m in ("unseen", "seen", "full"):
                    if not (protocol == "supervised" and m == "unseen"):
                        rows.append(dict(setting=setting, protocol=protocol, seed=seed, metric=m, value=v))
    t = study.main_table(pd.DataFrame(rows), ours="world")
    g = study.gain_table(t, {"A - B": ("A", "B")}).set_index(["protocol", "metric"])
    assert g.loc[("RF-UC", "full"), "A - B"] == pytest.approx(3.0)
    # se = sqrt(std_a^2 / n + std_b^2 / n) = sqrt(2 / 2 + 2 / 2)
    assert g.loc[("RF-UC", "full"), "A - B se"] == pytest.approx(np.sqrt(2.0))
    assert g.loc[("Fully supervised", "full"), "A - B"] == pytest.approx(-2.0)
    assert ("Fully supervised", "unseen") not in g.index  # a protocol without unseen classes has no unseen gain


def test_seed_pairs_compare_methods_seed_by_seed():
    def grid(vals):  # {setting: [full per seed]}
        return pd.DataFrame([dict(setting=k, protocol="rf_uc", seed=s, metric=m, value=v + (m == "unseen"))
                             for k, vs in vals.items() for s, v in enumerate(vs) for m in ("full", "unseen")])

    frames = {"default": grid({"base": [10.0, 12.0], "LAIN": [11.0, 11.5]}),
              "4x longer": grid({"base": [20.0, 21.0], "LAIN": [22.0, 24.0]})}
    p = study.seed_pairs(frames, "base", "LAIN")
    assert list(p.columns) == ["schedule", "protocol", "seed", "base", "LAIN", "LAIN - base"]
    assert p["LAIN - base"].tolist() == pytest.approx([1.0, -0.5, 2.0, 3.0])
    assert p["schedule"].tolist() == ["default", "default", "4x longer", "4x longer"]
    fig = plotting.plot_seed_pairs(p, "base", "LAIN")
    lines = fig.axes[0].lines
    assert len(lines) == 4 and [ln.get_color() for ln in lines] == ["tab:green", "tab:red", "tab:green", "tab:green"]
    assert list(lines[3].get_xdata()) == [2, 3] and list(lines[3].get_ydata()) == [21.0, 24.0]
    one_sided = grid({"base": [10.0, 12.0], "LAIN": [11.0]})
    with pytest.raises(ValueError, match="lacks runs of \\['LAIN'\\]"):
        study.seed_pairs({"default": one_sided}, "base", "LAIN")


def test_long_schedule_passes_more_images_than_the_profile():
    assert set(study.LONG_SCHEDULE) == set(study.PROFILES)
    assert set(study.LONG_SCHEDULE_METHODS) <= set(study.MAIN_METHODS)
    base = study.experiment_config("default")
    longer = base.override(study.LONG_SCHEDULE["default"])
    assert study.images_passed(base) == 1500 * 2 and study.images_passed(longer) == 3000 * 4
    assert longer.train.max_train_images == base.world.n_train  # every training image of the world
    smoke = study.experiment_config("smoke")
    assert study.images_passed(smoke.override(study.LONG_SCHEDULE["smoke"])) == 2 * study.images_passed(smoke)
    assert longer.train.lr_step < longer.train.epochs  # the lr still drops once before the end


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
