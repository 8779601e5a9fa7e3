"""The study's design as data: which runs make each table, which comparisons decide which claims, how the choices are
made on the validation split, and the published numbers ours are read against.

Notebooks import from here so that the rows of every table, the seeds, the comparisons and the sweeps are defined
once and tested. Published numbers are HICO-DET with CLIP ViT-B/16 (LAIN) or ViT-B/32 + ResNet-50 (HOICLIP); ours
come from the built-in world unless a hicodet profile is used (`ours_from` says which, in each table's caption).

Design (named before the runs):
- The primary comparison is LAIN against the same CLIP without adapters on the default protocol (RF-UC), Full and
  Unseen mAP, paired by training seed (common random numbers: `models.build_model`), replicated on every world seed
  of the profile (`WORLD_SEEDS`, each world with its own CLIP) and pooled. Everything else is secondary.
- Every claim is decided by `hoilib.stats` (paired t interval, one verdict rule); no choice is made on the test split:
  learning rate, augmentation and lambda are chosen on the validation split (`validation`), HOICLIP's alpha and K
  keep HOICLIP's own values (chosen on HICO-DET's validation split) and are re-examined on ours in notebook 07.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import runs, stats
from .analysis.probe import distinct_pairs, render_split
from .config import ExperimentConfig
from .data.splits import rare_classes, split_statistics
from .data.world import VERSION_1, crowding, scene_verb_association
from .data.world.stats import caption_verbs, image_verbs

# ---------------------------------------------------------------------------------------------------------
# Profiles and seeds
# ---------------------------------------------------------------------------------------------------------
# hicodet-smoke: the hicodet profile's code path on a HICO-DET-format fixture (`python -m hoilib.fixture`).
PROFILES = ("smoke", "default", "hicodet", "hicodet-smoke")
# Training seeds of the secondary tables (main table beyond the primary comparison, ablations, sweeps, figures).
SEEDS = {"smoke": (0, 1), "default": (0, 1, 2), "hicodet": (0,), "hicodet-smoke": (0,)}
# Training seeds of the primary comparison, per world seed (chosen for its power: notebook 05 prints the achieved
# half-width and the seeds a half-width of 1.0 mAP would need).
PRIMARY_SEEDS = {"smoke": (0, 1, 2), "default": tuple(range(8)), "hicodet": (0,), "hicodet-smoke": (0,)}
# The world's seed is a random factor of the study, like the training seed: the primary comparison is replicated on
# each of these worlds, each with its own CLIP pretrained on its own captions (the CLIP's key covers the world).
WORLD_SEEDS = {"smoke": (0,), "default": (0, 1), "hicodet": (0,), "hicodet-smoke": (0,)}
# UC has several random draws of unseen classes; each draw is trained with its own seed (draw k, seed k).
UC_DRAWS = {"smoke": ("uc0", "uc1"), "default": ("uc0", "uc1", "uc2"), "hicodet": ("uc0", "uc1", "uc2", "uc3", "uc4"),
            "hicodet-smoke": ("uc0", "uc1")}


def experiment_config(profile: str, overrides: dict | None = None, cache_dir: str | None = None,
                      hicodet_root: str | None = None, clip_checkpoint: str | None = None) -> ExperimentConfig:
    """The config of a notebook: defaults, then the profile's preset, then the notebook's overrides.

    Args:
        profile: one of PROFILES (a preset in hoilib/presets/).
        overrides: dotted keys, e.g. {"model.use_la": False}.
        cache_dir, hicodet_root, clip_checkpoint: paths from the notebook's parameters ("" or None = preset's).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    paths = {}
    if cache_dir:
        paths["data.cache_dir"] = cache_dir
    if hicodet_root:
        paths["data.hicodet_root"] = hicodet_root
    if clip_checkpoint:
        paths["clip.checkpoint"] = clip_checkpoint
    cfg = ExperimentConfig.from_preset(profile).override(paths, overrides or {})
    cfg.profile = profile
    return cfg


def ours_from(cfg: ExperimentConfig) -> str:
    """One line saying which data and model our numbers come from (a column of every table)."""
    if cfg.data.dataset == "world":
        return (f"built-in world (seed {cfg.world.seed}, {cfg.world.image_size} px, {cfg.world.n_train} train / "
                f"{cfg.world.n_test} test images), CLIP {cfg.clip.arch} pretrained in the world")
    return f"HICO-DET, CLIP {cfg.clip.arch}"


# ---------------------------------------------------------------------------------------------------------
# Main table (LAIN Tab. 1 / HOICLIP Tab. 2): zero-shot protocols x methods; the primary comparison
# ---------------------------------------------------------------------------------------------------------
MAIN_PROTOCOLS = ("rf_uc", "nf_uc", "uo", "uv", "uc", "supervised")
PROTOCOL_NAMES = {"rf_uc": "RF-UC", "nf_uc": "NF-UC", "uo": "UO", "uv": "UV", "uc": "UC",
                  "supervised": "Fully supervised"}

BASELINE = {"model.use_la": False, "model.use_ia": False}
# HOICLIP's components with HOICLIP's own alpha and K (chosen on HICO-DET's validation split, HOICLIP Tab. 7).
HOICLIP_COMPONENTS = {"model.use_verb_classifier": True, "model.verb_alpha": 0.5, "model.zs_topk": 10}
MAIN_METHODS = {"w/o adapters": BASELINE, "LAIN": {}, "LAIN + HOICLIP components": HOICLIP_COMPONENTS}

