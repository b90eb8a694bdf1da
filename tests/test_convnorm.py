"""Tests for sslth.convnorm: certified upper bounds on the ℓ2 norm of 2-D convolutions.

The reference for small cases is the dense matrix of the operator, built by applying
``conv2d`` to the identity basis; for larger ones it is power iteration, which is a lower
estimate.  An upper bound below either is the one failure that matters.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

import sslth.convnorm as cn
from sslth.convnorm import (
    MARGIN_FLOOR,
    conv_norm_bound,
    conv_norm_power,
    conv_norm_torus,
    conv_norm_triangle,
    conv_output_shape,
    torus_size,
)

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Thousands of tiny ops: with two OpenMP threads on a busy two-core machine each can spin
    # for milliseconds.  The results do not depend on the thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dense_matrix(kernel, in_hw, stride=1, padding=0, dilation=1) -> torch.Tensor:
    """The matrix of the conv operator (flattened input -> flattened output)."""
    c_in = kernel.shape[1]
    n = c_in * in_hw[0] * in_hw[1]
    basis = torch.eye(n, dtype=F64).reshape(n, c_in, *in_hw)
    return F.conv2d(basis, kernel, None, stride, padding, dilation).reshape(n, -1).T


def exact_norm(kernel, in_hw, stride=1, padding=0, dilation=1) -> float:
    matrix = dense_matrix(kernel, in_hw, stride, padding, dilation)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def random_case(rng: random.Random, max_c: int, max_hw: int):
    """A random valid conv, deliberately including inputs smaller than the dilated kernel."""
    while True:
        k = (rng.randint(1, 5), rng.randint(1, 5))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        p = (rng.randint(0, 3), rng.randint(0, 3))
        d = (rng.randint(1, 3), rng.randint(1, 3))
        hw = (rng.randint(1, max_hw), rng.randint(1, max_hw))
        try:
            conv_output_shape(hw, k, s, p, d)
        except ValueError:
            continue
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        kernel = torch.randn(rng.randint(1, max_c), rng.randint(1, max_c), *k, generator=gen)
        return kernel.to(F64), hw, s, p, d


def design_torus(kernel, hw, p, d) -> tuple[int, int]:
    """The naive (larger) safe torus N >= H + 2p + d(k - 1)."""
    kh, kw = kernel.shape[2:]
    return hw[0] + 2 * p[0] + d[0] * (kh - 1), hw[1] + 2 * p[1] + d[1] * (kw - 1)


def fft_torus_reference(kernel, hw, s, p, d, torus_hw) -> float:
    """max_ω σ_max(K̂(ω)) with K̂ from torch.fft.fft2 of the zero-embedded dilated kernel.

    Taps that never read an image pixel are zeroed first, as the module does (a tap is used iff
    the single-tap conv of an all-ones image is nonzero somewhere); no rounding margin.
    """
    c_out, c_in, kh, kw = kernel.shape
    nh, nw = torus_hw
    embedded = torch.zeros(c_out, c_in, nh, nw, dtype=F64)
    image = torch.ones(1, 1, *hw, dtype=F64)
    for a in range(kh):
        for b in range(kw):
            delta = torch.zeros(1, 1, kh, kw, dtype=F64)
            delta[0, 0, a, b] = 1.0
            if F.conv2d(image, delta, None, s, p, d).max() > 0:
                embedded[:, :, (d[0] * a) % nh, (d[1] * b) % nw] += kernel[:, :, a, b]
    khat = torch.fft.fft2(embedded).permute(2, 3, 0, 1)
    return float(torch.linalg.svdvals(khat).max())


# ---------------------------------------------------------------------------------------------
# Shapes and torus size


def test_conv_output_shape_matches_conv2d():
    rng = random.Random(0)
    checked = 0
    while checked < 200:
        k = (rng.randint(1, 5), rng.randint(1, 5))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        p = (rng.randint(0, 3), rng.randint(0, 3))
        d = (rng.randint(1, 3), rng.randint(1, 3))
        hw = (rng.randint(1, 9), rng.randint(1, 9))
        x = torch.zeros(1, 1, *hw)
        w = torch.zeros(1, 1, *k)
        try:
            expected = tuple(F.conv2d(x, w, None, s, p, d).shape[2:])
        except RuntimeError:
            with pytest.raises(ValueError, match="empty"):
                conv_output_shape(hw, k, s, p, d)
            continue
        if 0 in expected:
            with pytest.raises(ValueError, match="empty"):
                conv_output_shape(hw, k, s, p, d)
            continue
        assert conv_output_shape(hw, k, s, p, d) == expected
        checked += 1


def test_torus_size_zero_padding_is_the_image():
    assert torus_size((28, 28), (5, 5)) == (28, 28)
    assert torus_size((7, 12), (3, 2), stride=(2, 3), dilation=(2, 1)) == (7, 12)


def test_torus_size_is_minimal_and_below_design():
    rng = random.Random(1)
    for _ in range(100):
        kernel, hw, s, p, d = random_case(rng, max_c=2, max_hw=9)
        n = torus_size(hw, kernel.shape[2:], s, p, d)
        big = design_torus(kernel, hw, p, d)
        assert hw[0] <= n[0] <= big[0] and hw[1] <= n[1] <= big[1]
        if conv_norm_bound(kernel, hw, s, p, d) == 0.0:
            continue
        # One less along either axis breaks the compression argument (or cannot hold the image).
        for smaller in ((n[0] - 1, n[1]), (n[0], n[1] - 1)):
            if min(smaller) >= 1:
                with pytest.raises(ValueError, match="not safe"):
                    conv_norm_torus(kernel, hw, s, p, d, torus_hw=smaller)


def test_unsafe_torus_would_underestimate():
    # K = [1, −1] (kh = 2) on a 1×1 input with padding 1 along the height: T x = (−x, x), so
    # ‖T‖ = √2.  On the 1-torus both taps land on the one pixel and K̂ ≡ 0 — a "bound" of 0.
    kernel = torch.tensor([1.0, -1.0], dtype=F64).reshape(1, 1, 2, 1)
    args = ((1, 1), 1, (1, 0), 1)
    assert exact_norm(kernel, *args) == pytest.approx(math.sqrt(2.0), rel=1e-14)
    assert torus_size((1, 1), (2, 1), 1, (1, 0), 1) == (2, 1)
    _, prob = cn._setup(kernel, *args)
    assert cn._torus(prob, (1, 1)) < 1e-12  # what skipping the safety check would return
    with pytest.raises(ValueError, match="not safe"):
        conv_norm_torus(kernel, *args, torus_hw=(1, 1))
    assert conv_norm_torus(kernel, *args) == pytest.approx(2.0, rel=2 * MARGIN_FLOOR)


# ---------------------------------------------------------------------------------------------
# Validity: never below the true norm


@pytest.mark.slow
def test_bounds_dominate_the_exact_norm_on_tiny_cases():
    rng = random.Random(2)
    ratios = []
    for _ in range(300):
        kernel, hw, s, p, d = random_case(rng, max_c=4, max_hw=7)
        exact = exact_norm(kernel, hw, s, p, d)
        torus = conv_norm_torus(kernel, hw, s, p, d)
        tri = conv_norm_triangle(kernel, hw, s, p, d)
        bound = conv_norm_bound(kernel, hw, s, p, d)
        wide = conv_norm_torus(kernel, hw, s, p, d, torus_hw=design_torus(kernel, hw, p, d))
        # No slack: the 1e-10 margin dwarfs the SVD error of the reference.
        for value in (torus, tri, bound, wide):
            assert value >= exact
        assert bound <= min(torus, tri)
        if exact == 0.0:
            assert bound == 0.0
        else:
            ratios.append(bound / exact)
    ratios.sort()
    print(
        f"\nbound/exact over {len(ratios)} tiny cases: min {ratios[0]:.6f} "
        f"median {ratios[len(ratios) // 2]:.4f} max {ratios[-1]:.4f}"
    )
    assert ratios[0] < 1.0 + 1e-9  # some cases are exact (e.g. one used tap)


def test_bounds_dominate_power_iteration():
    rng = random.Random(3)
    for _ in range(60):
        kernel, hw, s, p, d = random_case(rng, max_c=6, max_hw=12)
        power = conv_norm_power(kernel, hw, s, p, d, iterations=60)
        for value in (
            conv_norm_torus(kernel, hw, s, p, d),
            conv_norm_triangle(kernel, hw, s, p, d),
            conv_norm_bound(kernel, hw, s, p, d),
        ):
            assert value >= power * (1.0 - 1e-9)


def test_torus_never_exceeds_triangle():
    # |e^{−iθ}| = 1, so ‖K̂(ω)‖ <= Σ_t ‖K_t‖ at every ω; both bounds sum over the same used taps.
    # Only the rounding margins can differ, and they are both 1e-10 at these sizes.
    rng = random.Random(4)
    for _ in range(120):
        kernel, hw, s, p, d = random_case(rng, max_c=6, max_hw=12)
        assert conv_norm_torus(kernel, hw, s, p, d) <= conv_norm_triangle(kernel, hw, s, p, d) * (
            1.0 + 1e-9
        )


def test_torus_value_matches_fft2_reference():
    # The torus bound is max σ(K̂) on the smallest safe torus, up to the 1e-10 margin, whichever
    # internal route computes it (direct DFT, autocorrelation Grams, Lanczos + Cholesky).
    rng = random.Random(5)
    cases = [random_case(rng, max_c=5, max_hw=8) for _ in range(40)]
    gen = torch.Generator().manual_seed(5)
    cases.append((torch.randn(64, 32, 3, 3, generator=gen, dtype=F64), (16, 16), 1, 1, 1))
    cases.append((torch.randn(60, 70, 3, 2, generator=gen, dtype=F64), (5, 6), 2, 1, 1))
    for kernel, hw, s, p, d in cases:
        s, p, d = cn._pair("s", s, 1), cn._pair("p", p, 0), cn._pair("d", d, 1)
        n = torus_size(hw, kernel.shape[2:], s, p, d)
        reference = fft_torus_reference(kernel, hw, s, p, d, n)
        torus = conv_norm_torus(kernel, hw, s, p, d)
        assert reference <= torus <= reference * (1.0 + 3 * MARGIN_FLOOR) + 1e-300


# ---------------------------------------------------------------------------------------------
# Exact cases


def test_dense_layer_is_the_spectral_norm():
    gen = torch.Generator().manual_seed(6)
    for m, n in [(1, 1), (1, 7), (5, 3), (3, 5), (40, 40), (64, 100), (100, 64)]:
        w = torch.randn(m, n, generator=gen, dtype=F64)
        exact = float(torch.linalg.matrix_norm(w, ord=2))
        kernel = w.reshape(m, n, 1, 1)
        for value in (
            conv_norm_bound(kernel, (1, 1)),
            conv_norm_torus(kernel, (1, 1)),
            conv_norm_triangle(kernel, (1, 1)),
        ):
            assert exact <= value <= exact * (1.0 + 1.5 * MARGIN_FLOOR)


def test_one_by_one_kernel_on_an_image_is_the_spectral_norm():
    # A 1×1 conv applies W at every selected pixel: T = W ⊗ S with S a nonzero selection.
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(7), dtype=F64)
    exact = float(torch.linalg.matrix_norm(w, ord=2))
    for s, p in [(1, 0), (2, 0), (3, 2)]:
        value = conv_norm_bound(w.reshape(4, 6, 1, 1), (5, 7), s, p)
        assert exact <= value <= exact * (1.0 + 1.5 * MARGIN_FLOOR)


def test_scalar_kernel():
    kernel = torch.full((1, 1, 1, 1), -2.5, dtype=F64)
    for hw, s, p in [((1, 1), 1, 0), ((4, 3), 2, 1), ((2, 2), 3, 3)]:
        assert conv_norm_bound(kernel, hw, s, p) == pytest.approx(2.5, rel=1.5 * MARGIN_FLOOR)
        assert conv_norm_bound(kernel, hw, s, p) >= 2.5
    # Padding so wide that some outputs read only zeros, and stride skipping every pixel.
    assert conv_norm_bound(kernel, (1, 1), 2, (1, 1)) == 0.0
    assert conv_norm_torus(kernel, (1, 1), 2, (1, 1)) == 0.0
    assert conv_norm_triangle(kernel, (1, 1), 2, (1, 1)) == 0.0


def test_identity_kernel():
    # A centred delta per channel with "same" padding is the identity on every input size.
    kernel = torch.zeros(3, 3, 3, 5, dtype=F64)
    for c in range(3):
        kernel[c, c, 1, 2] = 1.0
    for hw in [(1, 1), (2, 9), (6, 6)]:
        assert exact_norm(kernel, hw, 1, (1, 2)) == pytest.approx(1.0, rel=1e-14)
        assert conv_norm_bound(kernel, hw, 1, (1, 2)) == pytest.approx(1.0, rel=1.5 * MARGIN_FLOOR)


def test_all_ones_kernels_by_hand():
    # 2×2 ones on a 2×2 image: one output, the sum of four pixels, so ‖T‖ = 2.  The torus is
    # the image itself and K̂(0) = 4: the bound is loose by the worst-case √(kh·kw) = 2.
    ones = torch.ones(1, 1, 2, 2, dtype=F64)
    assert exact_norm(ones, (2, 2)) == pytest.approx(2.0, rel=1e-14)
    assert conv_norm_bound(ones, (2, 2)) == pytest.approx(4.0, rel=1.5 * MARGIN_FLOOR)
    # 3×3 ones, "same" padding, 3×3 image: T = B ⊗ B with B tridiagonal ones of size 3, so
    # ‖T‖ = (1 + √2)².  Torus 4×4: the symbol (1 + 2cos(πω/2))² peaks at 9.
    ones = torch.ones(1, 1, 3, 3, dtype=F64)
    assert exact_norm(ones, (3, 3), 1, 1) == pytest.approx((1 + math.sqrt(2)) ** 2, rel=1e-14)
    assert torus_size((3, 3), (3, 3), 1, 1) == (4, 4)
    assert conv_norm_bound(ones, (3, 3), 1, 1) == pytest.approx(9.0, rel=1.5 * MARGIN_FLOOR)
    # On a large image the same kernel's norm approaches the symbol's peak, 9.
    assert conv_norm_power(ones, (40, 40), 1, 1, iterations=200) > 8.9


def test_power_iteration_matches_the_dense_norm():
    rng = random.Random(8)
    for _ in range(40):
        kernel, hw, s, p, d = random_case(rng, max_c=3, max_hw=6)
        exact = exact_norm(kernel, hw, s, p, d)
        power = conv_norm_power(kernel, hw, s, p, d, iterations=400)
        assert power <= exact * (1.0 + 1e-12)
        assert power >= 0.99 * exact


def test_power_iteration_adjoint_matches_autograd():
    # conv_norm_power uses conv_transpose2d with an output_padding; check that it is Tᵀ.
    rng = random.Random(9)
    for _ in range(20):
        kernel, hw, s, p, d = random_case(rng, max_c=3, max_hw=9)
        out_hw = conv_output_shape(hw, kernel.shape[2:], s, p, d)
        x = torch.randn(1, kernel.shape[1], *hw, dtype=F64, requires_grad=True)
        y = torch.randn(1, kernel.shape[0], *out_hw, dtype=F64)
        (grad,) = torch.autograd.grad(F.conv2d(x, kernel, None, s, p, d), x, y)
        s2, p2, d2 = cn._pair("s", s, 1), cn._pair("p", p, 0), cn._pair("d", d, 1)
        extra = tuple(
            hw[a] - ((out_hw[a] - 1) * s2[a] - 2 * p2[a] + d2[a] * (kernel.shape[2 + a] - 1) + 1)
            for a in range(2)
        )
        adjoint = F.conv_transpose2d(y, kernel, None, s2, p2, extra, 1, d2)
        torch.testing.assert_close(adjoint, grad, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Tightness and realistic sizes


def test_torus_is_tight_for_circular_friendly_convs():
    # Padding 0, stride 1, 3×3 kernel, 32×32 input: the torus is the image and only a 2-pixel
    # border separates the valid conv from the circular one.  Measured ratios are <= 1.007.
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        kernel = torch.randn(1 + seed, 3 - seed, 3, 3, generator=gen, dtype=F64)
        torus = conv_norm_torus(kernel, (32, 32))
        power = conv_norm_power(kernel, (32, 32), iterations=300)
        assert power <= torus <= 1.02 * power


def test_example_layers_dominate_power_iteration():
    gen = torch.Generator().manual_seed(10)
    for shape, hw, p in [((16, 6, 5, 5), (28, 28), 0), ((64, 32, 3, 3), (32, 32), 1)]:
        kernel = torch.randn(*shape, generator=gen, dtype=F64) / math.sqrt(math.prod(shape[1:]))
        bound = conv_norm_bound(kernel, hw, 1, p)
        power = conv_norm_power(kernel, hw, 1, p, iterations=100)
        assert power <= bound <= 1.1 * power


def test_extreme_magnitudes_scale_exactly():
    # Powers of two scale every float operation exactly, so the bound must too; without the
    # internal rescaling 2^600 would overflow the Gram matrices and 2^-600 would underflow.
    kernel, hw, s, p, d = random_case(random.Random(11), max_c=4, max_hw=8)
    base = conv_norm_bound(kernel, hw, s, p, d)
    assert base > 0
    for e in (600, -600):
        scaled = conv_norm_bound(torch.ldexp(kernel, torch.tensor(e)), hw, s, p, d)
        assert scaled == pytest.approx(math.ldexp(base, e), rel=1e-12)


def test_float32_and_sparse_kernels():
    gen = torch.Generator().manual_seed(12)
    kernel = torch.randn(3, 4, 3, 3, generator=gen)
    kernel[:, :, 0, :] = 0.0  # an all-zero tap row: dropped, bound unchanged
    exact = exact_norm(kernel.to(F64), (5, 5), 1, 1)
    assert conv_norm_bound(kernel, (5, 5), 1, 1) >= exact
    assert conv_norm_bound(torch.zeros(2, 2, 3, 3), (4, 4)) == 0.0


# ---------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": [[[[1.0]]]]}, TypeError, "torch.Tensor"),
        ({"kernel": torch.ones(2, 2, 2)}, ValueError, "4-D"),
        ({"kernel": torch.ones(1, 1, 2, 2, dtype=torch.int64)}, TypeError, "floating"),
        ({"kernel": torch.ones(1, 1, 2, 2, dtype=torch.complex128)}, TypeError, "floating"),
        ({"kernel": torch.ones(0, 1, 2, 2)}, ValueError, "empty dimension"),
        ({"kernel": torch.tensor([[[[float("nan")]]]])}, ValueError, "NaN"),
        ({"kernel": torch.tensor([[[[float("inf")]]]])}, ValueError, "infinite"),
        ({"in_hw": (0, 4)}, ValueError, "in_hw"),
        ({"in_hw": (4, 4, 4)}, ValueError, "in_hw"),
        ({"in_hw": 4.0}, TypeError, "in_hw"),
        ({"stride": 0}, ValueError, "stride"),
        ({"stride": (1, True)}, TypeError, "stride"),
        ({"stride": (1.5, 1)}, TypeError, "stride"),
        ({"padding": -1}, ValueError, "padding"),
        ({"dilation": (1, 0)}, ValueError, "dilation"),
        ({"in_hw": (2, 2), "padding": 0}, ValueError, "empty"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    args = {"kernel": torch.ones(1, 1, 3, 3, dtype=F64), "in_hw": (4, 4), **kwargs}
    for fn in (conv_norm_bound, conv_norm_torus, conv_norm_triangle, conv_norm_power):
        with pytest.raises(error, match=match):
            fn(**args)


def test_bad_torus_and_iterations():
    kernel = torch.ones(1, 1, 3, 3, dtype=F64)
    with pytest.raises(ValueError, match="not safe"):
        conv_norm_torus(kernel, (4, 4), padding=1, torus_hw=(4, 5))
    with pytest.raises(ValueError, match="torus_hw"):
        conv_norm_torus(kernel, (4, 4), torus_hw=(0, 4))
    with pytest.raises(ValueError, match="iterations"):
        conv_norm_power(kernel, (4, 4), iterations=0)
    with pytest.raises(ValueError, match="empty"):
        conv_output_shape((1, 1), (3, 3))
