"""CLIP backbones through open_clip.

- "ViT-B-16" / "ViT-L-14" (the real path): open_clip's own architectures; OpenAI weights are read from a local
  file given in the config (`clip.checkpoint`), never downloaded.
- "hoi-world-vit" (the built-in world): a small open_clip configuration (`clip_configs/hoi-world-vit.json`:
  64 px input, patch 8, width 128, 4 layers; text width 128, 4 layers, context 32), pretrained by hoilib on the
  world's captions (`hoilib.models.clip_pretrain`). OpenAI's CLIP uses QuickGELU; so does this config.
- "hoi-smoke-vit" (the hicodet-smoke profile): ViT-B/16's layout at toy size (`clip_configs/hoi-smoke-vit.json`:
  64 px, patch 8, width 64, 4 layers; text width 64, 2 layers, context 77 as OpenAI's), random weights written in
  OpenAI's file format by `hoilib.fixture`, so that the real path runs end to end on a CPU.

`preprocess` is the one way an image becomes a CLIP input tensor in hoilib (LAIN, CLIP pretraining, probes, crops).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch

from ..data.images import resize

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
    Raises:
        ValueError: an unknown `arch`, or a checkpoint that does not fit it (`checkpoint_mismatch` says how).
    """
    kwargs = {"force_image_size": image_size} if image_size else {}
    model = _create(arch, **kwargs)
    if checkpoint:
        state = read_checkpoint(checkpoint)
        problem = checkpoint_mismatch(arch, state, model.state_dict())
        if problem:
            raise ValueError(f"{checkpoint}: {problem}")
        model.load_state_dict(state, strict=True)
    return model.float().eval()


def _create(arch: str, **kwargs) -> torch.nn.Module:
    """open_clip.create_model(arch) without pretrained weights (they come from a checkpoint file, if at all)."""
    _register_configs()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {arch!r}; choose e.g. 'hoi-world-vit', 'ViT-B-16', 'ViT-L-14'")
    # OpenAI's CLIP uses QuickGELU; so do hoilib's configs (quick_gelu: true). open_clip warns that no pretrained
    # weights were loaded, which is meant: silence it.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(arch, pretrained=None, force_quick_gelu=True, **kwargs)
    finally:
        logger.setLevel(level)


def checkpoint_mismatch(arch: str, state: dict, reference: dict | None = None) -> str:
    """"" when `state` (`read_checkpoint`'s output) fits open_clip `arch` name for name and shape for shape; else one
    sentence: how many tensors are missing, unexpected or of another shape, the first of each, and what the file
    holds (vision width, patch, layers, input size, text context) so that a user can tell which model it is.

    `reference`: the state dict of `arch` when already built; by default it is built on the meta device (no memory,
    no initialisation), so the check is cheap even for ViT-L/14.
    """
    if reference is None:
        with torch.device("meta"):
            reference = _create(arch, device="meta").state_dict()
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    wrong = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in {arch}" for k, v in reference.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or wrong):
        return ""
    parts = [f"{len(items)} {what} (first: {items[0]})" for what, items in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if items]
    return f"the weights do not fit CLIP {arch}: " + "; ".join(parts) + f". {_describe(state)}"


def _describe(state: dict) -> str:
    """What a CLIP state dict holds, read off its shapes (a ViT: width, patch, layers, input size)."""
    conv = state.get("visual.conv1.weight")
    pos = state.get("visual.positional_embedding")
    if conv is None or pos is None or conv.dim() != 4:
        return "The file holds no OpenAI-style ViT image tower (a ResNet CLIP or another model?)."
    layers = {k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}
    grid = int(round((pos.shape[0] - 1) ** 0.5))
    text = state.get("positional_embedding")
    ctx = f", text context {text.shape[0]}" if text is not None else ""
    return (f"The file holds a ViT of width {conv.shape[0]}, patch {conv.shape[-1]}, {len(layers)} layers at "
            f"{grid * conv.shape[-1]} px{ctx}.")


def read_checkpoint(path: str | Path) -> dict:
    """The tensors of a CLIP weights file as {open_clip name: tensor} (CPU, dtypes as stored: OpenAI's are fp16).

    Reads an OpenAI release (a TorchScript archive such as ViT-B-16.pt, or its state dict), an open_clip state dict
    or a hoilib checkpoint {"model": ..., "config": ...}. OpenAI's three non-parameter entries (input_resolution,
    context_length, vocab_size) are dropped; every other OpenAI key already has open_clip's name.
    Raises FileNotFoundError (the path, and that nothing is downloaded) or ValueError (a file that holds no state
    dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {path} (weights are never downloaded; "
                                f"put the file there or set clip.checkpoint)")
    with warnings.catch_warnings():
        # torch.load hands a TorchScript archive to torch.jit.load with a warning; both warn of deprecation.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except RuntimeError:  # a TorchScript archive of the legacy (non-zip) format
            try:
                obj = torch.jit.load(str(path), map_location="cpu")
            except Exception as e:
                raise ValueError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
        except Exception as e:  # pickle / zip errors of a broken or non-torch file
            raise ValueError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, torch.jit.ScriptModule):  # OpenAI's releases are TorchScript archives
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # a hoilib checkpoint
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        what = f"a dict with keys {list(obj)[:4]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ValueError(f"{path}: holds {what}, not a CLIP state dict")
    return {k: v for k, v in obj.items() if k not in ("input_resolution", "context_length", "vocab_size")}


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
        out.append(torch.tensor(resize(im, size)))  # a copy: images may be read-only memory maps
    if not out:
        return torch.zeros(0, 3, size, size)
    x = torch.stack(out).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
