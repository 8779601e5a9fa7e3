"""Paired comparisons over training seeds: t intervals, the verdict rule, and planning (seeds, detectable effects).

Two settings trained with the same seeds form pairs; the study judges the per-seed difference d = b - a, not the
two means with their own spreads. With n pairs the 95% interval is mean(d) +- t(0.975, n - 1) * sd(d) / sqrt(n):
t is 4.30 with 3 pairs and 2.26 with 10, so "two standard errors" with three seeds is a ~82% interval, not a 95% one.

One rule judges every claim (`verdict`): a paper's claim (b higher than a, or lower: `direction`) is
- "supported" when the 95% interval excludes 0 on the claimed side,
- "contradicted" when it excludes 0 on the other side,
- "inconclusive" otherwise; the interval still rules out effects beyond its bounds ("rules out gains above X").

`comparison_table` applies it to `runs.run_grid`'s long results. Values are mAP in percent points throughout; table
columns carry the unit as a `_map` suffix. numpy / scipy / pandas only.

For one test set of items judged right or wrong (the CLIP probe's pairs), `binomial_interval` gives an accuracy's
Wilson interval and `paired_accuracy_difference` the interval of the difference between two ways of answering the
same items (a paired bootstrap over clusters of items); the same verdict rule reads the latter.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as st

VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Interval:
    """t interval of the mean paired difference d = b - a.

    mean, sd (ddof=1), se = sd / sqrt(n), t = t((1 + level) / 2, n - 1), half_width = t * se, low / high =
    mean -+ half_width; n: pairs. With n = 1 there is no spread to estimate: sd, se and t are NaN and the interval
    is (-inf, inf); `note` says so.
    """

    mean: float
    sd: float
    n: int
    se: float
    t: float
    half_width: float
    low: float
    high: float
    level: float = 0.95
    note: str = ""

    @property
    def basis(self) -> str:
        """What the interval rests on, for `verdict_line`."""
        return f"n = {self.n} paired seed{'s' if self.n != 1 else ''}"


def _pairs(a, b) -> tuple[np.ndarray, list]:
    """Differences b - a and the pair labels: mappings / Series are matched on their keys (seeds), sequences by
    position ("pair k")."""
    if isinstance(a, Mapping | pd.Series) or isinstance(b, Mapping | pd.Series):
        if not (isinstance(a, Mapping | pd.Series) and isinstance(b, Mapping | pd.Series)):
            raise TypeError("paired_interval: give both arms keyed by seed (dict / Series) or both as sequences")
        a, b = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
        for x, y, name in ((a, b, "a"), (b, a, "b")):
            if x.index.has_duplicates:
                raise ValueError(f"paired_interval: seed {x.index[x.index.duplicated()][0]!r} appears twice in {name}")
            only = [k for k in x.index if k not in y.index]
            if only:
                raise ValueError(f"paired_interval: seed {only[0]!r} is in {name} only; pairs need both arms")
        keys = list(a.index)
        return b[keys].to_numpy() - a.to_numpy(), [f"seed {k!r}" for k in keys]
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_interval: a has {a.size} values and b {b.size}; pairs need equal lengths")
    return b - a, [f"pair {k}" for k in range(a.size)]


def paired_interval(a, b, level: float = 0.95) -> Interval:
    """t interval of the mean of d = b - a over matched seeds.

    Args:
        a, b: the two arms' results (mAP), either both keyed by seed (dict or pandas Series; matched on the keys) or
            both sequences of equal length (matched by position).
        level: two-sided coverage.
    Raises:
        ValueError naming the seed when a value is NaN or a seed is in one arm only; ValueError without pairs.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d, labels = _pairs(a, b)
    bad = np.flatnonzero(~np.isfinite(d))
    if bad.size:
        raise ValueError(f"paired_interval: {labels[bad[0]]} has a missing or non-finite value ({bad.size} such)")
    n = int(d.size)
    if n == 0:
        raise ValueError("paired_interval: no pairs")
    mean = float(d.mean())
    if n == 1:
        return Interval(mean=mean, sd=math.nan, n=1, se=math.nan, t=math.nan, half_width=math.inf, low=-math.inf,
                        high=math.inf, level=level,
                        note="one pair: no spread to estimate, so the interval is unbounded")
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    t = float(st.t.ppf((1 + level) / 2, n - 1))
    hw = t * se
    return Interval(mean=mean, sd=sd, n=n, se=se, t=t, half_width=hw, low=mean - hw, high=mean + hw, level=level)


