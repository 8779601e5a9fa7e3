"""Common random numbers: with one seed, LAIN and its ablations start from the same weights for every module they
share, drop the same units in shared modules, draw the same amount from the global generators and see the same
(augmented) batches; LAIN with its gammas at 0 is then exactly the baseline, and at its initial gammas (1e-9)
agrees with it to 1e-6."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hoilib import engine
from hoilib.config import ExperimentConfig
from hoilib.models import build_model, build_seeded, stream_seed
from hoilib.study import ABLATIONS, MAIN_METHODS

from _engine_standins import tiny_split
from test_lain import UNSEEN, random_dets, targets_from, toy_vocab

BASELINE = ABLATIONS["w/o adapters"]
HOICLIP = MAIN_METHODS["LAIN + HOICLIP components"]


pytestmark = pytest.mark.usefixtures("one_thread")




def make(clip, overrides=None, vocab=None, unseen=UNSEEN):
    cfg = ExperimentConfig().override(overrides or {})
    return build_model(cfg, vocab or toy_vocab(), clip=clip, protocol_unseen=unseen)


def batch():
    g = torch.Generator().manual_seed(3)
    images = torch.randn(3, 3, 64, 64, generator=g)
    return images, [random_dets(2, 3, seed=1), random_dets(3, 2, seed=2), random_dets(1, 3, seed=3)]


def train_forward(model, seed=5):
    """Training-mode logits and loss of `batch()` after seeding the global generator, and its state afterwards."""
    images, dets = batch()
    model.train()
    torch.manual_seed(seed)
    out = model(images, dets)
    loss = model.compute_loss(out, targets_from(out))["loss"]
    return out, loss, torch.get_rng_state()


# ---- the mechanism ------------------------------------------------------------------------------------------------
class _Optional(nn.Module):
    def __init__(self, first: bool, swap: bool = False):
        super().__init__()
        # Drawn before it is registered, as the first parameter: from the module's own stream (`build_seeded`).
        self.ctx = nn.Parameter(torch.empty(2, 3).normal_())
        if swap:  # the same modules built in another order
            self.shared = nn.Linear(4, 3)
            self.extra = nn.Linear(4, 4) if first else None
        else:
            self.extra = nn.Linear(4, 4) if first else None
            self.shared = nn.Linear(4, 3)


def test_build_seeded_values_depend_on_seed_and_path_only():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = build_seeded(lambda: _Optional(True), 7, "head")
    b = build_seeded(lambda: _Optional(False), 7, "head")
    c = build_seeded(lambda: _Optional(True, swap=True), 7, "head")
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    for m in (b, c):
        assert torch.equal(a.shared.weight, m.shared.weight) and torch.equal(a.shared.bias, m.shared.bias)
        assert torch.equal(a.ctx, m.ctx)
    assert torch.equal(a.extra.weight, c.extra.weight)
    # Plain construction draws `shared` after `extra`: its values would depend on whether `extra` exists.
    torch.manual_seed(7)
    plain_a = _Optional(True)
    torch.manual_seed(7)
    plain_b = _Optional(False)
    assert not torch.equal(plain_a.shared.weight, plain_b.shared.weight)
    other_seed = build_seeded(lambda: _Optional(True), 8, "head")
    other_path = build_seeded(lambda: _Optional(True), 7, "tail")
    for m in (other_seed, other_path):
        assert not torch.equal(a.shared.weight, m.shared.weight)
    assert stream_seed(7, "head") == stream_seed(7, "head") != stream_seed(7, "tail")
    assert 0 <= stream_seed(7, "head") < 2**63


# ---- (c) shared modules start equal in every arm ------------------------------------------------------------------
def test_shared_modules_are_equal_across_every_ablation_and_hoiclip(clip):
    state = torch.get_rng_state()
    arms = {name: make(clip, over) for name, over in ABLATIONS.items()}
    arms["LAIN + HOICLIP components"] = make(clip, HOICLIP)
    arms["w/o adapters + HOICLIP"] = make(clip, {**BASELINE, **HOICLIP})
    assert torch.equal(torch.get_rng_state(), state)  # building any arm leaves the global generator alone
    states = {name: m.adapter_state_dict() for name, m in arms.items()}
    names = list(states)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = set(states[a]) & set(states[b])
            assert {"logit_scale", "prompt_learner.ctx", "query_proj.layers.0.weight"} <= common
            for k in sorted(common):
                assert torch.equal(states[a][k], states[b][k]), (a, b, k)
    lain = states["+ LA + IA"]
    # What "shared" covers: each layer's LA and IA, down to the layers that an ablation keeps.
    assert {"adapters.3.la.up.weight", "adapters.3.la.proj_in.weight", "adapters.3.ia.token_dec.linear1.weight",
            "layout_mlp.layers.2.weight"} <= set(states["LA: w/o visual info"]) & set(lain)
    assert "adapters.0.ia.token_down.weight" in set(states["IA: w/o context extraction"]) & set(lain)
    assert "adapters.0.la.up.weight" in set(states["LA: local attention"]) & set(lain)
    assert "verb_head.adapter.layers.0.weight" in (set(states["LAIN + HOICLIP components"])
                                                   & set(states["w/o adapters + HOICLIP"]))
    # Layers of one arm are not copies of each other, and another seed gives other weights.
    assert not torch.equal(lain["adapters.0.la.up.weight"], lain["adapters.1.la.up.weight"])
    other = make(clip, {"train.seed": 67}).adapter_state_dict()
    assert not torch.equal(other["query_proj.layers.0.weight"], lain["query_proj.layers.0.weight"])
    assert not torch.equal(other["prompt_learner.ctx"], lain["prompt_learner.ctx"])


def test_a_model_built_without_a_clip_is_seeded_too():
    cfg = ExperimentConfig().override({"model.use_ia": False})
    torch.manual_seed(0)
    a = build_model(cfg, toy_vocab())
    torch.manual_seed(1)
    b = build_model(cfg, toy_vocab())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ---- (a), (b) the baseline and LAIN at initialisation ----------------------------------------------------------------
def test_gamma_zero_lain_is_exactly_the_baseline(clip):
    base = make(clip, BASELINE)
    lain = make(clip, {"model.gamma_init": 0.0})
    ob, lb, rng_b = train_forward(base)
    ol, ll, rng_l = train_forward(lain)
    assert len(ob) == 3 and sum(len(o["pairs"]) for o in ob) > 10
    for a, b in zip(ob, ol):
        assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["prior"], b["prior"])
    assert torch.equal(lb, ll)
    assert torch.equal(rng_b, rng_l)  # the same draws from the global generator, with or without dropout
    # The adapters do run: with non-zero gammas the logits move.
    with torch.no_grad():
        for name, p in lain.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    ol2, _, _ = train_forward(lain)
    assert not torch.allclose(ob[0]["logits"], ol2[0]["logits"], atol=1e-2)


@pytest.mark.parametrize("name", [n for n in ABLATIONS if n != "w/o adapters"])
def test_every_arm_agrees_with_the_baseline_at_initialisation(clip, name):
    _, lb, _ = train_forward(make(clip, BASELINE))
    _, la, _ = train_forward(make(clip, ABLATIONS[name]))  # gamma_init = 1e-9, the official value
    assert abs(la.item() - lb.item()) < 1e-6, (la.item(), lb.item())


# ---- dropout ------------------------------------------------------------------------------------------------------
def _context_output(model, seed):
    """Output of layer 0's IA context extraction in a training forward (its dropout is active)."""
    got = []
    h = model.adapters[0].ia.context.register_forward_hook(lambda m, a, o: got.append(o.detach().clone()))
    train_forward(model, seed)
    h.remove()
    return got[0]


