"""LAIN's interaction loss (lain-reference.md §9; official `compute_interaction_loss`, utils/ops.py).

The focal loss is applied to the logit of the *fused* score sigmoid(logit) * prior, on the (pair, class) entries
whose detector prior is > 0 only, and normalised by the number of positive labels among those entries:

    x    = log(prior / (1 + exp(-logit) - prior) + 1e-8)          # = logit of sigmoid(logit) * prior
    loss = sum |1 - y - alpha| * (|y - sigmoid(x)| + 1e-6)^gamma * BCE(x, y)  /  #positives

with alpha = 0.5 and gamma = 0.2 in the official scripts (the paper names a "FocalBCE" without values).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def binary_focal_loss_with_logits(x: Tensor, y: Tensor, alpha: float = 0.5, gamma: float = 0.2,
                                  reduction: str = "sum", eps: float = 1e-6) -> Tensor:
    """|1 - y - alpha| * (|y - sigmoid(x)| + eps)^gamma * BCE(x, y), elementwise, then reduced.

    Args:
        x: logits (any shape); y: targets in [0, 1] (same shape).
        reduction: "none" | "sum" | "mean".
    """
    if x.shape != y.shape:
        raise ValueError(f"logits {tuple(x.shape)} and targets {tuple(y.shape)} differ in shape")
    loss = ((1 - y - alpha).abs() * ((y - torch.sigmoid(x)).abs() + eps) ** gamma
            * F.binary_cross_entropy_with_logits(x, y, reduction="none"))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def fused_logit(logits: Tensor, prior: Tensor) -> Tensor:
    """Logit of sigmoid(logits) * prior, written as in the official code (with its +1e-8 inside the log).

    The denominator 1 + exp(-logit) - prior is >= exp(-logit) > 0 for prior <= 1; it is clamped away from zero only
    so that a prior of exactly 1 with a huge logit cannot divide by zero.
    """
    return torch.log(prior / (1 + torch.exp(-logits) - prior).clamp_min(1e-30) + 1e-8)


def interaction_loss(logits: Tensor, prior: Tensor, labels: Tensor, alpha: float = 0.5,
                     gamma: float = 0.2, num_pos: float | None = None) -> tuple[Tensor, int]:
    """Official LAIN loss over all pairs of a batch.

    Args:
        logits, prior, labels: [P, T] (T = verbs or HOI classes); entries with prior == 0 are ignored.
        num_pos: normaliser; None = the number of positive labels among the kept entries (at least 1, where the
            official code would divide by zero).
    Returns:
        (loss, number of positive labels among the kept entries of this call).
    """
    if not (logits.shape == prior.shape == labels.shape):
        raise ValueError(f"logits {tuple(logits.shape)}, prior {tuple(prior.shape)} and labels "
                         f"{tuple(labels.shape)} must have one shape")
    x, y = torch.nonzero(prior).unbind(1)
    fx = fused_logit(logits[x, y], prior[x, y])
    lab = labels[x, y].to(fx.dtype)
    n_pos = int((lab > 0).sum())
    loss = binary_focal_loss_with_logits(fx, lab, alpha=alpha, gamma=gamma, reduction="sum")
    denom = max(float(num_pos if num_pos is not None else n_pos), 1.0)
    return loss / denom, n_pos
