"""The planner: per-layer error budgets, tolerances, and the sizes n and k (docs/design.md,
"The search", steps 1 and 2).

1. Error budget. To first order the certificate is Σ_i (E_i r_{i−1} + β_i) Π_{j>i} P_j (see
   :mod:`sslth.certificate`), so each layer gets the share ``SAFETY · ε / l`` and a per-weight
   tolerance δ_i chosen so that a random error matrix with entries in (−δ_i, δ_i) has a spectral
   norm within it (||M|| ≈ (δ/√3)(√d_out + √(2 d_in)) for such a matrix).
2. Sizes. k is the largest the density allows, capped at half the right-sign neurons of a thin
   block (where C(n, k) peaks) and at ``MAX_PICKS``; n is the smallest for which the Poisson
   heuristic (λ = C(n, k) · 2δ · f_k(z)) predicts that every instance of the layer has a
   solution.

Everything here is a pure function of the target layer and numbers: no solving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from sslth import theory
from sslth.graph import input_radii, output_gains
from sslth.search.options import PruneOptions
from sslth.sizes import pair_params
from sslth.target import Target, TargetLayer

SAFETY = 0.9  # fraction of ε the first attempt aims for: the rest absorbs second-order terms
MAX_PICKS = 12  # larger k makes the exact search enumerate far more, for little gain in n
NEURON_GROWTH = 1.04  # step of the candidate n beyond 64 (below it, every n is tried)
# a k is allowed when the *expected* kept weights are within this fraction of density · m: the
# measured density of one draw scatters around its expectation, and the margin keeps the first
# round under the limit instead of paying a round to trade a pick (docs/design.md, "Sizes")
DENSITY_MARGIN = 0.98


@dataclass(frozen=True)
class LayerPlan:
    """The planner's choice for one layer: sizes, per-weight tolerance and error budget."""

    n: int | None  # neurons per input: a block holds 2n hidden neurons (None: see ``found``)
    k: int | None  # picks per (weight, sign)
    tolerance: float  # per-weight target tolerance δ_i
    budget: float  # the layer's first-order share of ε

    @property
    def found(self) -> bool:
        """False when no random pair within ``max_random_params`` is predicted to serve the
        layer (prune refuses such a request; plan shows what it would need)."""
        return self.n is not None


def random_params(layer: TargetLayer, n: int) -> int:
    """Weights of the random pair that stands in for ``layer`` with n neurons per input."""
    return pair_params(layer.d_in, layer.d_out, layer.kind.taps, layer.bias is not None, n)


def expected_kept(layer: TargetLayer, n: int, k: int) -> float:
    """Expected kept weights of a pair: 2k per weight instance in V (k per bias) and every U
    entry whose neuron some instance picked."""
    has_bias = layer.bias is not None
    rows = layer.d_out * layer.kind.taps
    kept_second = rows * 2 * k * layer.d_in + (layer.d_out * k if has_bias else 0)
    p = min(k / n, 1.0)
    used = 1.0 - (1.0 - p) ** rows
    used_bias = 1.0 - (1.0 - p) ** layer.d_out
    if used_bias == used:  # one expression for both kinds of block, as for dense layers
        kept_first = used * (2 * n * layer.d_in + (n if has_bias else 0))
    else:
        kept_first = used * 2 * n * layer.d_in + (used_bias * n if has_bias else 0)
    return kept_second + kept_first


def thin_block_neurons(n: int, blocks: int) -> float:
    """Right-sign neurons of the thinnest of ``blocks`` blocks: a block's count is
    Binomial(2n, 1/2), and the minimum of ``blocks`` of them sits about sqrt(2 ln(2 blocks))
    standard deviations below n."""
    return n - math.sqrt(2 * math.log(2 * blocks)) * math.sqrt(n / 2)


def density_allows(layer: TargetLayer, n: int, k: int, density: float) -> bool:
    """Whether k picks at n neurons per input keep the expected density within the request,
    with the margin ``DENSITY_MARGIN`` (the one test of a k against the density)."""
    return expected_kept(layer, n, k) <= random_params(layer, n) * density * DENSITY_MARGIN


