"""Looking inside LAIN (hoilib.analysis.introspect): named shapes, the mask, the adapters' updates and attention, as
read from the model's own forward pass. A random small CLIP and a toy vocabulary; no training."""
import numpy as np
import pytest
import torch

from hoilib import analysis
from hoilib.config import ExperimentConfig
from hoilib.data.vocab import Vocabulary
from hoilib.models import build_model

VERBS = ("hold", "ride", "no_interaction")
OBJECTS = ("person", "bicycle", "ball")
HOI = np.array([[0, 1], [1, 1], [2, 1], [0, 2], [2, 2], [0, 0], [2, 0]])


def toy_vocab() -> Vocabulary:
    return Vocabulary(
        name="toy", verbs=VERBS, objects=OBJECTS, hoi_classes=HOI,
        verb_prompts=tuple(f"a photo of a person is {v}ing the object" for v in VERBS),
        object_prompts=tuple(f"a photo of a {o}" for o in OBJECTS) + ("a photo of nothing",),
        hoi_prompts=tuple(f"a photo of a person {VERBS[v]}ing a {OBJECTS[o]}" for v, o in HOI), no_interaction=2)




def make(clip, **model):
    cfg = ExperimentConfig().override({f"model.{k}": v for k, v in model.items()})
    torch.manual_seed(0)
    return build_model(cfg, toy_vocab(), clip=clip).eval()


