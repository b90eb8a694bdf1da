"""The sparse export (issue 24): the same function on the kept weights only, certified as it
computes (its dtype and its own summation scheme), saved and loaded through its state_dict,
refusing what it is not; and inputs of either float dtype."""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch
from torch import nn

import sslth
from sslth.sparse import SparseTicket, kept_bytes, kept_weights
from tests.attack import QUICK, float64_copy, worst_gap


def _mlp(seed: int, widths=(6, 5, 3), bias: bool = True) -> nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    modules: list[nn.Module] = []
    for d_in, d_out in zip(widths[:-1], widths[1:], strict=True):
        layer = nn.Linear(d_in, d_out, bias=bias).double()
        with torch.no_grad():
            layer.weight.copy_(torch.randn(d_out, d_in, generator=generator, dtype=torch.float64))
            layer.weight.mul_(0.8 / torch.linalg.matrix_norm(layer.weight, ord=2))
            if bias:
                layer.bias.copy_(0.3 * torch.randn(d_out, generator=generator).double())
        modules += [layer, nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def _cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3),
    ).double()


CNN_SHAPE = (1, 6, 6)


def _prune(target, dtype="float64", epsilon=0.05, **extra) -> sslth.Ticket:
    options = dict(seed=1, progress=False, empirical_samples=200, dtype=dtype)
    options.update(extra)
    return sslth.prune(target, epsilon, 0.5, **options)


@pytest.fixture(scope="module")
def dense_ticket() -> tuple[nn.Module, sslth.Ticket]:
    target = _mlp(0)
    return target, _prune(target)


@pytest.fixture(scope="module")
def conv_ticket() -> tuple[nn.Module, sslth.Ticket]:
    target = _cnn(0)
    return target, _prune(target, epsilon=0.1, input_shape=list(CNN_SHAPE))


@pytest.mark.parametrize("which", ["dense", "conv"])
def test_sparse_export_computes_the_masked_network(which, dense_ticket, conv_ticket) -> None:
    target, ticket = dense_ticket if which == "dense" else conv_ticket
    sparse = ticket.export(sparse=True)
    shape = CNN_SHAPE if which == "conv" else (6,)
    x = torch.randn(9, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dense = ticket.network(x)
        assert torch.allclose(sparse(x), dense, rtol=0, atol=1e-12 * (1 + dense.abs().max()))
        # the float32 input of a float64 module is converted exactly
        assert torch.equal(sparse(x.float()), sparse(x.float().double()))
    # the state is O(kept weights): at most 3 numbers of the weight's size per kept weight
    assert kept_bytes(sparse) <= 3 * 8 * kept_weights(sparse) + 8 * 64
    # kept weights are at most what the masks keep (units nothing uses are gone)
    kept = sum(int(m.kept_neurons.sum()) + int(m.second.sum()) for m in ticket.masks)
    assert kept_weights(sparse) <= kept


@pytest.mark.parametrize("which", ["dense", "conv"])
def test_certificate_of_the_sparse_module(which, dense_ticket, conv_ticket) -> None:
    target, ticket = dense_ticket if which == "dense" else conv_ticket
    shape = list(CNN_SHAPE) if which == "conv" else None
    dense = sslth.certify(target, ticket.export(compact=True), input_shape=shape)
    sparse = sslth.certify(target, ticket.export(sparse=True), input_shape=shape)
    assert sparse.exact == pytest.approx(dense.exact, rel=1e-9)
    assert 0 < sparse.rounding < 10 * dense.rounding
    assert sparse.arithmetic == "float64 (sparse)"


def test_float32_ticket_is_certified_as_its_sparse_export_runs() -> None:
    """A float32 ticket's report certifies ``ticket(x)``, its sparse export with float64
    accumulation, whose rounding term is far below the dense float32 network's; the attack
    finds no input above either certificate, and none where the rounding alone (against the
    float64 masked network) exceeds the rounding term."""
    target = _mlp(4, widths=(8, 12, 4))
    ticket = _prune(target, dtype="float32", epsilon=0.02)
    sparse = ticket.export(sparse=True)
    certified = sslth.certify(target, sparse)
    assert certified.bound == pytest.approx(ticket.report.certified_error, rel=1e-9)
    assert ticket.report.arithmetic == "float32 (sparse, float64 accumulation)"
    dense = sslth.certify(target, ticket.network)
    assert certified.rounding < dense.rounding / 10
    exact64 = float64_copy(ticket.network)
    for module, bound in ((sparse, certified), (ticket.network, dense)):
        attack = worst_gap(float64_copy(target), module, 1.0, 8, module64=exact64, **QUICK)
        assert attack.gap <= bound.bound
        rounding = worst_gap(exact64, module, 1.0, 8, module64=exact64, seed=1, **QUICK)
        assert rounding.gap <= bound.rounding
    fast = ticket.export(sparse=True, accumulate="float32")
    assert sslth.certify(target, fast).rounding > certified.rounding
    with torch.no_grad():
        x = torch.randn(5, 8)
        assert torch.equal(ticket(x), sparse(x))
        assert torch.equal(sparse(x.double()), sparse(x))  # float32 values: converted


def test_state_dict_round_trip_and_refusals(dense_ticket) -> None:
    target, ticket = dense_ticket
    sparse = ticket.export(sparse=True)
    buffer = io.BytesIO()
    torch.save(sparse.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    loaded = SparseTicket.empty(target, torch.float64)
    loaded.load_state_dict(state)
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.equal(loaded(x), sparse(x))
    assert sslth.certify(target, loaded).bound == sslth.certify(target, sparse).bound
    with pytest.raises(sslth.NotATicketError, match="another target"):
        SparseTicket.empty(_mlp(9), torch.float64).load_state_dict(state)
    with pytest.raises(sslth.NotATicketError, match="another dtype"):
        SparseTicket.empty(target, torch.float32).load_state_dict(state)
    with pytest.raises(sslth.NotATicketError, match="another target"):
        sslth.certify(_mlp(9), sparse)


def _tampered(sparse: SparseTicket, name: str, change) -> SparseTicket:
    copy_ = copy.deepcopy(sparse)
    pair = copy_.pairs()[0]
    tensor = getattr(pair, name).clone()
    change(tensor)
    setattr(pair, name, tensor)
    return copy_


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("rows", lambda t: t.__setitem__(0, 10_000), "row is outside"),
        ("inputs", lambda t: t.__setitem__(0, -1), "outside"),
        ("values", lambda t: t.__setitem__(0, math.nan), "NaN"),
        ("starts", lambda t: t.__setitem__(1, 10**6), "starts"),
    ],
)
def test_tampered_buffers_are_refused(dense_ticket, name, change, message) -> None:
    target, ticket = dense_ticket
    with pytest.raises(sslth.NotATicketError, match=message):
        sslth.certify(target, _tampered(ticket.export(sparse=True), name, change))


