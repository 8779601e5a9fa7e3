"""Paired t intervals, the verdict rule, planning helpers and the comparison table, against hand-computed values."""
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from hoilib import stats
from hoilib.plotting import plot_paired_differences
from hoilib.stats import (Comparison, Interval, comparison_table, minimum_detectable_effect, paired_interval,
                          paired_power, ruled_out, seeds_needed, verdict, verdict_line)


# ---- paired_interval ------------------------------------------------------------------------------------------
def test_t_critical_values():
    # Textbook table: t(0.975) = 4.303 at 2 df, 2.262 at 9 df.
    assert paired_interval([0, 0, 0], [1, 2, 3]).t == pytest.approx(4.303, abs=5e-4)
    assert paired_interval(np.zeros(10), np.arange(10.0)).t == pytest.approx(2.262, abs=5e-4)


def test_interval_n3_by_hand():
    # d = [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3) = 0.577350, half-width 4.302653 * 0.577350 = 2.484138.
    iv = paired_interval([30.0, 31.0, 29.0], [31.0, 33.0, 32.0])
    assert (iv.n, iv.mean, iv.sd) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert iv.se == pytest.approx(0.577350, abs=1e-6)
    assert iv.half_width == pytest.approx(2.484138, abs=1e-6)
    assert (iv.low, iv.high) == (pytest.approx(-0.484138, abs=1e-6), pytest.approx(4.484138, abs=1e-6))
    assert verdict(iv) == "inconclusive"


def test_interval_n10_by_hand():
    # d sums to 10 (mean 1.0); squared deviations sum to 7.5, so sd = sqrt(7.5 / 9) = 0.912871,
    # se = sqrt(1/12) = 0.288675, half-width 2.262157 * 0.288675 = 0.653029.
    d = np.array([0.5, 1.5, -0.5, 2.0, 1.0, 0.0, 1.5, 2.5, 1.0, 0.5])
    a = np.linspace(20.0, 30.0, 10)
    iv = paired_interval(a, a + d)
    assert iv.mean == pytest.approx(1.0)
    assert iv.sd == pytest.approx(0.912871, abs=1e-6)
    assert iv.se == pytest.approx(0.288675, abs=1e-6)
    assert iv.half_width == pytest.approx(0.653029, abs=1e-6)
    assert (iv.low, iv.high) == (pytest.approx(0.346971, abs=1e-6), pytest.approx(1.653029, abs=1e-6))
    assert verdict(iv) == "supported" and verdict(iv, direction=-1) == "contradicted"


def test_interval_matches_seeds_not_positions():
    a = pd.Series({0: 30.0, 1: 31.0, 2: 29.0})
    b = pd.Series({2: 32.0, 0: 31.0, 1: 33.0})  # other order, same pairs as the n = 3 case
    assert paired_interval(a, b).mean == pytest.approx(2.0)
    assert paired_interval({0: 30.0, 1: 31.0, 2: 29.0}, b).half_width == pytest.approx(2.484138, abs=1e-6)


