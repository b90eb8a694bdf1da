"""The attack of tests/attack.py against hand-built networks whose worst gap over the ball is
known in closed form (no sslth involved): it must get within 1% of the maximum, including where
the maximum is inside the ball (where a sphere-only search provably falls short), at radii from
1e-6 to 1e6, and return float32 points that really are in the ball."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tests.attack import QUICK, _to_float32_in_ball, float64_copy, gap_at, replay, worst_gap
from tests.conftest import first_fast

# the grid alone: no screen, no gradient ascent, no kink probes, no local search
GRID_ONLY = {"starts": 0, "restarts": 0, "screen": 0, "jitter": 0, "alone": 0, "kinks": False}


def linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    """An nn.Linear holding exactly ``weight`` (and ``bias``) in their dtype."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer.requires_grad_(False)


def zero(dim: int, out: int) -> nn.Linear:
    """The float64 reference f = 0, so that the gap is ‖module(x)‖."""
    return linear(torch.zeros(out, dim, dtype=torch.float64))


def linear_pair(dim: int, out: int, sigma: float, seed: int) -> tuple[nn.Module, nn.Module]:
    """A float32 linear module B and a float64 reference B + M with ‖M‖₂ = ``sigma``: the exact
    sup of the gap over the ball of radius R is sigma·R (up to float32 rounding of B·x)."""
    generator = torch.Generator().manual_seed(seed)
    b = torch.randn(out, dim, generator=generator, dtype=torch.float64)
    b /= torch.linalg.matrix_norm(b, ord=2)
    module = linear(b.to(torch.float32))
    m = torch.randn(out, dim, generator=generator, dtype=torch.float64)
    m *= sigma / torch.linalg.matrix_norm(m, ord=2)
    reference = linear(module.weight.to(torch.float64) + m)
    return reference, module


def tents(dim: int, peak: float) -> nn.Sequential:
    """Float32 g(x)_i = tent(x_i) + tent(−x_i) with tent(t) = relu(t) − 2·relu(t − a) +
    relu(t − 2a), a = ``peak``: each output is at most a, reached at |x_i| = a, and is 0 for
    |x_i| ≥ 2a. So sup_{‖x‖≤R} ‖g(x)‖ = √dim·a at |x_i| = a (inside the ball when √dim·a < R),
    while when 4·dim·a² < R² every point of the sphere has a coordinate ≥ 2a, so the best there is
    √(dim − 1)·a: the worst point is in the interior."""
    rows, biases = [], []
    for i in range(dim):
        for sign in (1.0, -1.0):
            for shift in (0.0, peak, 2 * peak):
                row = torch.zeros(dim, dtype=torch.float64)
                row[i] = sign
                rows.append(row)
                biases.append(-shift)
    first = linear(torch.stack(rows).float(), torch.tensor(biases, dtype=torch.float32))
    second = torch.zeros(dim, 6 * dim)
    for i in range(dim):
        second[i, 6 * i : 6 * i + 6] = torch.tensor([1.0, -2.0, 1.0, 1.0, -2.0, 1.0])
    return nn.Sequential(first, nn.ReLU(), linear(second))


def two_tents(normals: torch.Tensor, offsets: list[float], half: float) -> nn.Sequential:
    """Float32 g(x)_j = tent_h(n_j·x − c_j): output j peaks at h where n_j·x = c_j + h, so the
    sup of ‖g‖ is √m·h at the one point where all m peaks meet (for independent normals)."""
    rows, biases = [], []
    for normal, offset in zip(normals, offsets, strict=True):
        for shift in (offset, offset + half, offset + 2 * half):
            rows.append(normal)
            biases.append(-shift)
    first = linear(torch.stack(rows).float(), torch.tensor(biases, dtype=torch.float32))
    second = torch.zeros(len(offsets), 3 * len(offsets))
    for j in range(len(offsets)):
        second[j, 3 * j : 3 * j + 3] = torch.tensor([1.0, -2.0, 1.0])
    return nn.Sequential(first, nn.ReLU(), linear(second))


@pytest.mark.parametrize("radius", [1e-6, 1.0, 1e6])
def test_linear_gap_is_the_largest_singular_value(radius):
    sigma = 0.1
    reference, module = linear_pair(6, 4, sigma, seed=3)
    attack = worst_gap(reference, module, radius, 6, **QUICK)
    known = sigma * radius
    # float32 rounding of B·x (‖B‖ = 1) adds at most a few ulps of R
    assert known * 0.99 <= attack.gap <= known + 1e-6 * radius
    assert attack.exact_gap <= known * (1 + 1e-9)


