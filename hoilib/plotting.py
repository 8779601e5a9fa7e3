"""The study's figures: annotated image grids, class frequencies, and the tables of notebooks 02-08 as plots.

Every function returns a matplotlib `Figure` and works under the Agg backend in notebooks, tests and scripts alike.
The image grids are built without pyplot; the plots of tables use `pyplot.subplots`, so that a notebook shows them
inline. Saving is the caller's business (`hoilib.results.save_figure`).
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

HUMAN_COLOUR = "#1f77ff"
OBJECT_COLOUR = "#ff7f0e"
LINK_COLOUR = "#2ca02c"


def _load(images, i: int) -> np.ndarray:
    """Image i of an array [N, H, W, 3] or of an ImageSource (anything with .load(i))."""
    return images.load(i) if hasattr(images, "load") else np.asarray(images[i])


def _short(name: str) -> str:
    return name.replace("no_interaction", "no-int").replace("_", " ")


def show_hoi_grid(images, annotations, vocab, indices, ncols: int = 4, cell: float = 2.6,
                  max_lines: int = 6) -> Figure:
    """A grid of annotated images.

    Args:
        images: uint8 [N, H, W, 3] array (memmap ok) or an ImageSource with `.load(i)`.
        annotations: HOIAnnotations of the same images (HICO-DET file convention; drawn as continuous boxes).
        vocab: Vocabulary (verb and object names).
        indices: image positions to show.
        ncols: images per row; cell: inches per image; max_lines: interaction lines listed under an image.
    Humans are boxed in blue (h1, h2, ...), objects in orange (o1, ...; a person who is a target is both),
    a green line links the box centres of each annotated pair, and the text under the image lists
    "h1 ride+sit on -> horse o1" per pair.
    """
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("indices is empty: nothing to show")
    ncols = max(1, min(ncols, len(indices)))
    nrows = math.ceil(len(indices) / ncols)
    fig = Figure(figsize=(cell * ncols, (cell + 0.16 * max_lines) * nrows))
    bh_all, bo_all = annotations.continuous_boxes()
    for k, i in enumerate(indices):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        img = _load(images, i)
        H, W = img.shape[:2]
        ax.imshow(img, interpolation="nearest", extent=(0, W, H, 0))
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        rows = annotations.pairs_of(i)
        humans, objects, pairs = {}, {}, {}
        for r in rows:
            hb, ob = tuple(bh_all[r]), tuple(bo_all[r])
            hk = humans.setdefault(hb, len(humans) + 1)
            ok = objects.setdefault((ob, int(annotations.object[r])), len(objects) + 1)
            pairs.setdefault((hk, ok), []).append(int(annotations.verb[r]))
        lw = max(0.8, 60.0 / max(W, 1))
        for b, n in humans.items():
            ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec=HUMAN_COLOUR, lw=lw))
            ax.text(b[0] + 0.5, b[1] + 0.5, f"h{n}", color="white", fontsize=6, va="top",
                    bbox=dict(fc=HUMAN_COLOUR, ec="none", pad=0.5, alpha=0.8))
        for (b, o), n in objects.items():
            ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec=OBJECT_COLOUR, lw=lw,
                                   ls="--"))
            ax.text(b[2] - 0.5, b[3] - 0.5, f"o{n}", color="white", fontsize=6, ha="right", va="bottom",
                    bbox=dict(fc=OBJECT_COLOUR, ec="none", pad=0.5, alpha=0.8))
        hbox = {n: b for b, n in humans.items()}
        obox = {n: (b, o) for (b, o), n in objects.items()}
        lines = []
        for (hk, ok), verbs in sorted(pairs.items()):
            hb, (ob, o) = hbox[hk], obox[ok]
            ax.plot([(hb[0] + hb[2]) / 2, (ob[0] + ob[2]) / 2], [(hb[1] + hb[3]) / 2, (ob[1] + ob[3]) / 2],
                    color=LINK_COLOUR, lw=lw, marker="o", ms=2)
            vs = "+".join(_short(vocab.verbs[v]) for v in sorted(set(verbs)))
            lines.append(f"h{hk} {vs} \u2192 {_short(vocab.objects[o])} o{ok}")
        if len(lines) > max_lines:
            lines = lines[:max_lines - 1] + [f"... {len(lines) - max_lines + 1} more"]
        ax.set_title(f"#{i}", fontsize=7, pad=2)
        ax.set_xlabel("\n".join(lines) if lines else "(no pairs)", fontsize=6, loc="left")
    fig.tight_layout(pad=0.4)
    return fig


def plot_class_frequencies(counts, rare_threshold: int = 10, unseen=None, names=None, title: str = "",
                           log: bool = True) -> Figure:
    """Long-tail plot: HOI classes sorted by decreasing count.

    Args:
        counts: [C] training pairs per class.
        rare_threshold: classes with fewer pairs are rare (HICO-DET: 10); a dashed line marks it and rare bars are
            red.
        unseen: optional indices of unseen classes (a zero-shot protocol); their bars are hatched and a tick marks
            them under the axis.
        names: optional [C] class names (shown on the x axis when there are at most 120 classes).
        log: log-scale counts (zero counts are drawn at 0.5 so that they stay visible).
    """
    counts = np.asarray(counts, np.float64).reshape(-1)
    C = counts.shape[0]
    if C == 0:
        raise ValueError("counts is empty")
    order = np.argsort(-counts, kind="stable")
    unseen_mask = np.zeros(C, bool)
    if unseen is not None and len(unseen):
        unseen = np.asarray(unseen, np.int64)
        if unseen.min() < 0 or unseen.max() >= C:
            raise ValueError(f"unseen class indices must lie in [0, {C})")
        unseen_mask[unseen] = True
    rare = counts < rare_threshold
    fig = Figure(figsize=(min(14.0, 3.0 + 0.09 * C), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    heights = np.maximum(counts[order], 0.5) if log else counts[order]
    colours = np.where(rare[order], "#d62728", "#1f77b4")
    bars = ax.bar(np.arange(C), heights, width=0.85, color=colours, edgecolor="none")
    for k, bar in enumerate(bars):
        if unseen_mask[order[k]]:
            bar.set_hatch("////")
            bar.set_edgecolor("black")
            bar.set_linewidth(0.3)
    if log:
        ax.set_yscale("log")
    ax.axhline(rare_threshold, color="#d62728", ls="--", lw=0.8)
    ax.set_xlim(-0.6, C - 0.4)
    ax.set_ylabel("training pairs")
    ax.set_xlabel("HOI classes (sorted by frequency)")
    if names is not None and C <= 120:
        ax.set_xticks(np.arange(C))
        ax.set_xticklabels([_short(str(names[c])) for c in order], rotation=90, fontsize=5)
    else:
        ax.set_xticks([])
    if unseen_mask.any():
        xs = np.flatnonzero(unseen_mask[order])
        ax.plot(xs, np.full(len(xs), ax.get_ylim()[0]), "k|", ms=8, clip_on=False)
    handles = [Patch(color="#1f77b4", label=f"non-rare (>= {rare_threshold}): {int((~rare).sum())}"),
               Patch(color="#d62728", label=f"rare (< {rare_threshold}): {int(rare.sum())}")]
    if unseen_mask.any():
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                             label=f"unseen: {int(unseen_mask.sum())}"))
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_title(title or f"{C} HOI classes, {int(counts.sum())} pairs", fontsize=9)
    fig.tight_layout()
    return fig


# ---- study tables as figures (notebooks 05-07) ------------------------------------------------------------------
def plot_method_bars(table, metrics=("unseen", "full")):
    """Grouped bars of mean mAP over seeds: one group per protocol, one bar per method; one panel per metric. No error
    bars: the comparisons between methods and their paired 95% intervals are `plot_paired_differences`'.

    `table` is `study.main_table(...)` (columns method, protocol, <metric>_mean_map)."""

    methods = list(dict.fromkeys(table["method"]))
    protocols = list(dict.fromkeys(table["protocol"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.6), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for ax, metric in zip(axes[0], metrics):
        for k, m in enumerate(methods):
            t = table[table["method"] == m].set_index("protocol").reindex(protocols)
            x = np.arange(len(protocols)) + (k - (len(methods) - 1) / 2) * width
            ax.bar(x, t[f"{metric}_mean_map"], width, label=m)
        ax.set_xticks(np.arange(len(protocols)), protocols, rotation=20)
        ax.set_ylabel(f"{metric} mAP (%), mean over seeds")
        ax.set_title(metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweeps(tables: dict, metric: str = "full"):
    """One panel per sweep (dict name -> `study.sweep_table`): each value's paired difference from the paper's
    choice (0 at the paper's value) with its 95% t interval, the value chosen on our validation split marked."""

    fig, axes = plt.subplots(1, len(tables), figsize=(4.3 * len(tables), 3.3), squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items()):
        x = t[name].astype(float).to_numpy()
        y = np.nan_to_num(t[f"{metric}_diff_map"].astype(float).to_numpy())
        # An interval that does not exist (one seed: NaN or infinite limits) is drawn as the point alone.
        lo, hi = (t[f"{metric}_ci_{b}_map"].astype(float).to_numpy() for b in ("low", "high"))
        lo, hi = np.where(np.isfinite(lo), lo, y), np.where(np.isfinite(hi), hi, y)
        colours = [VERDICT_COLOURS.get(v, "black") for v in t[f"{metric}_verdict"]]
        for xi, yi, l, h, c in zip(x, y, lo, hi, colours):
            ax.errorbar(xi, yi, yerr=[[yi - l], [h - yi]], fmt="o", color=c, capsize=3)
        if "chosen_on_val" in t:
            for xi in x[t["chosen_on_val"].to_numpy(bool)]:
                ax.axvline(xi, color="tab:blue", ls=":", lw=1)
        ax.axhline(0.0, color="black", lw=0.9)
        ax.set_xlabel(name)
        ax.set_ylabel(f"{metric}: value - paper's value [mAP]")
        ax.set_title(f"{name}: paired difference, 95% CI (t, n-1 df)", fontsize=8)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"supported": "#2ca02c", "contradicted": "#d62728", "inconclusive": "#7f7f7f"}