def test_interval_errors_name_the_seed():
    with pytest.raises(ValueError, match="seed 7 has a missing"):
        paired_interval({0: 1.0, 7: np.nan}, {0: 2.0, 7: 3.0})
    with pytest.raises(ValueError, match="seed 2 is in b only"):
        paired_interval({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0, 2: 4.0})
    with pytest.raises(ValueError, match="pair 1 has a missing"):
        paired_interval([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no pairs"):
        paired_interval([], [])


def test_one_pair_is_unbounded():
    iv = paired_interval([30.0], [31.5])
    assert iv.mean == 1.5 and iv.n == 1
    assert (iv.low, iv.high, iv.half_width) == (-math.inf, math.inf, math.inf)
    assert math.isnan(iv.sd) and "one pair" in iv.note
    assert verdict(iv) == "inconclusive"
    assert verdict_line(iv) == ("inconclusive: +1.50 [-inf, +inf] mAP, n = 1 paired seed; one pair: no spread to "
                                "estimate, so the interval is unbounded")


def test_identical_arms_give_a_zero_width_interval():
    iv = paired_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (iv.low, iv.high) == (0.0, 0.0)
    assert verdict(iv) == "inconclusive"  # 0 is not excluded


# ---- verdict rule ---------------------------------------------------------------------------------------------
def _iv(mean, low, high, n=5):
    return Interval(mean=mean, sd=1.0, n=n, se=1.0, t=2.0, half_width=(high - low) / 2, low=low, high=high)


@pytest.mark.parametrize("low, high, direction, expected", [
    (0.21, 2.59, 1, "supported"), (0.21, 2.59, -1, "contradicted"),
    (-2.59, -0.21, -1, "supported"), (-2.59, -0.21, 1, "contradicted"),
    (-1.2, 2.2, 1, "inconclusive"), (-1.2, 2.2, -1, "inconclusive"),
    (0.0, 2.0, 1, "inconclusive"),  # touching 0 does not exclude it
])
def test_verdict(low, high, direction, expected):
    assert verdict(_iv((low + high) / 2, low, high), direction) == expected


def test_verdict_lines():
    assert verdict_line(_iv(1.40, 0.21, 2.59)) == "supported: +1.40 [+0.21, +2.59] mAP, n = 5 paired seeds"
    assert verdict_line(_iv(0.5, -1.2, 2.2, n=3)) == (
        "inconclusive: +0.50 [-1.20, +2.20] mAP, n = 3 paired seeds; rules out gains above +2.20 mAP and losses "
        "below -1.20 mAP")
    assert verdict_line(_iv(-0.5, -2.2, 1.2, n=3), direction=-1) == (
        "inconclusive: -0.50 [-2.20, +1.20] mAP, n = 3 paired seeds; rules out decreases below -2.20 mAP and "
        "increases above +1.20 mAP")
    assert verdict_line(_iv(-1.4, -2.59, -0.21), direction=-1).startswith("supported: -1.40 [-2.59, -0.21] mAP")
    assert verdict_line(_iv(1.4, 0.21, 2.59), direction=-1).startswith("contradicted:")
    assert ruled_out(_iv(0.0, -math.inf, math.inf)) == ""
    with pytest.raises(ValueError, match="direction must be"):
        verdict(_iv(1.0, 0.5, 1.5), direction=0)


# ---- planning -------------------------------------------------------------------------------------------------
def test_seeds_needed_study_design_table():
    # sd 1.02, half-width 1: n = 6 gives 2.5706 * 1.02 / sqrt(6) = 1.070, n = 7 gives 2.4469 * 1.02 / sqrt(7) = 0.943.
    assert seeds_needed(1.02, 1.0) == 7
    assert seeds_needed(1.63, 1.0) == 13  # NF-UC Full row
    # Unseen row "18 - 48": sd 3.4 needs 47 exactly (n = 46: 2.0141 * 3.4 / sqrt(46) = 1.0097; n = 47: 0.9983).
    assert (seeds_needed(2.0, 1.0), seeds_needed(3.4, 1.0)) == (18, 47)
    assert seeds_needed(0.0, 1.0) == 2
    with pytest.raises(ValueError, match="more than 100 pairs"):
        seeds_needed(10.0, 0.1, max_n=100)


def test_power_known_value():
    # G*Power (one-sample / paired t, two-tailed, alpha 0.05): d = 1 with n = 10 has power 0.8031.
    assert paired_power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=1e-4)
    assert paired_power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-12)  # size of the test


