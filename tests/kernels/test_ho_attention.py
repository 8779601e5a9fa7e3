"""ho_attention: the reference against a naive per-pair loop, the Triton kernels (forward and backward) against the
reference, and the dispatcher's errors.

The Triton cases run under TRITON_INTERPRET=1 on the CPU (set in tests/conftest.py before Triton is imported), on
CUDA when a GPU is present (`gpu` marker)."""
import math

import pytest
import torch

from hoilib.kernels import HAS_TRITON, INTERPRET, ho_attention, ho_attention_reference, pair_layout

needs_triton = pytest.mark.skipif(not (HAS_TRITON and INTERPRET), reason="Triton on CPU needs TRITON_INTERPRET=1")
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available() and not INTERPRET),
                                reason="needs CUDA and Triton")


def _inputs(counts, grid, heads, dim, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    p, b = sum(counts), len(counts)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype).requires_grad_()  # noqa: E731
    return [mk(p, heads, dim) for _ in range(3)] + [mk(b, grid, heads, dim) for _ in range(2)], pair_layout(counts,
                                                                                                          device)


def _naive(q, ks, vs, k_img, v_img, layout):
    """Pair by pair: softmax over [own key; the image's patch keys]."""
    out = []
    for p in range(q.shape[0]):
        b = int(layout.batch[p])
        keys, vals = torch.cat([ks[p:p + 1], k_img[b]]), torch.cat([vs[p:p + 1], v_img[b]])  # [G + 1, H, d]
        w = (torch.einsum("hd,ghd->hg", q[p], keys) / math.sqrt(q.shape[-1])).softmax(-1)
        out.append(torch.einsum("hg,ghd->hd", w, vals))
    return torch.stack(out) if out else q.new_zeros(q.shape)


# Shapes: images with 0 pairs, primes, a single pair, more pairs than one kernel block (32) in one image.
SHAPES = [([3, 0, 5, 1], 7, 2, 16), ([1], 1, 1, 16), ([0, 0], 5, 2, 16), ([37, 2], 13, 3, 32), ([4, 4, 4], 64, 2, 32)]


@pytest.mark.parametrize("counts, grid, heads, dim", SHAPES)
def test_reference_matches_naive_loop(counts, grid, heads, dim):
    # float64: both are exact up to rounding of double precision.
    args, lay = _inputs(counts, grid, heads, dim, torch.float64)
    ref = ho_attention_reference(*args, lay)
    torch.testing.assert_close(ref, _naive(*args, lay), atol=1e-12, rtol=1e-10)
    if ref.numel():
        go = torch.randn_like(ref)
        g_ref = torch.autograd.grad(ref, args, go)
        g_naive = torch.autograd.grad(_naive(*args, lay), args, go)
        for a, b in zip(g_ref, g_naive):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


# (dtype, atol, rtol): float32 with fp32 accumulation everywhere; the kernel's online softmax sums in another order
# than the reference's two passes, which moves results by a few ulp (observed <= 6e-7 on unit-scale inputs).
TOLS = [(torch.float32, 2e-5, 1e-4)]


@needs_triton
@pytest.mark.parametrize("dtype, atol, rtol", TOLS)
@pytest.mark.parametrize("counts, grid, heads, dim", SHAPES)
def test_triton_matches_reference_interpreted(counts, grid, heads, dim, dtype, atol, rtol):
    args, lay = _inputs(counts, grid, heads, dim, dtype)
    out = ho_attention(*args, lay, impl="triton")
    ref = ho_attention_reference(*args, lay)
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)
    if not ref.numel():
        return
    go = torch.randn_like(ref)
    for a, b, name in zip(torch.autograd.grad(out, args, go), torch.autograd.grad(ref, args, go),
                          ("q", "k_self", "v_self", "k_img", "v_img")):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"d{name}: {m}")


def test_triton_reads_strided_views():
    """The model passes q/k/v as strided views of one packed projection: the kernels index by strides."""
    if not (HAS_TRITON and INTERPRET):
        pytest.skip("Triton on CPU needs TRITON_INTERPRET=1")
    counts, heads, dim, grid = [3, 2], 2, 16, 5
    g = torch.Generator().manual_seed(1)
    packed = torch.randn(sum(counts), 3, heads, dim, generator=g, requires_grad=True)
    img = torch.randn(2, 1 + grid, 3, heads, dim, generator=g, requires_grad=True)
    lay = pair_layout(counts)

    def run(impl):
        q, ks, vs = packed.unbind(1)
        return ho_attention(q, ks, vs, img[:, 1:, 1], img[:, 1:, 2], lay, impl)
    out, ref = run("triton"), run("torch")
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    go = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (packed, img), go), torch.autograd.grad(ref, (packed, img), go)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


# (dtype, atol, rtol) on the GPU: fp32 uses IEEE dot products (no TF32); fp16 inputs with fp32 accumulation
# differ from the reference's fp16 matmuls by fp16 rounding of the scores (~1e-3 relative).
GPU_TOLS = [(torch.float32, 2e-5, 1e-4), (torch.float16, 2e-3, 2e-3)]


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype, atol, rtol", GPU_TOLS)
@pytest.mark.parametrize("counts, grid, heads, dim", SHAPES + [([30, 152, 0, 7], 196, 12, 64)])
def test_triton_matches_reference_cuda(counts, grid, heads, dim, dtype, atol, rtol):
    args, lay = _inputs(counts, grid, heads, dim, dtype, device="cuda")
    out = ho_attention(*args, lay, impl="triton")
    ref = ho_attention_reference(*[a.float() for a in args], lay)
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol)
    if ref.numel():
        go = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, args, go.to(dtype)), torch.autograd.grad(ref, args, go)):
            torch.testing.assert_close(a.float(), b.float(), atol=atol * 10, rtol=rtol * 10)


def test_dispatch_errors_and_fallbacks():
    args, lay = _inputs([2, 1], 4, 2, 16)
    with pytest.raises(ValueError, match="impl must be"):
        ho_attention(*args, lay, impl="cuda")
    with pytest.raises(ValueError, match="pair layout of 1 images"):
        ho_attention(*args, pair_layout([3]), impl="torch")
    with pytest.raises(ValueError, match=r"q, k_self, v_self must be \[P, H, d\]"):
        ho_attention(args[0][:, 0], *args[1:], lay)
    odd, lay_odd = _inputs([2, 1], 4, 2, 12)  # head width 12: no kernel
    if HAS_TRITON:
        with pytest.raises(RuntimeError, match="power-of-two head width"):
            ho_attention(*odd, lay_odd, impl="triton")
    # "auto" on CPU tensors is the reference.
    torch.testing.assert_close(ho_attention(*odd, lay_odd), ho_attention_reference(*odd, lay_odd))


def test_pair_layout_blocks():
    lay = pair_layout([3, 0, 70, 1])
    assert lay.batch.tolist() == [0] * 3 + [2] * 70 + [3] and lay.slot[:4].tolist() == [0, 1, 2, 0]
    assert lay.offsets.tolist() == [0, 3, 3, 73, 74] and lay.n_slot == 70
    assert lay.blocks(32).tolist() == [[0, 0, 3], [2, 3, 35], [2, 35, 67], [2, 67, 73], [3, 73, 74]]