# ---- the verdict rule ---------------------------------------------------------------------------------------------
def _check_direction(direction) -> int:
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 (the paper claims b > a) or -1 (b < a), got {direction!r}")
    return int(direction)


def verdict(interval, direction: int = 1) -> str:
    """"supported" / "contradicted" / "inconclusive" (module docstring) for an interval with .low and .high.

    direction: +1 when the paper claims b - a > 0, -1 when it claims b - a < 0. An interval touching 0 is
    inconclusive."""
    direction = _check_direction(direction)
    if interval.low > 0:
        return "supported" if direction == 1 else "contradicted"
    if interval.high < 0:
        return "supported" if direction == -1 else "contradicted"
    return "inconclusive"


def ruled_out(interval, direction: int = 1, unit: str = "mAP", digits: int = 2) -> str:
    """What a non-significant interval still excludes, in the paper's terms ("" when unbounded).

    direction +1: "rules out gains above +2.20 mAP and losses below -1.20 mAP" (high, low bounds);
    direction -1: "rules out decreases below -2.20 mAP and increases above +1.20 mAP" (low, high bounds)."""
    direction = _check_direction(direction)
    f = lambda v: f"{v:+.{digits}f} {unit}"  # noqa: E731
    if direction == 1:
        parts = [(interval.high, f"gains above {f(interval.high)}"), (interval.low, f"losses below {f(interval.low)}")]
    else:
        parts = [(interval.low, f"decreases below {f(interval.low)}"),
                 (interval.high, f"increases above {f(interval.high)}")]
    parts = [text for v, text in parts if math.isfinite(v)]
    return f"rules out {' and '.join(parts)}" if parts else ""


def verdict_line(interval, direction: int = 1, unit: str = "mAP", digits: int = 2) -> str:
    """One line for tables and the README, e.g. "supported: +1.40 [+0.21, +2.59] mAP, n = 5 paired seeds".

    Inconclusive lines add what the interval rules out; an unbounded interval says why. `interval` is an `Interval`
    or anything with mean, low, high and basis (e.g. `hoilib.eval.bootstrap.BootstrapInterval`)."""
    v = verdict(interval, direction)
    f = lambda x: f"{x:+.{digits}f}"  # noqa: E731
    line = f"{v}: {f(interval.mean)} [{f(interval.low)}, {f(interval.high)}] {unit}, {interval.basis}"
    if v == "inconclusive":
        extra = ruled_out(interval, direction, unit, digits)
        line += f"; {extra}" if extra else f"; {getattr(interval, 'note', '') or 'unbounded interval'}"
    return line


# ---- planning -----------------------------------------------------------------------------------------------------
def seeds_needed(sd: float, half_width: float, level: float = 0.95, max_n: int = 100_000) -> int:
    """Smallest n >= 2 with t((1 + level) / 2, n - 1) * sd / sqrt(n) <= half_width (pairs for a target precision).

    sd: expected SD of the paired difference; half_width: wanted half-width of the interval (same unit). E.g. sd 1.02
    and half-width 1.0 need 7 pairs. Raises ValueError when more than max_n would be needed."""
    if not sd >= 0 or not half_width > 0:
        raise ValueError(f"need sd >= 0 and half_width > 0, got sd={sd}, half_width={half_width}")
    hw = lambda n: st.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)  # noqa: E731 (decreasing in n)
    if hw(max_n) > half_width:
        raise ValueError(f"more than {max_n} pairs needed for half-width {half_width} at sd {sd}")
    lo, hi = 1, max_n  # hw(hi) <= half_width; lo is below the answer
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if hw(mid) <= half_width:
            hi = mid
        else:
            lo = mid
    return hi