def test_minimum_detectable_effect():
    e = minimum_detectable_effect(1.0, 10)
    assert 0.99 < e < 1.0 and paired_power(e, 1.0, 10) == pytest.approx(0.8, abs=1e-9)
    # study-design.md: 80% power for a 1-mAP effect takes ~11 pairs at sd 1.02, ~23 at sd 1.63.
    assert minimum_detectable_effect(1.02, 11) <= 1.0 < minimum_detectable_effect(1.02, 10)
    assert minimum_detectable_effect(1.63, 23) <= 1.0 < minimum_detectable_effect(1.63, 22)
    # Large n: the normal limit (z(0.975) + z(0.8)) * sd / sqrt(n) = 2.8016 * sd / sqrt(n).
    assert minimum_detectable_effect(1.0, 10_000) * 100 == pytest.approx(2.8016, abs=2e-3)
    assert minimum_detectable_effect(2.0, 7) == pytest.approx(2 * minimum_detectable_effect(1.0, 7), rel=1e-9)


def test_minimum_detectable_effect_by_simulation():
    # 20,000 simulated paired experiments with n = 6 at the computed effect reject H0 ~80% of the time
    # (binomial sd 0.003).
    n, sd = 6, 1.5
    e = minimum_detectable_effect(sd, n)
    d = np.random.default_rng(1).normal(e, sd, (20_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    assert np.mean(np.abs(t) > 2.570582) == pytest.approx(0.8, abs=0.012)


# ---- comparison table -----------------------------------------------------------------------------------------
def _long():
    """Two protocols x three settings x seeds 0-2; supervised has no unseen classes (NaN)."""
    rows = []
    base = {"rf_uc": 30.0, "supervised": 35.0}
    gain = {"A": [0.0, 0.0, 0.0], "B": [1.0, 2.0, 3.0], "C": [-0.9, -1.1, -1.0]}
    for s, g in gain.items():
        for p, b0 in base.items():
            for seed in range(3):
                full = b0 + seed + g[seed]
                rows.append(dict(setting=s, protocol=p, seed=seed, metric="full", value=full))
                rows.append(dict(setting=s, protocol=p, seed=seed, metric="unseen",
                                 value=np.nan if p == "supervised" else full - 10 + 2 * g[seed]))
    return pd.DataFrame(rows)


def test_comparison_table_values():
    t = comparison_table(_long(), {"B vs A": ("A", "B"),
                                   "C vs A": Comparison("A", "C", direction=-1, primary=(("rf_uc", "full"),))},
                         metrics=("full", "unseen"))
    assert list(t.columns) == list(stats.TABLE_COLUMNS)
    assert t.attrs["level"] == 0.95
    # supervised has no unseen row: 2 comparisons x (2 + 1) rows.
    assert list(zip(t.comparison, t.protocol, t.metric)) == [
        ("B vs A", "rf_uc", "full"), ("B vs A", "rf_uc", "unseen"), ("B vs A", "supervised", "full"),
        ("C vs A", "rf_uc", "full"), ("C vs A", "rf_uc", "unseen"), ("C vs A", "supervised", "full")]
    r = t.iloc[0]  # d = [1, 2, 3]: the n = 3 hand case
    assert (r.n_pairs, r.mean_diff_map, r.sd_diff_map) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert (r.ci_low_map, r.ci_high_map) == (pytest.approx(-0.484138, abs=1e-6), pytest.approx(4.484138, abs=1e-6))
    assert r.verdict == "inconclusive" and r.direction == 1 and not r.primary
    r = t.iloc[1]  # unseen d = 3 * [1, 2, 3]: everything scales by 3
    assert (r.mean_diff_map, r.half_width_map) == (pytest.approx(6.0), pytest.approx(3 * 2.484138, abs=1e-5))
    # C - A = [-0.9, -1.1, -1.0]: mean -1.0, sd 0.1, half-width 4.302653 * 0.1 / sqrt(3) = 0.248414.
    r = t.iloc[3]
    assert (r.mean_diff_map, r.sd_diff_map) == (pytest.approx(-1.0), pytest.approx(0.1))
    assert (r.ci_low_map, r.ci_high_map) == (pytest.approx(-1.248414, abs=1e-6), pytest.approx(-0.751586, abs=1e-6))
    assert r.verdict == "supported" and r.direction == -1 and r.primary
    assert list(t.primary) == [False, False, False, True, False, False]
    assert comparison_table(_long(), {"C vs A": ("A", "C")}, metrics=("full",)).verdict.tolist() == \
        ["contradicted", "contradicted"]
    only = comparison_table(_long(), {"B vs A": ("A", "B")}, metrics=("full",), protocols=["supervised"])
    assert only.protocol.tolist() == ["supervised"]
    # a protocol on which one arm was not run at all is left out, not an error (the main table's HOICLIP rows)
    partial = _long()
    partial = partial[~((partial.setting == "B") & (partial.protocol == "rf_uc"))]
    t = comparison_table(partial, {"B vs A": ("A", "B")}, metrics=("full",))
    assert t.protocol.tolist() == ["supervised"]


def test_comparison_table_errors():
    long = _long()
    lonely = long[~((long.setting == "B") & (long.protocol == "rf_uc") & (long.seed == 2))]
    with pytest.raises(ValueError, match=r"protocol rf_uc: seed 2 was run for 'A' but not for 'B'"):
        comparison_table(lonely, {"B vs A": ("A", "B")}, metrics=("full",))
    nan = long.copy()
    nan.loc[(nan.setting == "B") & (nan.protocol == "rf_uc") & (nan.seed == 1) & (nan.metric == "full"), "value"] = \
        np.nan
    with pytest.raises(ValueError, match=r"'B' \| rf_uc \| seed 1 has no 'full' value"):
        comparison_table(nan, {"B vs A": ("A", "B")}, metrics=("full",))
    with pytest.raises(ValueError, match="setting 'D' has no runs"):
        comparison_table(long, {"D vs A": ("A", "D")})
    with pytest.raises(ValueError, match="has metric 'full' twice"):
        comparison_table(pd.concat([long, long.iloc[:1]]), {"B vs A": ("A", "B")})


# ---- figure ---------------------------------------------------------------------------------------------------
def test_plot_paired_differences_draws_the_table_intervals():
    long = _long()
    t = comparison_table(long, {"B vs A": ("A", "B"), "C vs A": ("A", "C")}, metrics=("full", "unseen"))
    one = comparison_table(long[long.seed == 0], {"B vs A": ("A", "B")}, metrics=("full",), protocols=["rf_uc"])
    table = pd.concat([t, one], ignore_index=True)
    table.attrs["level"] = 0.95
    fig = plot_paired_differences(table)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    finite = table[np.isfinite(table.ci_low_map)]
    assert len(bars) == len(finite) == len(table) - 1  # the n = 1 row has no bar
    for c, (k, r) in zip(bars, finite.iterrows()):
        (x0, y0), (x1, y1) = c.lines[2][0].get_segments()[0]
        assert (x0, x1) == (pytest.approx(r.ci_low_map), pytest.approx(r.ci_high_map))
        assert y0 == y1 == k
        assert c.lines[0].get_xdata()[0] == pytest.approx(r.mean_diff_map)
    assert any(np.allclose(line.get_xdata(), 0.0) for line in ax.get_lines())  # the zero line
    assert ax.get_xlabel().startswith("paired difference, 95% CI (t, n-1 df)")
    assert len(ax.get_yticklabels()) == len(table)
    with pytest.raises(ValueError, match="no rows"):
        plot_paired_differences(table.iloc[:0])


# ---- proportions: binomial_interval, paired_accuracy_difference ------------------------------------------------
@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998), Stat. Med. 17:857, Table I, the score (Wilson) interval without continuity correction.
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    # symmetric cases: 5 / 10 -> 0.5 -+ 0.2634; 10 / 10 mirrors 0 / 10
    (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0)])
