"""pair_min_iou: the reference against hand-computed values, the Triton kernel against the reference.

The Triton cases run under TRITON_INTERPRET=1 on the CPU (set in tests/conftest.py before Triton is imported)
and on CUDA when a GPU is present."""
import pytest
import torch

from hoilib.kernels import HAS_TRITON, INTERPRET, pair_min_iou, pair_min_iou_reference


def _random_boxes(n, gen, size=100.0):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 2
    return torch.cat([xy, xy + wh], 1)


def test_reference_hand_computed():
    h = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    o = torch.tensor([[10.0, 0.0, 20.0, 10.0]])
    gh = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    go = torch.tensor([[10.0, 0.0, 20.0, 5.0], [10.0, 0.0, 20.0, 10.0], [10.0, 0.0, 20.0, 10.0]])
    out = pair_min_iou_reference(h, o, gh, go)
    # gt 0: IoU_h = 1, IoU_o = 50/100 -> 0.5; gt 1: IoU_h = 50/150, IoU_o = 1 -> 1/3; gt 2: empty human box -> 0
    torch.testing.assert_close(out, torch.tensor([[0.5, 1 / 3, 0.0]]))


def test_reference_is_symmetric_in_roles_and_one_on_itself():
    g = torch.Generator().manual_seed(0)
    h, o = _random_boxes(7, g), _random_boxes(7, g)
    out = pair_min_iou_reference(h, o, h, o)
    torch.testing.assert_close(out.diagonal(), torch.ones(7))
    torch.testing.assert_close(out, out.T)


needs_triton = pytest.mark.skipif(not (HAS_TRITON and (INTERPRET or torch.cuda.is_available())),
                                  reason="Triton needs CUDA or TRITON_INTERPRET=1")


@needs_triton
@pytest.mark.parametrize("P, G", [(1, 1), (5, 3), (33, 31), (67, 2), (0, 4)])  # includes primes and empty
def test_triton_matches_reference(P, G):
    device = "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"
    g = torch.Generator().manual_seed(P * 100 + G)
    h, o, gh, go = (_random_boxes(n, g).to(device) for n in (P, P, G, G))
    # Both compute in float32 with the same operations; differences are rounding only.
    torch.testing.assert_close(pair_min_iou(h, o, gh, go, impl="triton"),
                               pair_min_iou_reference(h, o, gh, go), atol=1e-6, rtol=1e-5)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"boxes_h must have shape \[N, 4\]"):
        pair_min_iou(torch.zeros(3, 5), torch.zeros(3, 4), torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="impl must be"):
        pair_min_iou(torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4), impl="cuda")
