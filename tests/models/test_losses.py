"""LAIN's loss: focal BCE known answers, the fused-score logit, masking by the prior, normalisation, and the
ground-truth association that makes the labels."""
import math

import pytest
import torch

from hoilib.models.losses import binary_focal_loss_with_logits, fused_logit, interaction_loss
from hoilib.models.pairs import assign_positives


def _focal(x: float, y: float, alpha: float = 0.5, gamma: float = 0.2) -> float:
    """Plain-math reference of the official utils/ops.py formula."""
    s = 1 / (1 + math.exp(-x))
    bce = -(y * math.log(s) + (1 - y) * math.log(1 - s))
    return abs(1 - y - alpha) * (abs(y - s) + 1e-6) ** gamma * bce


@pytest.mark.parametrize("x,y,expected", [
    # Hand-checked: x=0.3, y=1: 0.5 * (1 - 0.574443 + 1e-6)^0.2 * -log(0.574443) = 0.5 * 0.842933 * 0.554355.
    (0.3, 1.0, 0.2336415158826977),
    (-1.2, 0.0, 0.09824110046337525),
    (2.0, 0.0, 1.036807348891404),
    (0.0, 1.0, 0.30170995492562747),
])
def test_focal_known_answers(x, y, expected):
    got = binary_focal_loss_with_logits(torch.tensor([x], dtype=torch.float64), torch.tensor([y], dtype=torch.float64),
                                        alpha=0.5, gamma=0.2, reduction="none")
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert _focal(x, y) == pytest.approx(expected, rel=1e-12)


def test_focal_gamma_zero_is_weighted_bce_and_reductions():
    x = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    got = binary_focal_loss_with_logits(x, y, alpha=0.25, gamma=0.0, reduction="none")
    # |1 - y - alpha| is 0.25 for positives and 0.75 for negatives.
    assert torch.allclose(got, bce * torch.tensor([0.25, 0.75, 0.25], dtype=torch.float64))
    assert binary_focal_loss_with_logits(x, y, 0.25, 0.0, "sum").item() == pytest.approx(got.sum().item())
    assert binary_focal_loss_with_logits(x, y, 0.25, 0.0, "mean").item() == pytest.approx(got.mean().item())
    with pytest.raises(ValueError, match="reduction"):
        binary_focal_loss_with_logits(x, y, reduction="max")
    with pytest.raises(ValueError, match="shape"):
        binary_focal_loss_with_logits(x, y[:2])


def test_fused_logit_is_logit_of_sigmoid_times_prior():
    logits = torch.tensor([-3.0, 0.0, 0.0, 2.5, 6.0], dtype=torch.float64)
    prior = torch.tensor([0.9, 0.25, 1.0, 0.04, 0.5], dtype=torch.float64)
    fx = fused_logit(logits, prior)
    assert torch.allclose(torch.sigmoid(fx), torch.sigmoid(logits) * prior, atol=1e-7)
    # Known value: logit 0, prior 0.25 -> log(0.25 / 1.75 + 1e-8) = log(1/7) (+ the official 1e-8).
    assert fx[1].item() == pytest.approx(math.log(0.25 / 1.75 + 1e-8), abs=1e-12)
    assert fx[1].item() == pytest.approx(-1.9459100790553159, abs=1e-12)


def test_interaction_loss_hand_computed():
    # Two pairs x three classes; class 2 of pair 0 and class 0 of pair 1 have no prior and must be ignored.
    logits = torch.tensor([[0.0, 1.0, 5.0], [9.0, -1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    prior = torch.tensor([[0.25, 0.5, 0.0], [0.0, 0.81, 0.36]], dtype=torch.float64)
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    loss, n_pos = interaction_loss(logits, prior, labels, alpha=0.5, gamma=0.2)
    kept = [(0, 0), (0, 1), (1, 1), (1, 2)]

    def fx(i, j):
        s = 1 / (1 + math.exp(-logits[i, j].item())) * prior[i, j].item()
        return math.log(s / (1 - s) + 1e-8)

    expected = sum(_focal(fx(i, j), labels[i, j].item()) for i, j in kept) / 2  # positives kept: (0,0), (1,1)
    assert n_pos == 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # Entries without a prior get no gradient at all.
    assert logits.grad[0, 2].item() == 0.0 and logits.grad[1, 0].item() == 0.0
    assert logits.grad[0, 0].item() != 0.0


def test_interaction_loss_normaliser_and_no_positive():
    logits = torch.zeros(3, 2)
    prior = torch.full((3, 2), 0.5)
    labels = torch.zeros(3, 2)
    loss, n_pos = interaction_loss(logits, prior, labels)
    assert n_pos == 0
    # No positives: divided by 1 (the official code would divide by zero).
    assert loss.item() == pytest.approx(6 * _focal(math.log(0.25 / 0.75 + 1e-8), 0.0), rel=1e-5)
    loss2, _ = interaction_loss(logits, prior, labels, num_pos=4.0)
    assert loss2.item() == pytest.approx(loss.item() / 4, rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        interaction_loss(logits, prior[:2], labels)


def test_assign_positives_hand_made():
    # Pair 0 matches GT pair 0 on both boxes; pair 1 has the right human but the object only overlaps 1/3;
    # pair 2 matches GT pairs 0 and 1 (same boxes, two verbs): multi-label.
    gt_h = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    gt_o = torch.tensor([[20.0, 20, 30, 30], [20.0, 20, 30, 30]])
    gt_cls = torch.tensor([3, 1])
    det_h = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 11]])
    det_o = torch.tensor([[20.0, 20, 30, 30], [25.0, 20, 35, 30], [20.0, 20, 30, 30]])
    labels = assign_positives(det_h, det_o, gt_h, gt_o, gt_cls, num_classes=4, fg_iou=0.5)
    expected = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [0, 1, 0, 1]], dtype=torch.float32)
    assert torch.equal(labels, expected)
    # IoU exactly 0.5 counts (>=): a 10x10 GT object against a 10x5 half of it has IoU 0.5.
    half = assign_positives(gt_h[:1], torch.tensor([[20.0, 20, 30, 25]]), gt_h[:1], gt_o[:1], gt_cls[:1], 4)
    assert half[0, 3].item() == 1.0
    assert assign_positives(det_h, det_o, gt_h[:0], gt_o[:0], gt_cls[:0], 4).sum().item() == 0
    with pytest.raises(ValueError, match="out of range"):
        assign_positives(det_h, det_o, gt_h, gt_o, torch.tensor([3, 4]), num_classes=4)
