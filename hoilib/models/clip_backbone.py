"""CLIP backbones through open_clip.

- "ViT-B-16" / "ViT-L-14" (the real path): open_clip's own architectures; OpenAI weights are read from a local
  file given in the config (`clip.checkpoint`), never downloaded.
- "hoi-world-vit" (the built-in world): a small open_clip configuration (`clip_configs/hoi-world-vit.json`:
  64 px input, patch 8, width 128, 4 layers; text width 128, 4 layers, context 32), pretrained by hoilib on the
  world's captions (`hoilib.models.clip_pretrain`). OpenAI's CLIP uses QuickGELU; so does this config.

`preprocess` is the one way an image becomes a CLIP input tensor in hoilib (LAIN, CLIP pretraining, probes, crops).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

CONFIG_DIR = Path(__file__).parent / "clip_configs"
_registered = False


def _register_configs() -> None:
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def build_clip(arch: str, checkpoint: str = "", image_size: int | None = None) -> torch.nn.Module:
    """Build an open_clip CLIP model (fp32, on the CPU).

    Args:
        arch: open_clip model name ("hoi-world-vit", "ViT-B-16", "ViT-L-14", ...).
        checkpoint: "" for random initialisation, else a local file: an OpenAI TorchScript/state-dict `.pt`
            (e.g. ViT-B-16.pt) or an open_clip / hoilib state dict.
        image_size: override of the vision input size (positional embeddings are interpolated by open_clip).
    """
    _register_configs()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {arch!r}; choose e.g. 'hoi-world-vit', 'ViT-B-16', 'ViT-L-14'")
    kwargs = {"force_image_size": image_size} if image_size else {}
    # OpenAI's CLIP uses QuickGELU; so does the world's config (quick_gelu: true). open_clip warns that no
    # pretrained weights were loaded: weights come from `checkpoint` below (or the model is meant to be random).
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True, **kwargs)
    finally:
        logger.setLevel(level)
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {path} (weights are never downloaded; "
                                    f"put the file there or set clip.checkpoint)")
        state = _read_state_dict(path)
        if isinstance(state.get("model"), dict):  # a hoilib checkpoint {"model": ..., "config": ...}
            state = state["model"]
        # OpenAI files carry three non-parameter entries; every other key has open_clip's name already.
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: checkpoint does not match {arch}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    return model.float().eval()


def _read_state_dict(path: Path) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except RuntimeError:  # OpenAI's releases are TorchScript archives, which torch.load refuses
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def get_tokenizer(arch: str):
    """open_clip's tokenizer for `arch` (OpenAI BPE; context length from the model config)."""
    _register_configs()
    return open_clip.get_tokenizer(arch)


def preprocess(images, size: int, mean, std) -> torch.Tensor:
    """uint8 RGB images -> normalised CLIP inputs [B, 3, size, size] (float32, CPU).

    Args:
        images: a list of uint8 [H, W, 3] arrays (sizes may differ) or one uint8 array [B, H, W, 3] (a memmap is
            fine: each image is copied once).
        size: S, the CLIP input size. An image of another size is resized to S x S with PIL's bicubic filter without
            keeping the aspect ratio (LAIN's `IResize([224, 224])`); an S x S image is used as it is.
        mean, std: per-channel normalisation (LAIN uses ImageNet's statistics, not CLIP's).
    """
    out = []
    for im in images:
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"expected uint8 [H, W, 3] images, got {im.dtype} {im.shape}")
        if im.shape[:2] != (size, size):
            im = np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC))
        out.append(torch.tensor(im))  # a copy: images may be read-only memory maps
    if not out:
        return torch.zeros(0, 3, size, size)
    x = torch.stack(out).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
