"""Notebook 08's tables and figures: paired gaps per detector level and per test world, and their plots."""
import math

import numpy as np
import pandas as pd
import pytest

from hoilib import plotting, study

A, B = study.FIGURE_PAIR
T2 = 4.302652729911275  # t(0.975, 2 df)


def _long(key: str, values: dict) -> pd.DataFrame:
    """{(key value, metric): ([a per seed], [b per seed])} -> long frame (setting, key, seed, metric, value)."""
    rows = []
    for (k, metric), arms in values.items():
        for name, vs in zip((A, B), arms):
            rows += [dict(setting=name, **{key: k}, seed=s, metric=metric, value=v) for s, v in enumerate(vs)]
    return pd.DataFrame(rows)


LEVELS = _long("level", {(0.0, "full"): ([10.0, 11.0, 12.0], [11.0, 13.0, 13.0]),  # d = 1, 2, 1
                         (1.0, "full"): ([8.0, 8.0, 9.0], [10.0, 10.5, 12.0])})  # d = 2, 2.5, 3


def test_paired_gap_table_gives_means_and_t_intervals():
    t = study.paired_gap_table(LEVELS, "level", metrics=("full",)).set_index("level")
    assert list(t.index) == [0.0, 1.0] and (t["comparison"] == f"{B} - {A}").all()
    assert t.loc[0.0, A] == pytest.approx(11.0) and t.loc[0.0, B] == pytest.approx(37 / 3)
    hw = T2 * math.sqrt(1 / 3) / math.sqrt(3)
    assert t.loc[0.0, "mean_diff_map"] == pytest.approx(4 / 3) and t.loc[0.0, "half_width_map"] == pytest.approx(hw)
    assert t.loc[0.0, "verdict"] == "inconclusive"
    assert t.loc[1.0, "ci_low_map"] == pytest.approx(2.5 - T2 * 0.5 / math.sqrt(3))
    assert t.loc[1.0, "verdict"] == "supported"


def test_detection_quality_table_puts_box_ap_beside_the_gap():
    boxes = pd.DataFrame({"detector": ["simulated detector"] * 2, "level": [0.0, 1.0], "box_ap": [80.0, 50.0],
                          "box_ap50": [90.0, 70.0], "box_ap75": [85.0, 55.0], "box_ap_all": [100.0, 60.0],
                          "box_ap50_all": [100.0, 80.0]})
    t = study.detection_quality_comparison(LEVELS, boxes, metrics=("full",))
    assert list(t.columns[:6]) == ["detector", "level", "box_ap", "box_ap50", "box_ap_all", "box_ap50_all"]
    assert list(t["box_ap"]) == [80.0, 50.0] and list(t["mean_diff_map"]) == pytest.approx([4 / 3, 2.5])
    with pytest.raises(ValueError, match="no box AP for levels \\[1.0\\]"):
        study.detection_quality_comparison(LEVELS, boxes[:1], metrics=("full",))
    fig = plotting.plot_detection_quality(t, study.FIGURE_PAIR, metrics=("full",))
    top, bottom = fig.axes[:2]
    assert [list(line.get_xdata()) for line in top.lines] == [[50.0, 80.0]] * 2  # sorted by box AP
    assert list(top.lines[1].get_ydata()) == pytest.approx([32.5 / 3, 37 / 3])
    assert len(bottom.containers) == 2  # one interval per level


def test_gap_change_pairs_the_gaps_of_each_seed():
    iv = study.gap_change(LEVELS, "level", 0.0, 1.0)
    # gaps per seed: (1, 2, 1) at 0.0 and (2, 2.5, 3) at 1.0 -> changes (1, 0.5, 2)
    assert iv.n == 3 and iv.mean == pytest.approx(3.5 / 3)
    assert iv.sd == pytest.approx(np.std([1.0, 0.5, 2.0], ddof=1))
    with pytest.raises(ValueError, match="no 'full' results at level = 2.0"):
        study.gap_change(LEVELS, "level", 0.0, 2.0)


def test_shortcut_gap_table_and_figure_keep_the_worlds_in_order():
    long = _long("world", {("b", "full"): ([1.0, 2.0], [2.0, 4.0]), ("a", "full"): ([1.0, 1.0], [0.0, 0.5])})
    worlds = pd.DataFrame({"world": ["b", "a"], "images": [10, 10], "pairs": [20, 20], "crowded": [0.5, 0.1],
                           "people_per_image": [3.0, 1.5], "scene_home": [0.0, np.nan], "scene_chance": [0.2, np.nan]})
    t = study.shortcut_gap_table(long, worlds, metrics=("full",))
    assert list(t["world"]) == ["b", "a"] and list(t["mean_diff_map"]) == pytest.approx([1.5, -0.75])
    assert list(t["crowded"]) == [0.5, 0.1]
    fig = plotting.plot_gap_vs_shortcut(t, study.FIGURE_PAIR, metrics=("full",))
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["b\ncrowded 50%", "a\ncrowded 10%"]
    assert "paired difference, 95% CI (t, n-1 df)" in ax.get_ylabel()
    # one pair per world: no spread, so each point is drawn hollow and labelled unbounded
    one = study.shortcut_gap_table(long[long["seed"] == 0], worlds, metrics=("full",))
    fig = plotting.plot_gap_vs_shortcut(one, study.FIGURE_PAIR, metrics=("full",))
    assert [t.get_text() for t in fig.axes[0].texts] == ["unbounded", "unbounded"]
