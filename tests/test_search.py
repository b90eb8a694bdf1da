"""The search's parts on their own: the planner's rules, the policies on small synthetic states,
block growth (issue 9: the search was only covered end to end). Refine: tests/test_refine.py."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
import torch

import sslth
from sslth import theory
from sslth.certificate import Certificate, LayerCertificate
from sslth.config import random_target
from sslth.construct import PairSpec
from sslth.search import loop
from sslth.search.layer import LayerSolution, solve_layer
from sslth.search.options import PruneOptions
from sslth.search.sizing import (
    MAX_PICKS,
    SAFETY,
    choose_k,
    expected_kept,
    initial_tolerances,
    instance_count,
    largest_k,
    plan_layer,
    predicted_solvable,
    random_params,
    thin_block_neurons,
)
from sslth.target import as_target

# ---------------------------------------------------------------- the planner's rules


def _layer(d_in=8, d_out=6, bias=False, seed=0):
    return as_target(random_target([d_in, d_out], bias=bias, seed=seed)).layers[0]


@pytest.mark.parametrize("density", [0.02, 0.05, 0.1, 0.3, 0.9])
@pytest.mark.parametrize("n", [6, 20, 50])
def test_largest_k_is_the_largest_within_the_density(density, n):
    layer = _layer(bias=True)
    k = largest_k(layer, n, density)
    limit = 0.98 * density * random_params(layer, n)
    if k > 0:
        assert expected_kept(layer, n, k) <= limit
    if k < max(1, n // 2):
        assert expected_kept(layer, n, k + 1) > limit


def test_choose_k_caps():
    layer = _layer(d_in=20, d_out=30)
    for n in (4, 10, 40, 100):
        k = choose_k(layer, n, 1.0)
        assert 1 <= k <= MAX_PICKS
        assert k <= max(1, int(thin_block_neurons(n, layer.d_in) // 2))
    assert choose_k(layer, 30, 1e-6) == 0  # the density allows no pick at all


def test_window_probability_is_exact_for_one_pick():
    generator = torch.Generator().manual_seed(0)
    samples = (torch.rand(2_000_000, generator=generator) * 2 - 1) * (
        torch.rand(2_000_000, generator=generator) * 2 - 1
    )
    for z, delta in ((0.0, 0.01), (0.3, 0.05), (-0.9, 0.2)):
        measured = float(((samples - z).abs() < delta).double().mean())
        predicted = theory.window_probability(1, z, delta)
        assert predicted == pytest.approx(measured, rel=0.02)
    # density × 2δ is infinite at z = 0: the planner must not use it there
    assert math.isinf(theory.sum_density(1, 0.0))


def test_predicted_solvable_is_monotone_and_matches_its_formula():
    flags = [predicted_solvable(n, 4, 1e-3, 0.4, 10_000, 8) for n in range(4, 60)]
    assert flags == sorted(flags)  # once solvable, solvable for every larger n
    n = 4 + flags.index(True)
    n_sign = thin_block_neurons(n, 8)
    log_lambda = theory.log_binomial(n_sign, 4) + math.log(theory.window_probability(4, 0.4, 1e-3))
    assert log_lambda >= math.log(math.log(10_000) + 3)
    n_sign = thin_block_neurons(n - 1, 8)
    assert theory.log_binomial(n_sign, 4) + math.log(
        theory.window_probability(4, 0.4, 1e-3)
    ) < math.log(math.log(10_000) + 3)


def test_plan_layer_returns_the_smallest_predicted_n():
    layer = _layer(d_in=10, d_out=12)
    n, k = plan_layer(layer, 0.3, 2e-3, max_params=10**8)
    z_max = float(layer.weight.abs().max())
    count = instance_count(layer)
    assert predicted_solvable(n, k, 2e-3, round(z_max, 3), count, layer.d_in)
    for smaller in range(1, n):
        pick = choose_k(layer, smaller, 0.3)
        assert pick < 1 or not predicted_solvable(
            smaller, pick, 2e-3, round(z_max, 3), count, layer.d_in
        )
    assert plan_layer(layer, 0.3, 2e-3, max_params=random_params(layer, n) - 1) is None


def test_initial_tolerances_share_the_budget_and_survive_zero_layers():
    target = as_target(random_target([5, 7, 3], seed=2))
    tolerances, budgets = initial_tolerances(target, 0.05, 1.0)
    assert sum(budgets) == pytest.approx(SAFETY * 0.05)
    # one layer, norm P: δ = budget · √3 / ((√d_out + √(2 d_in)) · R)
    one = as_target(random_target([5, 7], seed=2))
    (delta,), (budget,) = initial_tolerances(one, 0.05, 2.0)
    assert delta == pytest.approx(budget * math.sqrt(3) / ((math.sqrt(7) + math.sqrt(10)) * 2))
    zero = as_target([torch.zeros(4, 3), torch.zeros(2, 4)])
    tolerances, budgets = initial_tolerances(zero, 0.1, 1.0)
    assert all(0 < t <= 1 and math.isfinite(t) for t in tolerances)


# ---------------------------------------------------------------- policies, synthetic states


def _certificate(layers: list[tuple[float, float, float, float, float]]) -> Certificate:
    """(P, E, β, r_in, err) per layer."""
    return Certificate(
        1.0,
        layers[-1][4],
        0.0,
        "exact",
        [LayerCertificate(p, e, b, 0.0, r, err) for p, e, b, r, err in layers],
    )


def test_layer_share_is_the_amount_an_exact_pair_would_remove():
    certificate = _certificate([(1.0, 0.1, 0.0, 1.0, 0.1), (2.0, 0.2, 0.05, 1.0, 0.45)])
    # layer 0: E_0 r_0 · (P_1 + E_1); layer 1: E_1 (r_1 + err_0) + β_1
    assert loop.layer_share(certificate, 0) == pytest.approx(0.1 * 1.0 * 2.2)
    assert loop.layer_share(certificate, 1) == pytest.approx(0.2 * 1.1 + 0.05)
    # a zero layer above still gives the lower one a share (P = 0, E > 0)
    zero_above = _certificate([(0.0, 0.3, 0.0, 1.0, 0.3), (0.0, 0.4, 0.0, 0.0, 0.12)])
    assert loop.layer_share(zero_above, 0) == pytest.approx(0.3 * 0.4)
    assert loop.layer_share(zero_above, 1) == pytest.approx(0.4 * 0.3)


@dataclass
class _FakeSolution:
    """A layer solution that records what the policies ask of it."""

    unsolved: float
    kept_count: int = 10
    spec: PairSpec = field(default_factory=lambda: PairSpec(2, 2, 4, False, 0))
    tolerance: float = 1e-3
    calls: list = field(default_factory=list)

    def unsolved_fraction(self) -> float:
        return self.unsolved

    def kept(self) -> int:
        return self.kept_count

    def grow_unsolved(self):
        self.calls.append("grow")
        return {0: 5}


def _search(monkeypatch, solutions, *, n=None, k=None, epsilon=0.1):
    target = as_target(random_target([2] * (len(solutions) + 1), seed=0))
    options = PruneOptions(epsilon=epsilon, density=1.0, n=n, k=k, progress=False)
    search = loop.Search(target, options, torch.device("cpu"), "auto")
    search.budgets = [SAFETY * epsilon / len(solutions)] * len(solutions)
    search.states = [loop.LayerState(4, 2, 1e-3, s) for s in solutions]
    monkeypatch.setattr(loop, "repair", lambda solution: solution.calls.append("repair"))

    def tighten(solution, tolerance, solver):
        solution.calls.append(("tighten", tolerance))
        solution.tolerance = tolerance

    monkeypatch.setattr(loop, "tighten", tighten)
    return search


def test_within_budget_nothing_happens(monkeypatch):
    solution = _FakeSolution(unsolved=0.5)
    search = _search(monkeypatch, [solution])
    search.reduce_error(_certificate([(1.0, 0.01, 0.0, 1.0, 0.2)]))
    # share 0.01 ≤ budget 0.09 · scale (0.9 · 0.1 / 0.2): left alone
    assert solution.calls == []


def test_over_budget_repair_then_grow_then_tighten(monkeypatch):
    solution = _FakeSolution(unsolved=0.01)
    search = _search(monkeypatch, [solution])
    certificate = _certificate([(1.0, 0.3, 0.0, 1.0, 0.3)])
    search.reduce_error(certificate)
    assert solution.calls == ["repair"] and search.states[0].repaired
    search.reduce_error(certificate)
    assert solution.calls[-1] == "grow" and not search.states[0].repaired
    solution.unsolved = 0.0
    search.states[0].repaired = True
    search.reduce_error(certificate)
    action, tolerance = solution.calls[-1]
    assert action == "tighten"
    # ratio = scale · budget / share = (0.9·0.1/0.3)·0.09/0.3 = 0.09 → clamped to 0.3
    assert tolerance == pytest.approx(1e-3 * 0.3)


def test_with_n_fixed_out_of_reach_instances_are_tightened_not_grown(monkeypatch):
    solution = _FakeSolution(unsolved=0.01)
    search = _search(monkeypatch, [solution], n=4)
    search.states[0].repaired = True
    search.reduce_error(_certificate([(1.0, 0.3, 0.0, 1.0, 0.3)]))
    assert solution.calls[-1][0] == "tighten"


def test_the_rounding_term_shrinks_the_budgets(monkeypatch):
    solution = _FakeSolution(unsolved=0.0)
    search = _search(monkeypatch, [solution])
    certificate = _certificate([(1.0, 0.05, 0.0, 1.0, 0.05)])
    search.reduce_error(certificate)
    assert solution.calls == []  # 0.05 is within 0.09 · 0.9 · 0.1 / 0.05
    certificate.rounding = 0.08  # now only 0.02 of ε is left for the exact part
    search.reduce_error(certificate)
    assert solution.calls and solution.calls[-1][0] == "tighten"


def test_trade_pick_in_the_densest_layer(monkeypatch):
    dense, sparse = _FakeSolution(0, kept_count=90), _FakeSolution(0, kept_count=10)
    search = _search(monkeypatch, [sparse, dense])
    assert search.trade_pick()
    assert (search.states[1].k, search.states[1].solution) == (1, None)
    assert search.states[0].solution is sparse
    search.states[1].solution = dense
    assert search.trade_pick()  # k = 1: a larger n instead
    assert (search.states[1].k, search.states[1].n) == (1, 5)
    fixed = _search(monkeypatch, [_FakeSolution(0)], n=4, k=2)
    assert not fixed.trade_pick()


# ---------------------------------------------------------------- growth


def test_growing_out_of_reach_blocks_touches_only_them():
    """Instances proved out of reach make their blocks grow; every other instance keeps its
    pick, and the grown blocks' first neurons are unchanged."""
    layer = _layer(d_in=12, d_out=10, seed=3)
    spec = PairSpec(12, 10, 16, False, 77)
    solution = solve_layer(spec, layer, 3, 1e-2, index=0, device=torch.device("cpu"), solver="auto")
    before = {s: p.positions.clone() for s, p in solution.signs.items()}
    over = {s: p.exists & (p.errors >= 1e-2) for s, p in solution.signs.items()}
    blocks = {j for mask in over.values() for j in mask.any(dim=0).nonzero().squeeze(1).tolist()}
    assert blocks and len(blocks) < 12  # some out of reach, not everywhere
    grown = solution.grow_unsolved()
    assert set(grown) == blocks
    assert solution.spec.grown and all(n > 16 for _, n in solution.spec.grown)
    for sign, picks in solution.signs.items():
        untouched = ~over[sign]
        assert torch.equal(picks.positions[untouched], before[sign][untouched])
    # the masks are still a valid ticket: exactly k picks everywhere
    masks = solution.masks()
    assert int(masks.second.sum()) == 3 * 2 * 10 * 12


