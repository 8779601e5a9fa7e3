"""GPU kernels (Triton), each beside a plain PyTorch reference that is the specification and the CPU path.

`HAS_TRITON` guards the import so that hoilib works where Triton is missing. Kernels run on CUDA tensors, or on
CPU tensors when `TRITON_INTERPRET=1` is set before Triton is imported (how the tests check them on CPU).
"""
import os

try:  # pragma: no cover - depends on the installation
    import triton  # noqa: F401
    import triton.language as tl  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover
    HAS_TRITON = False

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

from .ho_attention import PairLayout, ho_attention, ho_attention_reference, pair_layout  # noqa: E402
from .pair_iou import pair_min_iou, pair_min_iou_reference  # noqa: E402

__all__ = ["HAS_TRITON", "INTERPRET", "pair_min_iou", "pair_min_iou_reference", "ho_attention",
           "ho_attention_reference", "PairLayout", "pair_layout"]
