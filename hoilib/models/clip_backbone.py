"""CLIP backbones through open_clip.

- "ViT-B-16" / "ViT-L-14" (the real path): open_clip's own architectures; OpenAI weights are read from a local
  file given in the config (`clip.checkpoint`), never downloaded.
- "hoi-world-vit" (the built-in world): a small open_clip configuration (`clip_configs/hoi-world-vit.json`:
  64 px input, patch 8, width 128, 4 layers; text width 128, 4 layers, context 32), pretrained by hoilib on the
  world's captions (`hoilib.models.clip_pretrain`). OpenAI's CLIP uses QuickGELU; so does this config.
"""
from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch

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
