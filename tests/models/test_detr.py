"""DETR-R50 (hoilib.models.detr), on CPU with random weights.

Images are tiny and resized with small min/max sizes so that the whole file runs in seconds; the real 800 / 1333
resize is checked through `resize_shape`.
"""
import json

import numpy as np
import pytest
import torch

from hoilib.data.vocab import ASSETS
from hoilib.models import detr as detr_mod
from hoilib.models.detr import (COCO91_KEEP, CheckpointError, NestedTensor, detect, lain_safe_subset,
                                load_detr, nested_tensor_from_tensor_list, preprocess, resize_shape)
from hoilib.models.pairs import select_detections

from _detr_helpers import SMALL, _image, ckpt, model  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

def official_detr_r50_keys(num_layers=(6, 6)) -> list:
    """The state_dict keys of DETR-R50 checkpoints, written out from the structure of the public code:
    facebookresearch/detr models/backbone.py (Joiner: backbone.0 = ResNet body via IntermediateLayerGetter up to
    layer4 with FrozenBatchNorm2d buffers weight/bias/running_mean/running_var; backbone.1 = sine encoding, no
    tensors), models/transformer.py (post-norm: no encoder norm, decoder norm present; nn.MultiheadAttention's
    in_proj_weight/in_proj_bias/out_proj), models/detr.py (class_embed, bbox_embed.layers.0-2, query_embed,
    input_proj). huggingface/transformers convert_detr_original_pytorch_checkpoint_to_pytorch.py renames exactly
    these keys of the torch-hub detr_resnet50 (= detr-r50-e632da11.pth 'model') and loads them strictly."""
    enc, dec = num_layers
    keys = []
    for i in range(enc):
        p = f"transformer.encoder.layers.{i}."
        keys += [p + "self_attn.in_proj_weight", p + "self_attn.in_proj_bias", p + "self_attn.out_proj.weight",
                 p + "self_attn.out_proj.bias"]
        keys += [p + f"{m}.{t}" for m in ("linear1", "linear2", "norm1", "norm2") for t in ("weight", "bias")]
    for i in range(dec):
        p = f"transformer.decoder.layers.{i}."
        for attn in ("self_attn", "multihead_attn"):
            keys += [p + f"{attn}.in_proj_weight", p + f"{attn}.in_proj_bias", p + f"{attn}.out_proj.weight",
                     p + f"{attn}.out_proj.bias"]
        keys += [p + f"{m}.{t}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3") for t in ("weight", "bias")]
    keys += ["transformer.decoder.norm.weight", "transformer.decoder.norm.bias", "class_embed.weight",
             "class_embed.bias"]
    keys += [f"bbox_embed.layers.{j}.{t}" for j in range(3) for t in ("weight", "bias")]
    keys += ["query_embed.weight", "input_proj.weight", "input_proj.bias"]
    bn = ("weight", "bias", "running_mean", "running_var")
    body = "backbone.0.body."
    keys += [body + "conv1.weight"] + [body + f"bn1.{t}" for t in bn]
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):  # ResNet-50 bottlenecks per stage
        for b in range(blocks):
            p = f"{body}layer{stage}.{b}."
            for c in (1, 2, 3):
                keys += [p + f"conv{c}.weight"] + [p + f"bn{c}.{t}" for t in bn]
            if b == 0:
                keys += [p + "downsample.0.weight"] + [p + f"downsample.1.{t}" for t in bn]
    return keys


def _cheap_state_dict(model, **override):
    """Right keys and shapes, zero storage (expanded scalars): checkpoints for error paths without 160 MB files."""
    sd = {k: torch.zeros(1).expand(v.shape) for k, v in model.state_dict().items()}
    sd.update(override)
    return sd


