"""sslth.search.sizing: the planner's n and k, and its expected kept weights.

Tests that name a mutant were written against mutants that survived the mutation run of
docs/testing.md (mutmut 3 names: module, function, number).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sslth.config import random_target
from sslth.search.sizing import expected_kept, plan_layer, random_params
from sslth.target import as_target
from tests.conftest import first_fast


def test_plan_layer_with_a_fixed_k_respects_the_density():
    """search.plan.plan_layer__mutmut_43, _51: with k given, an n whose expected density
    exceeds the request (less the planner's margin, 2%) is skipped, and the n returned is the
    first that fits."""
    layer = as_target(random_target([10, 12], seed=1)).layers[0]
    density, k = 0.05, 3  # tight: the density, not the solvability, decides n here
    n, pick = plan_layer(layer, density, 1e-2, k=k, max_params=10**8)
    assert pick == k
    fits = [
        m
        for m in range(k, 64)
        if expected_kept(layer, m, k) <= 0.98 * density * random_params(layer, m)
    ]
    assert n == fits[0] > k


@pytest.mark.parametrize("bias", first_fast([False, True]))
@pytest.mark.slow
def test_expected_kept_of_a_conv_layer_matches_a_simulation(bias):
    """search.plan.expected_kept__mutmut_47, _53 (the conv branch: a conv's weight instances
    have kh·kw rows per output, its bias instances one): the expectation against a Monte Carlo
    run of the picks it models (each instance picks k of the n neurons of its sign in its
    block; a U entry is kept when some instance picked its neuron)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1, bias=bias))
    layer = as_target(model, input_shape=[2, 5, 5]).layers[0]
    n, k = 6, 2
    rows = 3 * 9
    rng = np.random.default_rng(0)
    trials = 400
    kept = 0
    for _ in range(trials):
        for _block_sign in range(2 * layer.d_in):
            used = np.zeros(n, dtype=bool)
            for _ in range(rows):
                used[rng.choice(n, k, replace=False)] = True
            kept += used.sum()
        if bias:
            used = np.zeros(n, dtype=bool)
            for _ in range(layer.d_out):
                used[rng.choice(n, k, replace=False)] = True
            kept += used.sum()
    second = rows * 2 * k * layer.d_in + (layer.d_out * k if bias else 0)
    simulated = second + kept / trials
    # the simulated mean of the kept U entries has a standard error of about 0.05 here
    assert expected_kept(layer, n, k) == pytest.approx(simulated, abs=0.25)


def test_the_peak_bound_never_changes_a_size(monkeypatch):
    """predicted_solvable skips the quadrature at z where even the density's peak (at 0) falls
    short: the peak's window is at least every z's, as floats, and the sizes are those of the
    planner that computes every window."""
    from sslth import theory
    from sslth.search import sizing
    from sslth.search.options import PruneOptions

    for k in range(2, 13):
        computed = theory.peak_density(k)
        assert computed <= sizing.PEAK_DENSITY[k] <= computed + 1e-4, k
        peak = 2.0 * 1e-3 * computed
        for z in np.linspace(0.0, 3.0, 7):
            assert theory.window_probability(k, float(z), 1e-3) <= peak, (k, z)
    targets = [
        (random_target([64, 32, 10], seed=0), PruneOptions(epsilon=0.03, density=0.1)),
        (random_target([20, 30, 5], seed=1, bias=True), PruneOptions(epsilon=0.01, density=0.2)),
        (random_target([6, 9, 4], seed=2), PruneOptions(epsilon=0.1, density=0.5, radius=3.0)),
    ]
    skipping = [sizing.sizes(as_target(t), o) for t, o in targets]
    sizing._log_window.cache_clear()
    monkeypatch.setattr(sizing, "_log_peak_window", lambda k, tolerance: math.inf)
    computing = [sizing.sizes(as_target(t), o) for t, o in targets]
    assert skipping == computing