def test_worker_count_does_not_change_the_ticket():
    target = random_target([12, 9, 4], seed=5)
    one = sslth.prune(target, 0.02, 0.2, threads=1, progress=False, empirical_samples=100)
    three = sslth.prune(target, 0.02, 0.2, threads=3, progress=False, empirical_samples=100)
    for a, b in zip(one.masks, three.masks, strict=True):
        assert torch.equal(a.second, b.second) and torch.equal(a.kept_neurons, b.kept_neurons)


def test_layer_solution_matches_a_fresh_solve_of_its_rows():
    """A pick depends only on its instance: re-solving a random subset of the rows alone gives
    the same picks (the solver's randomness is keyed by the instance, not the batch)."""
    layer = _layer(d_in=10, d_out=8, seed=6)
    spec = PairSpec(10, 8, 10, False, 5)
    full = LayerSolution(spec, layer, 3, 1e-3, device=torch.device("cpu"), solver="fast")
    full.solve_all()
    part = LayerSolution(spec, layer, 3, 1e-3, device=torch.device("cpu"), solver="fast")
    rng = random.Random(0)
    chosen = torch.zeros_like(part.signs[1].exists)
    for _ in range(20):
        chosen[rng.randrange(8), rng.randrange(10)] = True
    part._solve({1: chosen}, attempt=0)
    assert torch.equal(part.signs[1].positions[chosen], full.signs[1].positions[chosen])