# ---- structure and checkpoints -------------------------------------------------------------------------------------
def test_state_dict_keys_and_shapes_are_the_official_ones(model):
    sd = model.state_dict()
    official = official_detr_r50_keys()
    assert len(official) == 458
    assert sorted(sd) == sorted(official)
    shapes = {"class_embed.weight": (81, 256), "class_embed.bias": (81,), "query_embed.weight": (100, 256),
              "input_proj.weight": (256, 2048, 1, 1), "bbox_embed.layers.2.weight": (4, 256),
              "transformer.encoder.layers.0.self_attn.in_proj_weight": (768, 256),
              "transformer.encoder.layers.5.linear1.weight": (2048, 256),
              "transformer.decoder.layers.5.multihead_attn.out_proj.weight": (256, 256),
              "backbone.0.body.conv1.weight": (64, 3, 7, 7), "backbone.0.body.layer4.2.bn3.running_var": (2048,)}
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    # Frozen backbone: batch-norm statistics are buffers, conv weights do not train.
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_forward_shapes_and_ranges(model):
    x = nested_tensor_from_tensor_list([preprocess(_image(64, 48, 0), **SMALL), preprocess(_image(40, 56, 1), **SMALL)])
    with torch.no_grad():
        out = model(x)
    assert out["pred_logits"].shape == (2, 100, 81)
    assert out["pred_boxes"].shape == (2, 100, 4)
    assert out["hidden_states"].shape == (2, 100, 256)
    assert float(out["pred_boxes"].min()) >= 0 and float(out["pred_boxes"].max()) <= 1
    # hs[-1] is taken after the decoder's final LayerNorm (weight 1, bias 0 at init): zero mean, unit variance.
    hs = out["hidden_states"]
    assert torch.allclose(hs.mean(-1), torch.zeros(2, 100), atol=1e-4)
    assert torch.allclose(hs.var(-1, unbiased=False), torch.ones(2, 100), atol=1e-2)


def test_load_detr_round_trip(model, ckpt):
    loaded = load_detr(ckpt)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    ref = model.state_dict()
    got = loaded.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    img = [_image(64, 48, 3)]
    a, b = detect(model, img, **SMALL)[0], detect(loaded, img, **SMALL)[0]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.feats, b.feats)


@pytest.mark.parametrize("layout", ["model", "raw", "module_prefix", "detector_prefix", "half"])
def test_load_detr_checkpoint_layouts(model, tmp_path, layout):
    marker = torch.full((81,), 0.25)
    sd = _cheap_state_dict(model, **{"class_embed.bias": marker})
    sd["backbone.0.body.bn1.num_batches_tracked"] = torch.tensor(5)  # BatchNorm2d leftovers are ignored
    if layout == "model":
        obj = {"model": sd, "optimizer": {}, "epoch": 499}  # facebookresearch/detr release layout
    elif layout == "raw":
        obj = sd
    elif layout == "module_prefix":
        obj = {"model_state_dict": {"module." + k: v for k, v in sd.items()}}
    elif layout == "half":
        obj = {"model_state_dict": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}}
    else:  # a whole UPT / LAIN model: the detector under 'detector.', the HOI head beside it
        obj = {"model_state_dict": {**{"detector." + k: v for k, v in sd.items()},
                                    "interaction_head.weight": torch.zeros(3)}}
    torch.save(obj, tmp_path / "c.pth")
    loaded = load_detr(tmp_path / "c.pth")
    assert torch.equal(loaded.class_embed.bias, marker)
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values())


