"""sslth.certificate: the exact part against exact rational arithmetic, the reading of a pair,
the empirical error's sample points.

A and B are float64 sums over hidden neurons; the certified E must cover what their rounding
hides. Here the float64 sums equal W exactly while the exact sums do not: the computed error
weight [A − W, W − B] is 0, and only the term for A and B's own rounding keeps the bound above
the true error (a mutant that dropped it survived the suite before this test).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

import sslth
from sslth.certificate import _ball_points, pair_operator


def _network(values: list[float]) -> nn.Sequential:
    """One input, 2·len(values) hidden neurons (u = +1, then −1), V = values, then −values: a
    pair computing A σ(x) − B σ(−x) with A = B = Σ values, summed in float64."""
    hidden = 2 * len(values)
    first = nn.Linear(1, hidden, bias=False, dtype=torch.float64)
    second = nn.Linear(hidden, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0]] * len(values) + [[-1.0]] * len(values)))
        second.weight.copy_(torch.tensor([values + [-v for v in values]], dtype=torch.float64))
    return nn.Sequential(first, nn.ReLU(), second)


@pytest.mark.parametrize("radius", [1.0, 1e6])
def test_the_rounding_of_a_and_b_is_covered(radius):
    values = [0.1, 0.2, 0.3]
    computed = 0.0
    for value in values:  # the neuron order sslth sums in
        computed += value
    exact = sum(Fraction(v) for v in values)
    assert Fraction(computed) != exact  # the float64 sum hides an error ...
    target = nn.Sequential(nn.Linear(1, 1, bias=False, dtype=torch.float64))
    with torch.no_grad():
        target[0].weight.fill_(computed)  # ... and the target is that float64 sum
    certificate = sslth.certify(target, _network(values), radius)
    true_error = float(abs(exact - Fraction(computed))) * radius  # sup over |x| <= R, exactly
    assert true_error > 0
    assert certificate.exact >= true_error


def test_a_neuron_with_an_input_weight_and_a_negative_bias_is_not_a_ticket():
    """σ(a x + c) with c < 0 is not a σ(x): the reduction to A σ(x) − B σ(−x) would be wrong
    (a mutant accepting it survived the suite before this test)."""
    network = _network([0.5, 0.25])
    with torch.no_grad():
        network[0].bias = nn.Parameter(torch.tensor([0.0, -0.3, 0.0, 0.0], dtype=torch.float64))
    target = nn.Sequential(nn.Linear(1, 1, bias=False, dtype=torch.float64))
    with pytest.raises(sslth.NotATicketError, match="both an input weight and a bias"):
        sslth.certify(target, network)


def test_a_neuron_reading_two_inputs_is_not_a_ticket():
    """σ(u₁ x₁ + u₂ x₂) is not a sum of one-input terms (a mutant accepting it survived)."""
    first = nn.Linear(2, 2, bias=False, dtype=torch.float64)
    second = nn.Linear(2, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[0.5, 0.25], [0.0, -1.0]]))
        second.weight.copy_(torch.tensor([[1.0, -1.0]]))
    target = nn.Sequential(nn.Linear(2, 1, bias=False, dtype=torch.float64))
    with pytest.raises(sslth.NotATicketError, match="hidden neuron 0 reads 2 inputs"):
        sslth.certify(target, nn.Sequential(first, nn.ReLU(), second))


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


def test_the_masked_pair_operator_is_the_same_whatever_its_runs_of_blocks(monkeypatch):
    """The report regenerates a pair from its compact masks a run of blocks at a time (a few
    operators per run, not ~32 per block): any run length gives the same bits, and they are
    the dense masked pair's (a conv pair with a bias block and grown, uneven blocks)."""
    import sslth.certificate as certificate
    from sslth.construct import (
        PairSpec,
        first_layer_bias,
        first_layer_weight,
        second_layer_weight,
    )
    from sslth.kinds import Conv2d
    from sslth.masks import PairMasks

    kind = Conv2d((3, 3), in_hw=(6, 6))
    spec = PairSpec(3, 4, 5, True, 11, kind).with_blocks({1: 8, 3: 6})
    generator = torch.Generator().manual_seed(3)
    shape = second_layer_weight(spec).shape
    masks = PairMasks(
        spec,
        torch.rand(spec.hidden, generator=generator) < 0.6,
        torch.rand(shape, generator=generator) < 0.3,
    )

    def fields(op):
        stats = vars(op.stats)
        return [op.positive, op.negative, op.offset, *stats.values()]

    default = fields(certificate.masked_pair_operator(spec, masks))
    monkeypatch.setattr(certificate, "REDUCTION_ENTRIES", 7)  # a block per run
    single = fields(certificate.masked_pair_operator(spec, masks))
    first = first_layer_weight(spec) * masks.first_weight_mask()
    bias = first_layer_bias(spec) * masks.first_bias_mask()
    second = second_layer_weight(spec) * masks.second
    dense = certificate.pair_operator(first, bias, second, kind)
    for a, b, c in zip(default, single, fields(dense), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b) and torch.equal(a, c)
        else:
            assert a == b == c
