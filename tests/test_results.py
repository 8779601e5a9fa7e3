import json

import numpy as np
import pandas as pd
import pytest

from hoilib import results, study
from hoilib.analysis import _average_precision, crop


def test_write_table_rounds_and_writes_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"setting": ["a", "b"], "value": [1.23456, 2.0]})
    csv = results.write_table(df, "tab_x", tmp_path, caption="Caption.")
    back = pd.read_csv(csv)
    assert back["value"].tolist() == [1.23, 2.0]
    md = (tmp_path / "tables" / "tab_x.md").read_text()
    assert md.startswith("Caption.") and "| setting" in md and "1.23" in md and "1.2346" not in md


def test_manifest_records_configs_seeds_and_versions(tmp_path):
    path = results.write_manifest(tmp_path / "results", "01_x", "smoke", [0, 1], {"a": {"k": 1}}, "abc")
    d = json.loads(path.read_text())
    assert d["seeds"] == [0, 1] and d["data_hash"] == "abc" and d["configs"] == {"a": {"k": 1}}
    assert d["packages"]["torch"] and d["profile"] == "smoke"


def test_summaries_use_sample_std_over_seeds():
    long = pd.DataFrame({"setting": ["LAIN"] * 3, "protocol": ["uc0", "uc1", "uc2"], "seed": [0, 1, 2],
                         "metric": ["full"] * 3, "value": [30.0, 32.0, 34.0]})
    s = study.summarise(study.collapse_uc(long))
    assert len(s) == 1 and s["protocol"].iloc[0] == "uc"
    assert s["mean"].iloc[0] == pytest.approx(32.0) and s["std"].iloc[0] == pytest.approx(2.0)
    assert s["n_runs"].iloc[0] == 3


def test_main_table_puts_paper_values_beside_ours():
    rows = []
    for seed, v in enumerate([30.0, 31.0, 32.0]):
        for m in ("unseen", "seen", "full"):
            rows.append(dict(setting="LAIN", protocol="rf_uc", seed=seed, metric=m, value=v))
    t = study.main_table(pd.DataFrame(rows), ours="world")
    r = t.iloc[0]
    assert r["protocol"] == "RF-UC" and r["full_mean"] == pytest.approx(31.0) and r["full_std"] == pytest.approx(1.0)
    assert r["paper_full"] == 34.41 and r["paper_unseen"] == 32.34 and r["ours_from"] == "world"


def test_gain_table_differences_and_standard_errors():
    rows = []
    for setting, vals in (("A", {"rf_uc": [30.0, 32.0], "supervised": [40.0, 40.0]}),
                          ("B", {"rf_uc": [27.0, 29.0], "supervised": [41.0, 43.0]})):
        for protocol, vs in vals.items():
            for seed, v in enumerate(vs):
                for m in ("unseen", "seen", "full"):
                    if not (protocol == "supervised" and m == "unseen"):
                        rows.append(dict(setting=setting, protocol=protocol, seed=seed, metric=m, value=v))
    t = study.main_table(pd.DataFrame(rows), ours="world")
    g = study.gain_table(t, {"A - B": ("A", "B")}).set_index(["protocol", "metric"])
    assert g.loc[("RF-UC", "full"), "A - B"] == pytest.approx(3.0)
    # se = sqrt(std_a^2 / n + std_b^2 / n) = sqrt(2 / 2 + 2 / 2)
    assert g.loc[("RF-UC", "full"), "A - B se"] == pytest.approx(np.sqrt(2.0))
    assert g.loc[("Fully supervised", "full"), "A - B"] == pytest.approx(-2.0)
    assert ("Fully supervised", "unseen") not in g.index  # a protocol without unseen classes has no unseen gain