def plot_paired_differences(table, title: str = "", unit: str = "mAP"):
    """Paired differences b - a with their t intervals: one row per row of `stats.comparison_table(...)`.

    A point at mean_diff_map and an error bar from ci_low_map to ci_high_map (the table's numbers, nothing is
    re-estimated here), coloured by verdict; a vertical line at 0; primary rows in bold. An unbounded interval
    (one pair) is drawn as a hollow point labelled "unbounded". The level comes from `table.attrs["level"]`
    (default 0.95)."""

    if len(table) == 0:
        raise ValueError("plot_paired_differences: the table has no rows")
    level = table.attrs.get("level", 0.95)
    world = (lambda r: f"world {r.world} | ") if "world" in table.columns else (lambda r: "")  # noqa: E731
    labels = [f"{world(r)}{r.comparison} | {r.protocol} | {r.metric} (n = {r.n_pairs})" for r in table.itertuples()]
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.42 * len(table)))
    _gap_bars(ax, np.arange(len(table)), table, horizontal=True)
    ax.set_yticks(np.arange(len(table)), labels, fontsize=8)
    for tick, primary in zip(ax.get_yticklabels(), table["primary"]):
        tick.set_fontweight("bold" if primary else "normal")
    ax.set_ylim(len(table) - 0.5, -0.5)  # first row on top
    ax.set_xlabel(f"paired difference, {level:.0%} CI (t, n-1 df) [{unit}, b - a]")
    ax.legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()], fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_validation(summary, runs_by_choice: dict):
    """The choices made on the validation split: one panel per choice (`study.Validation`), mean validation Full mAP
    of each tried value over both arms and the seeds (bar; the chosen one dark) and every run (points, by arm).

    Args:
        summary: `Validation.summary()` rows choice, tried, val_full_map, chosen.
        runs_by_choice: `Validation.tables` ({choice: long frame with `tried`}).
    """
    names = list(dict.fromkeys(summary["choice"]))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        s = summary[summary["choice"] == name]
        x = np.arange(len(s))
        ax.bar(x, s["val_full_map"], color=["#3b5b92" if c else "#b8c4d9" for c in s["chosen"]])
        pts = runs_by_choice[name]
        pts = pts[pts["metric"] == "full"]
        for k, (tried, g) in enumerate(pts.groupby("tried", sort=False)):
            for j, (arm, ga) in enumerate(g.groupby("setting", sort=False)):
                ax.plot(np.full(len(ga), k - 0.15 + 0.3 * j), ga["value"], "o", ms=3.5,
                        color=("tab:orange", "tab:blue")[j % 2], label=arm if k == 0 else None)
        ax.set_xticks(x, [str(t) for t in s["tried"]], fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("validation Full [mAP]")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_primary(per_seed, table, title: str = "", unit: str = "mAP"):
    """The primary comparison seed by seed: one panel per metric; per world (and pooled) a point per training seed's
    paired difference (b - a) and the 95% t interval of their mean from `table` (`study.replicated_table` rows),
    coloured by verdict.

    Args:
        per_seed: rows world (str), seed, metric, diff_map (`study.paired_differences`).
        table: rows world, metric, mean_diff_map, ci_low_map, ci_high_map, verdict.
    """
    metrics = list(dict.fromkeys(table["metric"]))
    worlds = list(dict.fromkeys(table["world"]))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        pts = per_seed[per_seed["metric"] == m]
        for k, w in enumerate(worlds):
            # seeds side by side in seed order (no random jitter): the same figure from the same numbers
            y = pts.loc[pts["world"] == w].sort_values("seed")["diff_map"].to_numpy(float)
            ax.plot(k + np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else np.full(len(y), float(k)), y, "o",
                    color="0.45", ms=4)
            r = table[(table["metric"] == m) & (table["world"] == w)]
            if len(r):
                r = r.iloc[0]
                c = VERDICT_COLOURS.get(r["verdict"], "black")
                if np.isfinite(r["ci_low_map"]) and np.isfinite(r["ci_high_map"]):
                    ax.errorbar(k + 0.3, r["mean_diff_map"], yerr=[[r["mean_diff_map"] - r["ci_low_map"]],
                                [r["ci_high_map"] - r["mean_diff_map"]]], fmt="D", color=c, capsize=4, ms=6)
        ax.set_xticks(range(len(worlds)), [str(w) for w in worlds])
        ax.set_xlim(-0.5, len(worlds) - 0.5)
        ax.axhline(0.0, color="black", lw=0.9)
        ax.set_xlabel("world seed")
        ax.set_ylabel(f"paired difference [{unit}]")
        ax.set_title(f"{m}: seeds (grey), mean and 95% CI (t, n-1 df)", fontsize=8)
    axes[0][-1].legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ---- looking inside LAIN (notebook 03) ------------------------------------------------------------------------
def plot_layout_and_attention(image, layout: dict, attention, vocab, pair: int = 0):
    """Three panels for one image: the kept detections, the LA layout map (which box is painted on each patch
    cell), and the IA context attention over the ROI cells of the chosen pair's human and object boxes.

    Args:
        image: uint8 [S, S, 3] (the CLIP input frame); layout: `hoilib.analysis.layout_map(...)`;
        attention: [K, r, r] from `hoilib.analysis.ia_context_attention` (or None); pair: index into layout["pairs"].
    """

    s = image.shape[0]
    idx, boxes, labels = layout["index"], layout["boxes"], layout["labels"]
    k = len(boxes)
    gh, gw = idx.shape
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    cmap = plt.get_cmap("tab20")
    ax = axes[0]
    ax.imshow(image)
    for j, b in enumerate(boxes):
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, color=cmap(j % 20), lw=1.5))
        ax.text(b[0], b[1], f"{j}:{vocab.objects[labels[j]]}", color="white", fontsize=6,
                bbox=dict(facecolor=cmap(j % 20), pad=0.5, lw=0))
    ax.set_title("kept detections (CLIP frame)")
    ax = axes[1]
    rgb = np.ones((gh, gw, 3))
    for j in range(k):
        rgb[idx == j] = cmap(j % 20)[:3]
    ax.imshow(image, alpha=0.35, extent=(0, gw, gh, 0))
    ax.imshow(rgb, alpha=0.65, extent=(0, gw, gh, 0))
    for y in range(gh):
        for x in range(gw):
            ax.text(x + 0.5, y + 0.5, "·" if idx[y, x] == k else str(idx[y, x]), ha="center", va="center",
                    fontsize=6)
    ax.set_title(f"LA layout map ({gh}x{gw} patches; · = nothing)")
    ax = axes[2]
    ax.imshow(image)
    if attention is not None and len(layout["pairs"]):
        hh, oo = layout["pairs"][pair]
        for j, c in ((hh, "Blues"), (oo, "Oranges")):
            b = boxes[j]
            ax.imshow(attention[j], cmap=c, alpha=0.6, extent=(b[0], b[2], b[3], b[1]))
            ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, color="k", lw=1))
        ax.set_xlim(0, s)
        ax.set_ylim(s, 0)
        ax.set_title(f"IA context attention, pair ({hh}: {vocab.objects[labels[hh]]}, "
                     f"{oo}: {vocab.objects[labels[oo]]})", fontsize=8)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return fig


