"""Scenes (hoilib.data.world.scene): box convention, captions and close-ups."""
from __future__ import annotations

import numpy as np
import pytest

from hoilib.config import ExperimentConfig
from hoilib.data.world import build_world, parse_caption
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
