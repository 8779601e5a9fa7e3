"""The engine: batching, the training loop (determinism, resume equality, checkpoints, logs), inference in the
evaluator's format. Loop tests use the contract-following stand-ins of `_engine_standins.py` (seconds); the
tests at the end run the real LAIN model on a tiny built-in world."""
import json

import numpy as np
import pytest
import torch

from hoilib import engine
from hoilib.config import ExperimentConfig

from _engine_standins import TinyHOIModel, tiny_split


def _cfg(tmp_path, **over):
    base = {"data.cache_dir": str(tmp_path / "cache"), "clip.arch": "ViT-B-16",
            "train.epochs": 2, "train.batch_size": 4, "train.lr": 1e-2, "train.lr_step": 1, "train.lr_gamma": 0.5,
            "train.log_every": 2, "train.device": "cpu", "eval.batch_size": 5}
    base.update(over)
    return ExperimentConfig().override(base)


@pytest.fixture(scope="module")
def split():
    return tiny_split(n=24, seed=0)


def _train(cfg, out, split, model=None, **kw):
    torch.manual_seed(123)  # the stand-in's weights: one init for every run of a test
    model = model or TinyHOIModel(split.vocab)
    return engine.train(cfg, out, progress=False, data=split, model=model, **kw), model


# ---- batching ---------------------------------------------------------------------------------------------------
def test_collate_rescales_boxes_to_clip_frame(split):
    col = engine.Collator(TinyHOIModel(split.vocab).preprocess, 32)
    items = [split.dataset[0], split.dataset[3]]
    b = col(items)
    assert b.images.shape == (2, 3, 32, 32)
    assert b.orig_sizes == [(48, 40), (48, 40)]
    scale = np.array([32 / 48, 32 / 40, 32 / 48, 32 / 40], np.float32)
    for it, det, tgt in zip(items, b.detections, b.targets):
        np.testing.assert_allclose(det["boxes"].numpy(), it["dets"].boxes * scale, rtol=1e-6)
        np.testing.assert_allclose(tgt["boxes_h"].numpy(), it["gt"]["boxes_h"] * scale, rtol=1e-6)
        np.testing.assert_allclose(tgt["boxes_o"].numpy(), it["gt"]["boxes_o"] * scale, rtol=1e-6)
        assert det["labels"].dtype == torch.int64 and tgt["verb"].dtype == torch.int64
        assert torch.equal(tgt["hoi"], torch.as_tensor(it["gt"]["hoi"]))
    assert b.image_index == [items[0]["image_index"], items[1]["image_index"]]


def test_collate_augments_training_items_consistently(split):
    from hoilib.data.augment import Augmentation, item_rng, augment_sample

    aug = Augmentation(flip=True, color=0.4, scale=(0.3, 0.6), seed=4)
    col = engine.Collator(None, 32, augment=aug)
    items = [split.dataset[i] for i in range(len(split.dataset))]
    col.epoch = 2
    b = col(items)
    assert b.image_index == [it["image_index"] for it in items]
    dropped = 0
    for it, img, size, det, tgt in zip(items, b.images, b.orig_sizes, b.detections, b.targets):
        ref = augment_sample(it["image"], it["dets"].boxes, it["gt"]["boxes_h"], it["gt"]["boxes_o"],
                             item_rng(4, 2, it["index"]), flip=True, color=0.4, scale=(0.3, 0.6))
        assert np.array_equal(img, ref["image"]) and size == ref["size"]
        w, h = size
        scale = np.array([32 / w, 32 / h, 32 / w, 32 / h], np.float32)
        np.testing.assert_allclose(det["boxes"].numpy(), ref["det_boxes"] * scale, rtol=1e-6)
        # scores and labels lose the rows of the dropped boxes, the ground truth its dropped pairs
        assert torch.equal(det["scores"], torch.as_tensor(it["dets"].scores[ref["det_keep"]]))
        assert torch.equal(det["labels"], torch.as_tensor(it["dets"].labels[ref["det_keep"]]))
        np.testing.assert_allclose(tgt["boxes_o"].numpy(), ref["gt_boxes_o"] * scale, rtol=1e-6)
        assert torch.equal(tgt["verb"], torch.as_tensor(it["gt"]["verb"][ref["gt_keep"]]))
        dropped += int((~ref["det_keep"]).sum() + (~ref["gt_keep"]).sum())
    assert dropped > 0 and any(s != (48, 40) for s in b.orig_sizes)
    col.epoch = 3  # another epoch, other augmentations
    assert any(not np.array_equal(x, y) for x, y in zip(col(items).images, b.images))
    # Inference never augments: a Collator without it (or with everything off) gives the plain batch.
    off = engine.Collator(None, 32, augment=Augmentation(flip=False, color=0.0, scale=(1.0, 1.0)))
    assert off.augment is None and all(np.array_equal(x, it["image"]) for x, it in zip(off(items).images, items))