def test_seed_pairs_compare_methods_seed_by_seed():
    from hoilib import plotting

    def grid(vals):  # {setting: [full per seed]}
        return pd.DataFrame([dict(setting=k, protocol="rf_uc", seed=s, metric=m, value=v + (m == "unseen"))
                             for k, vs in vals.items() for s, v in enumerate(vs) for m in ("full", "unseen")])

    frames = {"default": grid({"base": [10.0, 12.0], "LAIN": [11.0, 11.5]}),
              "4x longer": grid({"base": [20.0, 21.0], "LAIN": [22.0, 24.0]})}
    p = study.seed_pairs(frames, "base", "LAIN")
    assert list(p.columns) == ["schedule", "protocol", "seed", "base", "LAIN", "LAIN - base"]
    assert p["LAIN - base"].tolist() == pytest.approx([1.0, -0.5, 2.0, 3.0])
    assert p["schedule"].tolist() == ["default", "default", "4x longer", "4x longer"]
    fig = plotting.plot_seed_pairs(p, "base", "LAIN")
    lines = fig.axes[0].lines
    assert len(lines) == 4 and [ln.get_color() for ln in lines] == ["tab:green", "tab:red", "tab:green", "tab:green"]
    assert list(lines[3].get_xdata()) == [2, 3] and list(lines[3].get_ydata()) == [21.0, 24.0]
    one_sided = grid({"base": [10.0, 12.0], "LAIN": [11.0]})
    with pytest.raises(ValueError, match="lacks runs of \\['LAIN'\\]"):
        study.seed_pairs({"default": one_sided}, "base", "LAIN")


def test_long_schedule_passes_more_images_than_the_profile():
    assert set(study.LONG_SCHEDULE) == set(study.PROFILES)
    assert set(study.LONG_SCHEDULE_METHODS) <= set(study.MAIN_METHODS)
    base = study.experiment_config("default")
    longer = base.override(study.LONG_SCHEDULE["default"])
    assert study.images_passed(base) == 1500 * 2 and study.images_passed(longer) == 3000 * 4
    assert longer.train.max_train_images == base.world.n_train  # every training image of the world
    smoke = study.experiment_config("smoke")
    assert study.images_passed(smoke.override(study.LONG_SCHEDULE["smoke"])) == 2 * study.images_passed(smoke)
    assert longer.train.lr_step < longer.train.epochs  # the lr still drops once before the end


def test_training_figures_draw_every_series():
    from hoilib import plotting

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


def test_ablation_rows_match_the_paper_table():
    assert list(study.ABLATIONS) == list(study.PAPER_ABLATION)
    assert len(study.ABLATIONS) == 9


def test_average_precision_known_answer():
    # ranks: pos, neg, pos -> precisions at the positives 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert _average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1], bool)) == pytest.approx(5 / 6)
    assert np.isnan(_average_precision(np.array([0.1]), np.array([0], bool)))


def test_crop_pads_and_clips_to_the_image():
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    c = crop(img, np.array([2.0, 2.0, 6.0, 6.0]), pad=0.25)  # 1 px of padding each side
    assert c.shape == (6, 6, 3) and (c == img[1:7, 1:7]).all()
    assert crop(img, np.array([0.0, 0.0, 10.0, 10.0]), pad=0.5).shape == (10, 10, 3)


def test_qualitative_figure_reads_an_image_source_like_an_array():
    from hoilib import plotting
    from hoilib.config import WorldConfig
    from hoilib.data import world as W

    wc = WorldConfig()
    images, meta = W.generate_split(wc, "test", 3)
    vocab = W.world_vocabulary()
    ann = W._annotations(meta, "test", wc.image_size, vocab)
    bh, bo = ann.continuous_boxes()
    p = ann.pairs_of(1)[:1]
    pred = {"image_index": ann.image_index[p], "hoi": ann.hoi[p], "score": np.ones(1, np.float32),
            "boxes_h": bh[p], "boxes_o": bo[p]}

    class Source:  # what a data set's `images` offers: one image at a time
        def load(self, i):
            return images[i]

    figs = [plotting.plot_qualitative(src, ann, pred, vocab, [1], ncols=1) for src in (images, Source())]
    shown = [f.axes[0].images[0].get_array() for f in figs]
    assert np.array_equal(shown[0], images[1]) and np.array_equal(shown[1], images[1])
    (text,) = figs[1].axes[0].texts  # the ground-truth pair as the prediction: written in green, as correct
    assert text.get_text() == f"{vocab.hoi_name(int(ann.hoi[p][0]))} 1.00" and text.get_color() == "tab:green"