def test_load_detr_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*detr-r50-hicodet\.pth"):
        load_detr(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_detr(tmp_path / "junk.pth")
    sd = _cheap_state_dict(model)
    del sd["query_embed.weight"]
    sd["transformer.encoder.norm.weight"] = torch.zeros(256)  # a pre-norm DETR has it; ours must not
    sd["input_proj.bias"] = torch.zeros(128)
    torch.save({"model_state_dict": sd}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"1 missing: query_embed\.weight; 1 unexpected: "
                                              r"transformer\.encoder\.norm\.weight; 1 wrong shape: input_proj\.bias"):
        load_detr(tmp_path / "bad.pth")


def test_coco91_head_is_cut_to_coco80(model, tmp_path):
    w92 = torch.arange(92, dtype=torch.float32)[:, None].repeat(1, 256)  # row r holds the value r
    sd = _cheap_state_dict(model, **{"class_embed.weight": w92, "class_embed.bias": torch.arange(92.0)})
    torch.save({"model": sd}, tmp_path / "detr-r50-e632da11.pth")
    with pytest.raises(CheckpointError, match=r"92 rows.*--coco91"):
        load_detr(tmp_path / "detr-r50-e632da11.pth")
    m = load_detr(tmp_path / "detr-r50-e632da11.pth", from_coco91=True)
    assert m.class_embed.bias.tolist() == [float(k) for k in COCO91_KEEP]
    # person (COCO id 1) -> class 0, toothbrush (id 90) -> class 79, no-object (91) -> the last row
    assert m.class_embed.bias[0] == 1 and m.class_embed.bias[79] == 90 and m.class_embed.bias[80] == 91
    assert torch.equal(m.class_embed.weight[:, 0], torch.tensor(COCO91_KEEP, dtype=torch.float32))
    # The kept ids are hoilib's COCO-80 order (the asset's coco_category_id list).
    cats = json.loads((ASSETS / "hico_categories.json").read_text())
    assert list(COCO91_KEEP[:80]) == cats["object_index_conventions"]["coco_category_id"]


# ---- preprocessing -------------------------------------------------------------------------------------------------
def test_resize_shape_matches_detr_transform():
    assert resize_shape(640, 480) == (800, 1066)  # (H, W); the long side is truncated, not rounded
    assert resize_shape(480, 640) == (1066, 800)
    assert resize_shape(1000, 300) == (400, 1333)  # long side capped: short = round(1333 * 300 / 1000)
    assert resize_shape(1066, 800) == (800, 1066)  # already at size: unchanged
    assert resize_shape(64, 48, 48, 96) == (48, 64)
    assert resize_shape(64, 48, 96, 200) == (96, 128)


def test_preprocess_resizes_and_normalises():
    img = np.full((48, 64, 3), (255, 0, 128), np.uint8)
    x = preprocess(img, min_size=96, max_size=200)
    assert x.shape == (3, 96, 128) and x.dtype == torch.float32
    want = (np.array([255, 0, 128]) / 255 - np.array(detr_mod.IMAGENET_MEAN)) / np.array(detr_mod.IMAGENET_STD)
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), want, atol=1e-5)


# ---- detect -------------------------------------------------------------------------------------------------------
def test_detect_matches_postprocess_in_original_pixels(model):
    # Upscaled 2x by the resize, so boxes scaled by the resized size instead of the original would be 2x too big.
    images = [_image(32, 24, 10), _image(20, 36, 11)]
    dets = detect(model, images, **SMALL)
    for img, d in zip(images, dets):
        h, w = img.shape[:2]
        with torch.no_grad():
            raw = model(nested_tensor_from_tensor_list([preprocess(img, **SMALL)]))
        prob = raw["pred_logits"][0].double().softmax(-1)
        scores, labels = prob[:, :-1].max(-1)
        cx, cy, bw, bh = raw["pred_boxes"][0].double().unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * torch.tensor([w, h, w, h])
        xyxy = torch.minimum(xyxy.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float64))
        assert len(d) == 100 and d.feats.shape == (100, 256) and d.feats.dtype == np.float32
        np.testing.assert_allclose(d.boxes, xyxy.numpy(), atol=1e-3)
        np.testing.assert_allclose(d.scores, scores.numpy(), atol=1e-6)
        np.testing.assert_array_equal(d.labels, labels.numpy())
        np.testing.assert_allclose(d.feats, raw["hidden_states"][0].numpy(), atol=1e-6)
        assert (d.boxes >= 0).all() and (d.boxes[:, [0, 2]] <= w).all() and (d.boxes[:, [1, 3]] <= h).all()
        assert (d.boxes[:, 2] >= d.boxes[:, 0]).all() and (d.boxes[:, 3] >= d.boxes[:, 1]).all()
        # Most boxes lie strictly inside the image, so a wrong scale (2x here) could not hide behind the clipping.
        assert (d.boxes[:, 2] < w).mean() > 0.9 and (d.boxes[:, 3] < h).mean() > 0.9
        assert d.boxes.std(0).max() > 0.1 and d.scores.std() > 1e-3  # queries differ


def test_detect_batched_equals_one_by_one(model):
    images = [_image(64, 48, 20), _image(40, 56, 21), _image(64, 48, 22)]
    alone = [detect(model, [img], **SMALL)[0] for img in images]
    for pad in (False, True):
        # Mixed shapes: grouped by shape (exact); padded only when all images share one shape.
        batch = images if not pad else [images[0], images[2]]
        ref = alone if not pad else [alone[0], alone[2]]
        got = detect(model, batch, pad_batches=pad, **SMALL)
        for a, b in zip(ref, got):  # float noise of batch-size-dependent kernels only (pixels, probabilities)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.feats, b.feats, atol=1e-3)
    padded = detect(model, images, pad_batches=True, **SMALL)
    for img, d in zip(images, padded):  # padded batches still give boxes in each image's own pixels
        h, w = img.shape[:2]
        assert (d.boxes[:, [0, 2]] <= w).all() and (d.boxes[:, [1, 3]] <= h).all()


