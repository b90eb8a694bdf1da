"""The rounding term and the floating-point settings it covers (sslth/rounding.py).

* An independent reference (tests/rounding_reference.py, written from docs/design.md §4) gives
  the rounding term of random ticket-structured networks; sslth's must never be below it. An
  outside audit's mutant that used the first layer's fan-in for the second layer's rounding
  (120× too small on a float32 ticket) was caught only by a golden value before this test.
* oneDNN and ``torch.backends`` precision settings that allow TF32/bfloat16 in float32 are
  refused with NotATicketError (not torch's RuntimeError), for matmuls and convolutions.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import sslth
from sslth.errors import NotATicketError
from sslth.rounding import arithmetic_of
from tests.rounding_reference import rounding_term


def _ticket_network(seed: int, widths: list[int], n: int, keep: float, dtype) -> nn.Sequential:
    """A random network with a ticket's structure for an MLP of ``widths`` (with biases): each
    hidden neuron reads one input (2n per input) or only its bias (a bias block of 2n), U and V
    Uniform[−1, 1], a fraction ``keep`` of each layer's weights kept."""
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for index, (d_in, d_out) in enumerate(zip(widths, widths[1:], strict=False)):
        hidden = 2 * n * (d_in + 1)
        first, second = nn.Linear(d_in, hidden), nn.Linear(hidden, d_out, bias=False)
        reads = torch.arange(hidden) // (2 * n)  # block j reads input j; the last block, the bias
        u = torch.zeros(hidden, d_in, dtype=torch.float64)
        values = 2 * torch.rand(hidden, generator=generator, dtype=torch.float64) - 1
        kept = torch.rand(hidden, generator=generator) < keep
        rows = torch.arange(hidden)[(reads < d_in) & kept]
        u[rows, reads[rows]] = values[rows]
        c = torch.where((reads == d_in) & kept, values, 0.0)
        v = 2 * torch.rand(d_out, hidden, generator=generator, dtype=torch.float64) - 1
        v *= torch.rand(d_out, hidden, generator=generator) < keep
        with torch.no_grad():
            first.weight.copy_(u), first.bias.copy_(c), second.weight.copy_(v)
        modules += [first, nn.ReLU(), second] + ([nn.ReLU()] if index < len(widths) - 2 else [])
    return nn.Sequential(*modules).to(dtype)