# ---------------------------------------------------------------- one request
def test_a_prune_options_passes_whole_and_gives_the_same_ticket():
    target = random_target([3, 4, 2], seed=5)
    settings = dict(seed=2, progress=False, empirical_samples=200)
    by_keywords = sslth.prune(target, 0.05, 0.3, **settings)
    whole = sslth.prune(target, PruneOptions(epsilon=0.05, density=0.3, **settings))
    assert whole.report.certified_error == by_keywords.report.certified_error
    for a, b in zip(whole.masks, by_keywords.masks, strict=True):
        assert a.kept_neurons.equal(b.kept_neurons) and a.second.equal(b.second)
    whole_plan = sslth.plan(target, PruneOptions(epsilon=0.05, density=0.3), calibrate=False)
    keyword_plan = sslth.plan(target, 0.05, 0.3, calibrate=False)
    assert [(p.n, p.k, p.tolerance) for p in whole_plan.layers] == [
        (p.n, p.k, p.tolerance) for p in keyword_plan.layers
    ]


@pytest.mark.parametrize("call", [sslth.prune, sslth.plan])
def test_a_prune_options_mixed_with_keywords_is_refused(call):
    options = PruneOptions(epsilon=0.05, density=0.3, progress=False)
    with pytest.raises(sslth.ConfigError, match="either a PruneOptions or"):
        call(random_target([3, 2]), options, seed=1)
    with pytest.raises(sslth.ConfigError, match="either a PruneOptions or"):
        call(random_target([3, 2]), options, 0.3)