def test_hooks_and_subclasses_are_refused(dense_ticket) -> None:
    target, ticket = dense_ticket
    sparse = ticket.export(sparse=True)
    sparse.pairs()[0].register_forward_hook(lambda *args: None)
    with pytest.raises(sslth.NotATicketError, match="hook"):
        sslth.certify(target, sparse)

    class Louder(SparseTicket):
        def forward(self, x):
            return 2 * super().forward(x)

    patched = ticket.export(sparse=True)
    patched.pairs()[0].forward_in = lambda x: 0 * x
    with pytest.raises(sslth.NotATicketError, match="forward_in replaced"):
        sslth.certify(target, patched)

    louder = ticket.export(sparse=True)
    louder.__class__ = Louder
    with pytest.raises(sslth.NotATicketError, match="subclass"):
        sslth.certify(target, louder)


def test_edited_masks_are_exported_and_certified_honestly() -> None:
    target = _mlp(5)
    ticket = _prune(target)
    network = ticket.network
    second = network[2]
    kept = second.weight_mask.nonzero()[0]
    with torch.no_grad():
        second.weight_mask[kept[0], kept[1]] = 0  # drop one V weight
    sparse = ticket.export(sparse=True)
    x = torch.randn(6, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(sparse(x), network(x), atol=1e-12)
    assert sslth.certify(target, sparse).exact == pytest.approx(
        sslth.certify(target, network).exact, rel=1e-9
    )
    # a hidden unit reading two inputs is not a ticket: refused, never exported
    first = network[0]
    row = int(first.weight_mask.sum(dim=1).argmax())
    with torch.no_grad():
        first.weight_mask[row] = 1
    with pytest.raises(sslth.NotATicketError, match="reads"):
        ticket.export(sparse=True)


def test_inputs_of_either_dtype(dense_ticket) -> None:
    target, ticket = dense_ticket
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert torch.equal(ticket(x), ticket(x.double()))
    with pytest.raises(sslth.SslthError, match="float32 or float64"):
        ticket(torch.ones(3, 6, dtype=torch.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ticket.export(sparse=True)(x)  # float32 into float64: exact, no warning


def test_float32_rounding_term_matches_an_independent_reference() -> None:
    """The sparse float32 rounding term against tests/sparse_reference.py (numpy, written from
    docs/design.md §4b, no sslth): equal up to the package's upward rounding of its norms."""
    from tests.sparse_reference import float32_sparse_rounding

    target = _mlp(6, widths=(5, 7, 3))
    ticket = _prune(target, dtype="float32", epsilon=0.03, radius=2.0)
    certificate = sslth.certify(target, ticket.export(sparse=True), 2.0)
    reference = float32_sparse_rounding(ticket.network, 2.0)
    assert certificate.rounding == pytest.approx(reference, rel=1e-6)
    assert certificate.rounding >= reference * (1 - 1e-12)


def test_bench_export_runs(dense_ticket, tmp_path) -> None:
    """scripts/bench_export.py on a small saved ticket (a smoke test: no timing is asserted)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_export.py"
    spec = importlib.util.spec_from_file_location("bench_export", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, ticket = dense_ticket
    path = ticket.save(tmp_path / "t.pt")
    (row,) = bench.main([str(path), "--batch", "4", "--repeats", "1"])
    assert row["kept_weights"] == kept_weights(ticket.export(sparse=True))
    assert row["floor_ratio"] > 1 and row["bytes_per_kept_weight"] <= 3 * 8  # float64 weights


def test_probe_refuses_a_module_that_computes_something_else(dense_ticket, monkeypatch) -> None:
    """A change the structural reading cannot see (the class's own method patched) is caught by
    running the module on the probe points of the ball (sslth/probe.py)."""
    from sslth.sparse import SparsePair

    target, ticket = dense_ticket
    sparse = ticket.export(sparse=True)
    assert sslth.certify(target, sparse).bound > 0
    original = SparsePair.forward_in
    monkeypatch.setattr(SparsePair, "forward_in", lambda self, x: 1.01 * original(self, x))
    kernel = sslth.sparse.run_kernel  # the compiled kernel's runner, where one was compiled
    monkeypatch.setattr(sslth.sparse, "run_kernel", lambda *args: 1.01 * kernel(*args))
    with pytest.raises(sslth.NotATicketError, match="not what its buffers say"):
        sslth.certify(target, sparse)
