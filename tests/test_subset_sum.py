"""Tests of the batched fixed-size subset-sum solver against the brute-force oracle."""

from __future__ import annotations

import math

import pytest
import torch

from sslth.subset_sum import solve

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: on a shared 2-core machine, two OpenMP threads wait on each other (tens
    of times slower when other processes compete); one thread keeps this file fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _instances(
    seed: int,
    batch: int,
    m: int,
    family: str = "uniform",
    p_valid: float = 0.7,
    k_max: int | None = None,
    device: str = "cpu",
):
    """Random rows with random validity, per-row k in 1..min(n_valid, k_max) and per-row tol."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1
    if family == "product":
        u = u * (torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1)
    valid = torch.rand(batch, m, generator=g) < p_valid
    valid[:, 0] = True
    n_valid = valid.sum(dim=1)
    cap = n_valid if k_max is None else n_valid.clamp(max=k_max)
    k = (torch.rand(batch, generator=g) * cap).long() + 1
    scale = 0.4 if family == "uniform" else 0.2
    targets = torch.randn(batch, generator=g, dtype=torch.float64) * scale * k.sqrt()
    tol = 10 ** (-1 - 3 * torch.rand(batch, generator=g, dtype=torch.float64))
    return [t.to(device) for t in (u, targets, k, tol, valid)]


def _check_mask(res, values, targets, k, valid):
    assert res.mask.dtype == torch.bool and res.mask.shape == values.shape
    assert bool((res.mask.sum(dim=1) == k).all()), "exactly k picks per row"
    assert not bool((res.mask & ~valid).any()), "an invalid candidate was picked"
    err = (torch.where(res.mask, values.double(), 0.0).sum(dim=1) - targets.double()).abs()
    torch.testing.assert_close(res.error, err, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ["uniform", "product"])
@pytest.mark.parametrize("m", [6, 11, 16])
def test_exact_agrees_with_brute(family: str, m: int) -> None:
    values, targets, k, tol, valid = _instances(10 * m + len(family), 1500, m, family)
    if m == 16:  # keep brute force cheap: C(16, 8) per row is the largest table
        k = k.clamp(max=6)
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    exact = solve(values, targets, k, tol, valid=valid, method="exact")
    _check_mask(exact, values, targets, k, valid)
    assert torch.equal(exact.solved, brute.solved)
    assert torch.equal(exact.infeasible, brute.infeasible)
    assert torch.equal(exact.infeasible, ~exact.solved)  # complete: every row decided
    assert not bool(exact.budget_exhausted.any())
    # where nothing is within tol, the exact search returns the best subset, as brute does
    bad = ~brute.solved
    torch.testing.assert_close(exact.error[bad], brute.error[bad], rtol=0, atol=1e-12)
    assert 0.02 < float(brute.solved.double().mean()) < 0.98  # both outcomes are exercised


@pytest.mark.parametrize("method", ["fast", "auto"])
@pytest.mark.parametrize("family", ["uniform", "product"])
def test_heuristics_are_sound(method: str, family: str) -> None:
    values, targets, k, tol, valid = _instances(7 + len(family), 1500, 16, family)
    k = k.clamp(max=6)
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    res = solve(values, targets, k, tol, valid=valid, method=method)
    _check_mask(res, values, targets, k, valid)
    assert not bool((res.infeasible & brute.solved).any()), "claimed infeasible wrongly"
    assert not bool((res.solved & ~brute.solved).any())
    if method == "auto":
        assert torch.equal(res.solved, brute.solved)
        assert torch.equal(res.infeasible, brute.infeasible)
    else:
        assert not bool(res.infeasible.any())


def test_auto_on_plentiful_larger_instances() -> None:
    """m = 40: brute force is out of reach, but fast/auto must solve what exact solves."""
    g = torch.Generator().manual_seed(3)
    b, m = 400, 40
    values = (torch.rand(b, m, generator=g) * 2 - 1) * (torch.rand(b, m, generator=g) * 2 - 1)
    valid = torch.rand(b, m, generator=g) < 0.5
    valid[:, :10] = True
    k = torch.randint(3, 6, (b,), generator=g)
    targets = torch.randn(b, generator=g) * 0.03
    exact = solve(values, targets, k, 1e-3, valid=valid, method="exact")
    auto = solve(values, targets, k, 1e-3, valid=valid, method="auto")
    fast = solve(values, targets, k, 1e-3, valid=valid, method="fast")
    for res in (exact, auto, fast):
        _check_mask(res, values, targets, k, valid)
    assert torch.equal(auto.solved, exact.solved)
    assert torch.equal(auto.infeasible, exact.infeasible)
    assert float(fast.solved.double().mean()) >= 0.98 * float(exact.solved.double().mean())


def test_wide_instances_use_heuristic_without_false_claims() -> None:
    g = torch.Generator().manual_seed(4)
    b, m = 64, 512
    values = torch.rand(b, m, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.randn(b, generator=g, dtype=torch.float64) * 0.3
    res = solve(values, targets, 8, 1e-6, method="auto")
    _check_mask(res, values, targets, torch.full((b,), 8), torch.ones(b, m, dtype=torch.bool))
    assert bool(res.solved.all())
    assert not bool(res.infeasible.any())
    # exact alone cannot afford C(256, 4)-sized tables: reported, never called infeasible
    ex = solve(values[:4], targets[:4], 8, 1e-6, method="exact")
    assert bool(ex.budget_exhausted.all()) and not bool(ex.infeasible.any())


def test_large_k_stays_affordable() -> None:
    """k = 30 of 80: no search can enumerate this; the heuristic shrinks its subset instead."""
    g = torch.Generator().manual_seed(6)
    values = torch.rand(8, 80, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.randn(8, generator=g, dtype=torch.float64)
    for method in ("fast", "auto", "exact"):
        res = solve(values, targets, 30, 1e-3, method=method)
        _check_mask(res, values, targets, torch.full((8,), 30), torch.ones(8, 80, dtype=torch.bool))
        assert not bool(res.infeasible.any())
        if method != "fast":
            assert bool((res.solved | res.budget_exhausted).all())


@pytest.mark.parametrize("method", ["exact", "fast", "auto"])
def test_edge_cases(method: str) -> None:
    g = torch.Generator().manual_seed(5)
    m = 12
    values = torch.rand(6, m, generator=g, dtype=torch.float64) * 2 - 1
    valid = torch.ones(6, m, dtype=torch.bool)
    valid[2, 5:] = False  # exactly k = 5 valid in row 2
    k = torch.tensor([1, m // 2, 5, 3, 1, m // 2])
    targets = torch.tensor([values[0, 3], values[1, :6].sum(), values[2, :5].sum(), 0.1, 5.0, 0.0])
    tol = torch.tensor([1e-9, 1e-9, 1e-9, 0.5, 1e-3, 1e-7], dtype=torch.float64)
    res = solve(values, targets, k, tol, valid=valid, method=method)
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    _check_mask(res, values, targets, k, valid)
    assert bool(res.solved[[0, 1, 2, 3]].all())
    assert bool(res.mask[2, :5].all())
    assert not bool(res.solved[4])  # far out of reach
    assert torch.equal(res.solved, brute.solved)
    if method != "fast":
        assert torch.equal(res.infeasible, brute.infeasible)
        assert bool(res.infeasible[4])


def test_ties_and_float32() -> None:
    values = torch.tensor([[0.5, 0.5, 0.5, 0.5, -0.25, -0.25]] * 4, dtype=torch.float32)
    targets = torch.tensor([1.5, 0.75, 0.0, 0.75])
    for method in ("exact", "fast", "auto"):
        res = solve(values, targets, 3, 1e-6, method=method)
        _check_mask(res, values, targets, torch.full((4,), 3), torch.ones(4, 6, dtype=torch.bool))
        assert res.solved.tolist() == [True, True, True, True]


def test_empty_batch() -> None:
    for method in ("exact", "fast", "auto"):
        res = solve(torch.zeros(0, 8), torch.zeros(0), 3, 1e-4, method=method)
        assert res.mask.shape == (0, 8) and res.error.shape == (0,)


def test_expanded_views() -> None:
    values = torch.linspace(-1, 1, 20, dtype=torch.float64).expand(50, 20)
    valid = (torch.arange(20) % 2 == 0).expand(50, 20)
    targets = torch.linspace(-0.5, 0.5, 50, dtype=torch.float64)
    res = solve(values, targets, 4, 1e-2, valid=valid, method="auto")
    _check_mask(res, values, targets, torch.full((50,), 4), valid)
    ref = solve(values.contiguous(), targets, 4, 1e-2, valid=valid.contiguous(), method="brute")
    assert torch.equal(res.solved, ref.solved)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=5), "impossible k"),
        (dict(k=0), "k must be >= 1"),
        (dict(tol=0.0), "tol must be > 0"),
        (dict(tol=-1e-3), "tol must be > 0"),
        (dict(nan=True), "NaN or Inf"),
        (dict(inf=True), "NaN or Inf"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    values = torch.rand(3, 8, dtype=torch.float64)
    valid = torch.ones(3, 8, dtype=torch.bool)
    valid[1, 4:] = False  # 4 valid
    if kwargs.get("nan"):
        values[2, 3] = math.nan
    if kwargs.get("inf"):
        values[0, 0] = math.inf
    with pytest.raises(ValueError, match=match):
        solve(values, torch.zeros(3), kwargs.get("k", 2), kwargs.get("tol", 1e-3), valid=valid)


def test_same_seed_same_masks() -> None:
    g = torch.Generator().manual_seed(9)
    values = (torch.rand(800, 48, generator=g) * 2 - 1).double()
    targets = torch.randn(800, generator=g, dtype=torch.float64) * 0.1
    for method in ("fast", "auto"):
        a, b = (
            solve(values, targets, 4, 1e-4, method=method, generator=torch.manual_seed(1))
            for _ in range(2)
        )
        assert torch.equal(a.mask, b.mask)
        c = solve(values, targets, 4, 1e-4, method=method)
        d = solve(values, targets, 4, 1e-4, method=method)
        assert torch.equal(c.mask, d.mask)  # generator=None uses a fixed default seed


def test_memory_budget_chunking_same_answer() -> None:
    values, targets, k, tol, valid = _instances(11, 600, 14, "product")
    a = solve(values, targets, k, tol, valid=valid, method="exact")
    b = solve(values, targets, k, tol, valid=valid, method="exact", memory_budget=50_000)
    assert torch.equal(a.solved, b.solved) and torch.equal(a.infeasible, b.infeasible)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("method", ["exact", "auto", "fast"])
def test_cuda_matches_cpu(method: str) -> None:
    values, targets, k, tol, valid = _instances(21, 2000, 16, "product", k_max=6)
    cpu = solve(values, targets, k, tol, valid=valid, method=method)
    gpu = solve(
        values.cuda(),
        targets.cuda(),
        k.cuda(),
        tol.cuda(),
        valid=valid.cuda(),
        method=method,
        generator=None,
    )
    _check_mask(gpu, values.cuda(), targets.cuda(), k.cuda(), valid.cuda())
    assert gpu.mask.device.type == "cuda"
    if method == "fast":  # random draws may differ by device; soundness is what must hold
        assert not bool(gpu.infeasible.any())
    else:  # complete methods decide every row the same way on both devices
        assert torch.equal(gpu.solved.cpu(), cpu.solved)
        assert torch.equal(gpu.infeasible.cpu(), cpu.infeasible)


@cuda
@pytest.mark.cuda
def test_cuda_pensia_batch() -> None:
    g = torch.Generator().manual_seed(2)
    b, m = 20000, 32
    values = (torch.rand(b, m, generator=g) * 2 - 1) * (torch.rand(b, m, generator=g) * 2 - 1)
    targets = torch.randn(b, generator=g) * 0.03
    cpu = solve(values, targets, 5, 1e-4)
    gpu = solve(values.cuda(), targets.cuda(), 5, 1e-4)
    assert torch.equal(gpu.solved.cpu() | gpu.infeasible.cpu(), cpu.solved | cpu.infeasible)
