"""GPU kernels (Triton), each beside a plain PyTorch reference that is the specification and the CPU path.

`HAS_TRITON` guards the import so that hoilib works where Triton is missing. Kernels run on CUDA tensors, or on
CPU tensors when `TRITON_INTERPRET=1` is set before Triton is imported (how the tests check them on CPU). The model
chooses with `model.kernel_impl` ("auto": Triton on CUDA, else PyTorch), a speed-only setting.

- `ho_attention`: the HO-token rows of LAIN's attention (P x (G + 1), forward and backward), on the fast path.
- `pair_min_iou`: min(IoU_h, IoU_o) of predicted vs ground-truth pairs, for the training targets.

No kernel for the Locality Adapter: per image and layer of ViT-B/16 it costs ~30 MFLOP (down 768->32, a 32->32
5x5 convolution, up 32->768 on the 196 patches; ~1.4 MB moved, ~21 FLOP/byte), 0.9% / 0.6% / 0.3% of the layer at
30 / 152 / 435 pairs per image, and it does not grow with the pairs (`python -m hoilib.bench` prints the estimate).
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