def largest_k(layer: TargetLayer, n: int, density: float) -> int:
    """Largest k <= n/2 that :func:`density_allows` (0 if none)."""
    low, high = 0, max(1, n // 2)
    while low < high:
        mid = (low + high + 1) // 2
        if density_allows(layer, n, mid, density):
            low = mid
        else:
            high = mid - 1
    return low


def choose_k(layer: TargetLayer, n: int, density: float) -> int:
    """k for the automatic search: the largest the density allows, but no more than half of a
    thin block (C(n_sign, k) peaks at n_sign / 2) nor ``MAX_PICKS`` (0 if the density allows
    none)."""
    by_density = largest_k(layer, n, density)
    half_thin = int(thin_block_neurons(n, layer.d_in + int(layer.bias is not None)) // 2)
    return min(by_density, max(1, half_thin), MAX_PICKS)


@lru_cache(maxsize=4096)
def _log_window(k: int, z: float, tolerance: float) -> float:
    """log P(a sum of k candidates lands within the tolerance of z)."""
    return math.log(max(theory.window_probability(k, z, tolerance, theory.PRODUCT), 1e-300))


# f_k(0), the peak of the density of a sum of k candidates, rounded up to 4 decimals: each
# quadrature (theory.peak_density) costs as much as a window's, and these 11 were most of the
# planner's time; tests/test_sizing.py checks each is at least the quadrature and within 1e-4
PEAK_DENSITY = {
    2: 0.9981, 3: 0.7229, 4: 0.6103, 5: 0.5416, 6: 0.4927, 7: 0.4554, 8: 0.4255, 9: 0.4008,
    10: 0.38, 11: 0.3622, 12: 0.3466,
}  # fmt: skip


def _log_peak_window(k: int, tolerance: float) -> float:
    """An upper bound, as floats, on :func:`_log_window` at every z for k >= 2: the window at
    z = 0 (``theory.window_probability`` is 2δ · ``sum_density`` there), with f_k(0) from
    ``PEAK_DENSITY`` (rounded up) or computed beyond it."""
    peak = PEAK_DENSITY.get(k)
    if peak is None:
        peak = theory.peak_density(k, theory.PRODUCT)
    return math.log(max(2.0 * tolerance * peak, 1e-300))


def predicted_solvable(
    n: int, k: int, tolerance: float, z_max: float, instances: int, blocks: int
) -> bool:
    """Poisson heuristic: expected number of solutions of the hardest instance of the layer is
    at least log(instances) + 3, counting only the neurons of the right sign of a thin block."""
    n_sign = thin_block_neurons(n, blocks)
    if n_sign < k:
        return False
    need = math.log(math.log(max(instances, 2)) + 3)
    log_choices = theory.log_binomial(n_sign, k)
    # the density peaks at 0: where even its peak falls short, z's window does too, and the
    # quadrature at z (tens of ms, most of the planner's time) is skipped; the answer is the same
    if k > 1 and log_choices + _log_peak_window(k, tolerance) < need:
        return False
    return log_choices + _log_window(k, round(z_max, 3), tolerance) >= need


def neuron_candidates(start: int):
    """The n the planner tries, in order: every n up to 64, then steps of 4%."""
    n = max(1, start)
    while True:
        yield n
        n = n + 1 if n < 64 else int(math.ceil(n * NEURON_GROWTH))


def instance_count(layer: TargetLayer) -> int:
    """Subset-sum instances of a layer: two per weight (one per sign), one per bias."""
    rows = layer.d_out * layer.kind.taps
    return rows * 2 * layer.d_in + (layer.d_out if layer.bias is not None else 0)


def plan_layer(
    layer: TargetLayer,
    density: float,
    tolerance: float,
    *,
    start: int = 1,
    k: int | None = None,
    max_params: int,
) -> tuple[int, int] | None:
    """Smallest n >= start (and its k) predicted to succeed, or None within ``max_params``.

    Args:
        layer: the target layer.
        density: the requested density (k must keep the expected density within it).
        tolerance: the per-weight tolerance δ.
        start: smallest n to consider.
        k: a fixed k (None: :func:`choose_k` for each n).
        max_params: largest random pair allowed.

    Returns:
        (n, k), or None when no pair within ``max_params`` is predicted to succeed.
    """
    has_bias = layer.bias is not None
    z_max = float(layer.weight.abs().max())
    if has_bias:
        z_max = max(z_max, float(layer.bias.abs().max()))
    instances = instance_count(layer)
    for n in neuron_candidates(start):
        if random_params(layer, n) > max_params:
            return None
        pick = k if k is not None else choose_k(layer, n, density)
        if pick < 1 or 2 * pick > 2 * n:
            continue
        if k is not None and not density_allows(layer, n, pick, density):
            continue
        if predicted_solvable(n, pick, tolerance, z_max, instances, layer.d_in + int(has_bias)):
            return n, pick


def sizes(target: Target, options: PruneOptions) -> list[LayerPlan]:
    """Each layer's n, k, tolerance and budget: what :func:`sslth.prune` starts from and what
    :func:`sslth.plan` shows (the one place n and k are chosen from a request).

    Args:
        target: the target.
        options: the request; ``n`` and ``k`` fixed by the caller are taken as given (a k
            missing beside a fixed n is :func:`choose_k`'s, at least 1).

    Returns:
        One :class:`LayerPlan` per layer; a layer no random pair within
        ``options.max_random_params`` is predicted to serve has ``n = k = None``.
    """
    tolerances, budgets = initial_tolerances(target, options.epsilon, options.radius)
    depth = len(target.layers)
    fixed_n, fixed_k = options.per_layer("n", depth), options.per_layer("k", depth)
    plans = []
    for i, layer in enumerate(target.layers):
        k = None if fixed_k is None else fixed_k[i]
        if fixed_n is not None:
            n = fixed_n[i]
            size = (n, k if k is not None else max(1, choose_k(layer, n, options.density)))
        else:
            size = plan_layer(
                layer, options.density, tolerances[i], k=k, max_params=options.max_random_params
            )
        n, k = size if size is not None else (None, None)
        plans.append(LayerPlan(n, k, tolerances[i], budgets[i]))
    return plans


def layer_radii(target: Target, radius: float, norms: list[float]) -> list[float]:
    """r_0 = R, r_i = P_i r_{i−1} + ||b_i|| (times √positions for a conv): bounds on the norm
    of each layer's output over the ball."""
    radii = [radius]
    for layer, norm in zip(target.layers, norms, strict=True):
        bias = 0.0 if layer.bias is None else float(torch.linalg.vector_norm(layer.bias))
        radii.append(norm * radii[-1] + bias * math.sqrt(layer.kind.positions))
    return radii


def initial_tolerances(
    target: Target, epsilon: float, radius: float
) -> tuple[list[float], list[float]]:
    """Per-layer tolerances δ_i and error budgets (see the module docstring).

    Returns:
        (tolerances, budgets): layer i's budget is its share SAFETY·ε/l of the certificate,
        measured after the layers above it (as :func:`sslth.search.loop.layer_share` is);
        its tolerance aims (E_i r_{i−1} + β_i) Π_{j>i} P_j at that budget.
    """
    norms = [layer.kind.operator_norm(layer.weight) for layer in target.layers]
    radii = layer_radii(target, radius, norms)
    depth = len(target.layers)
    gains = None
    if target.graph:  # residual adds: each layer's own paths to the output
        radii, gains = input_radii(target, radius, norms), output_gains(target, norms)
    tolerances, budgets = [], []
    for i, layer in enumerate(target.layers):
        gain = math.prod(norms[i + 1 :]) if i + 1 < depth else 1.0
        if gains is not None:
            gain = gains[i]
        share = SAFETY * epsilon / depth
        budget = share / max(gain, 1e-12)  # before the gain of the layers above
        spread = (
            math.sqrt(layer.kind.taps)
            * (math.sqrt(layer.d_out) + math.sqrt(2 * layer.d_in))
            * max(radii[i], 1e-12)
        )
        if layer.bias is not None:
            spread += math.sqrt(layer.d_out * layer.kind.positions)
        tolerances.append(min(1.0, budget * math.sqrt(3) / spread))
        budgets.append(share)
    return tolerances, budgets