# ---------------------------------------------------------------- running out of device memory


def _out_of_memory_above(monkeypatch, instances: int) -> list[int]:
    """Make the layer's solver raise torch.OutOfMemoryError on batches above ``instances``."""
    from sslth.search import layer as layer_module

    real, sizes = layer_module.solve, []

    def solve(values, *args, **kwargs):
        sizes.append(values.shape[0])
        if values.shape[0] > instances:
            raise torch.OutOfMemoryError("simulated: out of memory")
        return real(values, *args, **kwargs)

    monkeypatch.setattr(layer_module, "solve", solve)
    return sizes


def test_a_device_out_of_memory_shrinks_its_chunk_and_gives_the_same_picks(monkeypatch):
    layer = _layer(d_in=12, d_out=10, seed=3)
    spec = PairSpec(12, 10, 16, False, 77)
    cpu = torch.device("cpu")
    whole = solve_layer(spec, layer, 3, 1e-2, index=0, device=cpu, solver="auto")
    sizes = _out_of_memory_above(monkeypatch, 50)
    split = solve_layer(spec, layer, 3, 1e-2, index=0, device=cpu, solver="auto")
    assert max(sizes) > 50 and len(sizes) > 3  # it ran out, and went on in smaller chunks
    for sign in (+1, -1):
        assert torch.equal(whole.signs[sign].positions, split.signs[sign].positions)
        assert torch.equal(whole.signs[sign].errors, split.signs[sign].errors)
    assert torch.equal(whole.masks().second, split.masks().second)


def test_a_device_that_cannot_hold_one_block_fails_with_one_line(monkeypatch):
    from sslth.search.layer import DeviceOutOfMemory

    layer = _layer(d_in=4, d_out=10, seed=3)
    spec = PairSpec(4, 10, 16, False, 77)
    _out_of_memory_above(monkeypatch, 0)
    with pytest.raises(DeviceOutOfMemory, match="max_random_params") as error:
        solve_layer(spec, layer, 3, 1e-2, index=0, device=torch.device("cpu"), solver="auto")
    assert "\n" not in str(error.value)