def plot_attention_mask(mask, n_ho: int, grid: tuple, n_patches_shown: int = 6):
    """Who sees whom: the attention mask over [HO_1..HO_P, CLS, patch_1..patch_G], whole (left) and its first
    P + 1 + n_patches_shown tokens with one label per token (right).

    Args:
        mask: bool [L, L], True = the row's token cannot attend to the column's token (L = n_ho + 1 + Gh * Gw);
        n_ho: P, the HO tokens in front; grid: (Gh, Gw).
    Allowed entries are dark, blocked ones light; red lines separate the HO, CLS and patch blocks.
    """
    mask = np.asarray(mask, bool)
    g = int(grid[0]) * int(grid[1])
    if mask.shape != (n_ho + 1 + g, n_ho + 1 + g):
        raise ValueError(f"mask is {mask.shape}, expected {(n_ho + 1 + g,) * 2} for {n_ho} HO tokens and a "
                         f"{grid[0]}x{grid[1]} grid")
    k = n_ho + 1 + min(n_patches_shown, g)
    names = [f"HO_{i + 1}" for i in range(n_ho)] + ["CLS"] + [f"patch_{i + 1}" for i in range(k - n_ho - 1)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, m in zip(axes, (mask, mask[:k, :k])):
        ax.imshow(~m, cmap="Greys", vmin=0, vmax=1.6, interpolation="nearest")
        for edge in (n_ho - 0.5, n_ho + 0.5):
            ax.axhline(edge, color="tab:red", lw=0.8)
            ax.axvline(edge, color="tab:red", lw=0.8)
        ax.set_xlabel("key (is seen)")
        ax.set_ylabel("query (sees)")
    axes[0].set_xticks([n_ho + 1 + g / 2], [f"patches (G = {g})"], fontsize=8)
    axes[0].set_yticks([n_ho + 1 + g / 2], [f"patches (G = {g})"], fontsize=8, rotation=90, va="center")
    axes[0].set_title(f"all {len(mask)} tokens (dark = may attend)", fontsize=9)
    axes[1].set_xticks(range(k), names, fontsize=7, rotation=90)
    axes[1].set_yticks(range(k), names, fontsize=7)
    axes[1].set_title(f"the first {k}: HO tokens, CLS, {k - n_ho - 1} patches", fontsize=9)
    fig.tight_layout()
    return fig


def plot_trained_adapters(rows: list, settings: tuple):
    """Inside trained models, one test image per row: the image with one pair, the LA's update size per patch,
    the IA's context attention on the pair's boxes, and the pair's HO-token attention over the patches in each model.

    Args:
        rows: dicts with image (uint8 [S, S, 3], the CLIP frame), box_h, box_o ([4] xyxy, S frame), la_norm
            ([Gh, Gw] or None), ia_h, ia_o ([r, r] context attention on the human / object box, or None) and
            attention ({setting: [Gh, Gw]} for every name in `settings`), title (str).
        settings: the models whose HO-token attention is shown, in column order.
    """
    if not rows:
        raise ValueError("plot_trained_adapters: no rows")
    ncols = 3 + len(settings)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.6 * ncols, 2.7 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        img, bh, bo = row["image"], np.asarray(row["box_h"]), np.asarray(row["box_o"])
        s = img.shape[0]
        panels = [("image, pair", None), ("LA: ||dF|| per patch", row.get("la_norm")), ("IA: context attention", None)]
        panels += [(f"HO attention: {name}", row["attention"][name]) for name in settings]
        for c, (title, heat) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img, extent=(0, s, s, 0), alpha=1.0 if c == 0 else 0.45)
            if heat is not None:
                im = ax.imshow(heat, cmap="magma", alpha=0.7, extent=(0, s, s, 0), interpolation="nearest")
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            elif c == 1:
                ax.text(s / 2, s / 2, "no LA", ha="center", va="center", fontsize=8)
            if c == 2:
                for b, att, cmap in ((bh, row.get("ia_h"), "Blues"), (bo, row.get("ia_o"), "Oranges")):
                    if att is not None:
                        ax.imshow(att, cmap=cmap, alpha=0.75, extent=(b[0], b[2], b[3], b[1]))
                if row.get("ia_h") is None:
                    ax.text(s / 2, s / 2, "no IA", ha="center", va="center", fontsize=8)
            for b, colour, ls in ((bh, HUMAN_COLOUR, "-"), (bo, OBJECT_COLOUR, "--")):
                ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec=colour, lw=1.3, ls=ls))
            ax.set_xlim(0, s)
            ax.set_ylim(s, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title if r == 0 else "", fontsize=8)
        axes[r][0].set_ylabel(row.get("title", ""), fontsize=7)
    fig.tight_layout()
    return fig