def test_wilson_interval_known_values(k, n, low, high):
    lo, hi = stats.binomial_interval(k, n)
    assert (lo, hi) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_wilson_interval_level_and_bad_input():
    # A wider level widens the interval around the same centre; the bounds never leave [0, 1].
    lo90, hi90 = stats.binomial_interval(30, 100, level=0.90)
    lo99, hi99 = stats.binomial_interval(30, 100, level=0.99)
    assert lo99 < lo90 < 0.3 < hi90 < hi99
    assert stats.binomial_interval(0, 1)[0] == 0.0 and stats.binomial_interval(1, 1)[1] == 1.0
    with pytest.raises(ValueError, match="k must be a whole number in"):
        stats.binomial_interval(11, 10)
    with pytest.raises(ValueError, match="n must be a positive"):
        stats.binomial_interval(0, 0)
    with pytest.raises(ValueError, match="level"):
        stats.binomial_interval(1, 2, level=1.0)


def _correlated_arms(n, seed=1):
    """Two arms on the same n items: b is right wherever a is, and on 10% more of the items."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.4
    b = a | (rng.random(n) < 1 / 6)
    return a, b


def test_paired_difference_matches_the_mcnemar_standard_error():
    # Without clusters the bootstrap SD of b - a is the paired (McNemar) standard error
    # sqrt(n10 + n01 - (n01 - n10)^2 / n) / n, so the 95% interval spans about 2 * 1.96 of it.
    a, b = _correlated_arms(2000)
    iv = stats.paired_accuracy_difference(a, b, replicates=20000)
    n01, n10, n = int((b & ~a).sum()), int((a & ~b).sum()), len(a)
    se = math.sqrt(n01 + n10 - (n01 - n10) ** 2 / n) / n
    assert iv.mean == pytest.approx((n01 - n10) / n)
    assert iv.high - iv.low == pytest.approx(2 * 1.959964 * se, rel=0.05)
    assert iv.low < iv.mean < iv.high and (iv.n, iv.clusters) == (2000, 2000)
    assert verdict(iv) == "supported"


def test_paired_difference_resamples_clusters_whole():
    # Each item copied 4 times into one cluster: the cluster bootstrap draws the same multiplicities as the plain
    # bootstrap of the originals (same seed, same number of units), so the interval is identical; ignoring the
    # clusters treats the copies as independent evidence and halves the width.
    a, b = _correlated_arms(300)
    a4, b4, img = np.repeat(a, 4), np.repeat(b, 4), np.repeat(np.arange(300), 4)
    plain = stats.paired_accuracy_difference(a, b, seed=3)
    clustered = stats.paired_accuracy_difference(a4, b4, clusters=img, seed=3)
    naive = stats.paired_accuracy_difference(a4, b4, seed=3)
    assert (clustered.low, clustered.high, clustered.mean) == pytest.approx((plain.low, plain.high, plain.mean))
    assert clustered.clusters == 300 and clustered.n == 1200
    assert (naive.high - naive.low) == pytest.approx((plain.high - plain.low) / 2, rel=0.15)


def test_paired_difference_edge_cases():
    same = np.array([1, 0, 1, 1, 0], bool)
    iv = stats.paired_accuracy_difference(same, same)
    assert (iv.mean, iv.low, iv.high) == (0.0, 0.0, 0.0) and verdict(iv) == "inconclusive"
    one = stats.paired_accuracy_difference([0, 0, 1], [1, 1, 1], clusters=[7, 7, 7])
    assert one.mean == pytest.approx(2 / 3) and (one.low, one.high) == (-math.inf, math.inf)
    assert "one cluster" in verdict_line(one, unit="pp")
    named = stats.paired_accuracy_difference([0, 1, 1], [1, 1, 1], clusters=[0, 0, 1], names=("pairs", "images"))
    assert named.basis == "n = 3 pairs in 2 images, paired bootstrap over images"
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_accuracy_difference([1, 0], [1])
    with pytest.raises(ValueError, match=r"b\[1\] = 2"):
        stats.paired_accuracy_difference([1, 0], [1, 2])
    with pytest.raises(ValueError, match="2 cluster labels for 3 items"):
        stats.paired_accuracy_difference([1, 0, 1], [1, 1, 1], clusters=[0, 1])
    with pytest.raises(ValueError, match="no items"):
        stats.paired_accuracy_difference([], [])
