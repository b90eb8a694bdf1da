"""The certificate's exact part (sslth/certificate.py) against exact rational arithmetic.

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