def plot_gamma_curves(history, gamma_init: float | None = None):
    """Mean |gamma_LA| and |gamma_IA| over training, from the values the engine recorded.

    history: a frame with columns step (training step), gamma_la, gamma_ia (either may be missing or NaN), source
    ("step" log records or "epoch" ends); gamma_init: the configured initial value, drawn at step 0."""

    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for key, name, colour in (("gamma_la", "gamma_LA", "tab:blue"), ("gamma_ia", "gamma_IA", "tab:orange")):
        if key not in history or history[key].isna().all():
            continue
        h = history.dropna(subset=[key]).sort_values("step")
        x, y = list(h["step"]), list(h[key])
        if gamma_init is not None:
            x, y = [0] + x, [gamma_init] + y
        ax.plot(x, y, color=colour, marker="o", ms=3, label=f"mean |{name}|")
        ends = h[h["source"] == "epoch"]
        ax.plot(ends["step"], ends[key], "s", color=colour, ms=7, mfc="none")
    ax.set_yscale("log")
    ax.set_xlabel("training step (squares: end of an epoch)")
    ax.set_ylabel("mean |gamma| over layers and channels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- notebook 08 ---------------------------------------------------------------------------------------------
def plot_qualitative(images, pred, vocab, picks: dict, unseen=(), ncols: int = 4):
    """The chosen predictions per image; green = matches a ground-truth pair of that class (IoU >= 0.5 on both
    boxes), red = does not; '*' marks unseen classes. Boxes are drawn for the first (best) one.

    Args:
        images: uint8 [N, H, W, 3] array or an ImageSource; pred: predictions (the evaluator's format);
        picks: {image: (prediction rows, correct [bool per row])} (`analysis.qualitative_picks`).
    """
    unseen = set(np.asarray(unseen, np.int64).tolist())
    n = len(picks)
    top = max((len(rows) for rows, _ in picks.values()), default=1)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, (3.1 + 0.25 * top) * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (i, (rows, ok)) in zip(axes.flat, picks.items()):
        ax.imshow(_load(images, i))
        lines = []
        for k, (r, good) in enumerate(zip(rows, ok)):
            c = int(pred["hoi"][r])
            colour = "tab:green" if good else "tab:red"
            if k == 0:
                for b, ls in ((pred["boxes_h"][r], "-"), (pred["boxes_o"][r], "--")):
                    ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, color=colour, lw=1.5, ls=ls))
            lines.append((f"{'*' if c in unseen else ''}{vocab.hoi_name(c)} {pred['score'][r]:.2f}", colour))
        for k, (text, colour) in enumerate(lines):
            ax.text(0.0, -0.04 - 0.08 * k, text, color=colour, fontsize=7, transform=ax.transAxes, va="top")
        ax.set_title(f"test #{i}", fontsize=8)
    fig.tight_layout()
    fig.subplots_adjust(hspace=0.25 + 0.09 * top)  # room for the prediction lines under each image
    return fig


