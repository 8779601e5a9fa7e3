"""Figures: every series drawn, image sources read like arrays, correctness shown in colour."""
import io

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


def test_model_figures_draw_what_they_are_given():
    mask = np.zeros((6, 6), bool)
    mask[:2, :3] = True
    mask[[0, 1], [0, 1]] = False
    mask[2:, :2] = True
    fig = plotting.plot_attention_mask(mask, 2, (1, 3), n_patches_shown=2)
    whole, zoom = fig.axes
    assert np.array_equal(whole.images[0].get_array(), ~mask) and np.array_equal(zoom.images[0].get_array(),
                                                                                   ~mask[:5, :5])
    assert [t.get_text() for t in zoom.get_xticklabels()] == ["HO_1", "HO_2", "CLS", "patch_1", "patch_2"]
    with pytest.raises(ValueError, match="expected"):
        plotting.plot_attention_mask(mask, 3, (1, 3))

    img = np.zeros((16, 16, 3), np.uint8)
    heat = np.arange(16.0).reshape(4, 4)
    row = dict(image=img, box_h=[1, 1, 8, 12], box_o=[6, 4, 15, 15], la_norm=heat, ia_h=np.ones((2, 2)),
               ia_o=np.ones((2, 2)), attention={"LAIN": heat, "w/o adapters": heat[::-1]}, title="img 0")
    fig = plotting.plot_trained_adapters([row, dict(row, la_norm=None, ia_h=None)], ("LAIN", "w/o adapters"))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 10 and [ax.get_title() for ax in panels[:5]] == [
        "image, pair", "LA: ||dF|| per patch", "IA: context attention", "HO attention: LAIN",
        "HO attention: w/o adapters"]
    assert np.array_equal(panels[4].images[1].get_array(), heat[::-1])
    assert [t.get_text() for t in panels[6].texts] == ["no LA"]  # second row: a model without LA

    hist = pd.DataFrame({"step": [10, 20], "gamma_la": [1e-3, 2e-3], "gamma_ia": [np.nan, np.nan],
                         "source": ["step", "epoch"]})
    fig = plotting.plot_gamma_curves(hist, gamma_init=1e-9)
    (ax,) = fig.axes
    assert list(ax.lines[0].get_xdata()) == [0, 10, 20] and list(ax.lines[0].get_ydata()) == [1e-9, 1e-3, 2e-3]
    assert len(ax.lines) == 2  # gamma_IA absent: the LA curve and its epoch-end marker only

    sweep = pd.DataFrame({"knob": ["lambda"] * 4 + ["K"] * 2, "value": [1.0, 2.0, 1.0, 2.0, 0.0, 5.0],
                          "metric": ["full", "full", "unseen", "unseen", "full", "full"],
                          "map": [10.0, 11.0, 5.0, 6.0, 10.0, 10.5]})
    fig = plotting.plot_knob_sweep(sweep)
    assert [len(ax.lines) for ax in fig.axes] == [2, 1] and [ax.get_xlabel() for ax in fig.axes] == ["lambda", "K"]
    assert list(fig.axes[1].lines[0].get_ydata()) == [10.0, 10.5]


def test_primary_figure_draws_every_seed_and_interval():
    from hoilib import study

    frames = {w: pd.DataFrame([dict(setting=k, protocol="rf_uc", seed=s, metric=m, value=10.0 + s + (k == "LAIN") * (w + 1))
                               for k in ("w/o adapters", "LAIN") for s in range(4) for m in ("full", "unseen")])
              for w in (0, 1)}
    per_seed = study.paired_differences(frames, study.PRIMARY["LAIN - w/o adapters"])
    assert len(per_seed) == 2 * 4 * 2 * 2 and set(per_seed["world"]) == {"0", "1", "pooled"}
    table = study.replicated_table(frames, study.PRIMARY)
    fig = plotting.plot_primary(per_seed, table)
    ax = fig.axes[0]
    clouds = [line for line in ax.lines if line.get_marker() == "o"]  # one point per seed in each world column
    assert [len(c.get_ydata()) for c in clouds] == [4, 4, 8]
    assert [round(float(np.mean(c.get_xdata())), 6) for c in clouds] == [0.0, 1.0, 2.0]
    bars = [line for line in ax.lines if line.get_marker() == "D"]
    assert [round(float(b.get_ydata()[0]), 6) for b in bars] == [1.0, 2.0, 1.5]
    # the same numbers give the same picture (no random jitter)
    pngs = []
    for _ in range(2):
        buf = io.BytesIO()
        plotting.plot_primary(per_seed, table).savefig(buf, format="png")
        pngs.append(buf.getvalue())
    assert pngs[0] == pngs[1]


