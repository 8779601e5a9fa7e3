"""Shared by the DETR tests: a random DETR-R50 whose queries differ, its checkpoint in the HICO-DET layout."""
import numpy as np
import pytest
import torch

from hoilib.models.detr import build_detr

SMALL = dict(min_size=48, max_size=96)  # resize used in the tests (DETR: 800 / 1333)




@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_detr().eval()
    # A randomly initialised DETR gives nearly the same output for every query (flat cross-attention, small heads).
    # Sharper attention and larger heads make boxes, scores and labels differ between queries.
    with torch.no_grad():
        for layer in m.transformer.decoder.layers:
            layer.self_attn.in_proj_weight[:512].mul_(4.0)  # query and key projections
            layer.multihead_attn.in_proj_weight[:512].mul_(4.0)
        m.query_embed.weight.mul_(4.0)
        m.class_embed.weight.normal_(0, 1)
        m.bbox_embed.layers[2].weight.normal_(0, 0.5)
    return m


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    """The random model saved as UPT / LAIN / fredzzhang/hicodet save detr-r50-hicodet.pth."""
    path = tmp_path_factory.mktemp("ckpt") / "detr-r50-hicodet.pth"
    torch.save({"epoch": 30, "model_state_dict": model.state_dict()}, path)
    return path


def _image(w, h, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
