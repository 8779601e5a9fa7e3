"""Small stand-ins for the engine tests: a synthetic HOI split built with the real data classes, and a tiny model
that follows the model contract (preprocess / forward / compute_loss / postprocess) with a frozen part, a
trainable part and dropout, so that the engine's loop, checkpoints, RNG handling and DDP can be tested in
seconds. Run as a script under torchrun it is also the DDP worker of tests/test_ddp.py.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from hoilib.data.annotations import HOIAnnotations
from hoilib.data.dataset import HOIDataset, HOISplit
from hoilib.data.images import ArrayImages
from hoilib.data.detections import DetectionCache, Detections
from hoilib.data.vocab import Vocabulary
from hoilib.models.losses import interaction_loss

VERBS = ("hold", "ride", "kick", "no_interaction")
OBJECTS = ("person", "ball", "bike")
HOI = np.array([[0, 1], [2, 1], [3, 1], [0, 2], [1, 2], [3, 2], [0, 0], [3, 0]], np.int64)  # (verb, object)


def tiny_vocab() -> Vocabulary:
    return Vocabulary(name="tiny", verbs=VERBS, objects=OBJECTS, hoi_classes=HOI,
                      verb_prompts=tuple(f"a photo of a person {v} the object" for v in VERBS),
                      object_prompts=tuple(f"a photo of a {o}" for o in OBJECTS) + ("a photo of nothing",),
                      hoi_prompts=tuple(f"a photo of a person {VERBS[v]} a {OBJECTS[o]}" for v, o in HOI),
                      no_interaction=3)


def tiny_split(n: int = 24, seed: int = 0, unseen=(2,), split: str = "train") -> HOISplit:
    """n images of varying sizes, 1-2 pairs each, detections = jittered GT boxes plus a spurious box."""
    rng = np.random.default_rng(seed)
    vocab = tiny_vocab()
    d = {"filenames": [], "size": [], "annotation": [], "objects": list(OBJECTS), "verbs": list(VERBS),
         "correspondence": vocab.correspondence.tolist()}
    images = np.zeros((n, 40, 48, 3), np.uint8)
    dets = []
    for i in range(n):
        w, h = 48, 40
        d["filenames"].append(f"img_{i:04d}.png")
        d["size"].append([w, h])
        ann = {k: [] for k in ("boxes_h", "boxes_o", "hoi", "object", "verb")}
        images[i] = rng.integers(0, 60, (h, w, 3))
        boxes, scores, labels = [], [], []
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(len(HOI)))
            v, o = HOI[c]
            bh = _box(rng, w, h)
            bo = _box(rng, w, h)
            images[i, int(bh[1]) - 1:int(bh[3]), int(bh[0]) - 1:int(bh[2])] = (200, 50, 50)
            images[i, int(bo[1]) - 1:int(bo[3]), int(bo[0]) - 1:int(bo[2])] = (40 * v, 200, 60 * o)
            ann["boxes_h"].append(bh.tolist()), ann["boxes_o"].append(bo.tolist())
            ann["hoi"].append(c), ann["object"].append(int(o)), ann["verb"].append(int(v))
            for b, lab in ((bh, 0), (bo, int(o))):
                cont = b - np.array([1, 1, 0, 0]) + rng.normal(0, 0.5, 4)
                boxes.append(np.clip(cont, 0, [w, h, w, h]))
                scores.append(float(rng.uniform(0.6, 0.95)))
                labels.append(lab)
        boxes.append(np.array([1.0, 1.0, 10.0, 9.0])), scores.append(0.3), labels.append(int(rng.integers(3)))
        d["annotation"].append(ann)
        dets.append(Detections(np.array(boxes, np.float32), np.array(scores, np.float32),
                               np.array(labels, np.int64)))
    annotations = HOIAnnotations.from_dict(d, source=f"tiny-{split}")
    cache = DetectionCache.from_list(d["filenames"], dets, num_classes=len(OBJECTS))
    ds = HOIDataset(annotations, ArrayImages(images), cache, skip_empty=True)
    return HOISplit(dataset=ds, vocab=vocab, annotations=annotations, unseen=np.asarray(unseen, np.int64),
                    rare=np.zeros(0, np.int64), split=split, protocol="tiny")


def _box(rng, w, h) -> np.ndarray:
    x1, y1 = rng.integers(1, w - 14), rng.integers(1, h - 14)
    return np.array([x1, y1, x1 + rng.integers(6, 13), y1 + rng.integers(6, 13)], np.float64)


class TinyHOIModel(nn.Module):
    """Contract-following stand-in: a frozen conv "backbone", a trainable pair head with dropout.

    Pairs: every (human, other) pair of the detections with score >= 0.2; pair feature = ROI-mean of the frozen
    feature map over both boxes + box geometry; logits over verbs; prior = s_h^lam * s_o^lam on valid
    (object, verb) combinations (seen ones in training).
    """

    def __init__(self, vocab: Vocabulary, image_size: int = 32, lambda_test: float = 2.8, dropout: float = 0.2):
        super().__init__()
        self.image_size = image_size
        self.lambda_test = lambda_test
        self.backbone = nn.Conv2d(3, 8, 4, 4)
        g = torch.Generator().manual_seed(0)  # frozen weights are fixed, like CLIP's loaded from its checkpoint
        with torch.no_grad():
            for p in self.backbone.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
                p.requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(2 * 8 + 8, 32), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(32, vocab.num_verbs))
        ov = vocab.object_verb_to_hoi
        self.register_buffer("ov_to_hoi", torch.as_tensor(ov))  # [O, V]
        self.register_buffer("hoi_classes", torch.as_tensor(vocab.hoi_classes))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def preprocess(self, images: list) -> torch.Tensor:
        x = [torch.as_tensor(im).permute(2, 0, 1)[None].float() / 255 for im in images]
        x = torch.cat([F.interpolate(t, size=(self.image_size, self.image_size), mode="bilinear",
                                     align_corners=False) for t in x])
        return (x - 0.5) / 0.25

    def forward(self, images, detections, seen_mask=None):
        fmap = self.backbone(images)  # [B, 8, S/4, S/4]
        lam = 1.0 if self.training else self.lambda_test
        valid = self.ov_to_hoi >= 0  # [O, V]
        if seen_mask is not None:
            valid = torch.zeros_like(valid)
            hc = self.hoi_classes[seen_mask.to(self.hoi_classes.device)]
            valid[hc[:, 1], hc[:, 0]] = True
        out = []
        for b, det in enumerate(detections):
            keep = det["scores"] >= 0.2
            boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
            hum = torch.nonzero(labels == 0).flatten()
            pairs = [(int(i), int(j)) for i in hum for j in range(len(boxes)) if int(i) != j]
            pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
            feats = torch.stack([self._roi(fmap[b], bx) for bx in boxes]) if len(boxes) else fmap.new_zeros(0, 8)
            geo = torch.cat([boxes[pairs[:, 0]], boxes[pairs[:, 1]]], 1) / self.image_size  # [P, 8]
            x = torch.cat([feats[pairs[:, 0]], feats[pairs[:, 1]], geo], 1)
            logits = self.head(x)
            prior = (scores[pairs[:, 0]] * scores[pairs[:, 1]]).pow(lam)[:, None] * valid[labels[pairs[:, 1]]]
            out.append(dict(boxes=boxes, scores=scores, labels=labels, pairs=pairs, logits=logits, prior=prior))
        return out

    def _roi(self, f: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        s = f.shape[-1] / self.image_size
        x1, y1 = int(box[0] * s), int(box[1] * s)
        x2, y2 = max(int(box[2] * s + 0.999), x1 + 1), max(int(box[3] * s + 0.999), y1 + 1)
        return f[:, y1:y2, x1:x2].mean((1, 2))

    def compute_loss(self, outputs, targets):
        logits, priors, labels = [], [], []
        for o, t in zip(outputs, targets):
            lab = torch.zeros_like(o["logits"])
            if len(o["pairs"]) and len(t["verb"]):
                bh, bo = o["boxes"][o["pairs"][:, 0]], o["boxes"][o["pairs"][:, 1]]
                iou = torch.min(box_iou(bh, t["boxes_h"]), box_iou(bo, t["boxes_o"]))  # [P, M]
                p, m = torch.nonzero(iou >= 0.5).unbind(1)
                lab[p, t["verb"][m]] = 1
            logits.append(o["logits"]), priors.append(o["prior"]), labels.append(lab)
        logits, priors, labels = torch.cat(logits), torch.cat(priors), torch.cat(labels)
        n_local = float((labels[priors > 0] > 0).sum())
        if dist.is_initialized():  # official: normalise by the positives averaged over processes
            t = torch.tensor([n_local])
            dist.all_reduce(t)
            n_local = t.item() / dist.get_world_size()
        loss, n_pos = interaction_loss(logits, priors, labels, 0.5, 0.2, num_pos=n_local)
        return dict(loss=loss, loss_focal=loss.detach(), num_pos=n_pos)

    def postprocess(self, outputs, orig_sizes):
        res = []
        for o, (w, h) in zip(outputs, orig_sizes):
            scale = o["boxes"].new_tensor([w, h, w, h]) / self.image_size
            p, v = torch.nonzero(o["prior"] > 0).unbind(1)
            obj = o["labels"][o["pairs"][p, 1]]
            res.append(dict(boxes_h=o["boxes"][o["pairs"][p, 0]] * scale, boxes_o=o["boxes"][o["pairs"][p, 1]] * scale,
                            hoi=self.ov_to_hoi[obj, v],
                            score=torch.sigmoid(o["logits"][p, v]) * o["prior"][p, v]))
        return res


# ---- DDP worker (tests/test_ddp.py launches this file with torchrun, 2 processes, gloo) --------------------------
def ddp_config(cache_dir: str, epochs: int = 1, batch_size: int = 3):
    from hoilib.config import ExperimentConfig

    return ExperimentConfig().override({
        "data.cache_dir": cache_dir, "clip.checkpoint": "unused-by-the-stand-in.pt", "train.epochs": epochs,
        "train.batch_size": batch_size, "train.lr": 1e-2, "train.device": "cpu", "train.log_every": 1})


def _ddp_main(out: str) -> None:
    """Rank r: (1) one DDP gradient on the first batch of epoch 0, saved with that batch's dataset indices;
    (2) a whole `engine.train` epoch under DDP, final trainable state saved per rank. Both with the stand-in
    model, then (3) both again with the real LAIN model on the tiny world of `out/lain_config.json`."""
    import json
    from pathlib import Path

    from hoilib import engine
    from hoilib.config import ExperimentConfig

    out = Path(out)
    info = engine.init_distributed("cpu")
    split = tiny_split(n=24, seed=0)
    cfg = ddp_config(str(out / "cache"))
    make = lambda: TinyHOIModel(split.vocab, dropout=0.0)  # noqa: E731
    _ddp_case(out, "", cfg, split, make, info)
    if (out / "lain_config.json").is_file():
        from hoilib.data.dataset import build_dataset
        from hoilib.models import build_model

        cfg = ExperimentConfig.from_dict(json.loads((out / "lain_config.json").read_text()))
        split = build_dataset(cfg, "train")
        _ddp_case(out, "lain_", cfg, split, lambda: build_model(cfg, split.vocab, protocol_unseen=split.unseen), info)
    torch.distributed.destroy_process_group()


def _ddp_case(out, prefix, cfg, split, make_model, info) -> None:
    from hoilib import engine

    torch.manual_seed(123)
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    sampler = torch.utils.data.distributed.DistributedSampler(split.dataset, num_replicas=info.world_size,
                                                              rank=info.rank, shuffle=True, seed=cfg.train.seed)
    sampler.set_epoch(0)
    idx = list(sampler)[:cfg.train.batch_size]
    batch = engine.Collator(model.preprocess, model.image_size)([split.dataset[i] for i in idx])
    seen = engine.seen_class_mask(split.vocab.num_classes, split.unseen)
    model.train()
    loss, stats = engine.training_loss(ddp, batch, seen, info)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    torch.save(dict(indices=idx, grads=grads, stats=stats), out / f"{prefix}grad{info.rank}.pt")
    torch.manual_seed(123)
    model = make_model()
    res = engine.train(cfg, out / f"{prefix}run", progress=False, data=split, model=model)
    torch.save(dict(state=engine.trainable_state(model), history=res["history"]),
                out / f"{prefix}final{info.rank}.pt")


if __name__ == "__main__":
    import sys

    _ddp_main(sys.argv[1])
