"""Rendered world splits shared by the world's test modules (imported by name: pytest prepends this folder)."""
from __future__ import annotations

from hoilib.config import WorldConfig
from hoilib.data.world import generate_split, world_vocabulary
from hoilib.data.world.generate import _annotations


def render_split(n=60, split="train", **kw):
    """(WorldConfig, images [n, S, S, 3] uint8, rendered meta, HOIAnnotations) of n images of one split."""
    wc = WorldConfig(**kw)
    images, meta = generate_split(wc, split, n)
    return wc, images, meta, _annotations(meta, split, wc.image_size, world_vocabulary())