def test_clip_pretraining_figure_of_several_worlds():
    runs = {f"world seed {s}": [{"epoch": e, "loss": 4.0 - e / (s + 2), "i2t_top1": 0.1 * e, "i2t_top5": 0.2 * e,
                                 "i2t_chance": 0.01 * (s + 1)} for e in (1, 2)] for s in (0, 1)}
    fig = plotting.plot_clip_pretraining(runs)
    loss, retrieval = fig.axes
    assert [line.get_label() for line in loss.lines] == list(runs)
    assert list(loss.lines[1].get_ydata()) == pytest.approx([4 - 1 / 3, 4 - 2 / 3])
    labels = [line.get_label() for line in retrieval.lines]
    assert labels[:4] == ["world seed 0: i2t top1", "world seed 0: i2t top5", "world seed 1: i2t top1",
                          "world seed 1: i2t top5"]
    # one chance line per world (their caption pools differ)
    assert [float(line.get_ydata()[0]) for line in retrieval.lines[4:]] == pytest.approx([1.0, 2.0])
    with pytest.raises(ValueError, match="without epoch records"):
        plotting.plot_clip_pretraining({"empty": []})


def test_probe_sweep_figure_draws_the_table():
    rows = []
    for k, setting in enumerate(["v1", "v2, scene bias 0", "v2, scene bias 1"]):
        for subset in ("all pairs", "ambiguous pairs"):
            for comp, gap in (("crop - whole image", 5.0 + k), ("in-place masked - whole image", 1.0 + k)):
                rows.append(dict(setting=setting, crowded_pct=10.0 + 20 * k, comparison=comp, subset=subset,
                                 diff_pp=gap, ci95_low_pp=gap - 2, ci95_high_pp=gap + 3))
    fig = plotting.plot_probe_sweep(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["all pairs", "ambiguous pairs"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["v1\n10% crowded", "v2, scene bias 0\n30% crowded",
                                                             "v2, scene bias 1\n50% crowded"]
    crop_line = ax.containers[0].lines[0]  # the first series' points, in the settings' order
    assert list(crop_line.get_ydata()) == pytest.approx([5.0, 6.0, 7.0])
    segments = ax.containers[0].lines[2][0].get_segments()  # error bars from low to high
    assert [tuple(s[:, 1]) for s in segments] == [(3.0, 8.0), (4.0, 9.0), (5.0, 10.0)]
    assert [c.get_label() for c in ax.containers] == ["crop - whole image", "in-place masked - whole image"]
    with pytest.raises(ValueError, match="no rows"):
        plotting.plot_probe_sweep(pd.DataFrame(rows).iloc[:0])


def test_sweep_figure_of_one_seed_draws_points_without_intervals():
    """With one seed the t interval does not exist (infinite or NaN limits): the points are drawn, the axis stays finite."""
    t = pd.DataFrame({"lambda": [0.0, 1.0, 2.8], "full_diff_map": [-1.5, 0.5, np.nan],
                      "full_ci_low_map": [-np.inf, np.nan, np.nan], "full_ci_high_map": [np.inf, np.nan, np.nan],
                      "full_verdict": ["inconclusive", "inconclusive", "(the paper's value)"],
                      "chosen_on_val": [False, True, False]})
    fig = plotting.plot_sweeps({"lambda": t})
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [float(c.lines[0].get_ydata()[0]) for c in ax.containers] == [-1.5, 0.5, 0.0]
    low, high = ax.get_ylim()
    assert -3.0 < low < -1.5 and 0.5 < high < 3.0
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"] == [1.0]
