"""Tests written against mutants that survived the mutation run of docs/testing.md.

Each test names the mutant it kills (mutmut 3 names: module, function, number) and states the
behaviour the rest of the suite did not pin down.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sslth
from sslth.certificate import _ball_points, pair_operator
from sslth.config import random_target
from sslth.construct import PairSpec, construct, specs_for
from sslth.masks import PairMasks, plain_copy
from sslth.search.sizing import expected_kept, plan_layer, random_params
from sslth.target import as_target
from sslth.ticket import Ticket
from tests.conftest import first_fast


@pytest.fixture(scope="module")
def biased_ticket():
    target = random_target([3, 5, 2], bias=True, seed=4)
    return sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=200)


def test_specs_for_refuses_a_list_of_the_wrong_length():
    """construct.specs_for__mutmut_24 (zip without strict): one n per target layer, no more,
    no fewer, else the pairs would silently not match the target's layers."""
    target = as_target(random_target([3, 4, 2]))
    assert len(specs_for(target, [2, 3], seed=0)) == 2
    for wrong in ([2], [2, 3, 4]):
        with pytest.raises(ValueError):
            specs_for(target, wrong, seed=0)


def test_compact_export_of_masks_that_keep_nothing(biased_ticket):
    """ticket.Ticket._compact_from_masks__mutmut_64: a pair whose masks keep no neuron has a
    (rows, 0) V block; the compact network then outputs exactly 0, as the dense one does."""
    t = biased_ticket
    empty = [
        PairMasks(m.spec, torch.zeros_like(m.kept_neurons), torch.zeros_like(m.second))
        for m in t.masks
    ]
    ticket = Ticket(
        t.target,
        t.specs,
        empty,
        seed=t.seed,
        epsilon=t.epsilon,
        radius=t.radius,
        tolerances=t.tolerances,
    )
    compact = ticket.export(compact=True)
    x = torch.randn(7, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(compact(x), torch.zeros(7, 2, dtype=torch.float64))
        assert torch.equal(ticket.export()(x), compact(x))


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2),
        torch.nn.Conv2d(2, 3, (3, 1), padding=(1, 0), padding_mode="circular"),
    ],
    ids=["padding-dilation", "circular"],
)
def test_plain_copy_keeps_a_pruned_convs_geometry(module):
    """masks.plain_copy__mutmut_18, _19, _31 (padding, dilation or padding_mode dropped): the
    copy computes what the pruned module computes, on an image where borders matter."""
    module = module.double()
    mask = torch.rand(module.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    torch.nn.utils.prune.custom_from_mask(module, "weight", mask)
    copy = plain_copy(module)
    assert not hasattr(copy, "weight_mask")
    for name in ("padding", "dilation", "stride", "padding_mode", "kernel_size"):
        assert getattr(copy, name) == getattr(module, name), name
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(copy(x), module(x))


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.Flatten(),
        torch.nn.Flatten(start_dim=2),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        torch.nn.ReLU(),
    ],
    ids=["flatten", "flatten-2", "maxpool-ceil", "avgpool-ceil", "relu"],
)
def test_plain_copy_rebuilds_parameter_free_modules(module):
    """masks._constructor_arguments__mutmut_1, _12 (a misspelt argument): a parameter-free
    module is rebuilt with the same arguments and computes the same."""
    copy = plain_copy(module)
    assert type(copy) is type(module) and copy is not module
    assert repr(copy) == repr(module)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(copy(x), module(x))


def test_a_neuron_with_an_input_weight_and_a_bias_is_not_a_ticket():
    """certify.pair_operator__mutmut_47, _49: the refusal names the first such neuron."""
    u = torch.zeros(5, 3)
    u[1, 0], u[3, 2], u[4, 1] = 0.5, -0.2, 0.3
    bias = torch.zeros(5)
    bias[0] = 0.7  # a bias neuron: fine
    bias[3] = 0.1  # reads x_2 and has a bias: not a pair of the construction
    v = torch.randn(2, 5)
    with pytest.raises(sslth.NotATicketError, match="hidden neuron 3 has both an input weight"):
        pair_operator(u, bias, v)
    bias[3] = 0.0
    op = pair_operator(u, bias, v)  # and without it the pair is read
    assert op.positive.shape == (2, 3)


def test_a_block_cannot_shrink():
    """construct.PairSpec.with_blocks__mutmut_4: the error says which block and from what."""
    spec = specs_for(as_target(random_target([3, 2])), [4], seed=0)[0]
    grown = spec.with_blocks({1: 6})
    assert grown.block_neurons == (4, 6, 4)
    with pytest.raises(ValueError, match="block 1 cannot shrink from 6"):
        grown.with_blocks({1: 5})


def test_a_ticket_needs_one_mask_per_pair(biased_ticket):
    """ticket.Ticket._build_network__mutmut_34 (zip without strict): a spare mask is an error,
    not silently dropped."""
    t = biased_ticket
    ticket = Ticket(
        t.target,
        t.specs,
        t.masks + t.masks[:1],
        seed=t.seed,
        epsilon=t.epsilon,
        radius=t.radius,
        tolerances=t.tolerances,
    )
    with pytest.raises(ValueError):
        ticket.network  # noqa: B018


def test_construct_refuses_empty_blocks():
    """construct.pair_modules__mutmut_4: the error names the bad n."""
    with pytest.raises(ValueError, match="neurons_per_input must be >= 1, got 0"):
        construct(random_target([3, 2]), 0)


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


def test_interior_sample_points_fill_the_ball():
    """certify._ball_points__mutmut_30 (one radius for every interior point): the interior half
    of the empirical error's samples is uniform in the ball, so its radii are spread and a
    fraction 2^-dim of them lies within R/2."""
    dim, radius, count = 3, 2.0, 4000
    sphere, inner = _ball_points(count, dim, radius, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        torch.linalg.vector_norm(sphere, dim=1), torch.full((count,), radius, dtype=torch.float64)
    )
    norms = torch.linalg.vector_norm(inner, dim=1)
    assert float(norms.max()) <= radius * (1 + 1e-12)
    assert float((norms < radius / 2).double().mean()) == pytest.approx(2.0**-dim, abs=0.03)
    assert float((norms > radius * 0.5 ** (1 / dim)).double().mean()) == pytest.approx(
        0.5, abs=0.05
    )


def test_pair_spec_normalises_its_grown_blocks():
    """construct.PairSpec.__post_init____mutmut_8: ``grown`` is stored sorted, as ints, one
    entry per block, so equal specs compare and hash equal whatever order they grew in."""
    a = PairSpec(3, 2, 4, False, 7, grown=[(2, 6.0), (0, 5)])
    b = PairSpec(3, 2, 4, False, 7, grown=((0, 5), (2, 6)))
    assert a.grown == ((0, 5), (2, 6)) and all(type(n) is int for _, n in a.grown)
    assert a == b and hash(a) == hash(b)
    assert a.block_neurons == (5, 4, 6)


def test_pair_stats_record_the_largest_weight_bias_included():
    """certify._Reduction.add__mutmut_132: ``largest_weight`` (the flush-to-zero scale of the
    rounding term) covers U's bias as well as U and V."""
    u = torch.zeros(4, 2, dtype=torch.float64)
    u[0, 0], u[1, 1] = 0.5, -0.25
    bias = torch.tensor([0.0, 0.0, 3.0, 0.0], dtype=torch.float64)
    v = torch.full((2, 4), 0.5, dtype=torch.float64)
    assert pair_operator(u, bias, v).stats.largest_weight == 3.0
    bias[2] = 0.1
    assert pair_operator(u, bias, v).stats.largest_weight == 0.5