def plot_ap_vs_frequency(per_class_long, train_counts, unseen=()):
    """Per-class AP (mean over seeds) against the number of training pairs, one marker per setting.

    per_class_long: run_grid(..., per_class=True) output (metric "ap_<c>"); train_counts: [C] after protocol
    filtering (unseen classes have 0 and are drawn at 0.5 on the log axis)."""

    d = per_class_long[per_class_long["metric"].str.startswith("ap_")].copy()
    d["cls"] = d["metric"].str[3:].astype(int)
    mean = d.groupby(["setting", "cls"], sort=False)["value"].mean().reset_index()
    counts = np.asarray(train_counts, float)
    unseen = set(np.asarray(unseen, np.int64).tolist())
    fig, ax = plt.subplots(figsize=(6.5, 4))
    markers = ["o", "s", "^", "D"]
    for k, (name, g) in enumerate(mean.groupby("setting", sort=False)):
        x = np.maximum(counts[g["cls"].to_numpy()], 0.5)
        is_unseen = np.array([c in unseen for c in g["cls"]])
        ax.scatter(x[~is_unseen], g["value"][~is_unseen], s=14, marker=markers[k % 4], alpha=0.7,
                   label=f"{name} (seen)")
        ax.scatter(x[is_unseen], g["value"][is_unseen], s=22, marker=markers[k % 4], facecolors="none",
                   edgecolors=f"C{k}", label=f"{name} (unseen)")
    ax.set_xscale("log")
    ax.axvline(10, color="grey", ls=":", lw=1)
    ax.set_xlabel("training pairs of the class (unseen at 0.5)")
    ax.set_ylabel("AP (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _gap_bars(ax, positions, table, horizontal: bool = False) -> None:
    """Paired differences of `table` (mean_diff_map, ci_low_map, ci_high_map, verdict) at `positions` (on the x axis;
    on the y axis, with the differences along x, when `horizontal`), coloured by verdict, and a line at 0; an
    unbounded interval (one pair) is a hollow point labelled "unbounded"."""
    for pos, r in zip(positions, table.itertuples()):
        colour = VERDICT_COLOURS.get(r.verdict, "black")
        m, lo, hi = r.mean_diff_map, r.ci_low_map, r.ci_high_map
        xy = (m, pos) if horizontal else (pos, m)
        if np.isfinite(lo) and np.isfinite(hi):
            err = {"xerr" if horizontal else "yerr": [[m - lo], [hi - m]]}
            ax.errorbar(*xy, **err, fmt="o", color=colour, capsize=3, ms=5)
        else:
            ax.plot(*xy, "o", mfc="none", color=colour, ms=5)
            label = dict(xytext=(6, 0), va="center") if horizontal else dict(xytext=(4, 4))
            ax.annotate("unbounded", xy, textcoords="offset points", fontsize=7, **label)
    (ax.axvline if horizontal else ax.axhline)(0.0, color="black", lw=0.9)


def plot_detection_quality(table, pair: tuple, metrics=("full", "unseen")):
    """`study.detection_quality_comparison` against the detector's COCO box AP: top row, each method's mAP (mean
    over seeds, each point labelled with its noise level); bottom row, the paired difference b - a with its 95% t
    interval, coloured by verdict. One column per metric."""

    a, b = pair
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.6 * len(metrics), 6.2), squeeze=False, sharex="col")
    for k, metric in enumerate(metrics):
        t = table[table["metric"] == metric].sort_values("box_ap")
        top, bottom = axes[0][k], axes[1][k]
        for name in (a, b):
            top.plot(t["box_ap"], t[name], marker="o", label=name)
        for x, y, level in zip(t["box_ap"], t[b], t["level"]):
            top.annotate(f"×{level:g}", (x, y), xytext=(3, 4), textcoords="offset points", fontsize=7)
        top.set_ylabel(f"{metric} mAP (%), mean over seeds")
        _gap_bars(bottom, t["box_ap"].to_numpy(), t)
        bottom.set_ylabel(f"{b} − {a} ({metric} mAP)")
        bottom.set_xlabel("detector box AP (COCO, %)")
        bottom.set_title("paired difference, 95% CI (t, n-1 df)", fontsize=8)
    axes[0][0].legend(fontsize=8)
    axes[1][-1].legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()], fontsize=7)
    fig.tight_layout()
    return fig


