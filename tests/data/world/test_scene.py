"""Scenes (hoilib.data.world.scene): box convention, captions, close-ups and version 2's background scenes."""
from __future__ import annotations

import numpy as np
import pytest

from hoilib.config import ExperimentConfig
from hoilib.data.world import build_world, parse_caption
from hoilib.data.world.backgrounds import SCENES
from hoilib.data.world.scene import _hico_box

from _world_sample import render_split


def test_hico_box_convention():
    # continuous [x0, y0, x1, y1] -> 1-based inclusive pixels covering it, clipped to the image
    assert _hico_box([3.2, 4.0, 10.5, 12.0], 64) == [4.0, 5.0, 11.0, 12.0]
    assert _hico_box([-2.0, -1.0, 70.0, 64.4], 64) == [1.0, 1.0, 64.0, 64.0]
    assert _hico_box([5.1, 5.1, 5.2, 5.2], 64) == [6.0, 6.0, 6.0, 6.0]


def test_captions_name_exactly_the_interactions(sample):
    _, _, meta, ann = sample
    for i, r in enumerate(meta):
        expected = sorted(ann.hoi[ann.pairs_of(i)].tolist())
        got = sorted(parse_caption(r.caption)) if r.pairs else []
        assert got == expected, (i, r.caption)


def test_caption_close_ups_fill_the_frame(tmp_path):
    """A close-up shows one interaction group filling the frame; the HOI splits do not change with the setting."""
    _, _, close, _ = render_split(40, split="caption", caption_close_up=1.0)
    _, _, scenes, _ = render_split(40, split="caption", caption_close_up=0.0)
    _, _, half, _ = render_split(200, split="caption", caption_close_up=0.5)

    def extent(r):  # the union box of everything annotated: its larger side as a fraction of the image's
        ids = {e for h, t, _ in r.pairs for e in (h, t)}
        b = np.array([r.boxes[e] for e in ids], float)
        return max(b[:, 3].max() - b[:, 1].min(), b[:, 2].max() - b[:, 0].min()) / 64
    assert all(r.pairs for r in close)
    assert min(extent(r) for r in close) > 0.8 and np.median([extent(r) for r in scenes if r.pairs]) < 0.7
    for r in close:  # one person with one object, or two people (interacting, or sharing the object)
        assert sum(1 for k in r.labels if k == 0) <= 2 and len({t for _, t, _ in r.pairs if r.labels[t] != 0}) <= 1
    assert 70 <= sum(extent(r) > 0.8 for r in half if r.pairs) <= 130
    # the HOI splits ignore the setting
    assert np.array_equal(render_split(10, caption_close_up=1.0)[1], render_split(10, caption_close_up=0.0)[1])
    with pytest.raises(ValueError, match="caption_close_up"):
        build_world(ExperimentConfig().override({"world.caption_close_up": 1.5, "data.cache_dir": str(tmp_path)}))


def test_version_2_images_show_their_scene():
    """The scene is visible: the colours of the top and bottom rows (sky and ground, medians) name it among the
    16 scenes, clutter and people notwithstanding."""
    _, images, meta, _ = render_split(100, split="test")
    assert len({r.scene for r in meta}) >= 12 and all(0 <= r.scene < len(SCENES) for r in meta)
    colours = np.array([np.r_[sky[0], ground[1]] for _, sky, ground, _ in SCENES], float)  # [16, 6]
    rows = np.concatenate([np.median(images[:, 0], 1), np.median(images[:, -1], 1)], 1)  # [N, 6]
    nearest = np.argmin(((rows[:, None] - colours[None]) ** 2).sum(-1), 1)
    assert (nearest == np.array([r.scene for r in meta])).mean() >= 0.95