# The protocols on which LAIN + HOICLIP's components is trained for the main table: on the built-in world two of
# HOICLIP Tab. 2's (RF-UC, and NF-UC where notebook 07 sweeps alpha and K), to keep the default profile inside its
# 90-minute budget (a secondary comparison, reduced before the primary comparison's power); every protocol on
# HICO-DET.
HOICLIP_PROTOCOLS = {"smoke": ("rf_uc", "nf_uc"), "default": ("rf_uc", "nf_uc"), "hicodet": MAIN_PROTOCOLS,
                     "hicodet-smoke": MAIN_PROTOCOLS}

PRIMARY_PROTOCOL = "rf_uc"  # the default protocol (config default; LAIN's first setting)
PRIMARY_METRICS = ("full", "unseen")
PRIMARY_METHODS = {"w/o adapters": BASELINE, "LAIN": {}}
# The one primary comparison of the study; every other comparison is secondary and says so.
PRIMARY = {"LAIN - w/o adapters": stats.Comparison("w/o adapters", "LAIN", 1,
                                                   primary=tuple((PRIMARY_PROTOCOL, m) for m in PRIMARY_METRICS))}
MAIN_COMPARISONS = {"LAIN - w/o adapters": stats.Comparison("w/o adapters", "LAIN", 1),
                    "HOICLIP components - LAIN": stats.Comparison("LAIN", "LAIN + HOICLIP components", 1)}
PRIMARY_HALF_WIDTH = 1.0  # the target half-width of the primary comparison's 95% interval, Full mAP (points)
ABLATION_HALF_WIDTH = 2.0  # the target half-width of each LA / IA ablation row, Unseen mAP (points)

# LAIN paper (ViT-B/16), Full mAP per protocol (paper summary table; Unseen/Seen are not in our sources).
PAPER_LAIN_FULL = {"rf_uc": 34.41, "nf_uc": 33.23, "uo": 34.27, "uv": 33.12, "uc": 34.36, "supervised": 36.02}
# Released LAIN checkpoints (official README model zoo): (unseen, seen, full).
RELEASED_LAIN = {"rf_uc": (32.34, 35.17, 34.60), "nf_uc": (36.67, 32.63, 33.44), "uo": (37.65, 33.61, 34.28),
                 "uv": (29.23, 33.95, 33.29)}
# HOICLIP Tab. 2 (with training-free enhancement; ViT-B/32, one-stage): (unseen, seen, full). Its UC row is printed
# with exactly the numbers of its RF-UC row; we quote it as printed.
PAPER_HOICLIP = {"rf_uc": (25.53, 34.85, 32.99), "nf_uc": (26.39, 28.10, 27.75), "uo": (16.20, 30.99, 28.53),
                 "uv": (24.30, 32.19, 31.09), "uc": (25.53, 34.85, 32.99)}
# Where each published column comes from (table captions and manifests; not repeated in every row).
PAPER_SOURCES = {
    "paper_lain_full_map": "LAIN (CVPR 2025) paper, HICO-DET, ViT-B/16, Full mAP",
    "released_lain_*_map": "LAIN's released checkpoints (official README model zoo), HICO-DET, ViT-B/16",
    "hoiclip_tab2_*_map": "HOICLIP (CVPR 2023) Tab. 2, HICO-DET, ViT-B/32 one-stage (its UC row repeats RF-UC)",
}


def main_paper_columns(method: str, protocol: str) -> dict:
    """The published numbers of a main-table cell, one column per source, NaN where a source has none."""
    nan = float("nan")
    u, se, f = RELEASED_LAIN.get(protocol, (nan,) * 3) if method == "LAIN" else (nan,) * 3
    hu, hs, hf = PAPER_HOICLIP.get(protocol, (nan,) * 3) if method == "LAIN + HOICLIP components" else (nan,) * 3
    return {"paper_lain_full_map": PAPER_LAIN_FULL.get(protocol, nan) if method == "LAIN" else nan,
            "released_lain_unseen_map": u, "released_lain_seen_map": se, "released_lain_full_map": f,
            "hoiclip_tab2_unseen_map": hu, "hoiclip_tab2_seen_map": hs, "hoiclip_tab2_full_map": hf}


# ---------------------------------------------------------------------------------------------------------
# Choices on the validation split (notebook 04); the test split is evaluated only for the reported tables
# ---------------------------------------------------------------------------------------------------------
VALIDATION_PROTOCOL = PRIMARY_PROTOCOL
VALIDATION_SEEDS = {"smoke": (0,), "default": (0, 1), "hicodet": (0,), "hicodet-smoke": (0,)}
# Learning rates tried on the built-in world; on HICO-DET the official value is kept (each choice would cost full
# trainings on the real data: say so where it is used).
LR_GRID = {"smoke": (0.02, 0.05), "default": (0.01, 0.02, 0.04), "hicodet": (1e-3,), "hicodet-smoke": (1e-3,)}
AUGMENTATION = {
    "off": {"train.augment_flip": False, "train.augment_color": 0.0, "train.augment_scale": (1.0, 1.0)},
    "official": {"train.augment_flip": True, "train.augment_color": 0.4, "train.augment_scale": (0.5, 1.0)},
}
AUGMENTATION_GRID = {"smoke": ("off", "official"), "default": ("off", "official"), "hicodet": ("official",),
                     "hicodet-smoke": ("official",)}
LAMBDAS = (0.0, 1.0, 2.0, 2.8, 4.0)  # detector-score exponents tried at inference (official 2.8)
VALIDATION_METHODS = PRIMARY_METHODS  # a choice must suit both arms, not LAIN alone