def plot_gap_vs_shortcut(table, pair: tuple, metrics=("full", "unseen")):
    """`study.shortcut_gap_table`: the paired difference b - a with its 95% t interval on each test world (in the
    table's order; tick labels give each world's crowded fraction of pairs), coloured by verdict; one panel per
    metric."""

    a, b = pair
    worlds = list(dict.fromkeys(table["world"]))
    crowded = table.drop_duplicates("world").set_index("world")["crowded"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.5 + 1.1 * len(worlds) * len(metrics), 3.8),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        t = table[table["metric"] == metric].set_index("world").reindex(worlds).reset_index()
        _gap_bars(ax, np.arange(len(worlds)), t)
        ax.set_xticks(np.arange(len(worlds)),
                      [f"{textwrap.fill(w, 14)}\ncrowded {crowded[w]:.0%}" for w in worlds], fontsize=7)
        ax.set_xlim(-0.5, len(worlds) - 0.5)
        ax.set_title(f"{metric} mAP", fontsize=9)
        ax.set_xlabel("test world", fontsize=8)
    axes[0][0].set_ylabel(f"{b} − {a} (mAP)\npaired difference, 95% CI (t, n-1 df)")
    axes[0][-1].legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()], fontsize=7)
    fig.tight_layout()
    return fig


