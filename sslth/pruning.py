"""``sslth.prune``: ε and density in, a certified ticket out.

The search, per target layer i:
1. Error budget. To first order the certificate is Σ_i (E_i r_{i−1} + β_i) Π_{j>i} P_j (see
   :mod:`sslth.certify`), so each layer gets the share ``SAFETY · ε / l`` and a per-weight
   tolerance δ_i chosen so that a random error matrix with entries in (−δ_i, δ_i) has a spectral
   norm within it (||M|| ≈ (δ/√3)(√d_out + √(2 d_in)) for such a matrix).
2. Sizes. k is the largest the density allows, capped at half the right-sign neurons of a thin
   block (where C(n, k) peaks) and at ``MAX_PICKS``; n is the smallest for which the Poisson
   heuristic (λ = C(n, k) · 2δ · f_k(z), DESIGN §4) predicts that every instance of the layer
   has a solution.
3. Solve, then certify *from the achieved errors*. In a layer whose share of the bound is too
   large, the instances left over their tolerance are first re-solved with the exact search and
   a larger budget; if some stay out of reach (a random network can make an instance
   infeasible), n grows by 15%; if all are within tolerance, the tolerance shrinks. Nothing is
   assumed: the loop stops on the recomputed certificate and the recomputed density, and the
   returned ticket's report is recomputed once more from its masks and the random weights.
4. ``refine`` then shrinks n of the small layers while the ticket still meets ε and the density.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import torch
from tqdm.auto import tqdm

from sslth import theory
from sslth.certify import PairOperator, certify_operators, spectral_norm
from sslth.construct import PairSpec, RandomPair, SignInstances, layer_seed, subset_sum_instances
from sslth.masks import PairMasks, masks_from_picks
from sslth.subset_sum import solve
from sslth.target import Target, TargetLayer, as_target
from sslth.ticket import Ticket

SAFETY = 0.9  # fraction of ε the first attempt aims for: the rest absorbs second-order terms
MAX_ROUNDS = 8
DEFAULT_MAX_RANDOM_PARAMS = 200_000_000


class TicketNotFound(RuntimeError):
    """No ticket met ε and the density within the limits; ``best`` is the closest one found
    (None when no ticket could be built at all)."""

    def __init__(self, message: str, best: Ticket | None = None) -> None:
        super().__init__(message)
        self.best = best
        self.best_certified_error = (
            None if best is None or best.report is None else best.report.certified_error
        )


# ---------------------------------------------------------------- sizes
def expected_kept(d_in: int, d_out: int, has_bias: bool, n: int, k: int) -> float:
    """Expected kept weights of a pair: 2k per (output, input) in V (k for the bias column) and
    every U entry whose neuron some output picked."""
    kept_second = d_out * (2 * k * d_in + (k if has_bias else 0))
    used = 1.0 - (1.0 - min(k / n, 1.0)) ** d_out
    kept_first = used * (2 * n * d_in + (n if has_bias else 0))
    return kept_second + kept_first


def dense_params(d_in: int, d_out: int, has_bias: bool, n: int) -> int:
    return PairSpec(d_in, d_out, n, has_bias, 0).dense_params


MAX_PICKS = 12  # larger k makes the exact search enumerate far more, for little gain in n


def thin_block_neurons(n: int, blocks: int) -> float:
    """Right-sign neurons of the thinnest of ``blocks`` blocks: a block's count is
    Binomial(2n, 1/2), and the minimum of ``blocks`` of them sits about sqrt(2 ln(2 blocks))
    standard deviations below n."""
    return n - math.sqrt(2 * math.log(2 * blocks)) * math.sqrt(n / 2)


def choose_k(layer: TargetLayer, n: int, density: float) -> int:
    """k for the automatic search: the largest the density allows, but no more than half of a
    thin block (C(n_sign, k) peaks at n_sign / 2) nor ``MAX_PICKS`` (0 if the density allows
    none)."""
    has_bias = layer.bias is not None
    by_density = largest_k(layer.d_in, layer.d_out, has_bias, n, density)
    half_thin = int(thin_block_neurons(n, layer.d_in + int(has_bias)) // 2)
    return min(by_density, max(1, half_thin), MAX_PICKS)


def largest_k(d_in: int, d_out: int, has_bias: bool, n: int, density: float) -> int:
    """Largest k <= n/2 whose expected density is at most ``density`` (0 if none)."""
    limit = dense_params(d_in, d_out, has_bias, n) * density * 0.98
    low, high = 0, max(1, n // 2)
    while low < high:
        mid = (low + high + 1) // 2
        if expected_kept(d_in, d_out, has_bias, n, mid) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


@lru_cache(maxsize=4096)
def _log_density(k: int, z: float) -> float:
    return math.log(max(theory.sum_density(k, z, theory.PRODUCT), 1e-300))


def predicted_solvable(
    n: int, k: int, tolerance: float, z_max: float, instances: int, blocks: int
) -> bool:
    """Poisson heuristic: expected number of solutions of the hardest instance of the layer is
    at least log(instances) + 3, counting only the neurons of the right sign of a thin block."""
    n_sign = thin_block_neurons(n, blocks)
    if n_sign < k:
        return False
    log_lambda = (
        theory.log_binomial(n_sign, k) + math.log(2 * tolerance) + _log_density(k, round(z_max, 3))
    )
    return log_lambda >= math.log(math.log(max(instances, 2)) + 3)


def _neuron_candidates(start: int):
    n = max(1, start)
    while True:
        yield n
        n = n + 1 if n < 64 else int(math.ceil(n * 1.04))


def plan_layer(
    layer: TargetLayer,
    density: float,
    tolerance: float,
    *,
    start: int = 1,
    k: int | None = None,
    max_params: int = DEFAULT_MAX_RANDOM_PARAMS,
) -> tuple[int, int] | None:
    """Smallest n >= start (and its k) predicted to succeed, or None within ``max_params``."""
    has_bias = layer.bias is not None
    targets = layer.weight.abs()
    z_max = (
        float(targets.max())
        if layer.bias is None
        else max(float(targets.max()), float(layer.bias.abs().max()))
    )
    instances = layer.d_out * (2 * layer.d_in + int(has_bias))
    for n in _neuron_candidates(start):
        if dense_params(layer.d_in, layer.d_out, has_bias, n) > max_params:
            return None
        pick = k if k is not None else choose_k(layer, n, density)
        if pick < 1 or 2 * pick > 2 * n:
            continue
        if k is not None and expected_kept(
            layer.d_in, layer.d_out, has_bias, n, pick
        ) > density * dense_params(layer.d_in, layer.d_out, has_bias, n):
            continue
        if predicted_solvable(n, pick, tolerance, z_max, instances, layer.d_in + int(has_bias)):
            return n, pick


# ---------------------------------------------------------------- one layer
@dataclass
class LayerSolution:
    spec: PairSpec
    k: int
    tolerance: float
    positive: SignInstances
    negative: SignInstances
    picks: list[torch.Tensor]  # (B, m) bool per sign
    errors: list[torch.Tensor]  # (B,) float64 per sign, recomputed from picks

    def operator(self) -> PairOperator:
        """A, B and the bias offset from the picked values (the same function the masked pair
        computes, which the final report re-derives from the network)."""
        spec = self.spec
        sums = [
            torch.where(pick, inst.values, 0.0).sum(dim=1).view(spec.d_out, -1)
            for inst, pick in zip((self.positive, self.negative), self.picks, strict=True)
        ]
        positive, negative = sums[0][:, : spec.d_in], -sums[1]
        offset = (
            sums[0][:, spec.d_in]
            if spec.has_bias
            else torch.zeros(spec.d_out, dtype=torch.float64, device=positive.device)
        )
        return PairOperator(positive, negative, offset)

    def masks(self) -> PairMasks:
        return masks_from_picks(
            self.spec, [(self.positive, self.picks[0]), (self.negative, self.picks[1])]
        )

    def unsolved_fraction(self) -> float:
        total = sum(e.numel() for e in self.errors)
        bad = sum(int((e >= self.tolerance).sum()) for e in self.errors)
        return bad / max(total, 1)


def _check_counts(spec: PairSpec, instances: SignInstances, k: int, index: int) -> None:
    counts = instances.num_valid_per_block
    if int(counts.min()) < k:
        block = int(counts.argmin())
        sign = "positive" if instances.sign > 0 else "negative"
        raise ValueError(
            f"impossible k: layer {index + 1} needs k={k} {sign} neurons in every block, but "
            f"block {block} of its random network has only {int(counts[block])} (of "
            f"{spec.block_size}); increase n, decrease k, or try another seed"
        )


def _solve_rows(instances, rows, k, tolerance, method, generator, **options):
    result = solve(
        instances.values[rows],
        instances.targets[rows],
        k,
        tolerance,
        valid=instances.valid[rows],
        method=method,
        generator=generator,
        **options,
    )
    return result.mask, result.error


def solve_layer(
    spec: PairSpec, layer: TargetLayer, k: int, tolerance: float, *, index: int, device, method: str
) -> LayerSolution:
    pair = RandomPair.draw(spec)
    positive, negative = subset_sum_instances(pair, layer, device)
    for instances in (positive, negative):
        _check_counts(spec, instances, k, index)
    generator = torch.Generator(device=device).manual_seed(spec.seed % (2**31))
    picks, errors = [], []
    for instances in (positive, negative):
        mask, error = _solve_rows(instances, slice(None), k, tolerance, method, generator)
        picks.append(mask)
        errors.append(error)
    return LayerSolution(spec, k, tolerance, positive, negative, picks, errors)


REPAIR_MAX_WORK = 50_000_000  # subsets per row the exact search may enumerate on a repair


def _resolve_over(solution: LayerSolution, tolerance: float, method: str, salt: int, **options):
    """Re-solve the instances whose error is not below ``tolerance``; keep a new pick only
    where it is better than the old one."""
    generator = torch.Generator(device=solution.positive.values.device).manual_seed(
        solution.spec.seed % (2**31) + salt
    )
    for sign, instances in enumerate((solution.positive, solution.negative)):
        rows = (solution.errors[sign] >= tolerance).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        mask, error = _solve_rows(
            instances, rows, solution.k, tolerance, method, generator, **options
        )
        better = error < solution.errors[sign][rows]
        solution.picks[sign][rows[better]] = mask[better]
        solution.errors[sign][rows[better]] = error[better]


def repair(solution: LayerSolution) -> None:
    """Re-solve the instances left over their tolerance with the exact search and a larger work
    budget."""
    _resolve_over(solution, solution.tolerance, "exact", 2, max_work=REPAIR_MAX_WORK)


def tighten(solution: LayerSolution, tolerance: float, method: str) -> None:
    """Re-solve, with a smaller tolerance, the instances whose error is not below it."""
    _resolve_over(solution, tolerance, method, 1)
    solution.tolerance = tolerance


# ---------------------------------------------------------------- prune
@dataclass
class _LayerState:
    n: int
    k: int
    tolerance: float
    solution: LayerSolution | None = None
    repaired: bool = False  # the solution's unsolved instances had their exact re-solve


def _per_layer(value, count: int, name: str) -> list[int] | None:
    if value is None:
        return None
    values = [value] * count if isinstance(value, int) else list(value)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for a target of {count} layers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be positive integers, got {v!r}")
    return values


def _check_number(value, name: str, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f" and <= {upper:g}" if upper is not None else ""
        raise ValueError(f"{name} must be finite, > 0{bound}; got {value!r}")
    return value


def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return device


def initial_tolerances(
    target: Target, epsilon: float, radius: float
) -> tuple[list[float], list[float]]:
    """Per-layer tolerances δ_i and first-order budgets (DESIGN §3 and the module docstring)."""
    norms = [spectral_norm(layer.weight) for layer in target.layers]
    radii = [radius]
    for layer, norm in zip(target.layers, norms, strict=True):
        bias = 0.0 if layer.bias is None else float(torch.linalg.vector_norm(layer.bias))
        radii.append(norm * radii[-1] + bias)
    depth = len(target.layers)
    tolerances, budgets = [], []
    for i, layer in enumerate(target.layers):
        gain = math.prod(norms[i + 1 :]) if i + 1 < depth else 1.0
        budget = SAFETY * epsilon / depth / max(gain, 1e-12)
        spread = (math.sqrt(layer.d_out) + math.sqrt(2 * layer.d_in)) * max(radii[i], 1e-12)
        if layer.bias is not None:
            spread += math.sqrt(layer.d_out)
        tolerances.append(min(1.0, budget * math.sqrt(3) / spread))
        budgets.append(budget)
    return tolerances, budgets


def _kept(state: _LayerState) -> int:
    masks = state.solution.masks()
    return int(masks.kept_neurons.sum()) + int(masks.second.sum())


def _density(states: list[_LayerState]) -> float:
    kept = sum(_kept(state) for state in states)
    return kept / sum(state.solution.spec.dense_params for state in states)


def prune(
    target,
    epsilon: float,
    density: float,
    *,
    radius: float = 1.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    n: int | list[int] | None = None,
    k: int | list[int] | None = None,
    progress: bool = True,
    method: str = "auto",
    max_random_params: int = DEFAULT_MAX_RANDOM_PARAMS,
    empirical_samples: int = 10_000,
    refine: bool = True,
) -> Ticket:
    """Find a mask of a random 2l-layer network whose subnetwork approximates ``target``
    within ``epsilon`` (certified, over the ball of radius ``radius``) with at most ``density``
    of the random network's weights kept.

    ``n`` (neurons per input: each target input gets 2n hidden neurons) and ``k`` (picks per
    weight and sign) override the automatic choice, as ints or per-layer lists. The caller's
    model is never modified. Raises :class:`TicketNotFound` (with the best ticket attached)
    when no ticket meets both ε and the density within ``max_random_params``.

    ``refine`` shrinks n layer by layer after the first success, while the ticket still meets
    ε and the density (only for layers of at most ``REFINE_MAX_INSTANCES`` instances, where a
    re-solve is cheap).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    target = as_target(target)
    epsilon = _check_number(epsilon, "epsilon")
    density = _check_number(density, "density", upper=1.0)
    radius = _check_number(radius, "radius")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    depth = len(target.layers)
    fixed_n = _per_layer(n, depth, "n")
    fixed_k = _per_layer(k, depth, "k")
    device = resolve_device(device)
    tolerances, budgets = initial_tolerances(target, epsilon, radius)

    states = []
    for i, layer in enumerate(target.layers):
        if fixed_n is not None:
            k_i = (
                fixed_k[i] if fixed_k is not None else max(1, choose_k(layer, fixed_n[i], density))
            )
            states.append(_LayerState(fixed_n[i], k_i, tolerances[i]))
            continue
        plan = plan_layer(
            layer,
            density,
            tolerances[i],
            k=None if fixed_k is None else fixed_k[i],
            max_params=max_random_params,
        )
        if plan is None:
            raise TicketNotFound(
                f"layer {i + 1} ({layer.d_in}->{layer.d_out}): no random network of at most "
                f"{max_random_params:,} parameters is predicted to reach density {density:g} with "
                f"per-weight tolerance {tolerances[i]:.3g} (from ε = {epsilon:g}); raise density "
                "or ε, or max_random_params"
            )
        states.append(_LayerState(plan[0], plan[1], tolerances[i]))
    timings["plan"] = time.perf_counter() - start

    best: tuple[float, list[LayerSolution]] | None = None
    last_bound = math.inf
    bar = tqdm(total=depth, desc="sslth: construct + solve", disable=not progress, leave=False)
    solve_time = 0.0
    for _round in range(MAX_ROUNDS):
        t0 = time.perf_counter()
        for i, (layer, state) in enumerate(zip(target.layers, states, strict=True)):
            if state.solution is None:
                spec = PairSpec(
                    layer.d_in, layer.d_out, state.n, layer.bias is not None, layer_seed(seed, i)
                )
                state.solution = solve_layer(
                    spec, layer, state.k, state.tolerance, index=i, device=device, method=method
                )
                state.repaired = False
                bar.update(1)
        solve_time += time.perf_counter() - t0
        operators = [state.solution.operator() for state in states]
        bound = certify_operators(target, operators, radius)
        achieved_density = _density(states)
        ok_density = achieved_density <= density
        score = (0 if ok_density else 1, bound.bound)
        if best is None or score < best[0]:
            best = (
                score,
                [state.solution for state in states],
                [(s.n, s.k, s.tolerance) for s in states],
            )
        if bound.bound <= epsilon and ok_density:
            break
        if ok_density and bound.bound > 0.97 * last_bound and fixed_n is not None:
            break  # tightening no longer pays: the sizes were fixed by the caller
        last_bound = bound.bound if ok_density else math.inf
        if not ok_density:
            # the U entries kept are random: trade one pick in the densest layer for room
            densest = max(range(depth), key=lambda j: _layer_density(states[j]))
            state = states[densest]
            if fixed_k is None and state.k > 1:
                state.k -= 1
            elif fixed_n is None:
                state.n = int(math.ceil(state.n * 1.25))
            else:
                break
            state.solution = None
            bar.total += 1
            continue
        # certificate too large: tighten the layers over their share, grow those that are stuck
        scale = SAFETY * epsilon / bound.bound
        for i, (cert, state) in enumerate(zip(bound.layers, states, strict=True)):
            gain = math.prod(c.weight_norm for c in bound.layers[i + 1 :])
            share = (cert.pair_error_norm * cert.input_radius + cert.bias_error) * gain
            if share <= budgets[i] * scale:
                continue
            solution = state.solution
            if solution.unsolved_fraction() > 0 and not state.repaired:
                # a few instances over their tolerance can dominate a spectral norm: give them
                # the complete search first, before touching the tolerance of every instance
                t0 = time.perf_counter()
                repair(solution)
                solve_time += time.perf_counter() - t0
                state.repaired = True
                continue
            if solution.unsolved_fraction() > 0 and fixed_n is None:
                # what is left was proved out of reach in this random network (or beyond the
                # search's budget): only a larger network helps, a tighter tolerance cannot
                plan = plan_layer(
                    target.layers[i],
                    density,
                    state.tolerance,
                    start=int(math.ceil(state.n * 1.15)),
                    k=None if fixed_k is None else fixed_k[i],
                    max_params=max_random_params,
                )
                if plan is not None:
                    state.n, state.k = plan
                    state.solution = None
                    bar.total += 1
                    continue
            new_tolerance = state.tolerance * max(
                0.3, min(0.8, scale * budgets[i] / max(share, 1e-300))
            )
            state.tolerance = new_tolerance
            t0 = time.perf_counter()
            tighten(solution, new_tolerance, method)
            solve_time += time.perf_counter() - t0
    if refine and fixed_n is None and best[0][0] == 0 and best[0][1] <= epsilon:
        t0 = time.perf_counter()
        _refine(
            target, states, budgets, epsilon, density, radius, seed, device, method, fixed_k, bar
        )
        best = ((0, 0.0), [s.solution for s in states], [(s.n, s.k, s.tolerance) for s in states])
        solve_time += time.perf_counter() - t0
    bar.close()
    timings["solve"] = solve_time

    (_, solutions, sizes) = best
    ticket = Ticket(
        target,
        [s.spec for s in solutions],
        [s.masks() for s in solutions],
        seed=seed,
        epsilon=epsilon,
        radius=radius,
        tolerances=[s.tolerance for s in solutions],
        device=device,
        solver=method,
    )
    # the dense network is not built here: the report is recomputed from the masks and the
    # random weights they can keep, and ``ticket.network`` regenerates the rest from the seed
    report = ticket.evaluate(samples=empirical_samples, timings=timings, progress=progress)
    if progress:
        tqdm.write(
            f"sslth: certified error {report.certified_error:.4g} (ε = {epsilon:g}), "
            f"density {report.density:.4g}"
        )
    if report.certified_error > epsilon or report.density > density:
        raise TicketNotFound(
            f"no ticket met ε = {epsilon:g} at density <= {density:g}: the best reached certified "
            f"error {report.certified_error:.4g} at density {report.density:.4g} with n = "
            f"{[s[0] for s in sizes]}, k = {[s[1] for s in sizes]}. "
            + (
                "Leave n and k to the automatic search, or raise them. "
                if fixed_n is not None
                else ""
            )
            + "Raise density or ε, or max_random_params.",
            best=ticket,
        )
    return ticket


