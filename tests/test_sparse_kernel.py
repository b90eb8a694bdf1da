"""The compiled kernel of the sparse export (sslth/sparse_kernel.py): the same numbers as the torch
layout up to the summation order the certificate never relies on, on dense and conv pairs (stride,
padding, dilation, tiles cut short), certified and attacked as it runs, and refusing buffers that
point outside their shapes before reading anything."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sslth
from sslth.sparse_kernel import ROWS_FROM, SUPER, kernel_status, sparse_kernel
from tests.attack import QUICK, float64_copy, worst_gap
from tests.test_conv import _Images

needs_kernel = pytest.mark.skipif(
    sparse_kernel() is None, reason=f"sparse kernel {kernel_status()}"
)


def _conv_target() -> tuple[nn.Sequential, tuple[int, ...]]:
    torch.manual_seed(3)
    target = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 4),
    ).double()
    return target, (2, 7, 7)


def _dense_target() -> tuple[nn.Sequential, tuple[int, ...]]:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 3)).double(), (6,)


def _ticket(target, shape, dtype: str) -> sslth.Ticket:
    return sslth.prune(
        target,
        0.05,
        0.5,
        seed=0,
        dtype=dtype,
        progress=False,
        empirical_samples=100,
        input_shape=list(shape) if len(shape) > 1 else None,
    )


@pytest.fixture(scope="module", params=["dense", "conv"])
def case(request):
    target, shape = _dense_target() if request.param == "dense" else _conv_target()
    return target, shape, _ticket(target, shape, "float32")


def _torch_layout(module, x, monkeypatch) -> torch.Tensor:
    with monkeypatch.context() as patch:
        patch.setenv("SSLTH_SPARSE_KERNEL", "0")
        return module(x)


@needs_kernel
@pytest.mark.parametrize("accumulate", ["float64", "float32"])
def test_kernel_matches_the_torch_layout(case, accumulate, monkeypatch) -> None:
    target, shape, ticket = case
    module = ticket.export(sparse=True, accumulate=accumulate)
    input_shape = list(shape) if len(shape) > 1 else None
    rounding = sslth.certify(target, module, 1.0, input_shape=input_shape).rounding
    exact = float64_copy(ticket.export())
    # one input, a tile cut short, more than one tile, and two super-tiles of the row-grouped
    # layout (dense pairs from ROWS_FROM inputs on), the second cut short
    for batch in (1, 17, 40, ROWS_FROM, 2 * SUPER - 3):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        x = x / x.flatten(1).norm(dim=1).view(-1, *[1] * len(shape))  # on the unit sphere
        with torch.no_grad():
            fast, reference = module(x), _torch_layout(module, x, monkeypatch)
            truth = exact(x.double())
        assert fast.dtype == reference.dtype == torch.float32
        if accumulate == "float64":  # the same exact terms summed in float64, rounded once
            assert torch.allclose(fast, reference, rtol=2.0**-23, atol=1e-30)
        for out in (fast, reference):  # both within the certified rounding of the exact map
            assert float((out.double() - truth).flatten(1).norm(dim=1).max()) <= rounding


@needs_kernel
def test_float64_ticket_kernel_matches(case, monkeypatch) -> None:
    target, shape, _ = case
    module = _ticket(target, shape, "float64").export(sparse=True)
    x = torch.randn(9, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(module(x), _torch_layout(module, x, monkeypatch), rtol=1e-13)


@needs_kernel
def test_kernel_is_what_gets_certified_and_attacked(case) -> None:
    target, shape, ticket = case
    module = ticket.export(sparse=True)
    input_shape = list(shape) if len(shape) > 1 else None
    certificate = sslth.certify(target, module, 1.0, input_shape=input_shape)
    dim = math.prod(shape)
    exact = _Images(float64_copy(ticket.export()), shape)
    attack = worst_gap(
        _Images(float64_copy(target), shape),
        module,
        1.0,
        dim,
        module64=exact,
        kinks=len(shape) == 1,
        **QUICK,
    )
    assert attack.gap <= certificate.bound
    rounding = worst_gap(exact, module, 1.0, dim, module64=exact, seed=1, kinks=False, **QUICK)
    assert rounding.gap <= certificate.rounding


@needs_kernel
@pytest.mark.parametrize("buffer,value", [("rows", 10**6), ("inputs", -1), ("starts", 0)])
def test_out_of_range_buffers_are_refused_before_reading(case, buffer, value) -> None:
    target, shape, ticket = case
    module = ticket.export(sparse=True)
    pair = module.pairs()[0]
    tensor = getattr(pair, buffer)
    tensor[-1] = value
    x = torch.randn(3, *shape)
    with pytest.raises(sslth.NotATicketError, match="outside its shapes"):
        module(x)