def _target(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(d_in, d_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


def _drawn_cases(count: int = 30) -> list[tuple]:
    """``count`` random cases from one seeded stream (no property-testing dependency): the
    seed, 2-4 widths in 1..6, n in 1..6, the kept fraction, the dtype and the radius."""
    draw = random.Random(20261204)
    return [
        (
            draw.randrange(2**31),
            [draw.randint(1, 6) for _ in range(draw.randint(2, 4))],
            draw.randint(1, 6),
            draw.choice([0.3, 0.7, 1.0]),
            draw.choice(["float32", "float64"]),
            draw.choice([1e-3, 1.0, 50.0]),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize(("seed", "widths", "n", "keep", "dtype", "radius"), _drawn_cases())
def test_rounding_term_is_never_below_the_independent_reference(
    seed, widths, n, keep, dtype, radius
):
    network = _ticket_network(seed, widths, n, keep, getattr(torch, dtype))
    target = _target(widths)
    certificate = sslth.certify(target, network, radius)
    weights = [m.weight.detach().numpy() for m in target if isinstance(m, nn.Linear)]
    expected = rounding_term(network, radius, dtype, weights)
    assert certificate.rounding >= expected[-1] * (1 - 1e-9)
    for layer, reference in zip(certificate.layers, expected, strict=True):
        assert layer.rounding_bound >= reference * (1 - 1e-9)


def test_second_layer_fan_in_drives_a_float32_rounding_term():
    """Wide V (fan-in ~120 live terms per output) and one-term U: the term is γ_{m_V}-sized,
    which the first layer's fan-in (2) would understate ~60-fold."""
    network = _ticket_network(7, [30, 4], 2, 1.0, torch.float32)
    certificate = sslth.certify(_target([30, 4]), network, 1.0)
    (expected,) = rounding_term(network, 1.0, "float32")
    assert expected <= certificate.rounding <= 4 * expected


@pytest.fixture
def restore_precisions():
    mkldnn = torch.backends.mkldnn
    owners = [torch.backends, mkldnn, mkldnn.matmul, mkldnn.conv]
    saved = [owner.fp32_precision for owner in owners]
    yield
    for owner, value in zip(owners, saved, strict=True):
        owner.fp32_precision = value


@pytest.mark.parametrize("owner", ["backends", "mkldnn", "mkldnn.matmul", "mkldnn.conv"])
@pytest.mark.parametrize("value", ["tf32", "bf16"])
def test_reduced_onednn_precisions_are_refused_for_float32(restore_precisions, owner, value):
    setting = torch.backends
    for part in owner.split(".") if owner != "backends" else []:
        setting = getattr(setting, part)
    setting.fp32_precision = value
    with pytest.raises(NotATicketError, match="reduced precision"):
        arithmetic_of(torch.float32, "cpu", convolution=True)
    if owner != "mkldnn.conv":  # a conv-only setting leaves dense products alone
        with pytest.raises(NotATicketError, match="reduced precision"):
            arithmetic_of(torch.float32, "cpu")
    else:
        assert arithmetic_of(torch.float32, "cpu").name == "float32"
    assert arithmetic_of(torch.float64, "cpu", convolution=True).name == "float64"


def test_a_float32_conv_ticket_under_onednn_tf32_is_refused(restore_precisions):
    target = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).double()
    ticket = sslth.prune(
        target, 0.5, 0.6, input_shape=(1, 4, 4), progress=False, empirical_samples=100
    )
    network = ticket.export().float()
    assert sslth.certify(ticket.target, network).arithmetic == "float32"
    torch.backends.mkldnn.conv.fp32_precision = "tf32"
    with pytest.raises(NotATicketError, match="mkldnn.conv.fp32_precision = 'tf32'"):
        sslth.certify(ticket.target, network)


def test_average_pooling_adds_its_own_rounding():
    """docs/design.md §4: an average pool of s inputs adds γ_{s+1} (Z + Δ) (its sum and its
    division round); max pooling, Flatten and ReLU add nothing."""
    from sslth.certificate import _through_ops
    from sslth.ops import AVGPOOL, FLATTEN, MAXPOOL, RELU, Op

    arithmetic = arithmetic_of(torch.float32, "cpu")
    z, delta = _through_ops((Op(AVGPOOL, (2, 3)),), 2.0, 0.5, arithmetic)
    assert z == 2.0 and delta >= 0.5 + arithmetic.gamma(7) * 2.5
    exact = (Op(MAXPOOL, (2, 2)), Op(FLATTEN), Op(RELU))
    assert _through_ops(exact, 2.0, 0.5, arithmetic) == (2.0, 0.5)


def test_a_ticket_rounding_term_uses_the_capped_lipschitz_constant():
    """A pruned ticket has A ≈ B ≈ W, so ‖[A, −B]‖ ≈ √2 ‖W‖ while ‖W‖ + ‖[A − W, W − B]‖ ≈
    ‖W‖: the certificate carries the rounding with the cap (never below the capped reference)
    and is clearly below the uncapped reference after three pairs."""
    torch.manual_seed(0)
    target = _target([6, 8, 8, 3])
    ticket = sslth.prune(target, 0.05, 0.3, progress=False, empirical_samples=200)
    certificate = sslth.certify(target, ticket.network, 1.0)
    weights = [m.weight.detach().numpy() for m in target if isinstance(m, nn.Linear)]
    capped = rounding_term(ticket.network, 1.0, "float64", weights)[-1]
    uncapped = rounding_term(ticket.network, 1.0, "float64")[-1]
    assert certificate.rounding >= capped * (1 - 1e-9)
    assert certificate.rounding < 0.9 * uncapped
