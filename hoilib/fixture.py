"""A HICO-DET-format data set at fixture scale, built offline from nothing: the input of the `hicodet-smoke` profile.

    python -m hoilib.fixture --out DIR [--seed 0] [--train 24] [--test 16]

writes

    DIR/hicodet/instances_{train,test}2015.json          the real files' structure: filenames, size, annotation,
                                                         empty, objects (COCO-80 order), verbs, correspondence (600)
    DIR/hicodet/hico_20160224_det/images/{train,test}2015/HICO_{split}2015_000000NN.jpg
    DIR/hicodet/detections_{train,test}2015.npz          written by `hoilib.detect.cache_split` with the DETR below
    DIR/weights/detr-r50-hicodet.pth                     a randomly initialised DETR-R50 in the official checkpoint
                                                         layout ({"epoch", "model_state_dict"}, as UPT / LAIN ship it)
    DIR/weights/hoi-smoke-vit.pt                         a randomly initialised CLIP (clip_configs/hoi-smoke-vit.json)
                                                         as OpenAI ships ViT-B-16.pt: a TorchScript archive, fp16
                                                         weights, plus input_resolution / context_length / vocab_size

so that `./run_all.sh hicodet-smoke` runs the real path (readers, DETR detection caching, the 600-class vocabulary
and the official protocol lists, an OpenAI-format CLIP) in minutes on a CPU. The weights are random: the numbers
mean nothing, only the path is checked. Everything follows from the seed.

The annotations are drawn so that every protocol works: every second training image holds a pair of a class that
no protocol hides (so each protocol's training filter keeps at least half of the images), the class pool holds an
unseen class of each protocol (so filtering removes pairs), and each test image pairs an unseen class of one
protocol with an always-seen class (so every protocol has seen and unseen test pairs). Image 0 of each split has
no pairs (the `empty` list). `check_fixture` verifies all of this on the files written.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.model import convert_weights_to_lp
from PIL import Image, ImageDraw

from .data import hicodet
from .data.annotations import HOIAnnotations
from .data.splits import hicodet_protocols, hicodet_rare, split_statistics
from .data.vocab import hicodet_vocabulary
from .detect import cache_split
from .models import detr as detr_mod
from .models.clip_backbone import build_clip

CLIP_ARCH = "hoi-smoke-vit"  # the hicodet-smoke profile's CLIP (hoilib/presets/hicodet-smoke.json)
DETR_NAME = "detr-r50-hicodet.pth"
# DETR's test resize scaled down (800 / 1333 in DETR, UPT and LAIN) so that ResNet-50 runs fast on small images.
DETECT_SIZE = dict(min_size=128, max_size=213)
IMAGE_SIZE = ((96, 160), (80, 128))  # (width range, height range) in pixels; HICO-DET's images are 160-640 wide


@dataclass
class Fixture:
    """Where `build_fixture` wrote things: the HICO-DET root, the DETR checkpoint and the CLIP weights file."""

    root: Path
    detr_checkpoint: Path
    clip_weights: Path


# ---- annotations ----------------------------------------------------------------------------------------------------
def class_pool(seed: int) -> tuple[np.ndarray, dict, np.ndarray]:
    """(always_seen, unseen_of, rare): HOI classes the fixture draws from.

    always_seen: 6 classes that no protocol hides (85 of HICO-DET's 600 are in no unseen list); unseen_of:
    {protocol: one of its unseen classes}; rare: 2 of the official rare classes (rare / non-rare mAP have both).
    """
    rng = np.random.default_rng(seed)
    protocols = hicodet_protocols()
    hidden = np.unique(np.concatenate(list(protocols.values())))
    always_seen = np.sort(rng.choice(np.setdiff1d(np.arange(600), hidden), 6, replace=False))
    unseen_of = {name: int(rng.choice(classes)) for name, classes in protocols.items()}
    rare = np.sort(rng.choice(hicodet_rare(), 2, replace=False))
    return always_seen, unseen_of, rare


def _box(rng, w: int, h: int, min_frac: float) -> list:
    """A random box in HICO-DET's convention: 1-based inclusive integer pixels, as floats."""
    bw = int(rng.integers(int(min_frac * w), w // 2 + 2))
    bh = int(rng.integers(int(min_frac * h), h // 2 + 2))
    x1, y1 = int(rng.integers(1, w - bw + 1)), int(rng.integers(1, h - bh + 1))
    return [float(x1), float(y1), float(x1 + bw), float(y1 + bh)]


def _image_pairs(rng, size: tuple, classes: list) -> list:
    """[(human box, object box, hoi)] for one image; a person often does several things (the box is reused)."""
    w, h = size
    out, human = [], None
    for hoi in classes:
        if human is None or rng.random() < 0.5:
            human = _box(rng, w, h, 0.3)
        out.append((human, _box(rng, w, h, 0.15), int(hoi)))
    return out


def make_annotations(split: str, n_images: int, seed: int) -> dict:
    """The instances_{split}2015.json dict of the fixture (keys in the real file's order; see the module doc)."""
    if n_images < 10:
        raise ValueError(f"{split}: a fixture needs at least 10 images (one per protocol plus an empty one), "
                         f"got {n_images}")
    vocab = hicodet_vocabulary()
    corr = vocab.correspondence  # [600, 3] (hoi, object, verb)
    always_seen, unseen_of, rare = class_pool(seed)
    unseen = list(unseen_of.values())
    pool = np.concatenate([always_seen, unseen, rare])
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    (w_lo, w_hi), (h_lo, h_hi) = IMAGE_SIZE
    sizes, images = [], []
    for i in range(n_images):
        size = (int(rng.integers(w_lo, w_hi + 1)), int(rng.integers(h_lo, h_hi + 1)))
        if i == 0:
            classes = []  # an image without pairs, listed in "empty" (HICO-DET has 112 in test2015)
        elif split == "train":
            first = rng.choice(always_seen) if i % 2 else rng.choice(pool)
            classes = [first] + list(rng.choice(pool, int(rng.integers(0, 3))))
        else:
            # one protocol's unseen class, an always-seen class, and a rare class in every third image
            classes = [unseen[(i - 1) % len(unseen)], rng.choice(always_seen)] + ([rare[i % 2]] if i % 3 == 0 else [])
        sizes.append(size)
        images.append(_image_pairs(rng, size, classes))
    annotation = [dict(boxes_h=[bh for bh, _, _ in pairs], boxes_o=[bo for _, bo, _ in pairs],
                       hoi=[hoi for _, _, hoi in pairs], object=[int(corr[hoi, 1]) for _, _, hoi in pairs],
                       verb=[int(corr[hoi, 2]) for _, _, hoi in pairs]) for pairs in images]
    return dict(filenames=[f"HICO_{split}2015_{i + 1:08d}.jpg" for i in range(n_images)],
                size=[list(s) for s in sizes], annotation=annotation,
                empty=[i for i, pairs in enumerate(images) if not pairs],
                objects=list(vocab.objects), verbs=list(vocab.verbs), correspondence=corr.tolist())


def draw_image(size: tuple, ann: dict, seed: int) -> Image.Image:
    """A smooth coloured background with the annotated boxes outlined (small JPEGs that are not blank)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(40, 200, 3)
    img = np.stack([base[c] + 40 * np.sin(xx / (5 + c) + yy / 7) for c in range(3)], -1)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for bh, bo in zip(ann["boxes_h"], ann["boxes_o"]):
        d.rectangle([v - 1 for v in bh], outline=(255, 0, 0))  # 1-based inclusive -> PIL's 0-based pixels
        d.rectangle([v - 1 for v in bo], outline=(0, 0, 255))
    return im


# ---- weights ------------------------------------------------------------------------------------------------------
def random_detr(seed: int, calibration_image: np.ndarray) -> torch.nn.Module:
    """A randomly initialised DETR-R50 whose detections vary and include people.

    Freshly initialised, DETR gives nearly the same output for every query and never the person class, so no
    human-object pair would form. Sharper attention and larger heads make the queries differ; the person logit is
    then shifted by the median margin of the other classes on `calibration_image`, so about half the queries are
    people.
    """
    torch.manual_seed(seed)
    model = detr_mod.build_detr().eval()
    with torch.no_grad():
        for layer in model.transformer.decoder.layers:
            layer.self_attn.in_proj_weight[:512].mul_(4.0)  # query and key projections
            layer.multihead_attn.in_proj_weight[:512].mul_(4.0)
        model.query_embed.weight.mul_(4.0)
        model.class_embed.weight.normal_(0, 1)
        model.bbox_embed.layers[2].weight.normal_(0, 0.5)
        x = detr_mod.nested_tensor_from_tensor_list([detr_mod.preprocess(calibration_image, **DETECT_SIZE)])
        logits = model(x)["pred_logits"][0]  # [Q, 81]; the last column is no-object
        margin = logits[:, 1:80].max(1).values - logits[:, 0]
        model.class_embed.bias[0] += margin.median()
    return model


def write_openai_clip(path: Path, arch: str = CLIP_ARCH, seed: int = 0) -> Path:
    """A randomly initialised open_clip `arch` written as OpenAI ships its CLIP weights (e.g. ViT-B-16.pt).

    OpenAI's file is a TorchScript archive whose state dict has open_clip's key names, fp16 convolution / linear /
    attention / projection weights (fp32 embeddings and layer norms), and three integer entries input_resolution,
    context_length and vocab_size.
    """
    torch.manual_seed(seed)
    model = build_clip(arch)
    convert_weights_to_lp(model, torch.float16)  # what OpenAI's build_model does before the release
    state = dict(model.state_dict())
    vis, ctx = model.visual, int(model.context_length)
    state.update(input_resolution=torch.tensor(int(vis.image_size[0])), context_length=torch.tensor(ctx),
                 vocab_size=torch.tensor(int(model.vocab_size)))
    # A module tree whose state dict is exactly `state`, scripted: the archive then loads like OpenAI's.
    root = torch.nn.Module()
    for key, tensor in state.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, torch.nn.Module())
            node = getattr(node, name)
        if tensor.is_floating_point():
            node.register_parameter(leaf, torch.nn.Parameter(tensor.detach().clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, tensor.clone())
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, but it is OpenAI's format
        torch.jit.script(root).save(str(path))
    return path


# ---- the whole fixture --------------------------------------------------------------------------------------------
def build_fixture(out: str | Path, seed: int = 0, n_train: int = 24, n_test: int = 16,
                  progress: bool = True) -> Fixture:
    """Write the fixture under `out` (see the module doc) and return its paths; prints what it wrote.

    Existing files are overwritten. Takes about 15 s on one CPU core (DETR-R50 over 40 small images).
    """
    t0 = time.time()
    out = Path(out)
    root, weights = out / "hicodet", out / "weights"
    say = print if progress else (lambda *a, **k: None)
    first_image = None
    for split, n in (("train", n_train), ("test", n_test)):
        ann = make_annotations(split, n, seed)
        path = hicodet.annotation_path(root, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ann))
        folder = hicodet.image_dir(root, split)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (name, size, a) in enumerate(zip(ann["filenames"], ann["size"], ann["annotation"])):
            im = draw_image(tuple(size), a, seed * 100_000 + (0 if split == "train" else 50_000) + i)
            im.save(folder / name, quality=85)
            if first_image is None:
                first_image = np.asarray(im)
        n_pairs = sum(len(a["hoi"]) for a in ann["annotation"])
        say(f"wrote {path}: {n} images ({len(ann['empty'])} without pairs), {n_pairs} pairs; images in {folder}")

    detr_path = weights / DETR_NAME
    detr_path.parent.mkdir(parents=True, exist_ok=True)
    model = random_detr(seed, first_image)
    torch.save({"epoch": 0, "model_state_dict": model.state_dict()}, detr_path)
    del model
    say(f"wrote {detr_path}: randomly initialised DETR-R50 (official checkpoint layout)")
    for split in ("train", "test"):
        # The command a user runs on the real data set, with the detector's resize scaled to the small images.
        cache_split(detr_path, root, split, device="cpu", batch_size=8, workers=1, progress=False, **DETECT_SIZE)
        say(f"wrote {hicodet.detection_path(root, split)}: python -m hoilib.detect --checkpoint {detr_path} "
            f"--root {root} --split {split} --min-size {DETECT_SIZE['min_size']} --max-size {DETECT_SIZE['max_size']}")

    clip_path = write_openai_clip(weights / f"{CLIP_ARCH}.pt", CLIP_ARCH, seed)
    say(f"wrote {clip_path}: randomly initialised CLIP {CLIP_ARCH} in OpenAI's TorchScript format")
    problems = check_fixture(root)
    if problems:
        raise RuntimeError("the fixture does not cover every protocol:\n  " + "\n  ".join(problems))
    say(f"fixture complete in {time.time() - t0:.1f} s: HICODET_ROOT={root} CLIP_WEIGHTS={clip_path}")
    return Fixture(root=root, detr_checkpoint=detr_path, clip_weights=clip_path)


def check_fixture(root: str | Path) -> list:
    """What a HICO-DET-format root lacks for a run of every protocol: [] when, for each protocol, the training filter
    keeps at least 4 images (one batch of the hicodet-smoke profile) and the test set has seen and unseen pairs, and
    both rare and non-rare classes have test pairs. One message per missing item."""
    train = HOIAnnotations.from_json(hicodet.annotation_path(root, "train"))
    test = HOIAnnotations.from_json(hicodet.annotation_path(root, "test"))
    stats = split_statistics(train, test, hicodet_protocols(), hicodet_rare())
    problems = []
    for row in stats.itertuples():
        if row.class_set == "unseen" and row.train_images < 4:
            problems.append(f"{row.setting}: the training filter keeps {row.train_images} images (< 4)")
        if row.test_set_pairs == 0 or row.test_other_pairs == 0:
            problems.append(f"{row.setting}: {row.test_set_pairs} {row.class_set} and {row.test_other_pairs} "
                            f"other test pairs (both must be > 0)")
    return problems


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hoilib.fixture",
                                description="Build a small HICO-DET-format data set with random DETR and CLIP weights "
                                            "(the input of the hicodet-smoke profile), offline.")
    p.add_argument("--out", required=True, help="output folder (gets hicodet/ and weights/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=24, help="training images")
    p.add_argument("--test", type=int, default=16, help="test images")
    a = p.parse_args(argv)
    build_fixture(a.out, a.seed, a.train, a.test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
