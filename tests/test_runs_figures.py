"""Notebook 08's orchestration on a tiny world: the shortcut sweep's test worlds (inference only) and the detector's
COCO box AP. A random small CLIP from a checkpoint file, one-epoch models, 12 test images."""
import numpy as np
import pytest
import torch

from hoilib import runs, study
from hoilib.config import ExperimentConfig
from hoilib.data.world import build_world
from hoilib.models.clip_backbone import build_clip

SETTINGS = {"same": {}, "bias 0": {"world.scene_bias": 0.0}, "v1": {"world.version": 1, "world.max_people": 3}}
METHODS = {k: study.MAIN_METHODS[k] for k in study.FIGURE_PAIR}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figures")
    torch.manual_seed(0)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, tmp / "clip.pt")
    return ExperimentConfig.from_preset("smoke").override({
        "world.n_train": 24, "world.n_val": 4, "world.n_test": 12, "world.n_caption": 8,
        "clip.checkpoint": str(tmp / "clip.pt"), "data.cache_dir": str(tmp / "cache"), "data.protocol": "nf_uc",
        "train.epochs": 1, "train.batch_size": 4, "train.num_threads": 1, "model.adapter_dim": 8,
        "model.n_context_queries": 2})


def test_shortcut_sweep_pairs_methods_by_seed_on_each_test_world(base):
    long = runs.shortcut_sweep(base, METHODS, (0, 1), SETTINGS)
    assert list(long.columns) == ["setting", "world", "seed", "metric", "value"]
    assert {"unseen", "seen", "full"} <= set(long["metric"])
    cells = set(zip(long["setting"], long["world"], long["seed"]))
    assert cells == {(m, w, s) for m in METHODS for w in SETTINGS for s in (0, 1)}
    v = long.set_index(["setting", "world", "seed", "metric"])["value"]
    # The empty setting is the study's own test split, image for image with the same detections: the sweep gives
    # the main runs' numbers exactly, by inference on the same cached models.
    for method, overrides in METHODS.items():
        for seed in (0, 1):
            m = runs.run_experiment(base.override(overrides, {"train.seed": seed}), progress=False)
            for metric in ("full", "unseen"):
                assert v[(method, "same", seed, metric)] == m[metric]
    # another world is another test split: other numbers from the same models
    assert v.xs("bias 0", level="world").to_dict() != v.xs("same", level="world").to_dict()
    # the gap table pairs the two methods seed by seed on each world
    table = study.shortcut_gap_table(long, runs.shortcut_worlds(base, SETTINGS))
    assert list(dict.fromkeys(table["world"])) == list(SETTINGS) and set(table["n_pairs"]) == {2}


def test_test_worlds_differ_only_where_the_setting_says(base):
    worlds = runs.shortcut_worlds(base, SETTINGS).set_index("world")
    assert (worlds["images"] == 12).all()
    same = build_world(base.override({"world.n_train": 1, "world.n_val": 0, "world.n_caption": 0}), progress=False)
    ref = build_world(base, progress=False)  # the study's world: its test split is the "same" setting's
    np.testing.assert_array_equal(same.test_images, ref.test_images)
    np.testing.assert_array_equal(same.det_test.boxes, ref.det_test.boxes)
    # scene bias changes the backgrounds only: the same pairs, instances and detections
    test_only = {"world.n_train": 1, "world.n_val": 0, "world.n_caption": 0}
    bias0 = build_world(base.override({"world.scene_bias": 0.0}, test_only), progress=False)
    assert not np.array_equal(bias0.test_images, ref.test_images)
    np.testing.assert_array_equal(bias0.test.boxes_o, ref.test.boxes_o)
    np.testing.assert_array_equal(bias0.test.hoi, ref.test.hoi)
    np.testing.assert_array_equal(bias0.det_test.boxes, ref.det_test.boxes)
    # version 1 has no scenes and fewer people
    assert worlds.loc["bias 0", "crowded"] == worlds.loc["same", "crowded"]
    assert worlds.loc["same", "scene_home"] < worlds.loc["bias 0", "scene_home"]
    assert np.isnan(worlds.loc["v1", "scene_home"])
    assert worlds.loc["v1", "people_per_image"] < worlds.loc["same", "people_per_image"]


def test_shortcut_settings_are_checked(base):
    with pytest.raises(ValueError, match="world.\\* fields of the test split only.*train.epochs"):
        runs.shortcut_worlds(base, {"x": {"train.epochs": 3}})
    with pytest.raises(ValueError, match="world.n_train"):
        runs.shortcut_worlds(base, {"x": {"world.n_train": 5}})
    with pytest.raises(ValueError, match="for data.dataset 'world' only"):
        runs.shortcut_sweep(base.override({"data.dataset": "hicodet"}), METHODS, (0,), SETTINGS)


def test_detector_box_ap_follows_the_noise_level(base):
    t = runs.detector_box_ap(base, (0.0, 1.0)).set_index("level")
    # level 0 repeats every drawn instance exactly (one score): 100 against them all; against the annotated boxes
    # the bystanders and unused objects are false positives
    assert t.loc[0.0, "box_ap_all"] == pytest.approx(100.0) and t.loc[0.0, "box_ap50_all"] == pytest.approx(100.0)
    assert t.loc[0.0, "box_ap"] < 100.0
    assert t.loc[1.0, "box_ap"] < t.loc[0.0, "box_ap"] and t.loc[1.0, "box_ap_all"] < 100.0
    assert t.loc[1.0, "box_ap75"] <= t.loc[1.0, "box_ap50"]
    assert (t["n_images"] == 12).all()
    with pytest.raises(ValueError, match="only level 1.0 exists"):
        runs.detector_box_ap(base.override({"data.dataset": "hicodet"}), (0.0, 1.0))
