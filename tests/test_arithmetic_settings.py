"""Floating-point settings the rounding term does not cover are refused at certification, and
flush-to-zero is covered for hand-built networks with weights beyond [−1, 1]."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sslth
from sslth.errors import NotATicketError
from sslth.rounding import arithmetic_of


@pytest.fixture
def restore_settings():
    mkldnn = torch.backends.mkldnn.enabled
    precision = torch.get_float32_matmul_precision()
    yield
    torch.backends.mkldnn.enabled = mkldnn
    torch.set_float32_matmul_precision(precision)


def test_float32_conv_without_onednn_is_refused(restore_settings) -> None:
    if not torch.backends.nnpack.is_available():
        pytest.skip("this torch has no NNPACK")
    assert arithmetic_of(torch.float32, "cpu", convolution=True).name == "float32"
    torch.backends.mkldnn.enabled = False
    with pytest.raises(NotATicketError, match="NNPACK"):
        arithmetic_of(torch.float32, "cpu", convolution=True)
    # dense products and float64 convolutions do not go to NNPACK
    assert arithmetic_of(torch.float32, "cpu").name == "float32"
    assert arithmetic_of(torch.float64, "cpu", convolution=True).name == "float64"


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_reduced_precision_float32_is_refused(restore_settings, precision) -> None:
    torch.set_float32_matmul_precision(precision)
    with pytest.raises(NotATicketError, match="reduced precision|precision"):
        arithmetic_of(torch.float32, "cpu")
    assert arithmetic_of(torch.float64, "cpu").name == "float64"


def _identity_pair(weight: float) -> nn.Sequential:
    """A 1-input ticket network computing weight² · x through one positive and one negative
    neuron (hand-built, so its weights may leave [−1, 1])."""
    u = nn.Linear(1, 2, bias=False)
    v = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        u.weight.copy_(torch.tensor([[weight], [-weight]]))
        v.weight.copy_(torch.tensor([[weight, -weight]]))
    return nn.Sequential(u, nn.ReLU(), v).float()


def test_flush_to_zero_with_large_weights_is_covered() -> None:
    """With flush-to-zero a subnormal operand is zeroed, so one product can lose |w|·η: a
    network with weights 2^20 at radius 2^-130 (found by an adversarial review to break a
    bound that allowed only η per operation) must stay within its certificate."""
    weight = 2.0**20
    net = _identity_pair(weight)
    target = [torch.tensor([[weight * weight]], dtype=torch.float64)]
    radius = 2.0**-130
    bound = sslth.certify(target, net, radius).bound
    x = torch.tensor([[radius]], dtype=torch.float32)
    exact = weight * weight * radius
    if not torch.set_flush_denormal(True):
        pytest.skip("flush-to-zero is not supported on this CPU")
    try:
        with torch.no_grad():
            flushed = float(net(x)[0, 0])
    finally:
        torch.set_flush_denormal(False)
    assert flushed == 0.0  # the subnormal input was flushed: the error is the whole output
    assert abs(flushed - exact) <= bound
