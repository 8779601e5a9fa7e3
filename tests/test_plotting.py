"""Figures: every series drawn, image sources read like arrays, correctness shown in colour."""
import numpy as np
import pandas as pd
import pytest

from hoilib import plotting
from hoilib.analysis import qualitative_picks
from hoilib.config import WorldConfig
from hoilib.data.world import generate_split, world_vocabulary
from hoilib.data.world.generate import _annotations


def test_training_figures_draw_every_series():
    history = [{"epoch": e, "loss": 4.0 - e / 10, "i2t_top1": 0.01 * e, "i2t_top5": 0.03 * e, "t2i_top5": 0.02,
                "i2t_chance": 0.002} for e in (1, 2, 3)]
    fig = plotting.plot_clip_pretraining(history)
    assert [len(ax.lines) for ax in fig.axes] == [1, 4]
    assert list(fig.axes[0].lines[0].get_ydata()) == pytest.approx([3.9, 3.8, 3.7])
    steps = pd.DataFrame({"epoch": [1, 1, 2, 2], "step": [1, 2, 1, 2], "loss": [1.0, 0.8, 0.6, 0.5]})
    hist = pd.DataFrame({"epoch": [1, 2], "test_full": [10.0, 12.0], "test_unseen": [5.0, 6.0]})
    fig = plotting.plot_training_curves(steps, hist)
    assert list(fig.axes[0].lines[0].get_xdata()) == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert len(fig.axes[1].lines) == 2
    images = np.zeros((3, 8, 8, 3), np.uint8)
    fig = plotting.show_captioned(images, ["a photo of a person riding a horse"] * 3, [0, 2], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["a person riding a horse"] * 2
    with pytest.raises(ValueError, match="at least one"):
        plotting.show_captioned(images, [], [])


def test_qualitative_figure_reads_an_image_source_like_an_array():

    wc = WorldConfig()
    images, meta = generate_split(wc, "test", 3)
    vocab = world_vocabulary()
    ann = _annotations(meta, "test", wc.image_size, vocab)
    bh, bo = ann.continuous_boxes()
    p = ann.pairs_of(1)[:1]
    pred = {"image_index": ann.image_index[p], "hoi": ann.hoi[p], "score": np.ones(1, np.float32),
            "boxes_h": bh[p], "boxes_o": bo[p]}

    class Source:  # what a data set's `images` offers: one image at a time
        def load(self, i):
            return images[i]

    picks = qualitative_picks(ann, pred, [1], top=3)
    figs = [plotting.plot_qualitative(src, pred, vocab, picks, ncols=1) for src in (images, Source())]
    shown = [f.axes[0].images[0].get_array() for f in figs]
    assert np.array_equal(shown[0], images[1]) and np.array_equal(shown[1], images[1])
    (text,) = figs[1].axes[0].texts  # the ground-truth pair as the prediction: written in green, as correct
    assert text.get_text() == f"{vocab.hoi_name(int(ann.hoi[p][0]))} 1.00" and text.get_color() == "tab:green"
