"""Tests of the batched fixed-size subset-sum solver against the brute-force oracle."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sslth.subset_sum import solve
from tests.conftest import first_fast

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


def _independent_errors(mask, values, targets) -> list[float]:
    """|sum of the picked values - target| per row, recomputed apart from ``solve``: plain
    Python floats from numpy arrays, the picks read as column indices, summed by math.fsum
    (correctly rounded, so any reasonable summation in ``solve`` agrees to ~1e-15)."""
    picks = [np.flatnonzero(row) for row in mask.cpu().numpy()]
    vals = values.cpu().double().numpy()
    tgts = targets.cpu().double().numpy()
    return [
        abs(math.fsum([float(v) for v in vals[row, cols]] + [-float(tgts[row])]))
        for row, cols in enumerate(picks)
    ]


def _check_mask(res, values, targets, k, valid, tol=None):
    """The result is a valid pick (exactly k distinct valid columns per row) whose reported
    error, and with ``tol`` its solved flag, are right: all checked by an independent
    recomputation from the picks (never ``solve``'s own formula)."""
    assert res.mask.dtype == torch.bool and res.mask.shape == values.shape
    assert res.error.dtype == torch.float64 and res.error.shape == (values.shape[0],)
    batch = values.shape[0]
    k_rows = torch.as_tensor(k).expand(batch).tolist()
    valid_np = valid.cpu().numpy()
    for row, cols in enumerate(np.flatnonzero(r) for r in res.mask.cpu().numpy()):
        assert len(cols) == len(set(cols.tolist())) == k_rows[row], f"row {row}: not k picks"
        assert valid_np[row, cols].all(), f"row {row}: an invalid candidate was picked"
    expected = torch.tensor(_independent_errors(res.mask, values, targets), dtype=torch.float64)
    torch.testing.assert_close(res.error.cpu(), expected, rtol=0, atol=1e-12)
    assert not bool((res.solved & res.infeasible).any()), "solved and proved infeasible"
    if tol is not None:
        tol = torch.as_tensor(tol, dtype=torch.float64).cpu().expand(batch)
        clear = (expected - tol).abs() > 1e-12  # rows not on the boundary of the tolerance
        assert torch.equal(res.solved.cpu()[clear], (expected < tol)[clear])
    return expected


@pytest.mark.parametrize("family", ["uniform", "product"])
@pytest.mark.parametrize("m", first_fast([6, 11, 16], 2))
def test_exact_agrees_with_brute(family: str, m: int) -> None:
    values, targets, k, tol, valid = _instances(10 * m + len(family), 1500, m, family)
    if m == 16:  # keep brute force cheap: C(16, 8) per row is the largest table
        k = k.clamp(max=6)
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    exact = solve(values, targets, k, tol, valid=valid, method="exact")
    _check_mask(exact, values, targets, k, valid, tol)
    assert torch.equal(exact.solved, brute.solved)
    assert torch.equal(exact.infeasible, brute.infeasible)
    assert torch.equal(exact.infeasible, ~exact.solved)  # complete: every row decided
    assert not bool(exact.budget_exhausted.any())
    # where nothing is within tol, the exact search returns the best subset, as brute does
    bad = ~brute.solved
    torch.testing.assert_close(exact.error[bad], brute.error[bad], rtol=0, atol=1e-12)
    assert 0.02 < float(brute.solved.double().mean()) < 0.98  # both outcomes are exercised


def test_brute_oracle_matches_itertools() -> None:
    """The oracle the other tests trust, checked against a plain-Python enumeration: its best
    error per row is the minimum over itertools.combinations of the valid candidates."""
    values, targets, k, tol, valid = _instances(99, 300, 9, "product")
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    _check_mask(brute, values, targets, k, valid, tol)
    vals, tgts = values.numpy(), targets.numpy()
    for row in range(values.shape[0]):
        cols = np.flatnonzero(valid[row].numpy())
        best = min(
            abs(math.fsum([float(vals[row, c]) for c in combo] + [-float(tgts[row])]))
            for combo in itertools.combinations(cols.tolist(), int(k[row]))
        )
        assert float(brute.error[row]) == pytest.approx(best, abs=1e-12), row
        assert bool(brute.solved[row]) == (best < float(tol[row])), row
        assert bool(brute.infeasible[row]) == (best >= float(tol[row])), row


def _first_k_solved(values, targets, k, tol, valid) -> torch.Tensor:
    """Which rows a trivial 'solver' picking the first k valid candidates would solve."""
    first = valid & (valid.long().cumsum(dim=1) <= k[:, None])
    return torch.tensor(_independent_errors(first, values, targets)) < tol


@pytest.mark.parametrize("method", first_fast(["fast", "auto"]))
@pytest.mark.parametrize("family", first_fast(["uniform", "product"]))
def test_heuristics_are_sound(method: str, family: str) -> None:
    values, targets, k, tol, valid = _instances(7 + len(family), 1500, 16, family)
    k = k.clamp(max=6)
    brute = solve(values, targets, k, tol, valid=valid, method="brute")
    res = solve(values, targets, k, tol, valid=valid, method=method)
    # every pick is k valid candidates and every solved row is within tol, recomputed apart
    _check_mask(res, values, targets, k, valid, tol)
    assert not bool((res.infeasible & brute.solved).any()), "claimed infeasible wrongly"
    solvable = int(brute.solved.sum())
    assert 500 < solvable < 1000  # both outcomes are common in this family
    if method == "auto":
        assert torch.equal(res.solved, brute.solved)
        assert torch.equal(res.infeasible, brute.infeasible)
    else:
        assert not bool(res.infeasible.any())
        # it searches: it solves nearly every solvable row (measured: 98%), where any fixed
        # pick, such as the first k valid candidates, solves a few per cent
        assert int(res.solved.sum()) >= 0.9 * solvable
        assert int(_first_k_solved(values, targets, k, tol, valid).sum()) < 0.1 * solvable


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
        _check_mask(res, values, targets, k, valid, 1e-3)
    assert torch.equal(auto.solved, exact.solved)
    assert torch.equal(auto.infeasible, exact.infeasible)
    assert float(fast.solved.double().mean()) >= 0.98 * float(exact.solved.double().mean())


def test_wide_instances_use_heuristic_without_false_claims() -> None:
    g = torch.Generator().manual_seed(4)
    b, m = 64, 512
    values = torch.rand(b, m, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.randn(b, generator=g, dtype=torch.float64) * 0.3
    res = solve(values, targets, 8, 1e-6, method="auto")
    _check_mask(res, values, targets, torch.full((b,), 8), torch.ones(b, m, dtype=torch.bool), 1e-6)
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
        every = torch.ones(8, 80, dtype=torch.bool)
        _check_mask(res, values, targets, torch.full((8,), 30), every, 1e-3)
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
    _check_mask(res, values, targets, k, valid, tol)
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
        every = torch.ones(4, 6, dtype=torch.bool)
        _check_mask(res, values, targets, torch.full((4,), 3), every, 1e-6)
        assert res.solved.tolist() == [True, True, True, True]


@pytest.mark.parametrize("method", ["exact", "fast", "auto", "brute"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch(method: str, dtype: torch.dtype) -> None:
    """Zero rows: no error, an empty result of the same dtypes as a non-empty one, so that it
    concatenates with other batches' results; the arguments are still checked."""
    values = torch.zeros(0, 8, dtype=dtype)
    full = solve(torch.linspace(-1, 1, 8, dtype=dtype).expand(3, 8), torch.zeros(3), 3, 1e-1)
    per_row = (
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.float64),
        torch.zeros(0, 8, dtype=torch.bool),
    )
    for k, tol, valid in ((3, 1e-4, None), per_row):
        res = solve(values, torch.zeros(0), k, tol, valid=valid, method=method)
        assert len(res) == 0
        assert res.mask.shape == (0, 8) and res.error.shape == (0,)
        for name in ("mask", "error", "solved", "infeasible", "budget_exhausted"):
            got, ref = getattr(res, name), getattr(full, name)
            assert got.dtype == ref.dtype and got.device == ref.device, name
            assert got.shape[1:] == ref.shape[1:] and got.numel() == 0, name
            merged = torch.cat([got, ref])  # an empty batch's result mixes with others'
            assert torch.equal(merged, ref), name
    with pytest.raises(ValueError, match="valid must be a bool tensor"):
        solve(values, torch.zeros(0), 3, 1e-4, valid=torch.ones(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="k must be a scalar or have shape"):
        solve(values, torch.zeros(0), torch.ones(2, dtype=torch.long), 1e-4, method=method)
    with pytest.raises(ValueError, match="targets must be a scalar or have shape"):
        solve(values, torch.zeros(1), 3, 1e-4, method=method)


def test_expanded_views() -> None:
    values = torch.linspace(-1, 1, 20, dtype=torch.float64).expand(50, 20)
    valid = (torch.arange(20) % 2 == 0).expand(50, 20)
    targets = torch.linspace(-0.5, 0.5, 50, dtype=torch.float64)
    res = solve(values, targets, 4, 1e-2, valid=valid, method="auto")
    _check_mask(res, values, targets, torch.full((50,), 4), valid, 1e-2)
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


@pytest.mark.slow
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
    _check_mask(gpu, values.cuda(), targets.cuda(), k.cuda(), valid.cuda(), tol)
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


def test_heuristic_resolves_tolerances_below_float32() -> None:
    """A tolerance of 1e-8 is below what a float32 sum of 10 candidates resolves (~1e-7): the
    heuristic searches such rows in float64 and solves them (in float32 83% missed, by ~1e-7)."""
    g = torch.Generator().manual_seed(4)
    b, m = 16, 184
    values = (torch.rand(b, m, generator=g, dtype=torch.float64) * 2 - 1) * (
        torch.rand(b, m, generator=g, dtype=torch.float64) * 2 - 1
    )
    targets = torch.randn(b, generator=g, dtype=torch.float64) * 0.1
    res = solve(values, targets, 10, 1e-8, method="fast")
    every = torch.ones(b, m, dtype=torch.bool)
    _check_mask(res, values, targets, torch.full((b,), 10), every, 1e-8)
    assert float(res.solved.double().mean()) >= 0.9


@pytest.mark.parametrize("seed", range(6))
def test_rows_of_mixed_counts_get_the_picks_they_get_alone(seed: int) -> None:
    """``mitm`` searches rows of different candidate counts in one call (the exact search and
    the heuristic no longer split a batch by count): each row's error and pick are bit for bit
    those of searching its count's rows alone, hard rows (every split, every window), ties,
    float32 and tiny budgets (many chunks and pieces) included."""
    from sslth.subset_sum.exact import mitm

    generator = torch.Generator().manual_seed(seed)
    k = (2, 3, 5, 9, 1, 6)[seed]
    dtype = (torch.float64, torch.float32)[seed % 2]
    counts = torch.randint(max(k, 2), max(k, 2) + 11, (120,), generator=generator)
    cand = torch.randn(120, int(counts.max()) + 1, generator=generator, dtype=torch.float64)
    if seed % 3 == 0:
        cand = (cand * 4).round() / 4  # many equal sums
    cand = cand.to(dtype)
    targets = (torch.randn(120, generator=generator, dtype=torch.float64) * k**0.5).to(dtype)
    tol = 10 ** torch.empty(120, dtype=torch.float64).uniform_(-9, -1, generator=generator)
    tol = tol.to(dtype)
    max_splits, budget = ((None, 2**12), (3, 2**31), (1, 2**16))[seed % 3]
    err, picks = mitm(cand, targets, tol, k, budget, max_splits, counts=counts)
    for n in counts.unique().tolist():
        rows = (counts == n).nonzero().squeeze(1)
        alone_err, alone_picks = mitm(
            cand[rows, :n].contiguous(), targets[rows], tol[rows], k, budget, max_splits
        )
        assert torch.equal(err[rows], alone_err)
        assert torch.equal(picks[rows].sort(dim=1).values, alone_picks.sort(dim=1).values)
        assert int(picks[rows].max()) < n
