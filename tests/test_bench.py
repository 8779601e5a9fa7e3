"""The benchmark's accounting of the operations an exact fast path keeps."""
import torch

from hoilib import bench


def test_kept_op_times_counts_the_gemm_and_not_the_elementwise_tail():
    a, b = torch.randn(64, 64), torch.randn(64, 64)

    def three_steps():
        for _ in range(3):
            (a @ b).add(1.0).relu()

    total, kept = bench.kept_op_times(three_steps, steps=3)
    assert set(kept) == {"aten::mm"}  # add and relu are not kept operations
    assert 0.0 < kept["aten::mm"] <= total