@pytest.mark.parametrize(
    ("dim", "radius", "seed"),
    first_fast(
        [(4, 2.0**-20, 0), (4, 1.0, 1), (4, 2.0**20, 2), (10, 1.0, 3), (10, 2.0**10, 4)],
        unpack=True,
    ),
)
def test_interior_peak_is_found_and_the_sphere_misses_it(dim, radius, seed):
    peak = radius / 8 if dim < 10 else radius / 16  # powers of two: the tents are exact
    module = tents(dim, peak)
    known = math.sqrt(dim) * peak
    attack = worst_gap(zero(dim, dim), module, radius, dim, seed=seed)
    assert known * 0.99 <= attack.gap <= known * (1 + 1e-6)
    assert float(torch.linalg.vector_norm(attack.point.double())) < 0.5 * radius
    sphere = worst_gap(zero(dim, dim), module, radius, dim, interior=False, seed=seed)
    assert sphere.gap <= math.sqrt(dim - 1) * peak * (1 + 1e-6) < 0.99 * known


@pytest.mark.parametrize(("dim", "peak", "seed"), [(3, 2.0**-12, 0), (6, 2.0**-16, 1)])
def test_peak_at_a_small_radius(dim, peak, seed):
    # the whole bump lies within 2·√dim·peak of 0 (R = 1)
    module = tents(dim, peak)
    known = math.sqrt(dim) * peak
    attack = worst_gap(zero(dim, dim), module, 1.0, dim, seed=seed)
    assert known * 0.99 <= attack.gap <= known * (1 + 1e-6)
    sphere = worst_gap(zero(dim, dim), module, 1.0, dim, interior=False, seed=seed)
    assert sphere.gap < 0.99 * known


def test_peak_where_two_kinks_meet():
    # dim 6, two outputs: the maximum sits on a 4-dimensional face inside the ball, off the axes
    normals = torch.tensor([[0.6, 0.8, 0, 0, 0, 0], [0, 0, 0, 0.28, 0.96, 0]], dtype=torch.float64)
    module = two_tents(normals, [0.1, -0.4], 0.0625)
    attack = worst_gap(zero(6, 2), module, 1.0, 6)
    known = math.sqrt(2) * 0.0625
    assert known * 0.99 <= attack.gap <= known * (1 + 1e-6)


def test_needle_where_three_narrow_bumps_meet():
    # dim 8: three slabs of width 0.02 in random directions; only their common point gives √3·h
    generator = torch.Generator().manual_seed(0)
    normals = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    normals /= torch.linalg.vector_norm(normals, dim=1, keepdim=True)
    module = two_tents(normals, [0.05, -0.1, 0.2], 0.01)
    attack = worst_gap(zero(8, 3), module, 1.0, 8)
    known = math.sqrt(3) * 0.01
    assert known * 0.99 <= attack.gap <= known * (1 + 1e-5)


@pytest.mark.parametrize("radius", [1e-3, 1.0, 1e3])
def test_dim1_grid_finds_a_narrow_spike(radius):
    half = radius * 2.0**-9  # the spike covers 1/512 of [−R, R]
    module = two_tents(torch.ones(1, 1, dtype=torch.float64), [0.3 * radius], half)
    attack = worst_gap(zero(1, 1), module, radius, 1, **GRID_ONLY)
    assert attack.source == "grid"
    assert half * 0.99 <= attack.gap <= half * (1 + 1e-5)
    assert abs(float(attack.point) - (0.3 * radius + half)) <= 0.01 * half


def test_dim2_polar_grid_finds_an_interior_peak():
    normals = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    half = 0.05
    module = two_tents(normals, [0.2, -0.5], half)
    attack = worst_gap(zero(2, 2), module, 1.0, 2, **GRID_ONLY)
    known = math.sqrt(2) * half
    assert attack.source == "grid"
    assert known * 0.99 <= attack.gap <= known * (1 + 1e-5)
    # both peaks meet at (0.25, −0.75), inside the disc
    expected = torch.tensor([0.25, -0.75], dtype=torch.float64)
    assert torch.allclose(attack.point.double(), expected, atol=2e-3)


