"""Multi-process training through torch.distributed: 2 processes, gloo, CPU (launched with torchrun).

What DDP guarantees, checked against single-process runs of the same engine code:
- every rank ends with identical parameters;
- the averaged gradient of one step equals the single-process gradient on the union of the ranks' batches
  (the loss is normalised by the positives averaged over processes, as in the official code);
- W processes x batch B follow the single-process run with batch W x B (same data order, same updates).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hoilib import engine

from _engine_standins import TinyHOIModel, ddp_config, tiny_split

HERE = Path(__file__).parent


def lain_config(root: Path):
    """A tiny built-in world, a random small CLIP, no dropout (so that gradients can be compared exactly)."""
    from hoilib.config import ExperimentConfig
    from hoilib.data.world import build_world
    from hoilib.models.clip_backbone import build_clip

    torch.manual_seed(0)
    torch.save({"model": build_clip("hoi-world-vit").state_dict()}, root / "clip.pt")
    cfg = ExperimentConfig().override({
        "data.cache_dir": str(root / "cache"), "clip.checkpoint": str(root / "clip.pt"), "world.n_train": 24,
        "world.n_test": 4, "world.n_caption": 0, "train.epochs": 1, "train.batch_size": 3, "train.device": "cpu",
        "model.adapter_dropout": 0.0})
    build_world(cfg, progress=False)  # built once here, read by both processes
    return cfg


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    (out / "lain_config.json").write_text(lain_config(out).to_json())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_engine_standins.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_ranks_end_with_identical_parameters(ddp_run):
    a = torch.load(ddp_run / "final0.pt", weights_only=False)
    b = torch.load(ddp_run / "final1.pt", weights_only=False)
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("images_per_s", "time_s")} for r in h]  # noqa
    assert strip(a["history"]) == strip(b["history"])  # logged statistics are reduced over ranks


def test_ddp_gradient_equals_single_process_gradient_on_union_batch(ddp_run):
    g0 = torch.load(ddp_run / "grad0.pt", weights_only=False)
    g1 = torch.load(ddp_run / "grad1.pt", weights_only=False)
    assert not set(g0["indices"]) & set(g1["indices"])  # the ranks see different images
    for k in g0["grads"]:  # DDP all-reduces: both ranks hold the averaged gradient
        torch.testing.assert_close(g0["grads"][k], g1["grads"][k], rtol=0, atol=0)
    split = tiny_split(n=24, seed=0)
    torch.manual_seed(123)
    model = TinyHOIModel(split.vocab, dropout=0.0)
    idx = g0["indices"] + g1["indices"]
    batch = engine.Collator(model.preprocess, model.image_size)([split.dataset[i] for i in idx])
    loss, stats = engine.training_loss(model, batch, engine.seen_class_mask(split.vocab.num_classes, split.unseen))
    loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(g0["grads"][n], p.grad, rtol=1e-5, atol=1e-7)
    assert g0["stats"]["loss"] == pytest.approx(stats["loss"], rel=1e-5)
    assert g0["stats"]["num_pos"] == stats["num_pos"]


def test_two_processes_follow_the_single_process_run_with_the_union_batch(ddp_run, tmp_path):
    """Rank r takes every 2nd image of the epoch's permutation, so the union of one step's batches (2 x 3) is the
    single-process batch of 6: the same updates, up to float summation order."""
    split = tiny_split(n=24, seed=0)
    torch.manual_seed(123)
    model = TinyHOIModel(split.vocab, dropout=0.0)
    res = engine.train(ddp_config(str(tmp_path / "cache"), batch_size=6), tmp_path / "run", progress=False,
                       data=split, model=model)
    ddp = torch.load(ddp_run / "final0.pt", weights_only=False)
    single = engine.trainable_state(model)
    for k in single:
        torch.testing.assert_close(ddp["state"][k], single[k], rtol=1e-4, atol=1e-5)
    assert [h["loss"] for h in ddp["history"]] == pytest.approx([h["loss"] for h in res["history"]], rel=1e-5)


def test_only_rank0_writes(ddp_run):
    run = ddp_run / "run"
    assert sorted(p.name for p in run.iterdir()) == [engine.CHECKPOINT, engine.LOG]
    ck = torch.load(run / engine.CHECKPOINT, weights_only=False)
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2  # RNG state of each rank, for an exact resume


def test_lain_under_ddp(ddp_run):
    """The real model: its loss syncs the number of positives across processes (official), so the DDP gradient
    is the single-process gradient of the union batch, and the ranks stay identical through an epoch."""
    from hoilib.config import ExperimentConfig
    from hoilib.data.dataset import build_dataset
    from hoilib.models import build_model

    a = torch.load(ddp_run / "lain_final0.pt", weights_only=False)
    b = torch.load(ddp_run / "lain_final1.pt", weights_only=False)
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    g0 = torch.load(ddp_run / "lain_grad0.pt", weights_only=False)
    g1 = torch.load(ddp_run / "lain_grad1.pt", weights_only=False)
    cfg = ExperimentConfig.from_dict(__import__("json").loads((ddp_run / "lain_config.json").read_text()))
    split = build_dataset(cfg, "train")
    torch.manual_seed(123)
    model = build_model(cfg, split.vocab, protocol_unseen=split.unseen).train()
    batch = engine.Collator(model.preprocess, model.image_size)(
        [split.dataset[i] for i in g0["indices"] + g1["indices"]])
    loss, stats = engine.training_loss(model, batch, engine.seen_class_mask(split.vocab.num_classes, split.unseen))
    loss.backward()
    assert g0["stats"]["loss"] == pytest.approx(stats["loss"], rel=1e-5)
    checked = 0
    for n, p in model.named_parameters():
        if p.requires_grad and p.grad is not None:
            # float sums run in another order: tolerance relative to the tensor's largest entry
            torch.testing.assert_close(g0["grads"][n], p.grad, rtol=1e-3, atol=1e-4 * p.grad.abs().max().item())
            checked += 1
    assert checked > 10