def test_padding_mask_hides_padding_from_the_transformer(model):
    """Given each image's own backbone features, padding them into one batch must not change the transformer's
    output: the key-padding mask and the mask-normalised sine encoding are what make this hold."""
    xs = [preprocess(_image(96, 48, 30), **SMALL), preprocess(_image(48, 72, 31), **SMALL)]
    nt = nested_tensor_from_tensor_list(xs)
    assert nt.tensors.shape == (2, 3, 72, 96)
    assert nt.mask[0, :48, :96].logical_not().all() and nt.mask[0, 48:].all()
    assert nt.mask[1, :, :48].logical_not().all() and nt.mask[1, :, 48:].all()
    with torch.no_grad():
        feats = [model.backbone[0](nested_tensor_from_tensor_list([x]))["0"].tensors for x in xs]  # [1, C, h, w]
        h, w = max(f.shape[2] for f in feats), max(f.shape[3] for f in feats)
        assert (feats[0].shape[2:], feats[1].shape[2:]) != ((h, w), (h, w))  # both images really get padded
        src = torch.zeros(2, 2048, h, w)
        mask = torch.ones(2, h, w, dtype=torch.bool)
        for i, f in enumerate(feats):
            src[i, :, :f.shape[2], :f.shape[3]] = f[0]
            mask[i, :f.shape[2], :f.shape[3]] = False

        def decode(s, m):
            pos = model.backbone[1](NestedTensor(s, m))
            return model.transformer(model.input_proj(s), m, model.query_embed.weight, pos)[0][-1]

        batched = decode(src, mask)
        single = [decode(f, torch.zeros(1, *f.shape[2:], dtype=torch.bool))[0] for f in feats]
        for i in range(2):
            torch.testing.assert_close(batched[i], single[i], atol=1e-4, rtol=1e-4)
        ignored = decode(src, torch.zeros_like(mask))  # without the mask the padding leaks in
        assert (ignored[1] - single[1]).abs().max() > 1e-2


def test_detect_rejects_bad_images(model):
    with pytest.raises(ValueError, match=r"image 1: expected a uint8 \[H, W, 3\] RGB array, got float32"):
        detect(model, [_image(8, 8, 0), np.zeros((8, 8, 3), np.float32)], **SMALL)
    with pytest.raises(TypeError, match="list"):
        detect(model, _image(8, 8, 0), **SMALL)
    assert detect(model, [], **SMALL) == []


def test_score_floor_subset_keeps_lains_selection():
    """Shrinking with score_floor <= 0.2 and keep_top >= 3 leaves LAIN's filtering (select_detections) unchanged."""
    def selected(boxes, scores, labels, idx):
        keep, _ = select_detections(boxes[idx], scores[idx], labels[idx])
        return idx[keep].tolist()

    sizes, broken = [], 0
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        k = 100
        centre = torch.rand(k, 2, generator=g) * 60  # crowded: many overlapping boxes
        wh = 10 + torch.rand(k, 2, generator=g) * 30
        boxes = torch.cat([centre, centre + wh], 1)
        scores = torch.rand(k, generator=g) ** (1, 2, 4, 8, 16, 32)[seed % 6]  # from many boxes over 0.2 to ~none
        labels = torch.where(torch.rand(k, generator=g) < 0.4, 0, torch.randint(1, 4, (k,), generator=g))
        full = selected(boxes, scores, labels, torch.arange(k))
        sub = torch.nonzero(lain_safe_subset(boxes, scores, labels, score_floor=0.2, keep_top=3))[:, 0]
        assert selected(boxes, scores, labels, sub) == full
        sizes.append(len(sub))
        sub0 = torch.nonzero(lain_safe_subset(boxes, scores, labels, score_floor=0.2, keep_top=0))[:, 0]
        broken += selected(boxes, scores, labels, sub0) != full
    assert np.mean(sizes) < 60  # it does shrink the cache
    assert broken > 0  # without the top-3 fill-ups the selection changes (the check can fail)
