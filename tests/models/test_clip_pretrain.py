"""Pretraining of the world's small CLIP: held-out split, retrieval accuracy (known answers), caching,
determinism and resume after an interruption. A synthetic caption set stands in for the world's captions."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hoilib.config import ExperimentConfig
from hoilib.models import clip_pretrain
from hoilib.models.clip_backbone import build_clip
from hoilib.models.clip_pretrain import clip_cache_path, pretrain_clip, retrieval_accuracy, split_holdout

COLOURS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (30, 30, 230), "yellow": (230, 230, 30)}


def caption_pairs(n: int, seed: int = 0):
    """64x64 images with one coloured square at the top or the bottom, and the caption saying which."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 50, (n, 64, 64, 3)).astype(np.uint8)
    captions = []
    names = list(COLOURS)
    for i in range(n):
        c, top = names[rng.integers(4)], bool(rng.integers(2))
        y = 6 if top else 34
        images[i, y:y + 24, 20:44] = COLOURS[c]
        captions.append(f"a {c} square at the {'top' if top else 'bottom'}")
    return images, captions


@pytest.fixture
def world(monkeypatch):
    images, captions = caption_pairs(220)
    calls = []

    def fake_build_world(cfg, progress=True):
        calls.append(cfg.to_json())
        return SimpleNamespace(caption_images=images, captions=captions)

    monkeypatch.setattr("hoilib.models.clip_pretrain.build_world", fake_build_world)
    return calls


def _cfg(tmp_path, **over):
    d = {"data.cache_dir": str(tmp_path / "cache"), "clip.pretrain_epochs": 2, "clip.pretrain_batch_size": 32,
         "clip.pretrain_lr": 2e-3, "clip.pretrain_holdout": 0.1, "clip.pretrain_warmup": 0.0}
    d.update(over)
    return ExperimentConfig().override(d)


def test_split_holdout():
    tr, ev = split_holdout(100, 0.05, seed=3)
    assert len(ev) == 5 and len(tr) == 95 and not set(tr) & set(ev)
    assert sorted(np.concatenate([tr, ev]).tolist()) == list(range(100))
    tr2, ev2 = split_holdout(100, 0.05, seed=3)
    assert np.array_equal(ev, ev2) and not np.array_equal(ev, split_holdout(100, 0.05, seed=4)[1])
    assert len(split_holdout(10, 0.01, 0)[1]) == 1  # at least one held-out pair
    with pytest.raises(ValueError, match=r"held-out fraction must be in \[0, 1\)"):
        split_holdout(10, 1.0, 0)


class _OracleClip(nn.Module):
    """encode_image reads the class from the red channel of pixel (0, 0); encode_text from the token id: both give
    one-hot features, so retrieval is perfect when the caption of image i names its class."""

    def __init__(self, n: int, permute=None):
        super().__init__()
        self.n, self.permute = n, permute

    def encode_image(self, x, normalize=True):
        k = (x[:, 0, 0, 0] * 0.229 + 0.485).mul(255).round().long() // 10  # undo normalisation
        f = torch.nn.functional.one_hot(k, self.n).float()
        if self.permute is not None:  # most similar to the permuted class, second most to its own
            f = torch.nn.functional.one_hot(self.permute[k], self.n).float() + 0.5 * f
        return f

    def encode_text(self, tok, normalize=True):
        return torch.nn.functional.one_hot(tok[:, 0], self.n).float()


def _oracle_data(n_cls=6, per=3):
    images = np.zeros((n_cls * per, 8, 8, 3), np.uint8)
    captions = []
    for k in range(n_cls):
        for j in range(per):
            images[k * per + j, 0, 0, 0] = 10 * k
            captions.append(f"class {k}")
    tokenizer = lambda texts: torch.tensor([[int(t.split()[1])] for t in texts])  # noqa: E731
    return images, captions, tokenizer


def test_retrieval_accuracy_known_answers():
    images, captions, tok = _oracle_data()
    m = retrieval_accuracy(_OracleClip(6), images, captions, tokenizer=tok)
    assert m["i2t_top1"] == 1.0 and m["t2i_top1"] == 1.0 and m["i2t_top5"] == 1.0
    assert m["n_images"] == 18 and m["n_texts"] == 6
    assert m["i2t_chance"] == pytest.approx(1 / 6) and m["t2i_chance"] == pytest.approx(1 / 6)
    # images of class k look most like class k+1: every top-1 is wrong, the truth is second
    wrong = retrieval_accuracy(_OracleClip(6, permute=(torch.arange(6) + 1) % 6), images, captions, tokenizer=tok)
    assert wrong["i2t_top1"] == 0.0 and wrong["t2i_top1"] == 0.0
    assert wrong["i2t_top5"] == 1.0
    with pytest.raises(ValueError, match="one caption per image"):
        retrieval_accuracy(_OracleClip(6), images, captions[:-1], tokenizer=tok)


