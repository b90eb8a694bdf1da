"""The planner of the l+1 construction: per-layer tolerances, copies ρ and picks k.

It is the planner of the 2l construction (:mod:`sslth.search.sizing`) applied to the l+1
instances. Layer 1 *is* a 2l pair whose target is C_1 W_1 (every row copied ρ_1 times), so its
(ρ_0, k_1) come from :func:`sslth.search.sizing.plan_layer` unchanged. A layer t ≥ 2 has one
instance per copy row and input, over the ρ_{t−1} Uniform[−1, 1] weights of that input's copies:
the same Poisson heuristic with the uniform candidate distribution (no sign split), and k at
most 0.98 · density · ρ_{t−1} (the layer keeps k of every ρ_{t−1} weights).

Tolerances: the first-order certificate is Σ_t (E_t r_{t−1} + β_t) Π_{s>t} P_s with P_s the
norm of the kept copy weights, estimated before solving as
√(ρ_s / ρ_{s−1}) ‖W_s‖ + 0.58 (√(k_s d_{s−1}) + √(k_s ρ_s d_s / ρ_{s−1})) (its mean part plus a
random sparse matrix with entries of standard deviation ≈ 1/√3). Sizes and tolerances depend on
each other, so the two are iterated a few times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from sslth import theory
from sslth.kinds import spectral_norm
from sslth.lplus1.layout import replicated_layer
from sslth.search.sizing import (
    MAX_PICKS,
    SAFETY,
    layer_radii,
    neuron_candidates,
    plan_layer,
    predicted_solvable,
)
from sslth.target import Target, TargetLayer

_ITERATIONS = 4
_ENTRY_SPREAD = 0.58  # ≈ 1/√3, the standard deviation of a Uniform[−1, 1] weight


@dataclass(frozen=True)
class LPlus1Plan:
    copies: tuple[int, ...]  # ρ_0 … ρ_{l−1}
    picks: tuple[int, ...]  # k_1 … k_l
    tolerances: tuple[float, ...]  # δ_1 … δ_l


@lru_cache(maxsize=4096)
def _log_uniform_window(k: int, z: float, tolerance: float) -> float:
    probability = theory.window_probability(k, z, tolerance, theory.UNIFORM)
    return math.log(max(probability, 1e-300))


def plan_copy_layer(
    layer: TargetLayer,
    rho_out: int,
    tolerance: float,
    density: float,
    *,
    start: int,
    max_params: int,
) -> tuple[int, int] | None:
    """(ρ_{t−1}, k_t) for a layer t ≥ 2 with ``rho_out`` copies per output: the smallest ρ
    predicted to solve every instance, or None when the module would exceed ``max_params``."""
    z_max = round(float(layer.weight.abs().max()), 3)
    instances = rho_out * layer.d_out * layer.d_in
    needed = math.log(math.log(max(instances, 2)) + 3)
    for rho in neuron_candidates(max(start, 2)):
        if rho * layer.d_in * rho_out * layer.d_out > max_params:
            return None
        k = min(int(0.98 * density * rho), rho // 2, MAX_PICKS)
        if k < 1:
            continue
        log_lambda = theory.log_binomial(rho, k) + _log_uniform_window(k, z_max, tolerance)
        if log_lambda < needed:
            continue
        if layer.bias is not None:
            z_bias = float(layer.bias.abs().max())
            if not predicted_solvable(rho, k, tolerance, z_bias, rho_out * layer.d_out, 1):
                continue
        return rho, k


def _copy_norm(norm: float, rho: int, rho_in: int, k: int, d_in: int, d_out: int) -> float:
    """Estimate of P_t = ‖G_t‖ before solving (see the module docstring)."""
    mean = math.sqrt(rho / rho_in) * norm
    return mean + _ENTRY_SPREAD * (math.sqrt(k * d_in) + math.sqrt(k * rho * d_out / rho_in))


def _tolerances(target, epsilon, radius, copies, picks, scales) -> list[float]:
    """δ_t aiming each layer's first-order share at SAFETY · ε / l."""
    layers = target.layers
    depth = len(layers)
    norms = [spectral_norm(layer.weight) for layer in layers]
    radii = layer_radii(target, radius, norms)
    rho = [*copies[1:], 1]  # ρ_t of each layer's output
    gains = [1.0] * depth
    for t in range(depth - 2, -1, -1):
        s = t + 1  # the layer above, 0-based
        gains[t] = gains[s] * _copy_norm(
            norms[s], rho[s], copies[s], picks[s], layers[s].d_in, layers[s].d_out
        )
    tolerances = []
    for t, layer in enumerate(layers):
        rows = rho[t] * layer.d_out
        spread = (math.sqrt(rows) + math.sqrt((2 if t == 0 else 1) * layer.d_in)) * radii[t]
        if layer.bias is not None:
            spread += math.sqrt(rows)
        budget = SAFETY * epsilon / depth / max(gains[t], 1e-12)
        tolerances.append(min(1.0, scales[t] * budget * math.sqrt(3) / max(spread, 1e-12)))
    return tolerances