def paired_power(effect: float, sd: float, n: int, level: float = 0.95) -> float:
    """Power of the two-sided paired t test at `level` for a true mean difference `effect`, exact (noncentral t).

    P(|T| > t_crit) with T ~ noncentral t(n - 1 df, noncentrality effect * sqrt(n) / sd). The lower tail is taken
    as sf at -noncentrality (the same probability by symmetry; scipy's cdf returns NaN there for large values)."""
    if n < 2:
        raise ValueError(f"the paired t test needs n >= 2 pairs, got {n}")
    if not sd > 0:
        raise ValueError(f"sd must be > 0, got {sd}")
    df = n - 1
    tc = st.t.ppf((1 + level) / 2, df)
    nc = effect * math.sqrt(n) / sd
    return float(st.nct.sf(tc, df, nc) + st.nct.sf(tc, df, -nc))


def minimum_detectable_effect(sd: float, n: int, power: float = 0.8, level: float = 0.95) -> float:
    """Smallest true difference that the two-sided paired t test at `level` detects with probability `power`.

    Exact: solves `paired_power(effect, sd, n, level) = power` for effect (noncentral t, no normal approximation).
    E.g. sd 1.0, n 10: 0.996 (power 0.8031 at effect 1.0). Same unit as sd."""
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if power <= 1 - level:
        raise ValueError(f"power {power} is not above the test's size {1 - level:g}: any effect has it")
    hi = (st.t.ppf((1 + level) / 2, n - 1) + 3.0) * sd / math.sqrt(n)
    while paired_power(hi, sd, n, level) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: paired_power(e, sd, n, level) - power, 0.0, hi, xtol=1e-12, rtol=1e-12))