def plot_clip_pretraining(history):
    """Per epoch of CLIP pretraining (`metrics["history"]`): the contrastive loss and held-out retrieval.

    `history` is one run's list of epoch records, or {label: list} for several runs (e.g. one per world seed):
    one colour per run, one line style per retrieval measure."""

    runs = history if isinstance(history, dict) else {None: history}
    if not runs or not all(len(h) for h in runs.values()):
        raise ValueError("plot_clip_pretraining: a run without epoch records")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, (label, hist) in enumerate(runs.items()):
        prefix = "" if label is None else f"{label}: "
        epoch = [h["epoch"] for h in hist]
        axes[0].plot(epoch, [h["loss"] for h in hist], marker="o", color=f"C{k}", label=label)
        for key, ls in (("i2t_top1", "-"), ("i2t_top5", "--"), ("t2i_top5", ":")):
            if all(key in h for h in hist):
                axes[1].plot(epoch, [100 * h[key] for h in hist], marker="o", ls=ls, color=f"C{k}",
                             label=prefix + key.replace("_", " "))
    chance = [hist[-1]["i2t_chance"] for hist in runs.values() if "i2t_chance" in hist[-1]]
    for k, c in enumerate(chance):  # one per run: each caption pool has its own number of distinct captions
        axes[1].axhline(100 * c, color="grey", ls=":", lw=0.8, label="chance (top-1)" if k == 0 else None)
    axes[0].set_xlabel("epoch"); axes[0].set_ylabel("contrastive loss"); axes[0].set_title("small CLIP pretraining")
    if None not in runs:
        axes[0].legend(fontsize=8)
    axes[1].set_xlabel("epoch"); axes[1].set_ylabel("held-out retrieval (%)"); axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_probe_sweep(table, comparisons=("crop - whole image", "in-place masked - whole image")):
    """The CLIP probe's paired gaps across world settings: one panel per subset of pairs, one series per comparison,
    the gap (percentage points) with its 95% interval against the settings in the table's order.

    table: `analysis.probe.probe_sweep`'s rows (columns setting, crowded_pct, comparison, subset, diff_pp,
    ci95_low_pp, ci95_high_pp); nothing is re-estimated here. Each setting's tick names its share of crowded pairs."""

    if len(table) == 0:
        raise ValueError("plot_probe_sweep: the table has no rows")
    settings = list(dict.fromkeys(table["setting"]))
    subsets = list(dict.fromkeys(table["subset"]))
    first = table.drop_duplicates("setting").set_index("setting")
    ticks = [f"{s}\n{first.loc[s, 'crowded_pct']:.0f}% crowded" for s in settings]
    x = np.arange(len(settings))
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(subsets), figsize=(1.0 + 1.5 * len(settings) * len(subsets), 3.6),
                                 squeeze=False, sharey=True)
    for ax, subset in zip(axes[0], subsets):
        for k, comp in enumerate(comparisons):
            g = table[(table["subset"] == subset) & (table["comparison"] == comp)].set_index("setting")
            g = g.reindex([s for s in settings if s in g.index])
            if not len(g):
                continue
            xs = x[[settings.index(s) for s in g.index]] + (k - (len(comparisons) - 1) / 2) * 0.12
            ax.errorbar(xs, g["diff_pp"], yerr=[g["diff_pp"] - g["ci95_low_pp"], g["ci95_high_pp"] - g["diff_pp"]],
                        fmt="o-", capsize=3, ms=5, color=f"C{k}", label=comp)
        ax.axhline(0.0, color="black", lw=0.9)
        ax.set_xticks(x, ticks, fontsize=7)
        ax.set_title(subset, fontsize=9)
    axes[0][0].set_ylabel("top-1 gap, 95% CI (percentage points)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_training_curves(steps, history, split: str = "test"):
    """A LAIN training run: focal loss per logged step (`steps`: the log's step records, columns epoch, step,
    loss) and the mAP of the evaluated split after each epoch (`history`: columns epoch, <split>_unseen /
    <split>_seen / <split>_full)."""

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot((steps["epoch"] - 1) + steps["step"] / steps["step"].max(), steps["loss"], lw=1)
    axes[0].set_xlabel("epoch"); axes[0].set_ylabel("focal loss"); axes[0].set_title("training loss")
    for m in ("unseen", "seen", "full"):
        if f"{split}_{m}" in history:
            axes[1].plot(history["epoch"], history[f"{split}_{m}"], marker="o", label=m)
    axes[1].set_xlabel("epoch"); axes[1].set_ylabel(f"{split} mAP (%)")
    axes[1].set_title(f"{split} mAP after each epoch")
    axes[1].legend()
    fig.tight_layout()
    return fig


def show_captioned(images, captions, indices, ncols: int = 4, cell: float = 2.4, width: int = 34) -> Figure:
    """Images with their captions underneath (the CLIP pretraining pairs), wrapped at `width` characters."""


    indices = list(indices)
    if not indices:
        raise ValueError("show_captioned needs at least one image index")
    nrows = math.ceil(len(indices) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, 1.45 * cell * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        ax.imshow(_load(images, i), interpolation="nearest")
        text = captions[i].removeprefix("a photo of ")
        ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=7, y=-0.02, va="top")
    fig.tight_layout()
    return fig


# ---- notebook 09 ---------------------------------------------------------------------------------------------
def plot_knob_sweep(sweep):
    """One panel per inference-time knob: mAP against the knob's value, one line per metric.

    sweep: the long frame knob, value, metric, map (`hoilib.lab.knob_sweep`)."""

    knobs = list(dict.fromkeys(sweep["knob"]))
    if not knobs:
        raise ValueError("plot_knob_sweep: the sweep has no rows")
    fig, axes = plt.subplots(1, len(knobs), figsize=(3.3 * len(knobs), 3.0), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        for metric, g in sweep[sweep["knob"] == knob].groupby("metric", sort=False):
            ax.plot(g["value"], g["map"], marker="o", label=metric)
        ax.set_xlabel(knob)
        ax.set_ylabel("mAP (%)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