def plan_lplus1(
    target: Target,
    epsilon: float,
    density: float,
    radius: float,
    *,
    max_params: int,
    scales: list[float] | None = None,
    minimum: list[int] | None = None,
) -> LPlus1Plan | None:
    """Tolerances, ρ and k for every layer, or None when no network within ``max_params`` is
    predicted to succeed.

    Args:
        target: a dense target.
        epsilon, density, radius: what the ticket must meet.
        max_params: the largest random module allowed.
        scales: per-layer factors on the tolerances (the search tightens them).
        minimum: per-layer smallest ρ_0 … ρ_{l−1} (the search grows them).
    """
    depth = len(target.layers)
    scales = scales or [1.0] * depth
    minimum = minimum or [1] * depth
    copies, picks = [max(8, m) for m in minimum], [2] * depth
    for _ in range(_ITERATIONS):
        tolerances = _tolerances(target, epsilon, radius, copies, picks, scales)
        new_copies, new_picks = [0] * depth, [0] * depth
        rho_out = 1
        for t in range(depth - 1, 0, -1):
            sizes = plan_copy_layer(
                target.layers[t],
                rho_out,
                tolerances[t],
                density,
                start=minimum[t],
                max_params=max_params,
            )
            if sizes is None:
                return None
            new_copies[t], new_picks[t] = sizes
            rho_out = sizes[0]
        sizes = plan_layer(
            replicated_layer(target.layers[0], rho_out),
            density,
            tolerances[0],
            start=minimum[0],
            max_params=max_params,
        )
        if sizes is None:
            return None
        new_copies[0], new_picks[0] = sizes
        copies, picks = new_copies, new_picks
    return LPlus1Plan(tuple(copies), tuple(picks), tuple(tolerances))


def plan_for(
    target: Target,
    options,
    *,
    scales: list[float] | None = None,
    minimum: list[int] | None = None,
    max_params: int | None = None,
) -> LPlus1Plan | None:
    """:func:`plan_lplus1` for a request (a :class:`PruneOptions`): the one place the search's
    rounds and ``sslth.plan`` get ρ, k and the tolerances from.

    Args:
        target: a dense target (:func:`sslth.lplus1.search.check_request` passed).
        options: the request's ε, density, radius and ``max_random_params``.
        scales, minimum: the search's per-layer adjustments (None: the first round's).
        max_params: a limit other than ``options.max_random_params`` (the plan looks beyond).

    Returns:
        The sizes, or None when none within the limit is predicted to succeed.
    """
    return plan_lplus1(
        target,
        options.epsilon,
        options.density,
        options.radius,
        max_params=options.max_random_params if max_params is None else max_params,
        scales=scales,
        minimum=minimum,
    )


def layer_shares(figures, depth: int) -> list[float]:
    """Each layer's part of the exact bound: (E_t r_{t−1} + β_t) Π_{s>t} P_s."""
    shares = []
    for t in range(depth):
        gain = math.prod(f.copy_norm for f in figures[t + 1 :])
        own = figures[t].pair_error_norm * figures[t].input_radius + figures[t].bias_error
        shares.append(own * gain)
    return shares


__all__ = ["LPlus1Plan", "layer_shares", "plan_copy_layer", "plan_for", "plan_lplus1"]