def test_shared_modules_draw_the_same_dropout(clip):
    lain = make(clip)
    no_iprm = make(clip, ABLATIONS["IA: w/o IPRM"])  # its IA lacks the IPRM layer, called between others
    assert set(lain.dropout_streams.paths) > set(no_iprm.dropout_streams.paths)
    assert "adapters.0.ia.context" in no_iprm.dropout_streams.paths
    a, b = _context_output(lain, 5), _context_output(no_iprm, 5)
    assert torch.equal(a, b)
    # Dropout is on: another global seed (another key) gives other masks, and eval mode none.
    assert not torch.allclose(a, _context_output(lain, 6))
    lain.eval()
    got = []
    h = lain.adapters[0].ia.context.register_forward_hook(lambda m, args, o: got.append(o))
    images, dets = batch()
    state = torch.get_rng_state()
    with torch.no_grad():
        lain(images, dets)
    h.remove()
    assert torch.equal(state, torch.get_rng_state())  # eval forwards draw nothing
    assert not torch.allclose(got[0], a)


# ---- (d) the engine: same batches, same global draws ----------------------------------------------------------------
class _Recorder:
    """A dataset that records the indices it is asked for."""

    def __init__(self, dataset):
        self.dataset, self.seen = dataset, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.dataset[i]


def _train_arm(tmp_path, clip, overrides, name):
    split = tiny_split(n=8, seed=0)
    cfg = ExperimentConfig().override({"data.cache_dir": str(tmp_path / "cache"), "train.epochs": 1,
                                       "train.batch_size": 4, "train.device": "cpu", "train.log_every": 0,
                                       "train.num_threads": 1, **overrides})
    model = make(clip, overrides, vocab=split.vocab, unseen=split.unseen)
    batches = []
    model.register_forward_pre_hook(lambda m, args: batches.append(
        (args[0].clone(), [d["boxes"].clone() for d in args[1]], [d["labels"].clone() for d in args[1]])))
    data = SimpleNamespace(dataset=_Recorder(split.dataset), vocab=split.vocab, unseen=split.unseen)
    torch.manual_seed(len(name))  # whatever the caller's state: training seeds itself
    engine.train(cfg, tmp_path / name, progress=False, data=data, model=model)
    return data.dataset.seen, batches, torch.get_rng_state()


def test_one_epoch_sees_identical_batches_in_both_arms(tmp_path, clip):
    seen_b, batches_b, rng_b = _train_arm(tmp_path, clip, BASELINE, "baseline")
    seen_l, batches_l, rng_l = _train_arm(tmp_path, clip, {}, "lain")
    assert seen_b == seen_l and sorted(seen_b) == list(range(8))
    assert len(batches_b) == len(batches_l) == 2
    for (ib, bb, lb), (il, bl, ll) in zip(batches_b, batches_l):  # the same augmented images and boxes
        assert torch.equal(ib, il)
        assert all(torch.equal(x, y) for x, y in zip(bb, bl)) and all(torch.equal(x, y) for x, y in zip(lb, ll))
    assert torch.equal(rng_b, rng_l)  # and the same global draws: the next epoch would start alike
