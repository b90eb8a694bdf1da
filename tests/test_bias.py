"""Targets with biases (issue 6): the certificate covers the bias path, the ticket takes the
target's input, and its output stays within the certified bound of the target's."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import sslth
from sslth import certify
from tests.conftest import first_fast

# (widths, spectral norm of every layer, bias scale, ε, density): depth 1 to 3, widths of 1,
# d_in != d_out, norms above 1
CASES = [
    ([3, 2], 1.0, 0.5, 0.05, 0.4),
    ([1, 1], 1.0, 1.0, 0.05, 0.4),
    ([1, 4], 0.8, 0.3, 0.05, 0.4),
    ([5, 1], 1.0, 0.7, 0.05, 0.4),
    ([4, 3, 2], 1.0, 0.3, 0.05, 0.4),
    ([2, 1, 3], 1.0, 0.5, 0.05, 0.4),
    ([6, 4], 2.0, 0.5, 0.05, 0.4),
    ([3, 5, 2], 1.5, 0.2, 0.1, 0.4),
    ([4, 3, 3, 2], 1.0, 0.3, 0.1, 0.4),
    ([2, 3, 1, 2], 1.2, 0.4, 0.1, 0.4),
]


def random_target(widths: list[int], norm: float, bias_scale: float, seed: int) -> nn.Sequential:
    """An nn.Sequential with biases whose layers have spectral norm ``norm``."""
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for index, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        linear = nn.Linear(d_in, d_out)
        weight = torch.randn(d_out, d_in, generator=generator)
        weight *= norm / torch.linalg.matrix_norm(weight, ord=2)
        bias = bias_scale * (2 * torch.rand(d_out, generator=generator) - 1)
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        modules.append(linear)
        if index < len(widths) - 2:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def ball(count: int, dim: int, radius: float, seed: int) -> torch.Tensor:
    """Random points of the ball of radius ``radius``: on the sphere and inside it."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    x /= torch.linalg.vector_norm(x, dim=1, keepdim=True)
    scale = torch.rand(count, 1, generator=generator, dtype=torch.float64)
    scale[: count // 2] = 1.0
    return x * scale * radius


def check_ticket(target: nn.Sequential, ticket: sslth.Ticket, epsilon: float, radius: float):
    report = ticket.report
    assert report.empirical_error <= report.certified_error * (1 + 1e-9) + 1e-12
    assert report.certified_error <= epsilon
    # the report is recomputed from the network: certify it again from the modules
    recomputed = certify(sslth.as_target(target), ticket.network, radius).bound
    assert math.isclose(recomputed, report.certified_error, rel_tol=1e-9, abs_tol=1e-12)
    d_in = target[0].in_features
    x = ball(2000, d_in, radius, seed=1)
    dtype = ticket.dtype
    with torch.no_grad():
        expected = copy.deepcopy(target).double()(x)
        got = ticket.network(x.to(dtype)).double()
        exported = ticket.export()(x.to(dtype)).double()
    deviation = torch.linalg.vector_norm(expected - got, dim=1).max().item()
    # the certificate covers the module in its own dtype: no slack
    assert deviation <= report.certified_error
    assert torch.equal(got, exported)


@pytest.mark.parametrize("case", first_fast(range(len(CASES)), 2))
def test_random_targets_with_bias(case: int) -> None:
    widths, norm, bias_scale, epsilon, density = CASES[case]
    target = random_target(widths, norm, bias_scale, seed=100 + case)
    radius = 1.0 + 0.5 * (case % 3)
    ticket = sslth.prune(target, epsilon, density, radius=radius, seed=case, progress=False)
    assert ticket.report.density <= density
    assert all(layer.bias is not None for layer in sslth.as_target(target).layers)
    check_ticket(target, ticket, epsilon, radius)


def test_bias_only_layer() -> None:
    """W = 0 and b != 0: the ticket outputs the constant b through the bias block alone."""
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([0.6, -0.4]))
    target = nn.Sequential(linear)
    epsilon = 0.02
    ticket = sslth.prune(target, epsilon, 0.4, seed=3, progress=False)
    check_ticket(target, ticket, epsilon, 1.0)
    layer = ticket.report.layers[0]
    assert layer.pair_error_norm <= epsilon  # A and B approximate the zero matrix
    with torch.no_grad():
        out = ticket.network(torch.zeros(1, 3, dtype=ticket.dtype))[0].double()
    assert torch.allclose(out, torch.tensor([0.6, -0.4], dtype=torch.float64), atol=epsilon)


def test_bias_only_first_layer_of_two() -> None:
    """A zero first weight makes the whole target constant; the bias path carries it."""
    first, second = nn.Linear(2, 3), nn.Linear(3, 2)
    with torch.no_grad():
        first.weight.zero_()
        first.bias.copy_(torch.tensor([0.5, -0.3, 0.2]))
        second.weight.copy_(torch.tensor([[0.4, 0.1, -0.5], [-0.2, 0.6, 0.3]]))
        second.bias.copy_(torch.tensor([0.1, -0.2]))
    target = nn.Sequential(first, nn.ReLU(), second)
    ticket = sslth.prune(target, 0.05, 0.4, seed=4, progress=False)
    check_ticket(target, ticket, 0.05, 1.0)


def test_certificate_counts_the_bias() -> None:
    """Dropping the bias block's picks must show in the certificate (it is not ignored)."""
    target = random_target([3, 2], 1.0, 0.8, seed=7)
    ticket = sslth.prune(target, 0.05, 0.4, seed=0, progress=False)
    network = ticket.export()
    first = network[0]
    spec = ticket.specs[0]
    with torch.no_grad():
        first.bias[spec.weight_neurons :] = 0.0  # silence the bias block
    bound = certify(sslth.as_target(target), network, 1.0)
    bias_norm = torch.linalg.vector_norm(target[0].bias.detach().double()).item()
    assert bound.layers[0].bias_error >= bias_norm - 0.05
    assert bound.bound > 0.05


def test_report_from_masks_equals_report_from_network() -> None:
    """``prune`` reports from the compact masks and the seed (no dense U); building the network
    and evaluating again from its modules gives the same figures."""
    target = random_target([4, 3, 2], 1.3, 0.5, seed=11)
    ticket = sslth.prune(target, 0.05, 0.4, seed=2, progress=False)
    compact = ticket.report
    assert ticket._network is None  # the dense network is only built when asked for
    rebuilt = ticket.evaluate(samples=2000, ascent_steps=20)
    assert math.isclose(compact.certified_error, rebuilt.certified_error, rel_tol=1e-9)
    assert compact.ticket_params == rebuilt.ticket_params
    assert compact.density == rebuilt.density
    for a, b in zip(compact.layers, rebuilt.layers, strict=True):
        assert (a.k_min, a.k_max, a.kept_params) == (b.k_min, b.k_max, b.kept_params)
        assert math.isclose(a.max_weight_error, b.max_weight_error, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(a.bias_error, b.bias_error, rel_tol=1e-9, abs_tol=1e-15)