def set_gammas(model, value: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(value)


def inputs(n_h=2, n_o=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = n_h + n_o
    xy = torch.rand(k, 2, generator=g) * 36
    wh = torch.rand(k, 2, generator=g) * 20 + 6
    labels = torch.cat([torch.zeros(n_h, dtype=torch.long), torch.randint(1, 3, (n_o,), generator=g)])
    det = dict(boxes=torch.cat([xy, xy + wh], 1), scores=torch.rand(k, generator=g) * 0.5 + 0.45, labels=labels,
               feats=None)
    return torch.randn(1, 3, 64, 64, generator=g), [det]


@pytest.mark.parametrize("switches", [{}, {"ia_context": False, "ia_iprm": False}, {"la_mixer": "local_attn"},
                                      {"use_la": False}, {"la_layout": False, "use_verb_classifier": True}])
def test_trace_names_every_dimension(clip, switches):
    model = make(clip, **switches)
    images, dets = inputs()
    table, outputs = analysis.trace_shapes(model, images, dets, layers=(0, -1))
    p, k = int(outputs[0]["pairs"].shape[0]), int(outputs[0]["boxes"].shape[0])
    assert p == 2 * (k - 1)  # two humans, each with every other kept box
    assert list(table.columns) == ["step", "module", "input", "output"]
    assert not table["input"].str.contains("unnamed").any() and not table["output"].str.contains("unnamed").any()
    rows = dict(zip(table["module"], zip(table["input"], table["output"])))
    assert rows["query_proj"] == (f"[P={p}, 2*F=256]", f"[P={p}, D=128]")
    assert rows["prompt_learner"] == ("-", "[T=3, E=128]")
    if switches.get("use_la", True):
        assert rows["adapters.3.la"][1] == "[B=1, G=64, D=128]"
        if switches.get("la_layout", True):
            assert rows["layout_mlp"] == ("[B=1, Gh=8, Gw=8, 5+E=133]", "[B=1, Gh=8, Gw=8, D_a=32]")
        else:
            assert "layout_mlp" not in rows
    ia_out = f"[P+B={p + 1}, D=128]"
    assert rows["adapters.0.ia"][1] == ia_out and rows["adapters.3.ia.up"] == (f"[P+B={p + 1}, 2*D_a=64]", ia_out)
    if switches.get("ia_context", True):
        assert rows["adapters.0.ia.context"][1] == f"[K+B={k + 1}, Q=10, D_a=32]"
    else:
        assert "adapters.0.ia.context" not in rows
        assert rows["adapters.0.ia.token_dec"][0].endswith(f"[2*(P+B)={2 * (p + 1)}, Q=16, D_a=32]")  # Q = r*r
    if switches.get("use_verb_classifier"):
        assert rows["verb_head"] == (f"[P={p}, E=128]", f"[P={p}, V=3]")


def test_named_shape_marks_a_mismatch():
    sizes = dict(B=2, G=64, D=128)
    assert analysis.named_shape((2, 64, 128), ("B", "G", "D"), sizes) == "[B=2, G=64, D=128]"
    assert analysis.named_shape((2, 65, 128), ("B", "G", "D"), sizes) == "[2, 65, 128] (unnamed)"
    assert analysis.named_shape((2, 64), ("B", "Q"), sizes) == "[2, 64] (unnamed)"  # Q unknown here


def test_trace_needs_pairs(clip):
    model = make(clip)
    images, dets = inputs(n_h=0)
    with pytest.raises(ValueError, match="at least one human-object pair"):
        analysis.trace_shapes(model, images, dets)


def test_attention_mask_who_sees_whom(clip):
    model = make(clip)
    m = analysis.attention_mask(model, 3)
    assert m.shape == (68, 68) and m.dtype == bool
    assert [int((~m[i]).sum()) for i in range(3)] == [65] * 3  # itself and the 64 patches
    assert not m[0, 0] and m[0, 1] and m[0, 3]  # not another HO token, not CLS
    assert m[3:, :3].all() and not m[3:, 3:].any()  # CLS and patches: never an HO token, all of the image


def test_la_update_norms_are_linear_in_gamma(clip):
    model = make(clip)
    images, dets = inputs()
    set_gammas(model, 1.0)
    one = analysis.la_update_norms(model, images, dets)
    set_gammas(model, 0.0)
    assert np.all(analysis.la_update_norms(model, images, dets) == 0)
    assert one.shape == (4, 8, 8) and (one > 0).all()
    with torch.no_grad():  # only the first layer's gamma doubles: only its update doubles
        model.adapters[0].la.gamma.fill_(2.0)
        for a in model.adapters[1:]:
            a.la.gamma.fill_(1.0)
        for a in model.adapters:
            a.ia.gamma.fill_(0.0)
    doubled = analysis.la_update_norms(model, images, dets)
    np.testing.assert_allclose(doubled[0], 2 * one[0], rtol=1e-5)
    with pytest.raises(ValueError, match="no Locality Adapter"):
        analysis.la_update_norms(make(clip, use_la=False), images, dets)


def test_ho_patch_attention_equals_the_baseline_at_gamma_zero(clip):
    images, dets = inputs()
    lain = make(clip)
    base = make(clip, use_la=False, use_ia=False)
    base.load_state_dict({k: v for k, v in lain.state_dict().items() if k in base.state_dict()})
    set_gammas(lain, 0.0)
    a, b = analysis.ho_patch_attention(lain, images, dets), analysis.ho_patch_attention(base, images, dets)
    p = int(lain(images, dets)[0]["pairs"].shape[0])
    assert a.shape == (p, 8, 8) and np.array_equal(a, b)
    total = a.reshape(p, -1).sum(1)
    assert ((total > 0) & (total < 1)).all()  # the rest of each row is the HO token's attention to itself
    set_gammas(lain, 1.0)
    assert not np.allclose(analysis.ho_patch_attention(lain, images, dets), b)


def test_layout_features_follow_the_painted_map(clip):
    model = make(clip)
    images, dets = inputs()
    f = analysis.layout_features(model, images, dets)
    lay = analysis.layout_map(model, dets[0])
    assert f.shape == (8, 8, 5 + 128)
    k = len(lay["boxes"])
    covered = lay["index"] < k
    assert covered.any() and (~covered).any()
    np.testing.assert_allclose(f[..., 0][covered], lay["scores"][lay["index"][covered]], rtol=1e-6)
    assert (f[~covered][:, :5] == -1).all()
    with pytest.raises(ValueError, match="no layout prior"):
        analysis.layout_features(make(clip, la_layout=False), images, dets)


def test_gamma_history_puts_steps_and_epochs_on_one_axis():
    log = [{"event": "step", "epoch": 1, "step": 20, "gamma_la": 0.1, "gamma_ia": 0.2},
           {"event": "epoch", "epoch": 1, "loss": 1.0, "gamma_la": 0.15, "gamma_ia": 0.25},
           {"event": "step", "epoch": 2, "step": 20, "gamma_la": 0.3, "gamma_ia": 0.4},
           {"event": "epoch", "epoch": 2, "loss": 0.5, "gamma_la": 0.35, "gamma_ia": 0.45},
           {"event": "epoch", "epoch": 3, "loss": 0.4}]  # a model without adapters records none
    h = analysis.gamma_history(log, steps_per_epoch=30)
    assert list(h["step"]) == [20, 30, 50, 60] and list(h["source"]) == ["step", "epoch"] * 2
    assert list(h["gamma_ia"]) == [0.2, 0.25, 0.4, 0.45]