@dataclass
class Validation:
    """What `validation` measured and chose: `chosen` holds dotted overrides (train.lr, the augmentation fields,
    model.lambda_test); `tables` {"lr", "augmentation", "lambda"} the long run_grid frames on the validation split
    (value = mAP) with the tried value in a `tried` column, in the order tried."""

    chosen: dict
    tables: dict

    def summary(self) -> pd.DataFrame:
        """One row per (choice, tried value): mean validation Full mAP over both arms and the seeds, and which won."""
        rows = []
        for name, long in self.tables.items():
            best = _best_value(long)
            full = long[long["metric"] == "full"]
            for v, g in full.groupby("tried", sort=False):
                rows.append(dict(choice=name, tried=str(v), val_full_map=float(g["value"].mean()), n_runs=int(len(g)),
                                 chosen=bool(v == best)))
        return pd.DataFrame(rows)


def _best_value(long: pd.DataFrame, metric: str = "full", by: str = "tried"):
    """The value of column `by` with the highest mean `metric` over methods and seeds (the first of equals)."""
    m = long[long["metric"] == metric].groupby(by, sort=False)["value"].mean()
    return m.index[int(np.argmax(m.to_numpy()))]


def _tried(cfg: ExperimentConfig, variants: dict, seeds, progress: bool) -> pd.DataFrame:
    """run_grid of the validation methods for each {tried value: overrides}, long, with a `tried` column."""
    frames = []
    for tried, over in variants.items():
        grid = {name: {**m, **over} for name, m in VALIDATION_METHODS.items()}
        frames.append(runs.run_grid(cfg, grid, seeds, [VALIDATION_PROTOCOL], progress=progress).assign(tried=tried))
    return pd.concat(frames, ignore_index=True)


def validation(cfg: ExperimentConfig, progress: bool = True) -> Validation:
    """Choose the learning rate, the augmentation and lambda on the validation split (cached runs; instant once
    notebook 04 has run them). Each choice maximises the mean validation Full mAP of both arms of the primary
    comparison over `VALIDATION_SEEDS`, in this order: lr (augmentation off), augmentation (at the chosen lr),
    lambda (inference only, on the models trained with both choices)."""
    prof = cfg.profile
    base = cfg.override({"eval.split": "val"})
    seeds = VALIDATION_SEEDS[prof]
    aug0 = AUGMENTATION[AUGMENTATION_GRID[prof][0]]
    lr = _tried(base, {v: {"train.lr": v, **aug0} for v in LR_GRID[prof]}, seeds, progress)
    chosen = {"train.lr": float(_best_value(lr))}
    aug = _tried(base, {k: {**chosen, **AUGMENTATION[k]} for k in AUGMENTATION_GRID[prof]}, seeds, progress)
    chosen.update(AUGMENTATION[_best_value(aug)])
    lam = _tried(base, {v: {**chosen, "model.lambda_test": v} for v in LAMBDAS}, seeds, progress)
    chosen["model.lambda_test"] = float(_best_value(lam))
    return Validation(chosen=chosen, tables={"lr": lr, "augmentation": aug, "lambda": lam})


def with_choices(cfg: ExperimentConfig, progress: bool = False) -> ExperimentConfig:
    """The profile's config with the choices made on the validation split (evaluated on the test split)."""
    return cfg.override(validation(cfg, progress=progress).chosen, {"eval.split": "test"})


# ---------------------------------------------------------------------------------------------------------
# Ablations (LAIN's LA/IA table, nine rows, one protocol)
# ---------------------------------------------------------------------------------------------------------
# The paper does not name the protocol of its ablation table; our sources do not either. We use NF-UC: in a
# small world it has the most unseen test pairs, so its unseen mAP is the least noisy.
ABLATION_PROTOCOL = "nf_uc"

ABLATIONS = {
    "w/o adapters": {"model.use_la": False, "model.use_ia": False},
    "+ LA only": {"model.use_ia": False},
    "+ IA only": {"model.use_la": False},
    "+ LA + IA": {},
    "LA: w/o visual info": {"model.la_visual": False},
    "LA: w/o spatial layout": {"model.la_layout": False},
    "LA: local attention": {"model.la_mixer": "local_attn"},
    "IA: w/o IPRM": {"model.ia_iprm": False},
    "IA: w/o context extraction": {"model.ia_context": False},
}
# LAIN ablation table (paper), (unseen, seen, full).
PAPER_ABLATION = {
    "w/o adapters": (24.88, 31.06, 30.19), "+ LA only": (27.71, 32.55, 31.95), "+ IA only": (27.37, 33.57, 32.70),
    "+ LA + IA": (30.50, 34.80, 33.95), "LA: w/o visual info": (26.77, 32.18, 31.40),
    "LA: w/o spatial layout": (26.52, 32.07, 31.31), "LA: local attention": (26.46, 32.39, 31.56),
    "IA: w/o IPRM": (24.32, 32.76, 31.57), "IA: w/o context extraction": (25.64, 32.41, 31.40),
}

# Each row judged against the row the paper compares it with: adapters added to "w/o adapters" (the paper: gains), a
# part removed from (or replaced in) the full "+ LA + IA" (the paper: losses).
ABLATION_COMPARISONS = {
    **{f"{row} - w/o adapters": stats.Comparison("w/o adapters", row, 1) for row in ("+ LA only", "+ IA only",
                                                                                    "+ LA + IA")},
    **{f"{row} - + LA + IA": stats.Comparison("+ LA + IA", row, -1) for row in list(ABLATIONS)[4:]},
}
ABLATION_METRICS = ("unseen", "full")
ABLATION_SEEDS = {"smoke": (0, 1), "default": (0, 1, 2), "hicodet": (0,), "hicodet-smoke": (0,)}


def paper_difference(comparison: stats.Comparison, metric: str) -> float:
    """The paper's b - a for an ablation comparison (LAIN's ablation table), in mAP points."""
    i = ("unseen", "seen", "full").index(metric)
    return round(PAPER_ABLATION[comparison.b][i] - PAPER_ABLATION[comparison.a][i], 2)