def test_pretrain_caches_and_learns(tmp_path, world):
    cfg = _cfg(tmp_path)
    path = pretrain_clip(cfg, progress=False)
    assert path == clip_cache_path(cfg) and path.name == "clip.pt"
    assert path.parent.parent == tmp_path / "cache" / "clip"
    assert clip_cache_path(cfg.override({"world.seed": 5})) != path  # another world, another CLIP
    ck = torch.load(path, weights_only=False)
    assert set(ck) == {"model", "config", "metrics"}
    assert ck["config"]["clip"]["pretrain_epochs"] == 2 and ck["config"]["world"] == cfg.to_dict()["world"]
    m = ck["metrics"]
    assert m["n_train"] == 198 and m["n_eval"] == 22 and m["epochs"] == 2
    for k in ("i2t_top1", "i2t_top5", "t2i_top1", "t2i_top5"):
        assert 0.0 <= m[k] <= 1.0
    assert m["i2t_top5"] >= m["i2t_top1"] and m["n_texts"] <= 8
    log = [json.loads(ln) for ln in (path.parent / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[1]["loss"] < log[0]["loss"]  # the contrastive loss goes down
    assert m["train_loss"] == log[1]["loss"]
    assert not (path.parent / "partial.pt").exists()
    # a second call is a cache hit: no world, no training
    assert pretrain_clip(cfg, progress=False) == path and len(world) == 1
    # the checkpoint is what build_clip reads
    model = build_clip(cfg.clip.arch, checkpoint=str(path))
    assert torch.equal(model.logit_scale, ck["model"]["logit_scale"])
    # another clip section -> another cache entry
    assert clip_cache_path(cfg.override({"clip.pretrain_seed": 1})) != path


def test_pretrain_resume_equals_uninterrupted(tmp_path, world, monkeypatch):
    cfg = _cfg(tmp_path)
    full = torch.load(pretrain_clip(cfg, progress=False), weights_only=False)

    cfg_b = cfg.override({"data.cache_dir": str(tmp_path / "cache_b")})
    real = clip_pretrain.retrieval_accuracy
    calls = []

    def dies_in_epoch_2(*a, **kw):  # end of epoch 2, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(clip_pretrain, "retrieval_accuracy", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain_clip(cfg_b, progress=False)
    partial = clip_cache_path(cfg_b).parent / "partial.pt"
    assert partial.is_file() and not clip_cache_path(cfg_b).exists()
    assert torch.load(partial, weights_only=False)["epoch"] == 1
    monkeypatch.setattr(clip_pretrain, "retrieval_accuracy", real)
    torch.manual_seed(1234)  # the resumed session starts from another global RNG state
    resumed = torch.load(pretrain_clip(cfg_b, progress=False), weights_only=False)
    for k in full["model"]:
        assert torch.equal(full["model"][k], resumed["model"][k]), k
    assert resumed["metrics"]["i2t_top1"] == full["metrics"]["i2t_top1"]


def test_hoi_recognition_known_answers():
    """Images of class k (red value 10 k) against 6 class prompts; the oracle ranks its own class first."""
    images, captions, tok = _oracle_data()
    labels = [[int(c.split()[1])] for c in captions]
    prompts = [f"class {k}" for k in range(6)]
    m = clip_pretrain.hoi_recognition(_OracleClip(6), images, labels, prompts, tokenizer=tok)
    assert m["hoi_top1"] == 1.0 and m["hoi_top5"] == 1.0 and m["hoi_map"] == 1.0
    assert m["hoi_top1_chance"] == pytest.approx(1 / 6) and m["hoi_map_chance"] == pytest.approx(1 / 6)
    wrong = clip_pretrain.hoi_recognition(_OracleClip(6, permute=(torch.arange(6) + 1) % 6), images, labels,
                                          prompts, tokenizer=tok)
    assert wrong["hoi_top1"] == 0.0 and wrong["hoi_top5"] == 1.0
    # ranking images for class c: the 3 images of class c-1 come first (similarity 1), then class c's (0.5)
    assert wrong["hoi_map"] == pytest.approx(np.mean([1 / 4, 2 / 5, 3 / 6]))
    # multi-label images count a hit for any of their classes
    two = clip_pretrain.hoi_recognition(_OracleClip(6, permute=(torch.arange(6) + 1) % 6), images,
                                        [[k, (k + 1) % 6] for k, in labels], prompts, tokenizer=tok)
    assert two["hoi_top1"] == 1.0
