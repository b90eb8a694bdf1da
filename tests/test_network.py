"""What counts as a ticket network (sslth/network.py): the structural checks an outside
mutation audit found untested, and the probe cross-check on every module."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sslth
from sslth.config import random_target


@pytest.fixture(scope="module")
def dense_case():
    target = random_target([3, 4, 2], bias=True, seed=8)
    return target, sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=200)


@pytest.fixture(scope="module")
def conv_case():
    target = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3)).double()
    ticket = sslth.prune(
        target, 0.5, 0.6, input_shape=(1, 5, 5), progress=False, empirical_samples=100
    )
    return ticket.target, ticket


@pytest.mark.parametrize("entry", [0, 1])
def test_a_second_layer_with_a_partly_non_zero_bias_is_refused(dense_case, entry):
    target, ticket = dense_case
    network = ticket.export()
    second = network[2]
    second.bias = nn.Parameter(torch.zeros(second.out_features, dtype=torch.float64))
    with torch.no_grad():
        second.bias[entry] = 1e-3  # one entry only: .all() would miss it
    with pytest.raises(
        sslth.NotATicketError, match="module 2 .*second layer of a pair has no bias"
    ):
        sslth.certify(target, network)
    with torch.no_grad():
        second.bias.zero_()  # an all-zero bias computes the same function: accepted
    assert sslth.certify(target, network).bound == pytest.approx(
        sslth.certify(target, ticket.export()).bound
    )


class _ConvForward(nn.Conv2d):
    """Overrides only _conv_forward (Conv2d.forward calls it): twice the convolution."""

    def _conv_forward(self, x, weight, bias):
        return 2 * super()._conv_forward(x, weight, bias)


@pytest.mark.parametrize("position", [0, 2])
def test_a_conv_subclass_overriding_only_conv_forward_is_refused(conv_case, position):
    target, ticket = conv_case
    network = ticket.export()
    dressed = copy.deepcopy(network[position])
    dressed.__class__ = _ConvForward
    network[position] = dressed
    with pytest.raises(sslth.NotATicketError, match=f"module {position} .*_conv_forward"):
        sslth.certify(target, network)


def test_the_probe_names_a_module_whose_geometry_lies(conv_case, monkeypatch):
    """A conv whose stride attribute was changed after the kernel check: the probe runs it and
    sees another map (the structural check is bypassed here to show the probe alone)."""
    target, ticket = conv_case
    network = ticket.export()
    monkeypatch.setattr(type(target.layers[1].kind), "module_problem", lambda *a: None)
    network[4].padding = (1, 1)
    with pytest.raises(sslth.NotATicketError, match="module 4 .*(outputs per probe|does not)"):
        sslth.certify(target, network)


def test_the_probe_accepts_real_tickets_in_both_dtypes(dense_case, conv_case):
    for target, ticket in (dense_case, conv_case):
        for network in (ticket.network, ticket.export(), ticket.export().float()):
            assert sslth.certify(target, network).bound > 0


def test_the_operator_probe_refuses_a_wrong_reduction(dense_case, monkeypatch):
    """If the reduction of a pair to (A, B, offset) were wrong, running the network on the
    probe points of the ball shows it: the certificate is refused, naming the pair."""
    target, ticket = dense_case
    reduce = sslth.network.pair_operator

    def off_by_a_little(*args, **kwargs):
        operator = reduce(*args, **kwargs)
        operator.positive = operator.positive * (1 + 1e-6)
        return operator

    monkeypatch.setattr("sslth.network.pair_operator", off_by_a_little)
    with pytest.raises(sslth.NotATicketError, match="pair 1 \\(modules 0-2\\).*operator"):
        sslth.certify(target, ticket.export())
    network = ticket._build_network()
    ticket._network, saved = network, ticket._network
    try:
        with pytest.raises(sslth.NotATicketError, match="pair 1"):
            ticket.evaluate(samples=50)
    finally:
        ticket._network = saved


def test_a_network_mixing_dtypes_is_refused(dense_case):
    target, ticket = dense_case
    network = ticket.export()
    network[2] = network[2].float()
    with pytest.raises(sslth.NotATicketError, match="mixes dtypes"):
        sslth.certify(target, network)


def test_second_norm_bounds_the_magnitude_conv(conv_case):
    """N_V (PairStats.second_norm) is at least the operator norm of the conv with kernel |V|,
    computed here from the materialized conv matrix (docs/design.md §4)."""
    target, ticket = conv_case
    network = ticket.export()
    for index, layer in enumerate(target.layers):
        second = network[4 * index + 2]
        operator = sslth.network.pair_operator(
            network[4 * index].weight.detach(),
            network[4 * index].bias.detach(),
            second.weight.detach(),
            layer.kind,
        )
        channels, (h, w) = second.in_channels, layer.kind.in_hw
        basis = torch.eye(channels * h * w, dtype=torch.float64).reshape(-1, channels, h, w)
        columns = torch.nn.functional.conv2d(
            basis, second.weight.detach().abs(), None, second.stride, second.padding,
            second.dilation,
        )  # fmt: skip
        exact = torch.linalg.matrix_norm(columns.reshape(basis.shape[0], -1), ord=2)
        assert operator.stats.second_norm >= float(exact) * (1 - 1e-9)