REFINE_MAX_INSTANCES = 200_000
REFINE_STEPS = 6


def _layer_share(bound, i: int) -> float:
    cert = bound.layers[i]
    gain = math.prod(c.weight_norm for c in bound.layers[i + 1 :])
    return (cert.pair_error_norm * cert.input_radius + cert.bias_error) * gain


def _refine(target, states, budgets, epsilon, density, radius, seed, device, method, fixed_k, bar):
    """Greedy: shrink each layer's n while its share of the certificate stays within its
    budget, the whole certificate within ε and the density within the request."""
    for i, layer in enumerate(target.layers):
        state = states[i]
        if layer.d_out * (2 * layer.d_in + 1) > REFINE_MAX_INSTANCES:
            continue
        has_bias = layer.bias is not None
        for _ in range(REFINE_STEPS):
            n_try = state.n - max(1, state.n // 8)
            if n_try < 1:
                break
            k_try = fixed_k[i] if fixed_k is not None else choose_k(layer, n_try, density)
            if k_try < 1 or k_try > n_try:
                break
            spec = PairSpec(layer.d_in, layer.d_out, n_try, has_bias, layer_seed(seed, i))
            try:
                solution = solve_layer(
                    spec, layer, k_try, state.tolerance, index=i, device=device, method=method
                )
            except ValueError:  # a block lacks k neurons of a sign at this size
                break
            bar.total += 1
            bar.update(1)
            previous = state.solution
            state.solution = solution
            bound = certify_operators(target, [s.solution.operator() for s in states], radius)
            if (
                bound.bound <= epsilon
                and _layer_share(bound, i) <= budgets[i]
                and _density(states) <= density
            ):
                state.n, state.k = n_try, k_try
            else:
                state.solution = previous
                break


def _layer_density(state: _LayerState) -> float:
    return _kept(state) / state.solution.spec.dense_params