def test_dim2_grid_reaches_small_radii():
    module = tents(2, 2.0**-14)
    attack = worst_gap(zero(2, 2), module, 1.0, 2, **GRID_ONLY)
    assert attack.gap >= 0.99 * math.sqrt(2) * 2.0**-14


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("radius", [1e-6, 0.1, 7.3, 1e6])
def test_points_are_float32_inside_the_ball(dim, radius):
    reference, module = linear_pair(dim, 3, 0.5, seed=dim)
    attack = worst_gap(reference, module, radius, dim, **QUICK)
    assert attack.point.dtype == torch.float32 and attack.point.shape == (dim,)
    assert float(torch.linalg.vector_norm(attack.point.double())) <= radius
    # the reported gap is the gap of the float32 module at the returned point
    assert replay(reference, module, attack.point) == (attack.gap_alone, attack.gap_batched)
    assert attack.gap == max(attack.gap_alone, attack.gap_batched)
    assert attack.gap_alone == float(gap_at(reference, module, attack.point[None]))


def test_rounding_into_the_ball():
    generator = torch.Generator().manual_seed(0)
    for radius in (1e-6, 1.0, 3.7, 1e6):
        z = torch.randn(20_000, 7, generator=generator, dtype=torch.float64)
        x = z * (radius / torch.linalg.vector_norm(z, dim=1, keepdim=True))
        outside = torch.linalg.vector_norm(x.float().double(), dim=1) > radius
        assert outside.any()  # plain rounding does push points out
        x32 = _to_float32_in_ball(x, radius)
        norms = torch.linalg.vector_norm(x32.double(), dim=1)
        assert (norms <= radius).all() and (norms >= radius * (1 - 1e-6)).all()


def test_deterministic_for_a_seed():
    module = tents(3, 0.1)
    first = worst_gap(zero(3, 3), module, 1.0, 3, seed=5, **QUICK)
    again = worst_gap(zero(3, 3), module, 1.0, 3, seed=5, **QUICK)
    assert first.gap == again.gap and torch.equal(first.point, again.point)


def test_rounding_error_is_measured_and_exceeds_random_sampling():
    # the float64 reference is the module's own weights: every bit of gap is float32 rounding
    generator = torch.Generator().manual_seed(1)
    first = linear(torch.randn(300, 5, generator=generator), torch.randn(300, generator=generator))
    second = linear(torch.randn(3, 300, generator=generator) / 30)
    module = nn.Sequential(first, nn.ReLU(), second)
    reference = float64_copy(module)
    radius = 1e4
    attack = worst_gap(reference, module, radius, 5, **QUICK)
    assert attack.gap > 0 and attack.exact_gap < 1e-9 * attack.gap
    # better than plain sampling of as many points of the ball
    z = torch.randn(attack.evaluations, 5, generator=generator, dtype=torch.float64)
    x = _to_float32_in_ball(z / torch.linalg.vector_norm(z, dim=1, keepdim=True) * radius, radius)
    assert attack.gap > float(gap_at(reference, module, x).max())


def test_pruned_module_is_copied_and_left_untouched():
    generator = torch.Generator().manual_seed(2)
    module = nn.Sequential(nn.Linear(4, 50), nn.ReLU(), nn.Linear(50, 2))
    torch_prune.random_unstructured(module[0], "weight", amount=0.5)
    torch_prune.l1_unstructured(module[2], "weight", amount=0.3)
    before = {name: value.clone() for name, value in module.state_dict().items()}
    x = torch.randn(64, 4, generator=generator)
    copy64 = float64_copy(module)
    assert torch.allclose(copy64(x.double()), module(x).double(), rtol=1e-5, atol=1e-6)
    reference = float64_copy(module)
    attack = worst_gap(reference, module, 1.0, 4, **QUICK)
    assert attack.gap < 1e-5  # the same network: only rounding
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.grad is None for p in module.parameters())
    for layer in (module[0], module[2]):
        assert layer.weight.dtype == torch.float32
        assert torch.equal(layer.weight, layer.weight_orig * layer.weight_mask)


def test_threads_are_restored():
    threads = torch.get_num_threads()
    worst_gap(zero(2, 2), tents(2, 0.1), 1.0, 2, threads=1, **QUICK)
    assert torch.get_num_threads() == threads


def test_bad_arguments():
    with pytest.raises(ValueError):
        worst_gap(zero(2, 2), tents(2, 0.1), 0.0, 2)
    with pytest.raises(ValueError):
        worst_gap(zero(2, 2), tents(2, 0.1), math.inf, 2)


def test_float64_module_is_called_in_float64():
    reference, module = linear_pair(3, 2, 0.25, seed=4)
    module = module.to(torch.float64)
    attack = worst_gap(reference, module, 1.0, 3, **QUICK)
    assert attack.point.dtype == torch.float32
    assert 0.99 * 0.25 <= attack.gap <= 0.25 * (1 + 1e-12)