def test_seen_class_mask():
    m = engine.seen_class_mask(6, [1, 4])
    assert m.tolist() == [True, False, True, True, False, True]
    assert engine.seen_class_mask(3, []).all()
    with pytest.raises(ValueError, match=r"unseen class indices must lie in \[0, 3\)"):
        engine.seen_class_mask(3, [3])


def test_unseen_classes_get_no_prior_in_training(split):
    """The engine passes the protocol's seen mask: unseen (object, verb) combinations have prior 0 in training."""
    model = TinyHOIModel(split.vocab).train()
    b = engine.Collator(model.preprocess, 32)([split.dataset[i] for i in range(6)])
    seen = engine.seen_class_mask(split.vocab.num_classes, split.unseen)
    outs = model(b.images, b.detections, seen)
    v, o = split.vocab.hoi_classes[split.unseen[0]]
    for out in outs:
        objs = out["labels"][out["pairs"][:, 1]]
        assert (out["prior"][objs == o, v] == 0).all()


# ---- training ---------------------------------------------------------------------------------------------------
def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_writes_checkpoint_and_log(tmp_path, split):
    cfg = _cfg(tmp_path)
    out, model = _train(cfg, tmp_path / "run", split)
    ck = torch.load(tmp_path / "run" / engine.CHECKPOINT, weights_only=False)
    assert ck["epoch"] == 2 and ck["complete"] is True
    assert ck["config"]["train"]["epochs"] == 2 and ck["config"]["clip"]["checkpoint"] == cfg.clip.checkpoint
    # the trainable state excludes frozen weights but includes buffers
    assert set(ck["model"]) == {"head.0.weight", "head.0.bias", "head.3.weight", "head.3.bias", "ov_to_hoi",
                                "hoi_classes"}
    assert ck["scheduler"]["last_epoch"] == 2
    recs = [json.loads(ln) for ln in (tmp_path / "run" / engine.LOG).read_text().splitlines()]
    epochs = [r for r in recs if r["event"] == "epoch"]
    steps = [r for r in recs if r["event"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert len(steps) == 2 * 3  # 24 images / batch 4 = 6 steps per epoch, logged every 2
    assert [r["lr"] for r in epochs] == pytest.approx([1e-2, 5e-3])  # StepLR(step 1, gamma 0.5) per epoch
    for r in recs:
        assert {"loss", "lr", "epoch", "images_per_s", "num_pos"} <= set(r) and np.isfinite(r["loss"])
    assert out["history"] == ck["history"] and out["epochs"] == 2
    # frozen weights did not move, trainable ones did
    torch.manual_seed(123)
    fresh = TinyHOIModel(split.vocab)
    assert torch.equal(model.backbone.weight, fresh.backbone.weight)
    assert not torch.equal(model.head[0].weight, fresh.head[0].weight)


def test_training_reduces_the_loss(tmp_path, split):
    # Without augmentation (on by default): the same images every epoch, so the loss must come down quickly.
    off = {"train.augment_flip": False, "train.augment_color": 0.0, "train.augment_scale": [1.0, 1.0]}
    out, _ = _train(_cfg(tmp_path, **{"train.epochs": 6, "train.lr_step": 10}, **off), tmp_path / "run", split)
    losses = [h["loss"] for h in out["history"]]
    assert losses[-1] < 0.8 * losses[0], losses


def test_fixed_seed_gives_identical_numbers(tmp_path, split):
    cfg = _cfg(tmp_path)
    a, ma = _train(cfg, tmp_path / "a", split)
    b, mb = _train(cfg, tmp_path / "b", split)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert _state_equal(engine.trainable_state(ma), engine.trainable_state(mb))
    c, mc = _train(cfg.override({"train.seed": 7}), tmp_path / "c", split)  # other data order and dropout
    assert [h["loss"] for h in c["history"]] != [h["loss"] for h in a["history"]]


class _Interrupt(Exception):
    pass


class _Interrupting(TinyHOIModel):
    """Raises after `after` training forward passes (an interruption in the middle of an epoch)."""

    def __init__(self, vocab, after):
        super().__init__(vocab)
        self.after, self.calls = after, 0

    def forward(self, *a, **kw):
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                raise _Interrupt()
        return super().forward(*a, **kw)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, split):
    cfg = _cfg(tmp_path)
    full, m_full = _train(cfg, tmp_path / "full", split)
    torch.manual_seed(123)
    with pytest.raises(_Interrupt):  # dies in epoch 2, after the epoch-1 checkpoint
        engine.train(cfg, tmp_path / "cut", progress=False, data=split, model=_Interrupting(split.vocab, 6 + 3))
    ck = torch.load(tmp_path / "cut" / engine.CHECKPOINT, weights_only=False)
    assert ck["epoch"] == 1 and not ck["complete"]
    torch.manual_seed(999)  # a resumed session starts from another RNG state and another init
    resumed = engine.train(cfg, tmp_path / "cut", progress=False, data=split, model=TinyHOIModel(split.vocab))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    ck = torch.load(tmp_path / "cut" / engine.CHECKPOINT, weights_only=False)
    assert _state_equal(ck["model"], engine.trainable_state(m_full))
    # the log holds no records of the interrupted partial epoch
    strip = lambda p: [{k: v for k, v in json.loads(ln).items() if k not in ("images_per_s", "time_s")}  # noqa
                       for ln in (p / engine.LOG).read_text().splitlines()]
    assert strip(tmp_path / "cut") == strip(tmp_path / "full")
    # a complete run is not trained again
    again = engine.train(cfg, tmp_path / "cut", progress=False, data=split, model=TinyHOIModel(split.vocab))
    assert again["history"] == resumed["history"]


def test_resume_refuses_other_training_config(tmp_path, split):
    cfg = _cfg(tmp_path, **{"train.epochs": 1})
    _train(cfg, tmp_path / "run", split)
    with pytest.raises(ValueError, match=r"trained for a different run \(config.train.lr\)"):
        _train(cfg.override({"train.lr": 0.02}), tmp_path / "run", split)
    # inference-only fields may differ; resume=False starts afresh
    _train(cfg.override({"model.lambda_test": 1.0, "eval.iou_rule": "pocket"}), tmp_path / "run", split)
    out, _ = _train(cfg.override({"train.lr": 0.02}), tmp_path / "run", split, resume=False)
    assert out["history"][0]["lr"] == 0.02


def test_a_moved_cache_and_checkpoint_file_resume(tmp_path, split):
    """The checkpoint identifies its run by content, not by path: the same weights file elsewhere resumes."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.pt").write_bytes(b"the same weights")
    cfg = _cfg(tmp_path, **{"clip.checkpoint": str(tmp_path / "a" / "clip.pt")})
    full, _ = _train(cfg, tmp_path / "full", split)
    torch.manual_seed(123)
    with pytest.raises(_Interrupt):  # dies in epoch 2, after the epoch-1 checkpoint
        engine.train(cfg, tmp_path / "cut", progress=False, data=split, model=_Interrupting(split.vocab, 6 + 3))
    (tmp_path / "cut").rename(tmp_path / "moved")  # the cache and the weights file move
    moved = cfg.override({"clip.checkpoint": str(tmp_path / "b" / "clip.pt")})
    out, _ = _train(moved, tmp_path / "moved", split)
    assert [h["loss"] for h in out["history"]] == [h["loss"] for h in full["history"]]
    (tmp_path / "b" / "clip.pt").write_bytes(b"other weights")
    with pytest.raises(ValueError, match=r"different run \(inputs.clip\)"):
        _train(moved, tmp_path / "moved", split)


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, split):
    cfg = _cfg(tmp_path)
    _train(cfg, tmp_path / "run", split)
    ck = torch.load(tmp_path / "run" / engine.CHECKPOINT, weights_only=False)
    ck.update(epoch=1, complete=False, history=ck["history"][:1])
    torch.save(ck, tmp_path / "run" / engine.CHECKPOINT)
    log = tmp_path / "run" / engine.LOG
    log.write_text(log.read_text() + '{"event": "step", "epo')  # killed in the middle of a write
    out, _ = _train(cfg, tmp_path / "run", split)
    records = engine.read_log(log)
    assert len(out["history"]) == 2 and [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]
    log.write_text('{"event": "epoch", "epoch": 1}\nnot json\n{"event": "epoch", "epoch": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        engine.read_log(log)


def test_batch_larger_than_training_set_is_an_error(tmp_path, split):
    with pytest.raises(ValueError, match="not one batch of 64"):
        _train(_cfg(tmp_path, **{"train.batch_size": 64}), tmp_path / "run", split)


def test_max_train_images_truncates(tmp_path, split):
    out, _ = _train(_cfg(tmp_path, **{"train.max_train_images": 8, "train.epochs": 1}), tmp_path / "run", split)
    recs = [json.loads(ln) for ln in (tmp_path / "run" / engine.LOG).read_text().splitlines()]
    assert sum(r["event"] == "step" for r in recs) == 1  # 8 images / batch 4 = 2 steps, logged every 2


# ---- inference --------------------------------------------------------------------------------------------------
def test_infer_format_and_batching_invariance(tmp_path, split):
    cfg = _cfg(tmp_path)
    _, model = _train(cfg.override({"train.epochs": 1}), tmp_path / "run", split)
    p1 = engine.infer(cfg.override({"eval.batch_size": 1}), model, progress=False, data=split)
    p7 = engine.infer(cfg.override({"eval.batch_size": 7}), model, progress=False, data=split)
    assert set(p1) == {"image_index", "boxes_h", "boxes_o", "hoi", "score"}
    assert p1["image_index"].dtype == np.int64 and p1["hoi"].dtype == np.int64
    assert p1["boxes_h"].dtype == np.float32 and p1["boxes_h"].shape == (len(p1["score"]), 4)
    assert len(p1["score"]) > 0 and (p1["score"] > 0).all()
    for k in p1:
        np.testing.assert_allclose(p1[k], p7[k], rtol=1e-5, atol=1e-6)
    # boxes are back in original pixels: inside the 48x40 images
    assert p1["boxes_h"][:, 2].max() <= 48.5 and p1["boxes_h"][:, 3].max() <= 40.5
    assert set(np.unique(p1["image_index"])) <= set(split.dataset.image_ids.tolist())


def test_evaluate_run_known_answer(tmp_path, split):
    """Predicting every GT pair with its class gives 100 mAP; the same boxes with wrong classes give 0."""
    ann = split.annotations
    bh, bo = ann.continuous_boxes()
    perfect = dict(image_index=ann.image_index.copy(), boxes_h=bh.astype(np.float32), boxes_o=bo.astype(np.float32),
                   hoi=ann.hoi.copy(), score=np.linspace(1, 0.5, ann.num_pairs).astype(np.float32))
    cfg = _cfg(tmp_path)
    m = engine.evaluate_run(cfg, perfect, data=split)
    present = np.unique(ann.hoi)
    assert m["full"] == pytest.approx(100.0 * len(present) / ann.num_classes)
    assert m["unseen"] == pytest.approx(100.0 if split.unseen[0] in present else 0.0)
    wrong = dict(perfect, hoi=(ann.hoi + 1) % ann.num_classes)
    assert engine.evaluate_run(cfg, wrong, data=split)["full"] < m["full"]


def test_deferred_preprocessing_equals_collate_preprocessing(split):
    """With CUDA and DataLoader workers the images are preprocessed in the main process: same batch."""
    model = TinyHOIModel(split.vocab)
    items = [split.dataset[i] for i in range(3)]
    a = engine.Collator(model.preprocess, 32)(items)
    b = engine.Collator(None, 32)(items)
    assert isinstance(b.images, list) and len(b.images) == 3
    b = b.preprocessed(model.preprocess)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a.detections, b.detections))


def test_dataloader_workers_give_identical_training(tmp_path, split):
    cfg = _cfg(tmp_path, **{"train.epochs": 1})
    a, ma = _train(cfg, tmp_path / "a", split)
    b, mb = _train(cfg.override({"train.num_workers": 2}), tmp_path / "b", split)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert _state_equal(engine.trainable_state(ma), engine.trainable_state(mb))


# ---- the real model on a tiny built-in world --------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_cfg(tmp_path_factory):
    from hoilib.models.clip_backbone import build_clip

    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)  # a random small CLIP stands in for the pretrained one (no pretraining in unit tests)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, root / "clip.pt")
    return ExperimentConfig().override({
        "data.cache_dir": str(root / "cache"), "clip.checkpoint": str(root / "clip.pt"),
        "world.n_train": 32, "world.n_test": 12, "world.n_caption": 0, "train.epochs": 2, "train.batch_size": 4,
        "train.lr_step": 1, "train.device": "cpu", "eval.batch_size": 5})


def _interrupt_after(model, n):
    """Make `model` raise after n training forward passes (an interruption in the middle of an epoch)."""
    forward, calls = model.forward, []

    def wrapped(*a, **kw):
        if model.training:
            calls.append(1)
            if len(calls) > n:
                raise _Interrupt()
        return forward(*a, **kw)

    model.forward = wrapped
    return model


def test_lain_resume_equals_uninterrupted_and_clip_stays_frozen(tmp_path, world_cfg):
    from hoilib.data.dataset import build_dataset
    from hoilib.models import build_model
    from hoilib.models.clip_backbone import build_clip

    full = engine.train(world_cfg, tmp_path / "full", progress=False)
    ck_full = torch.load(tmp_path / "full" / engine.CHECKPOINT, weights_only=False)
    assert ck_full["complete"] and len(full["history"]) == 2
    data = build_dataset(world_cfg, "train")
    steps = len(data.dataset) // 4
    torch.manual_seed(world_cfg.train.seed)  # as train() seeds before it builds the model itself
    cut = _interrupt_after(build_model(world_cfg, data.vocab, protocol_unseen=data.unseen), steps + 2)
    with pytest.raises(_Interrupt):
        engine.train(world_cfg, tmp_path / "cut", progress=False, data=data, model=cut)
    torch.manual_seed(1)
    resumed = engine.train(world_cfg, tmp_path / "cut", progress=False)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    ck = torch.load(tmp_path / "cut" / engine.CHECKPOINT, weights_only=False)
    assert _state_equal(ck["model"], ck_full["model"])
    assert not any(k.startswith("clip.") for k in ck["model"])  # frozen CLIP is not stored...
    # ... and did not move: the trained model's CLIP equals the checkpoint file's
    model = engine.load_trained_model(world_cfg, tmp_path / "full")
    ref = build_clip("hoi-world-vit", world_cfg.clip.checkpoint).state_dict()
    for k, v in model.clip.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_lain_inference_from_checkpoint(tmp_path, world_cfg):
    engine.train(world_cfg.override({"train.epochs": 1}), tmp_path / "run", progress=False)
    cfg = world_cfg.override({"train.epochs": 1})
    p = engine.infer(cfg, tmp_path / "run", progress=False)
    p1 = engine.infer(cfg.override({"eval.batch_size": 1}), tmp_path / "run", progress=False)
    for k in p:
        np.testing.assert_allclose(p[k], p1[k], rtol=1e-4, atol=1e-6)
    from hoilib.data.world import world_vocabulary

    assert len(p["score"]) > 0 and p["hoi"].max() < world_vocabulary().num_classes
    # boxes back in the original 64 px frame
    assert p["boxes_h"].min() >= -1 and p["boxes_h"].max() <= 65
    m = engine.evaluate_run(cfg, p)
    assert {"full", "rare", "non_rare", "unseen", "seen"} <= set(m) and 0 <= m["full"] <= 100
    # an inference-only field changes the scores of the same trained model
    p2 = engine.infer(cfg.override({"model.lambda_test": 1.0}), tmp_path / "run", progress=False)
    assert p2["score"].shape == p["score"].shape and (p2["score"] >= p["score"] - 1e-7).all()
    assert not np.allclose(p2["score"], p["score"])


def test_eval_each_epoch_records_test_map_and_keeps_training_identical(tmp_path, split):
    cfg = _cfg(tmp_path)
    test = tiny_split(n=10, seed=1, split="test")
    a, ma = _train(cfg, tmp_path / "a", split)
    b, mb = _train(cfg, tmp_path / "b", split, eval_each_epoch=True, test_data=test)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert _state_equal(engine.trainable_state(ma), engine.trainable_state(mb))
    for h in b["history"]:
        assert 0 <= h["test_full"] <= 100 and h["test_unseen"] is not None
    assert "test_full" not in a["history"][0]
    # the records are the test mAP of the model after that epoch
    final = engine.evaluate_run(cfg, engine.infer(cfg, mb, progress=False, data=test), data=test)
    assert b["history"][-1]["test_full"] == pytest.approx(final["full"])
