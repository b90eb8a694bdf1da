"""Refine, the search's policy after a first success (sslth/search/refine.py and
``Search.refine``): which smaller sizes it tries, which layers it leaves alone, and that what it
returns is a certified candidate that still meets ε and the density."""

from __future__ import annotations

import time

import pytest
import torch

import sslth
from sslth.config import random_target
from sslth.device import resolve_device
from sslth.search import _ticket, loop
from sslth.search.options import PruneOptions
from sslth.search.refine import REFINE_MAX_INSTANCES, REFINE_STEPS, refinable, smaller_sizes
from sslth.search.sizing import choose_k
from sslth.subset_sum import make_solver
from sslth.target import TargetLayer, as_target


def _layer(d_in: int, d_out: int, bias: bool = False, seed: int = 0) -> TargetLayer:
    return as_target(random_target([d_in, d_out], bias=bias, seed=seed)).layers[0]


def _weights_only(d_in: int, d_out: int) -> TargetLayer:
    return TargetLayer(torch.zeros(d_out, d_in, dtype=torch.float64), None)


def test_refinable_is_the_instance_budget_exactly():
    # d_out · taps · (2 d_in + 1) instances: 2 d_in + 1 = 1,001 divides 200,200 = 200 · 1,001
    assert REFINE_MAX_INSTANCES == 200_000
    assert refinable(_weights_only(d_in=99_999, d_out=1))  # 199,999 instances
    assert not refinable(_weights_only(d_in=100_000, d_out=1))  # 200,001
    assert refinable(_weights_only(d_in=500, d_out=199))  # 199,199
    assert not refinable(_weights_only(d_in=500, d_out=200))  # 200,200


def test_a_conv_layer_counts_its_kernel_positions():
    conv = torch.nn.Conv2d(10, 20, 3)
    target = as_target(torch.nn.Sequential(conv), input_shape=(10, 8, 8))
    layer = target.layers[0]
    assert layer.kind.taps == 9
    assert refinable(layer)  # 20 · 9 · 21 = 3,780 instances
    wide = as_target(torch.nn.Sequential(torch.nn.Conv2d(300, 40, 3)), input_shape=(300, 5, 5))
    # 40 · 9 · 601 = 216,360 instances: the same layer dense (40 · 601) would be refined
    assert not refinable(wide.layers[0])
    assert refinable(_weights_only(d_in=300, d_out=40))


def test_smaller_sizes_shrink_by_an_eighth_at_most_six_times():
    layer = _layer(8, 6)
    sizes = list(smaller_sizes(layer, 40, fixed_k=2, density=1.0))
    # 40 − 5 = 35, − 4 = 31, − 3 = 28, − 3 = 25, − 3 = 22, − 2 = 20
    assert sizes == [(35, 2), (31, 2), (28, 2), (25, 2), (22, 2), (20, 2)]
    assert len(sizes) == REFINE_STEPS


def test_smaller_sizes_step_one_neuron_below_eight_and_stop_at_zero():
    layer = _layer(8, 6)
    assert list(smaller_sizes(layer, 3, fixed_k=1, density=1.0)) == [(2, 1), (1, 1)]
    assert list(smaller_sizes(layer, 1, fixed_k=1, density=1.0)) == []


def test_smaller_sizes_stop_where_a_fixed_k_no_longer_fits():
    layer = _layer(8, 6)
    assert list(smaller_sizes(layer, 6, fixed_k=4, density=1.0)) == [(5, 4), (4, 4)]


def test_smaller_sizes_take_k_from_choose_k_and_stop_where_the_density_allows_none():
    layer = _layer(8, 6, bias=True)
    sizes = list(smaller_sizes(layer, 30, fixed_k=None, density=0.3))
    assert sizes and all(k == choose_k(layer, n, 0.3) >= 1 for n, k in sizes)
    assert [n for n, _ in sizes] == sorted({n for n, _ in sizes}, reverse=True)
    # a density so low that no k fits at any smaller n: refine tries nothing
    assert choose_k(layer, 26, 1e-4) < 1
    assert list(smaller_sizes(layer, 30, fixed_k=None, density=1e-4)) == []


def test_refine_shrinks_n_and_keeps_the_guarantees():
    target = random_target([6, 8, 3], seed=4)
    unrefined = sslth.prune(target, 0.05, 0.3, refine=False, progress=False, empirical_samples=200)
    refined = sslth.prune(target, 0.05, 0.3, refine=True, progress=False, empirical_samples=200)
    assert refined.report.certified_error <= 0.05 and refined.report.density <= 0.3
    assert sum(refined.report.n) <= sum(unrefined.report.n)
    assert refined.report.random_params <= unrefined.report.random_params


def test_refine_returns_a_certified_candidate():
    """refine's candidate carries its own certificate and measured density (it once was a
    placeholder with bound 0): they match the report recomputed from the ticket's masks."""
    target = random_target([4, 6, 3], seed=7)
    options = PruneOptions(epsilon=0.05, density=0.3, progress=False, empirical_samples=200)
    search = loop.Search(
        sslth.as_target(target), options, resolve_device("cpu"), make_solver(options.method)
    )
    search.choose_sizes()
    first = search.run()
    assert first.meets_epsilon and first.meets_density
    refined = search.refine()
    assert refined.meets_epsilon and refined.meets_density and refined.bound > 0
    assert [n for n, _, _ in refined.sizes] <= [n for n, _, _ in first.sizes]
    report = _ticket(search, refined, time.perf_counter()).report
    assert report.certified_error == pytest.approx(refined.bound, rel=1e-9)
    assert report.n == [n for n, _, _ in refined.sizes]
    assert report.density <= options.density