# Inference only, on trained LAIN runs: the same run with gamma_LA = gamma_IA = 0 at test time (paired, same model).
GAMMA_ZERO = {"LAIN": {}, "LAIN, gamma = 0 at test": {"model.gamma_scale": 0.0}}
GAMMA_ZERO_COMPARISON = {"gamma = 0 at test - LAIN": stats.Comparison("LAIN", "LAIN, gamma = 0 at test", -1)}


# ---------------------------------------------------------------------------------------------------------
# Sweeps (HOICLIP Tab. 7: alpha needs retraining, top-K is inference only; plus LAIN's detector-fusion lambda)
# ---------------------------------------------------------------------------------------------------------
SWEEP_PROTOCOL = ABLATION_PROTOCOL
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TOPKS = (0, 5, 10, 15, 20)
SWEEP_BASE = HOICLIP_COMPONENTS
# Each sweep: (dotted key, values, the value the paper chose). Every other value is compared with the paper's choice,
# paired by seed: the claim "the paper's value is best" is direction -1 for (other - chosen).
SWEEPS = {"alpha": ("model.verb_alpha", ALPHAS, 0.5), "topk": ("model.zs_topk", TOPKS, 10),
          "lambda": ("model.lambda_test", LAMBDAS, 2.8)}
# HOICLIP Tab. 7 (validation split of HICO-DET, fully supervised): value -> (full, rare, non_rare).
PAPER_ALPHA = {0.0: (31.16, 20.96, 34.12), 0.25: (31.13, 21.50, 33.93), 0.5: (31.65, 22.92, 34.18),
               0.75: (30.88, 22.82, 33.22), 1.0: (30.33, 24.80, 32.72)}
PAPER_TOPK = {0: (31.65, 22.92, 34.18), 5: (32.25, 25.14, 34.32), 10: (32.26, 24.50, 34.51),
              15: (32.00, 23.79, 34.38), 20: (31.96, 23.72, 34.35)}

METRICS = ("unseen", "seen", "full", "rare", "non_rare")


# ---------------------------------------------------------------------------------------------------------
# Table builders: long results (setting, protocol, seed, metric, value) -> the published tables
# ---------------------------------------------------------------------------------------------------------
def collapse_uc(long: pd.DataFrame) -> pd.DataFrame:
    """Rename the UC draws (uc0, uc1, ...) to one protocol "uc": their runs are pooled into one cell."""
    out = long.copy()
    out["protocol"] = out["protocol"].where(~out["protocol"].str.match(r"uc\d"), "uc")
    return out


def summarise(long: pd.DataFrame, by=("setting", "protocol", "metric")) -> pd.DataFrame:
    """Mean, std (ddof=1) and number of runs per cell, long format."""
    g = long.groupby(list(by), sort=False)["value"]
    out = g.agg(["mean", "count"]).reset_index()
    out["std"] = g.std(ddof=1).fillna(0.0).to_numpy()
    return out.rename(columns={"count": "n_runs"})