# ---- tables -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """b - a, judged against the paper's claimed `direction` (+1: b > a). primary: True for every (protocol,
    metric) row of the comparison, or the (protocol, metric) pairs that are the pre-declared primary endpoints."""

    a: str
    b: str
    direction: int = 1
    primary: bool | tuple = False

    def is_primary(self, protocol: str, metric: str) -> bool:
        if isinstance(self.primary, bool):
            return self.primary
        return (protocol, metric) in {tuple(p) for p in self.primary}


TABLE_COLUMNS = ("comparison", "protocol", "metric", "n_pairs", "mean_diff_map", "sd_diff_map", "half_width_map",
                 "ci_low_map", "ci_high_map", "verdict", "direction", "primary")


def comparison_table(long: pd.DataFrame, comparisons: dict, metrics=("full", "unseen"), protocols=None,
                     direction: int | None = None, level: float = 0.95) -> pd.DataFrame:
    """Paired t intervals and verdicts of setting comparisons, one row per (comparison, protocol, metric).

    Args:
        long: `runs.run_grid` output (columns setting, protocol, seed, metric, value; values mAP in percent).
        comparisons: ordered {label: (a_setting, b_setting) or Comparison}; the difference is b - a.
        metrics: metric names, in row order.
        protocols: protocols, in row order; None = those of the data, in order of appearance.
        direction: paper direction of the comparisons given as plain tuples (None = +1, "b beats a").
        level: interval coverage (also in `table.attrs["level"]`).
    Seeds are matched on (protocol, seed). A protocol on which one arm has no run, and a cell that is NaN for every
    run of both arms (unseen under full supervision), are left out; a seed run by one arm only (of a protocol both
    ran), a NaN in one run, or a duplicated run is an error naming
    the setting, protocol and seed.
    Returns:
        DataFrame with columns comparison, protocol, metric, n_pairs, mean_diff_map, sd_diff_map, half_width_map,
        ci_low_map, ci_high_map (percent points of mAP, b - a), verdict, direction, primary (bool).
    """
    missing = {"setting", "protocol", "seed", "metric", "value"} - set(long.columns)
    if missing:
        raise ValueError(f"comparison_table: long results lack columns {sorted(missing)}")
    dup = long.duplicated(["setting", "protocol", "seed", "metric"])
    if dup.any():
        r = long[dup].iloc[0]
        raise ValueError(f"comparison_table: run {r.setting!r} | {r.protocol} | seed {r.seed} has metric "
                         f"{r.metric!r} twice")
    settings = list(dict.fromkeys(long["setting"]))
    protocols = list(dict.fromkeys(long["protocol"])) if protocols is None else list(protocols)
    default_dir = 1 if direction is None else _check_direction(direction)
    rows = []
    for label, comp in comparisons.items():
        if not isinstance(comp, Comparison):
            a, b = comp
            comp = Comparison(a, b, default_dir)
        _check_direction(comp.direction)
        for s in (comp.a, comp.b):
            if s not in settings:
                raise ValueError(f"comparison {label!r}: setting {s!r} has no runs; settings: {settings}")
        for p in protocols:
            seeds = {s: set(long.loc[(long["setting"] == s) & (long["protocol"] == p), "seed"])
                     for s in (comp.a, comp.b)}
            if not seeds[comp.a] or not seeds[comp.b]:
                continue  # a protocol on which one arm was not run is not compared (e.g. `study.HOICLIP_PROTOCOLS`)
            for s, other in ((comp.a, comp.b), (comp.b, comp.a)):
                only = sorted(seeds[s] - seeds[other])
                if only:
                    raise ValueError(f"comparison {label!r}, protocol {p}: seed {only[0]} was run for {s!r} but not "
                                     f"for {other!r}; a paired comparison needs both")
            for m in metrics:
                v = long[(long["protocol"] == p) & (long["metric"] == m)]
                arms = [v[v["setting"] == s].set_index("seed")["value"] for s in (comp.a, comp.b)]
                if len(arms[0]) != len(seeds[comp.a]) or len(arms[1]) != len(seeds[comp.b]):
                    raise ValueError(f"comparison {label!r}, protocol {p}: metric {m!r} is missing from some runs")
                if arms[0].isna().all() and arms[1].isna().all():
                    continue
                for s, x in zip((comp.a, comp.b), arms):
                    if x.isna().any():
                        raise ValueError(f"comparison {label!r}: {s!r} | {p} | seed {x.index[x.isna()][0]} has no "
                                         f"{m!r} value (NaN)")
                iv = paired_interval(arms[0], arms[1], level=level)
                rows.append(dict(comparison=label, protocol=p, metric=m, n_pairs=iv.n, mean_diff_map=iv.mean,
                                 sd_diff_map=iv.sd, half_width_map=iv.half_width, ci_low_map=iv.low,
                                 ci_high_map=iv.high, verdict=verdict(iv, comp.direction), direction=comp.direction,
                                 primary=comp.is_primary(p, m)))
    out = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    out["primary"] = out["primary"].astype(bool)
    out.attrs["level"] = level
    return out


# ---- proportions over test items (the CLIP probe) ----------------------------------------------------------------
# The CLIP probe judges a frozen model on one set of test pairs: a top-1 accuracy is a binomial proportion, and two
# ways of scoring the same pairs are compared pair by pair. Values are fractions here; tables print percent.
def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) of a binomial proportion k / n: (low, high), fractions in [0, 1].

    The score interval keeps close to its nominal coverage down to small n and to proportions near 0 or 1, where
    the Wald interval p +- z * sqrt(p (1 - p) / n) collapses (Newcombe 1998, Stat. Med. 17:857, Table I: 81 / 263
    -> [0.2553, 0.3662], 0 / 20 -> [0, 0.1611]). It assumes independent items; pairs that share an image are not
    quite, so for them it is a little optimistic.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if int(n) != n or n < 1:
        raise ValueError(f"binomial_interval: n must be a positive whole number, got {n}")
    if int(k) != k or not 0 <= k <= n:
        raise ValueError(f"binomial_interval: k must be a whole number in [0, n = {n}], got {k}")
    z = float(st.norm.ppf((1 + level) / 2))
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At k = 0 or k = n one bound is exactly 0 or 1; rounding must not push it outside [0, 1].
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AccuracyDifference:
    """Percentile interval of b - a, the difference of two accuracies on the same items (fractions), from a paired
    bootstrap over clusters of items (`paired_accuracy_difference`). mean: the observed difference; n: items;
    clusters: resampled units; with fewer than 2 clusters the interval is (-inf, inf) and `note` says why."""

    mean: float
    low: float
    high: float
    n: int
    clusters: int
    replicates: int
    level: float = 0.95
    note: str = ""
    names: tuple = ("items", "clusters")  # what the items and the clusters are, for `basis`

    @property
    def basis(self) -> str:
        """What the interval rests on, for `verdict_line`."""
        item, cluster = self.names
        return f"n = {self.n} {item} in {self.clusters} {cluster}, paired bootstrap over {cluster}"


def paired_accuracy_difference(a, b, clusters=None, level: float = 0.95, replicates: int = 4000, seed: int = 0,
                               names: tuple = ("items", "clusters")) -> AccuracyDifference:
    """Difference in accuracy b - a of two ways of answering the same items, with a paired cluster bootstrap.

    Args:
        a, b: [n] per-item correctness (bool or 0 / 1) of the two arms, item k of a and of b being the same item.
        clusters: [n] cluster label per item (e.g. the image of each human-object pair), or None = each item alone.
            Items of one cluster are resampled together: pairs of one image share its whole-image score, so they
            are not independent, and treating them as such would make the interval too narrow.
        level: coverage; replicates: bootstrap resamples; seed: their random generator.
        names: what the items and the clusters are (plural nouns, e.g. ("pairs", "images")), for the interval's basis.
    Returns:
        AccuracyDifference: the observed mean(b) - mean(a) and the percentile interval of the same difference over
        resamples of the clusters (each resample draws as many clusters as there are, with replacement). Both arms
        are scored on the same resample, so what the two share (the items' difficulty) cancels, as in McNemar's
        test, which looks at the discordant items only.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if replicates < 100:
        raise ValueError(f"paired_accuracy_difference: {replicates} replicates are too few for a percentile interval")
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_accuracy_difference: a has {a.size} items and b {b.size}; pairs need equal lengths")
    if a.size == 0:
        raise ValueError("paired_accuracy_difference: no items")
    for name, x in (("a", a), ("b", b)):
        bad = np.flatnonzero((x != 0) & (x != 1))
        if bad.size:
            raise ValueError(f"paired_accuracy_difference: {name}[{bad[0]}] = {x[bad[0]].item()!r}; correctness "
                             f"must be 0 / 1 or bool")
    d = b.astype(np.float64) - a.astype(np.float64)
    labels = np.arange(d.size) if clusters is None else np.asarray(clusters).reshape(-1)
    if labels.shape != d.shape:
        raise ValueError(f"paired_accuracy_difference: {labels.size} cluster labels for {d.size} items")
    _, inverse = np.unique(labels, return_inverse=True)
    sums, counts = np.bincount(inverse, weights=d), np.bincount(inverse).astype(np.float64)  # [G] each
    G, mean = len(sums), float(d.mean())
    if G < 2:
        return AccuracyDifference(mean=mean, low=-math.inf, high=math.inf, n=int(d.size), clusters=G,
                                  replicates=0, level=level, names=tuple(names),
                                  note="one cluster: nothing to resample, so the interval is unbounded")
    rng = np.random.default_rng(seed)
    reps = []
    for start in range(0, replicates, 1000):  # [R, G] multiplicities, in blocks to bound memory
        w = rng.multinomial(G, np.full(G, 1.0 / G), size=min(1000, replicates - start)).astype(np.float64)
        reps.append((w @ sums) / (w @ counts))
    low, high = np.quantile(np.concatenate(reps), [(1 - level) / 2, (1 + level) / 2])
    return AccuracyDifference(mean=mean, low=float(low), high=float(high), n=int(d.size), clusters=G,
                              replicates=int(replicates), level=level, names=tuple(names))
