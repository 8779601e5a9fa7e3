import pytest

from hoilib.config import ExperimentConfig, ModelConfig


def test_override_dotted_and_nested_agree():
    a = ExperimentConfig().override({"model.use_la": False, "train.epochs": 3})
    b = ExperimentConfig().override({"model": {"use_la": False}, "train": {"epochs": 3}})
    assert a.to_dict() == b.to_dict()
    assert a.diff() == {"model.use_la": False, "train.epochs": 3}
    assert a.to_json() == b.to_json() != ExperimentConfig().to_json()


def test_override_does_not_mutate_the_original():
    base = ExperimentConfig()
    base.override({"model.adapter_dim": 8})
    assert base.model.adapter_dim == 32


@pytest.mark.parametrize("bad, message", [
    ({"model.nope": 1}, "unknown config key 'model.nope'"),
    ({"model": 3}, "is a section"),
    ({"train.epochs": 2.5}, "train.epochs expects an int"),
    ({"model.use_la": 1}, "model.use_la expects a bool"),
    ({"model.la_mixer": "mlp"}, "model.la_mixer must be one of"),
    ({"data.protocol": "rf"}, "data.protocol must be one of"),
])
def test_bad_overrides_are_rejected_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ExperimentConfig().override(bad)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        ExperimentConfig.from_preset("nope")


def test_every_field_has_one_role():
    roles = ExperimentConfig().roles()
    assert roles["model.lambda_test"] == roles["eval.ap"] == roles["data.detections_test"] == "inference"
    assert roles["model.zs_topk"] == roles["model.zs_rule"] == "inference"
    assert roles["train.augment_flip"] == roles["train.augment_color"] == roles["train.augment_scale"] == "result"
    assert roles["train.grid_workers"] == roles["model.kernel_impl"] == roles["eval.batch_size"] == "speed"
    assert roles["clip.checkpoint"] == roles["data.cache_dir"] == roles["name"] == "label"
    # thread counts change the bits of CPU results: they are result fields (in the cache keys)
    assert roles["train.num_threads"] == roles["clip.pretrain_threads"] == roles["model.use_la"] == "result"
    cfg = ExperimentConfig()
    training = set(_keys(cfg.training_dict()))
    inference = set(_keys(cfg.inference_dict()))
    assert training.isdisjoint(inference)
    assert training | inference == {k for k, r in roles.items() if r in ("result", "inference")}
    assert "eval.batch_size" not in inference and "clip.checkpoint" not in training


def _keys(d, prefix=""):
    for k, v in d.items():
        yield from _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]


@pytest.mark.parametrize("bad, message", [
    ({"train.epochs": 0}, "train.epochs must be >= 1, got 0"),
    ({"model.fg_iou": 5.0}, r"model.fg_iou must be in \(0.0, 1.0\], got 5.0"),
    ({"model.la_kernels": ["a"]}, "model.la_kernels must be a non-empty list of odd positive integers"),
    ({"model.la_kernels": [3, 4]}, "model.la_kernels must be a non-empty list of odd positive integers"),
    ({"model.adapter_dim": 33}, r"model.adapter_dim \(33\) must be divisible by model.adapter_heads \(2\)"),
    ({"model.min_instances": 20}, r"model.max_instances \(15\) must be >= model.min_instances \(20\)"),
    ({"world.caption_close_up": 1.5}, r"world.caption_close_up must be in \[0.0, 1.0\]"),
    ({"detector.miss_rate": -0.1}, r"detector.miss_rate must be in \[0.0, 1.0\]"),
    ({"clip.image_std": [0.2, 0.0, 0.2]}, "clip.image_std must be > 0 per channel"),
    ({"clip.image_mean": [0.5, 0.5]}, r"clip.image_mean must be 3 finite numbers"),
    ({"model.gamma_init": float("nan")}, "model.gamma_init must be a finite number"),
    ({"train.lr": 0.0}, "train.lr must be > 0"),
    ({"eval.batch_size": 0}, "eval.batch_size must be >= 1"),
    ({"model.zs_rule": "sum"}, r"model.zs_rule must be one of \('hoiclip', 'logit'\), got 'sum'"),
    ({"train.augment_scale": [0.8, 0.5]}, r"train.augment_scale must satisfy 0 < min <= max <= 1"),
    ({"train.augment_scale": [0.5]}, r"train.augment_scale must be 2 numbers \(min, max\)"),
    ({"train.augment_color": 1.5}, r"train.augment_color must be in \[0.0, 1.0\]"),
])
def test_out_of_range_values_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig().override(bad)


def test_construction_and_direct_edits_are_validated():
    with pytest.raises(ValueError, match="model.adapter_dim must be of type int"):
        ExperimentConfig(model=ModelConfig(adapter_dim="32"))
    cfg = ExperimentConfig()
    cfg.train.epochs = -1
    with pytest.raises(ValueError, match="train.epochs must be >= 1"):
        cfg.validate()
    for preset in ("smoke", "default", "hicodet"):
        ExperimentConfig.from_preset(preset).validate()


def test_augmentation_defaults_are_official_and_the_world_presets_switch_it_off():
    t = ExperimentConfig().train
    assert (t.augment_flip, t.augment_color, tuple(t.augment_scale)) == (True, 0.4, (0.5, 1.0))
    t = ExperimentConfig.from_preset("hicodet").train
    assert (t.augment_flip, t.augment_color, tuple(t.augment_scale)) == (True, 0.4, (0.5, 1.0))
    for preset in ("smoke", "default"):
        t = ExperimentConfig.from_preset(preset).train
        assert (t.augment_flip, t.augment_color, tuple(t.augment_scale)) == (False, 0.0, (1.0, 1.0)), preset
    assert ExperimentConfig().model.zs_rule == "hoiclip"
