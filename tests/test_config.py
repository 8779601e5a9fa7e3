import pytest

from hoilib.config import ExperimentConfig


def test_override_dotted_and_nested_agree():
    a = ExperimentConfig().override({"model.use_la": False, "train.epochs": 3})
    b = ExperimentConfig().override({"model": {"use_la": False}, "train": {"epochs": 3}})
    assert a.to_dict() == b.to_dict()
    assert a.diff() == {"model.use_la": False, "train.epochs": 3}
    assert a.digest() == b.digest() != ExperimentConfig().digest()


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


def test_digest_of_sections_ignores_other_sections():
    a = ExperimentConfig()
    b = a.override({"train.epochs": 1})
    assert a.digest("world") == b.digest("world")
    assert a.digest("train") != b.digest("train")