def wide_table(summary: pd.DataFrame, index: list, metrics=("unseen", "seen", "full")) -> pd.DataFrame:
    """One row per `index` tuple with `<metric>_mean_map`, `<metric>_sd_map` columns (mAP points; only metrics
    present) and n_runs."""
    rows = []
    for key, grp in summary.groupby(index, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(index, key))
        for m in metrics:
            g = grp[grp["metric"] == m]
            if len(g):
                row[f"{m}_mean_map"] = float(g["mean"].iloc[0])
                row[f"{m}_sd_map"] = float(g["std"].iloc[0])
                row["n_runs"] = int(g["n_runs"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def main_runs(cfg: ExperimentConfig, progress: bool = True) -> pd.DataFrame:
    """The main table's runs (`runs.run_grid`'s long frame): LAIN and the baseline on every protocol with `SEEDS`
    (UC: draw k trained with seed k), LAIN + HOICLIP's components on `HOICLIP_PROTOCOLS` of the profile."""
    prof = cfg.profile
    plan = {p: list(SEEDS[prof]) for p in MAIN_PROTOCOLS if p != "uc"}
    plan.update({draw: [k] for k, draw in enumerate(UC_DRAWS[prof])})
    hoiclip = "LAIN + HOICLIP components"
    pair = runs.run_grid(cfg, {k: v for k, v in MAIN_METHODS.items() if k != hoiclip}, protocols=plan,
                         progress=progress)
    keep = {p: s for p, s in plan.items() if ("uc" if p.startswith("uc") else p) in HOICLIP_PROTOCOLS[prof]}
    extra = runs.run_grid(cfg, {hoiclip: MAIN_METHODS[hoiclip]}, protocols=keep, progress=progress)
    return pd.concat([pair, extra], ignore_index=True)


def main_table(long: pd.DataFrame) -> pd.DataFrame:
    """Main table: rows (method, protocol); ours (mean and sd over seeds / UC draws) beside the published numbers,
    one column per source (`PAPER_SOURCES`)."""
    t = wide_table(summarise(collapse_uc(long)), ["setting", "protocol"])
    paper = pd.DataFrame([main_paper_columns(r.setting, r.protocol) for r in t.itertuples()])
    t = pd.concat([t, paper], axis=1)
    t["protocol"] = t["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p))
    return t.rename(columns={"setting": "method"})


def paired_table(long: pd.DataFrame, comparisons: dict, metrics=("full", "unseen"), protocols=None) -> pd.DataFrame:
    """`stats.comparison_table` (paired differences b - a by seed, 95% t interval, verdict) with protocol names."""
    t = stats.comparison_table(collapse_uc(long), comparisons, metrics=metrics, protocols=protocols)
    t["protocol"] = t["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p))
    return t


def replicated_table(frames: dict, comparisons: dict, metrics=PRIMARY_METRICS, protocols=None) -> pd.DataFrame:
    """`paired_table` per world seed ({world seed: long}) and pooled over the worlds (column `world`: the seed, or
    "pooled"). Pooling pairs every (world, training seed) once; it does not model the worlds as a random factor, so
    the per-world rows are read first: a claim supported in one world and contradicted in another is reported as
    exactly that (`replication_verdict`)."""
    parts = [paired_table(long, comparisons, metrics, protocols).assign(world=str(w)) for w, long in frames.items()]
    if len(frames) > 1:
        pooled = pd.concat([long.assign(seed=long["seed"] + 10_000 * int(w)) for w, long in frames.items()])
        parts.append(paired_table(pooled, comparisons, metrics, protocols).assign(world="pooled"))
    t = pd.concat(parts, ignore_index=True)
    return t[["world"] + [c for c in t.columns if c != "world"]]


def paired_differences(frames: dict, comparison: stats.Comparison, metrics=PRIMARY_METRICS,
                       protocol: str = PRIMARY_PROTOCOL) -> pd.DataFrame:
    """Seed by seed b - a of one comparison ({world seed: long}): rows world, seed, metric, a_map, b_map, diff_map, and
    the pooled copies of every row (world "pooled") when there are several worlds (the points of `plot_primary`)."""
    rows = []
    for w, long in frames.items():
        for m in metrics:
            v = long[(long["protocol"] == protocol) & (long["metric"] == m)]
            a = v[v["setting"] == comparison.a].set_index("seed")["value"]
            b = v[v["setting"] == comparison.b].set_index("seed")["value"]
            for seed in a.index.intersection(b.index):
                rows.append(dict(world=str(w), seed=int(seed), metric=m, a_map=float(a[seed]), b_map=float(b[seed]),
                                 diff_map=float(b[seed] - a[seed])))
    out = pd.DataFrame(rows)
    if len(frames) > 1 and len(out):
        out = pd.concat([out, out.assign(world="pooled")], ignore_index=True)
    return out


def replication_verdict(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (comparison, protocol, metric): the verdicts of the single worlds side by side and what they say
    together: "supported in every world", "contradicted in every world", "split: supported in ... and contradicted in
    ..." or "inconclusive in at least one world" (the pooled row's verdict beside it)."""
    rows = []
    for key, g in table.groupby(["comparison", "protocol", "metric"], sort=False):
        single = g[g["world"] != "pooled"]
        v = dict(zip(single["world"], single["verdict"]))
        kinds = set(v.values())
        if kinds == {"supported"}:
            together = "supported in every world"
        elif kinds == {"contradicted"}:
            together = "contradicted in every world"
        elif {"supported", "contradicted"} <= kinds:
            together = ("split: supported in world " + ", ".join(w for w, x in v.items() if x == "supported")
                        + ", contradicted in world " + ", ".join(w for w, x in v.items() if x == "contradicted"))
        else:
            together = "inconclusive in at least one world"
        pooled = g[g["world"] == "pooled"]["verdict"]
        rows.append(dict(zip(("comparison", "protocol", "metric"), key), worlds=together,
                         **{f"world_{w}": x for w, x in v.items()},
                         pooled=pooled.iloc[0] if len(pooled) else "-"))
    return pd.DataFrame(rows)


def power_table(table: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """Per row of a paired table: the achieved half-width against a target ({metric: half-width, mAP points}), the
    pairs the target needs at the measured sd (`stats.seeds_needed`) and the minimum effect detectable with 80% power
    at the measured n (`stats.minimum_detectable_effect`)."""
    t = table[table["metric"].isin(list(targets))].copy()
    t["target_half_width_map"] = t["metric"].map(targets)
    t["meets_target"] = t["half_width_map"] <= t["target_half_width_map"]
    t["pairs_for_target"] = [stats.seeds_needed(sd, h) if np.isfinite(sd) and sd > 0 else 2
                             for sd, h in zip(t["sd_diff_map"], t["target_half_width_map"])]
    t["mde80_map"] = [stats.minimum_detectable_effect(sd, n) if n > 1 and np.isfinite(sd) else float("nan")
                      for sd, n in zip(t["sd_diff_map"], t["n_pairs"])]
    keep = [c for c in ("world", "comparison", "protocol", "metric") if c in t.columns]
    return t[keep + ["n_pairs", "sd_diff_map", "half_width_map", "target_half_width_map", "meets_target",
                     "pairs_for_target", "mde80_map"]].reset_index(drop=True)


def verdict_lines(table: pd.DataFrame) -> list:
    """`stats.verdict_line` for every row of a paired table, prefixed with what is compared."""
    out = []
    for r in table.itertuples():
        iv = stats.Interval(mean=r.mean_diff_map, sd=r.sd_diff_map, n=int(r.n_pairs), se=float("nan"), t=float("nan"),
                            half_width=r.half_width_map, low=r.ci_low_map, high=r.ci_high_map)
        where = f"world {r.world}, " if "world" in table.columns else ""
        out.append(f"{r.comparison} ({where}{r.protocol}, {r.metric}): {stats.verdict_line(iv, int(r.direction))}")
    return out


def ablation_table(long: pd.DataFrame) -> pd.DataFrame:
    """The nine rows of LAIN's ablation table: ours (mean and sd over seeds) beside the paper's numbers."""
    t = wide_table(summarise(long), ["setting"])
    order = {k: i for i, k in enumerate(ABLATIONS)}
    t = t.sort_values("setting", key=lambda c: c.map(order)).reset_index(drop=True)
    for i, m in enumerate(("unseen", "seen", "full")):
        t[f"paper_{m}_map"] = [PAPER_ABLATION[r][i] for r in t["setting"]]
    return t.rename(columns={"setting": "configuration"})


def ablation_comparisons(long: pd.DataFrame) -> pd.DataFrame:
    """`ABLATION_COMPARISONS` as a paired table, with the paper's difference for each row (`paper_diff_map`)."""
    t = paired_table(long, ABLATION_COMPARISONS, metrics=ABLATION_METRICS)
    t["paper_diff_map"] = [paper_difference(ABLATION_COMPARISONS[c], m) for c, m in zip(t["comparison"], t["metric"])]
    return t


def per_class_table(per_class_long: pd.DataFrame, train_counts, unseen) -> pd.DataFrame:
    """`runs.run_grid(..., per_class=True)`'s "ap_<c>" rows -> one row per (setting, protocol, seed, HOI class): the
    table behind the AP-vs-frequency figure (on HICO-DET, 600 rows per run).

    Args:
        train_counts: [C] training pairs per class after the protocol's filter (unseen classes have 0).
        unseen: the protocol's unseen classes.
    Returns:
        DataFrame with columns setting, protocol, seed, hoi, ap (percent), train_pairs, unseen (bool).
    """
    d = per_class_long[per_class_long["metric"].str.startswith("ap_")]
    if d.empty:
        raise ValueError("per_class_table: no per-class rows (run the grid with per_class=True)")
    hoi = d["metric"].str[3:].astype(int).to_numpy()
    counts = np.asarray(train_counts, np.int64)
    if hoi.max() >= len(counts):
        raise ValueError(f"per_class_table: class {int(hoi.max())} but train_counts has {len(counts)} classes")
    return pd.DataFrame({"setting": d["setting"].to_numpy(), "protocol": d["protocol"].to_numpy(),
                         "seed": d["seed"].to_numpy(), "hoi": hoi, "ap": d["value"].to_numpy(),
                         "train_pairs": counts[hoi], "unseen": np.isin(hoi, np.asarray(unseen, np.int64))})


def best_on_validation(long: pd.DataFrame, metric: str = "full") -> float:
    """The swept value with the best mean validation `metric` over seeds (a `runs.run_sweeps` frame evaluated on the
    validation split)."""
    return float(_best_value(long, metric, by="setting"))


def sweep_comparisons(name: str) -> dict:
    """Every value of a sweep against the paper's choice (`SWEEPS`), direction -1 ("the chosen value is best")."""
    _, values, chosen = SWEEPS[name]
    return {f"{name} {v:g} - {chosen:g}": stats.Comparison(f"{chosen:g}", f"{v:g}", -1) for v in values if v != chosen}


def sweep_table(long: pd.DataFrame, name: str) -> pd.DataFrame:
    """A sweep over `name` ("alpha" | "topk" | "lambda"; `setting` holds the value: `runs.run_sweeps`): ours (mean and sd over
    seeds) with HOICLIP's Tab. 7 beside it where it has the value, and each value's paired difference from the
    paper's choice (95% interval, verdict of "the paper's value is best")."""
    t = wide_table(summarise(long), ["setting"], metrics=METRICS).rename(columns={"setting": name})
    paper = {"alpha": PAPER_ALPHA, "topk": PAPER_TOPK}.get(name, {})
    for i, m in enumerate(("full", "rare", "non_rare")):
        t[f"hoiclip_tab7_{m}_map"] = [paper.get(float(v), (np.nan,) * 3)[i] for v in t[name]]
    text = long.assign(setting=long["setting"].map(lambda v: f"{float(v):g}"))
    comp = paired_table(text, sweep_comparisons(name), metrics=("full", "rare"))
    for m in ("full", "rare"):
        d = comp[comp["metric"] == m]
        d = d.set_index(d["comparison"].str.split(" ").str[1])
        for col, src in ((f"{m}_diff_map", "mean_diff_map"), (f"{m}_ci_low_map", "ci_low_map"),
                         (f"{m}_ci_high_map", "ci_high_map"), (f"{m}_verdict", "verdict")):
            t[col] = [d[src].get(f"{float(v):g}", np.nan if col != f"{m}_verdict" else "(the paper's value)")
                      for v in t[name]]
    return t


# ---------------------------------------------------------------------------------------------------------
# The worlds of a profile, the world's versions and the CLIP probe (notebooks 01 and 02)
# ---------------------------------------------------------------------------------------------------------
# The probe (notebook 02) scores the pairs of the first PROBE_MAX_IMAGES test images (those with pairs) of a world.
PROBE_MAX_IMAGES = 500
# fig2_probe_vs_bias: test splits rendered (not cached) for settings other than the study's world, probed with the
# CLIP of the profile's first world seed (inference only). Version 1 is the sparse world (about 1.7 people per image,
# groups apart, scenes independent of the labels); version 2's scene bias is the probability that an HOI image shows
# the home scene of a verb none of its people does (the CLIP's caption pool shows verbs at home at the world's own
# bias, 0.8 by default).
PROBE_SWEEP = {"v1": dict(VERSION_1), "v2, scene bias 0": {"scene_bias": 0.0},
               "v2, scene bias 0.5": {"scene_bias": 0.5}, "v2, scene bias 1": {"scene_bias": 1.0}}
PROBE_SWEEP_IMAGES = {"smoke": 30, "default": 400, "hicodet": 0, "hicodet-smoke": 0}


def world_configs(cfg: ExperimentConfig) -> dict:
    """{world seed: `cfg` with that `world.seed`} for every seed of `WORLD_SEEDS[cfg.profile]`, in order; {} when
    the data is not the built-in world (the hicodet profiles build no world)."""
    if cfg.data.dataset != "world":
        return {}
    if cfg.profile not in WORLD_SEEDS:
        raise ValueError(f"no world seeds for profile {cfg.profile!r}; profiles: {sorted(WORLD_SEEDS)}")
    return {s: cfg.override({"world.seed": s}) for s in WORLD_SEEDS[cfg.profile]}


def world_splits_table(world, world_seed: int) -> pd.DataFrame:
    """`data.splits.split_statistics` of a built world (`WorldData`) with its validation split beside the test split.

    Returns one row per protocol and for the rare / non-rare sets: world_seed, then split_statistics' columns, then
    val_images, val_set_images, val_set_pairs, val_other_pairs (the validation split's counts, defined as the test
    columns: it is never filtered)."""
    rare = rare_classes(world.train)
    t = split_statistics(world.train, world.test, world.protocols, rare)
    v = split_statistics(None, world.val, world.protocols, rare)
    for col in ("images", "set_images", "set_pairs", "other_pairs"):
        t[f"val_{col}"] = v[f"test_{col}"].to_numpy()
    t.insert(0, "world_seed", int(world_seed))
    return t


VERSION_COLUMNS = ("world_seed", "version", "source", "test_images", "test_pairs", "people_per_image", "crowded_pct",
                   "crowded_by_person_pct", "others_per_pair", "ambiguous_pct", "caption_scene_home_pct",
                   "caption_scene_chance_pct", "hoi_scene_home_pct", "hoi_scene_chance_pct")


def world_version_row(test, test_entities, hoi_scenes, hoi_verb_sets, caption_scenes=(), caption_verb_sets=()) -> dict:
    """What one world asks of a model, as a row of `world_versions_table` (percentages of pairs or images).

    Args:
        test, test_entities: a test split's annotations and every drawn instance of its images (crowding).
        hoi_scenes, hoi_verb_sets: scene and verb set of each image of the HOI splits (scene-verb association).
        caption_scenes, caption_verb_sets: the same for the caption pool (empty: not measured, NaN).
    Crowded pairs: the union box holds the centre of another person or object (`data.world.crowding`); ambiguous
    pairs: another pair of the image has the same object class and other labels (`analysis.probe.distinct_pairs`).
    """
    c = crowding(test, test_entities)
    amb = distinct_pairs(test)["ambiguous"]
    hoi = scene_verb_association(hoi_scenes, hoi_verb_sets)
    cap = scene_verb_association(caption_scenes, caption_verb_sets)
    return dict(test_images=int(test.num_images), test_pairs=c["pairs"], people_per_image=c["people_per_image"],
                crowded_pct=100 * c["crowded"], crowded_by_person_pct=100 * c["with_person"],
                others_per_pair=c["others_per_pair"], ambiguous_pct=100 * float(amb.mean()) if len(amb) else np.nan,
                caption_scene_home_pct=100 * cap["home"], caption_scene_chance_pct=100 * cap["chance"],
                hoi_scene_home_pct=100 * hoi["home"], hoi_scene_chance_pct=100 * hoi["chance"])


def world_versions_table(configs: dict, worlds: dict) -> pd.DataFrame:
    """The study's worlds beside version 1's test split of the same seed and size (rendered, not cached).

    Args:
        configs: {world seed: ExperimentConfig} (`world_configs`); worlds: {world seed: its `build_world`}.
    Returns one row per (world seed, version) with `VERSION_COLUMNS`: the built world's row measures its test split,
    its HOI splits' scenes (train, val, test) and its caption pool; the version 1 row measures a test split rendered
    with `data.world.VERSION_1` (version 1 draws scenes independently of the labels: its scene columns are NaN).
    """
    rows = []
    for seed, cfg in configs.items():
        w = worlds[seed]
        hoi = [(w.scenes[k], image_verbs(getattr(w, k))) for k in ("train", "val", "test")]
        rows.append(dict(world_seed=seed, version=int(cfg.world.version), source="the study's world",
                         **world_version_row(w.test, w.test_entities, np.concatenate([h[0] for h in hoi]),
                                             [v for h in hoi for v in h[1]], w.scenes["caption"],
                                             caption_verbs(w.captions))))
        if cfg.world.version != 1:
            v1 = render_split(dataclasses.replace(cfg.world, **VERSION_1), "test", cfg.world.n_test)
            rows.append(dict(world_seed=seed, version=1, source="version 1, test split rendered",
                             **world_version_row(v1.annotations, v1.entities, v1.scenes,
                                                 image_verbs(v1.annotations))))
    return pd.DataFrame(rows, columns=list(VERSION_COLUMNS))


# The pretraining metrics of notebook 02's table, in order, with their units (fractions are reported in percent).
CLIP_METRICS = {"i2t_top1": "%", "i2t_top5": "%", "t2i_top1": "%", "t2i_top5": "%", "i2t_chance": "%",
                "t2i_chance": "%", "hoi_top1": "%", "hoi_top5": "%", "hoi_top1_chance": "%", "hoi_map": "%",
                "hoi_map_chance": "%", "n_texts": "captions", "n_eval": "pairs", "n_train": "pairs",
                "epochs": "epochs", "train_loss": "nats", "time_s": "s", "images_per_s": "images/s"}


def clip_pretraining_table(metrics: dict) -> pd.DataFrame:
    """{world seed: a pretrained CLIP's `metrics` (`clip_pretrain.pretrain_clip`)} -> long DataFrame world_seed,
    metric, value, unit: held-out retrieval (i2t / t2i top-1 / top-5 and chance) and zero-shot HOI recognition of
    the held-out close-ups in percent, then sizes, the final training loss and the time. Metrics a checkpoint lacks
    are left out."""
    rows = [dict(world_seed=seed, metric=k, value=float(m[k]) * (100.0 if unit == "%" else 1.0), unit=unit)
            for seed, m in metrics.items() for k, unit in CLIP_METRICS.items() if k in m]
    return pd.DataFrame(rows, columns=["world_seed", "metric", "value", "unit"])


# ---------------------------------------------------------------------------------------------------------
# Figures (notebook 08): detection quality in COCO terms, the locality gap as the world's shortcut grows
# ---------------------------------------------------------------------------------------------------------
# The paired comparison of notebook 08: the same CLIP without adapters (a) against LAIN (b), trained with the same
# seeds (b - a > 0 is LAIN's claim).
FIGURE_PAIR = ("w/o adapters", "LAIN")
# Noise levels of the simulated detector (`runs.scaled_detector`): 0 = ground-truth boxes, 1 = the default.
DETECTION_LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0)
# Test worlds of `runs.shortcut_sweep` (world.* overrides of the study's world; the models are trained on the
# study's world, scene_bias 0.8). scene_bias is the probability that an HOI image's background is the home scene of
# a verb none of its pairs does, i.e. that a whole-image judgement is misled; 0 = scenes independent of the
# verbs. "version 1 layout" is the first world's layout (mostly one person, groups apart, no scenes) at the
# study's class frequencies: the same shortcut-free test as scene bias 0, with fewer people around each pair.
SHORTCUT_SETTINGS = {
    "scene bias 0": {"world.scene_bias": 0.0},
    "scene bias 0.5": {"world.scene_bias": 0.5},
    "scene bias 0.8 (trained on)": {},
    "scene bias 1.0": {"world.scene_bias": 1.0},
    "version 1 layout": {"world.version": 1, "world.max_people": 3},
}


def paired_gap_table(long: pd.DataFrame, key: str, pair=FIGURE_PAIR, metrics=("full", "unseen")) -> pd.DataFrame:
    """The gap b - a of `pair` = (a, b) at each value of `key`, paired over seeds (`stats.comparison_table`).

    Args:
        long: columns setting, <key>, seed, metric, value (mAP, percent); both methods run with the same seeds.
    Returns:
        one row per (<key>, metric), in order of appearance: <key>, metric, <a>, <b> (mean mAP over seeds),
        comparison ("<b> - <a>"), n_pairs, mean_diff_map, half_width_map, ci_low_map, ci_high_map (95% t interval,
        n - 1 df), verdict (LAIN's claim: b > a).
    """
    a, b = pair
    t = stats.comparison_table(long.rename(columns={key: "protocol"}), {f"{b} - {a}": (a, b)}, metrics=metrics)
    d = long[long["setting"].isin(pair) & long["metric"].isin(metrics)]
    means = d.groupby([key, "metric", "setting"], sort=False)["value"].mean().unstack("setting")[[a, b]]
    out = t.rename(columns={"protocol": key}).merge(means.reset_index(), on=[key, "metric"], how="left")
    out.columns.name = None
    return out[[key, "metric", a, b, "comparison", "n_pairs", "mean_diff_map", "half_width_map", "ci_low_map",
                "ci_high_map", "verdict"]]


def detection_quality_comparison(long: pd.DataFrame, boxes: pd.DataFrame, pair=FIGURE_PAIR,
                                 metrics=("full", "unseen")) -> pd.DataFrame:
    """The detection-quality table: each detector setting's COCO box AP beside the HOI mAP of both methods and
    their paired gap.

    Args:
        long: `runs.detection_quality_sweep` output (setting, level, seed, metric, value).
        boxes: `runs.detector_box_ap` output (one row per level).
    Returns:
        one row per (level, metric): detector, level, box_ap, box_ap50, box_ap_all, box_ap50_all, then
        `paired_gap_table`'s columns.
    """
    missing = sorted(set(long["level"]) - set(boxes["level"]))
    if missing:
        raise ValueError(f"detection_quality_comparison: no box AP for levels {missing}")
    cols = ["detector", "level", "box_ap", "box_ap50", "box_ap_all", "box_ap50_all"]
    return boxes[cols].merge(paired_gap_table(long, "level", pair, metrics), on="level", how="inner")


def shortcut_gap_table(long: pd.DataFrame, worlds: pd.DataFrame, pair=FIGURE_PAIR,
                       metrics=("full", "unseen")) -> pd.DataFrame:
    """The locality gap on each test world: `runs.shortcut_worlds`' description (crowded, people_per_image,
    scene_home, scene_chance) beside `paired_gap_table` over `runs.shortcut_sweep`'s results; one row per (world,
    metric), worlds in the order of `worlds`."""
    cols = ["world", "crowded", "people_per_image", "scene_home", "scene_chance"]
    return worlds[cols].merge(paired_gap_table(long, "world", pair, metrics), on="world", how="inner")


def gap_change(long: pd.DataFrame, key: str, start, end, pair=FIGURE_PAIR, metric: str = "full"):
    """How the gap b - a changes from `key` = start to `key` = end, seed by seed: the paired t interval
    (`stats.paired_interval`) of gap(end) - gap(start), where gap(x) is seed s's b - a at x. Both gaps of a seed
    come from the same two trained models, so the seed is the pair."""
    a, b = pair
    d = long[(long["metric"] == metric) & long["setting"].isin(pair)]
    w = d.pivot_table(index=[key, "seed"], columns="setting", values="value")
    for x in (start, end):
        if x not in w.index.get_level_values(0):
            raise ValueError(f"gap_change: no {metric!r} results at {key} = {x!r}")
    gap = w[b] - w[a]
    return stats.paired_interval(gap.loc[start], gap.loc[end])
