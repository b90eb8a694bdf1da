"""Inputs of either float dtype (issue 24): ``ticket(x)`` and every exported module take float32
or float64 tensors whatever the ticket's dtype, converting exactly or refusing in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sslth
from sslth.inputs import TicketSequential, accept_input
from tests.graph_targets import random_graph_target


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    target = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for layer in (target[0], target[2]):
            layer.weight.mul_(0.8 / torch.linalg.matrix_norm(layer.weight, ord=2))
    return target


def _prune(target, dtype: str, **extra) -> sslth.Ticket:
    options = dict(seed=1, progress=False, empirical_samples=100, dtype=dtype)
    return sslth.prune(target, 0.05, 0.5, **options, **extra)


@pytest.fixture(scope="module", params=["float64", "float32"])
def ticket(request) -> sslth.Ticket:
    return _prune(_mlp(0), request.param)


def _modules(ticket: sslth.Ticket) -> dict:
    return {
        "ticket": ticket,
        "export": ticket.export(),
        "compact": ticket.export(compact=True),
        "sparse": ticket.export(sparse=True),
        "export().float()": ticket.export().float(),
        "export().double()": ticket.export().double(),
    }


def test_every_module_takes_both_dtypes(ticket) -> None:
    x32 = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for name, module in _modules(ticket).items():
            out32, out64 = module(x32), module(x32.double())  # float32 values in float64
            assert torch.equal(out32, out64), name
            assert out32.dtype in (torch.float32, torch.float64), name


def test_float64_values_a_float32_module_cannot_hold_are_refused(ticket) -> None:
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for name, module in _modules(ticket).items():
            dtype = ticket.dtype if name in ("ticket", "export", "compact", "sparse") else None
            dtype = dtype or (torch.float32 if name.endswith("float()") else torch.float64)
            if dtype == torch.float64:
                module(x)  # float64 into float64: as given
                continue
            with pytest.raises(sslth.InputError, match=r"x\.float\(\)") as error:
                module(x)
            assert "\n" not in str(error.value)
    with pytest.raises(sslth.InputError, match="float32 or float64"):
        ticket(torch.ones(2, 5, dtype=torch.int64))


def test_conversion_is_exact_and_keeps_nans() -> None:
    x = torch.tensor([[0.5, float("nan"), -3.0, 2.0**-140]], dtype=torch.float64)
    converted = accept_input(x, torch.float32)
    assert converted.dtype == torch.float32
    assert torch.equal(converted.double().nan_to_num(7.0), x.nan_to_num(7.0))
    with pytest.raises(sslth.InputError):
        accept_input(x + 2.0**-40, torch.float32)
    same = torch.zeros(2, dtype=torch.float64)
    assert accept_input(same, torch.float64) is same


def test_exported_sequential_is_certified_and_a_subclass_is_not(ticket) -> None:
    target = _mlp(0)
    exported = ticket.export()
    assert type(exported) is TicketSequential
    assert sslth.certify(target, exported).bound == pytest.approx(
        sslth.certify(target, ticket.network).bound, rel=1e-12
    )

    class Shifted(TicketSequential):
        def forward(self, x):
            return super().forward(x) + 1

    with pytest.raises(sslth.NotATicketError, match="subclass"):
        sslth.certify(target, Shifted(*exported))


def test_graph_ticket_exports_take_both_dtypes() -> None:
    model, shape = random_graph_target(0)
    ticket = sslth.prune(
        model.double(),
        0.1,
        0.5,
        seed=0,
        progress=False,
        empirical_samples=50,
        input_shape=shape,
    )
    x32 = torch.randn(3, *shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for module in (ticket, ticket.export(), ticket.export(compact=True)):
            assert torch.equal(module(x32), module(x32.double()))
