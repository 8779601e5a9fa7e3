"""Figures of the data: annotated image grids and long-tailed class frequencies.

Every function returns a matplotlib `Figure` built with the object-oriented API (no pyplot state), so it works
under the Agg backend in notebooks, tests and scripts alike; saving is the caller's business
(`hoilib.results.save_figure`).
"""
from __future__ import annotations

import math

import numpy as np
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
