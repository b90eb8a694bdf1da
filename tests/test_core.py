"""Construction, masks, certificate, determinism and state_dict round trips."""

import io
import random

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import sslth
from sslth.certificate import PairOperator, certify_operators, empirical_error, pair_operator
from sslth.construct import (
    PairSpec,
    block_diagonal,
    block_second,
    first_layer_bias,
    first_layer_diagonal,
    first_layer_weight,
    second_layer_weight,
)
from sslth.report import picks_per_instance
from sslth.search.instances import BlockDraw, lay_out, target_values
from sslth.target import as_target
from tests.conftest import first_fast, random_target

TARGETS = [(depth, seed) for depth in (1, 2, 3, 4) for seed in range(6)]  # 24 random targets


def _ticket(depth: int, seed: int):
    """A ticket with n and k fixed by the caller, at settings every one of these targets meets
    (a TicketNotFound fails the test: nothing below runs on a failed ticket)."""
    rng = random.Random(seed * 10 + depth)
    target = random_target(rng, depth=depth)
    n, k = rng.choice([(24, 3), (26, 4), (28, 5), (30, 6)])
    ticket = sslth.prune(
        target, 0.25, 1.0, n=n, k=k, seed=seed, progress=False, empirical_samples=2000
    )
    return target, ticket, n, k


@pytest.mark.parametrize("depth,seed", first_fast(TARGETS, 4, unpack=True))
def test_ticket_structure_and_certificate(depth, seed):
    target, ticket, n, k = _ticket(depth, seed)
    report = ticket.report
    assert report.certified_error <= 0.25
    linears = [m for m in ticket.network if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * depth
    for index, spec in enumerate(ticket.specs):
        first, second = linears[2 * index], linears[2 * index + 1]
        # the random weights are untouched; the ticket lives in the masks
        assert torch.equal(first.weight_orig.detach().float(), first_layer_weight(spec))
        assert first.weight_mask.shape == first.weight_orig.shape
        # U keeps block-diagonal entries only: neuron h may read input h // (2n) alone
        hidden, d_in = first.weight_mask.shape
        assert hidden == 2 * n * d_in
        rows = torch.arange(hidden)
        allowed = torch.zeros(hidden, d_in, dtype=torch.bool)
        allowed[rows, rows // (2 * n)] = True
        assert not first.weight_mask.bool()[~allowed].any()
        # a U entry is kept exactly when some output uses its neuron
        used = second.weight_mask.bool().any(dim=0)
        assert torch.equal(first.weight_mask.bool().any(dim=1), used)
        # exactly k picks per (output, input, sign), counted here from the masks and signs
        diagonal = first.weight_orig.detach()[rows, rows // (2 * n)]
        picked = second.weight_mask.bool().view(spec.d_out, d_in, 2 * n)
        sign = diagonal.view(d_in, 2 * n)
        assert ((picked & (sign > 0)).sum(dim=2) == k).all()
        assert ((picked & (sign < 0)).sum(dim=2) == k).all()
        assert report.layers[index].k == k and report.layers[index].n == n
        # each masked pair computes A σ(x) − B σ(−x)
        op = pair_operator(first.weight.detach(), None, second.weight.detach())
        x = torch.randn(64, spec.d_in, dtype=torch.float64)
        u, v = first.weight.detach().double(), second.weight.detach().double()
        assert torch.allclose(torch.relu(x @ u.T) @ v.T, op(x), rtol=1e-12, atol=1e-12)
    # certified bound holds and dominates the empirical error and the module's gap
    assert report.empirical_error <= report.certified_error
    x = torch.randn(500, linears[0].in_features, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(500, 1, dtype=torch.float64)
    with torch.no_grad():
        gap = (target.double()(x) - ticket.network(x)).norm(dim=1).max()
    assert float(gap) <= report.certified_error


def test_picks_per_instance_counts_the_bias_block():
    target = random_target(random.Random(3), depth=1, bias=True)
    ticket = sslth.prune(target, 2.0, 1.0, n=16, k=3, progress=False, empirical_samples=500)
    spec, masks = ticket.specs[0], ticket.masks[0]
    picks = picks_per_instance(spec, first_layer_diagonal(spec), masks.second)
    # two per weight, one per bias: all exactly k
    assert picks.numel() == 2 * spec.d_out * spec.d_in + spec.d_out
    assert (picks == 3).all()
    second = masks.second.clone()
    second[0, spec.weight_neurons :] = False  # drop the bias picks of output 0
    assert int(picks_per_instance(spec, first_layer_diagonal(spec), second).min()) == 0


@pytest.mark.parametrize("depth", first_fast([1, 2, 3]))
def test_certified_error_within_epsilon_when_parameters_allow(depth):
    rng = random.Random(depth)
    for trial in range(3):
        target = random_target(rng, depth=depth, max_width=5)
        ticket = sslth.prune(target, 0.05, 0.5, seed=trial, progress=False, empirical_samples=2000)
        assert ticket.report.certified_error <= 0.05
        assert ticket.report.density <= 0.5
        assert ticket.report.empirical_error <= ticket.report.certified_error


def test_same_seed_same_network_and_masks():
    target = random_target(random.Random(5), depth=2)
    first = sslth.prune(target, 0.1, 0.5, seed=3, progress=False, empirical_samples=500)
    second = sslth.prune(target, 0.1, 0.5, seed=3, progress=False, empirical_samples=500)
    other = sslth.construct(target, first.report.n, seed=4)
    first_state, second_state = first.network.state_dict(), second.network.state_dict()
    assert first_state.keys() == second_state.keys()
    for key in first_state:
        assert torch.equal(first_state[key], second_state[key])
    assert not torch.equal(other[0].weight.double(), first.network[0].weight_orig)
    dense = sslth.construct(target, first.report.n, seed=3)
    assert torch.equal(dense[0].weight.double(), first.network[0].weight_orig)


def test_state_dict_round_trip_keeps_masks():
    target = random_target(random.Random(7), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, seed=1, progress=False, empirical_samples=500)
    buffer = io.BytesIO()
    torch.save(ticket.network.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert any(key.endswith("weight_mask") for key in state)
    fresh = sslth.construct(target, ticket.report.n, seed=123).double()  # other weights
    for module in fresh:
        if isinstance(module, nn.Linear):
            torch_prune.identity(module, "weight")
    fresh.load_state_dict(state)
    x = torch.randn(32, target[0].in_features, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(fresh(x), ticket.network(x))


def test_export_is_plain_and_equal():
    target = random_target(random.Random(8), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, seed=2, progress=False, empirical_samples=500)
    plain = ticket.export()
    assert not any(torch_prune.is_pruned(m) for m in plain)
    assert all(not hasattr(m, "weight_mask") for m in plain)
    x = torch.randn(16, target[0].in_features, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(plain(x), ticket.network(x))
    assert torch_prune.is_pruned(ticket.network)  # export worked on a copy
    assert sslth.certify(target, plain).bound == pytest.approx(ticket.report.certified_error)


def test_export_follows_the_masks_not_the_cached_weight():
    """``prune.remove`` semantics: the exported weight is weight_orig * weight_mask now, even
    after a mask was edited (the cached ``weight`` is stale until the next forward)."""
    target = random_target(random.Random(9), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, seed=2, progress=False, empirical_samples=500)
    first = ticket.network[0]
    with torch.no_grad():
        first.weight_mask.zero_()
    plain = ticket.export()
    assert int(plain[0].weight.count_nonzero()) == 0
    assert plain[0].weight.dtype == ticket.dtype
    ticket.network.float()
    assert ticket.export()[0].weight.dtype == torch.float32


def test_layout_is_batched_and_consistent():
    target = as_target([torch.randn(7, 5) * 0.2])
    spec = PairSpec(5, 7, 6, False, 11)
    u = first_layer_weight(spec).double()
    v = second_layer_weight(spec).double()
    targets = target_values(target.layers[0], spec)
    draws = {j: BlockDraw.of(spec, j) for j in range(5)}
    every_row = {j: torch.arange(7) for j in range(5)}
    for sign in (1, -1):
        inst = lay_out(spec, targets, sign, every_row, draws, torch.device("cpu"))
        assert len(inst) == 7 * 5
        for b in range(len(inst)):
            i, j = int(inst.row[b]), int(inst.block[b])
            positions = inst.positions[b][inst.valid[b]]
            neurons = 12 * j + positions  # the block of input j: 2n = 12 neurons
            assert ((u[neurons, j] * sign) > 0).all()
            expected = u[neurons, j].abs() * v[i, neurons]
            assert torch.equal(inst.values[b][inst.valid[b]], expected)
            assert inst.targets[b] == sign * target.layers[0].weight[i, j]
        # every neuron of the right sign of each block appears, once, in that block's rows
        for j in range(5):
            valid = inst.valid[inst.block == j][0]
            assert int(valid.sum()) == int((u[12 * j : 12 * j + 12, j] * sign > 0).sum())


def test_random_streams_are_per_block_and_grow_by_appending():
    """A block's neurons are drawn neuron by neuron from its own streams: growing one block
    leaves every other block, and its own first neurons, unchanged."""
    spec = PairSpec(4, 3, 5, True, 99)
    grown = spec.with_blocks({2: 8})
    assert grown.hidden == spec.hidden + 6 and grown.block_offsets[3] == spec.block_offsets[3] + 6
    for j in range(spec.blocks):
        old, new = block_diagonal(spec, j), block_diagonal(grown, j)
        assert torch.equal(new[: old.numel()], old)
        assert torch.equal(block_second(grown, j)[:, : old.numel()], block_second(spec, j))
        if j != 2:
            assert torch.equal(new, old)
    u, u_grown = first_layer_weight(spec), first_layer_weight(grown)
    assert torch.equal(u_grown[: spec.block_offsets[2] + 10], u[: spec.block_offsets[3]])
    assert torch.equal(
        first_layer_diagonal(spec)[spec.weight_neurons :],
        first_layer_bias(spec)[spec.weight_neurons :],
    )
    # the dense U's block diagonal is the diagonal stream
    rows = torch.arange(spec.weight_neurons)
    assert torch.equal(u[rows, rows // 10], first_layer_diagonal(spec)[: spec.weight_neurons])


@pytest.mark.slow
def test_certificate_is_an_upper_bound_on_perturbed_pairs():
    """The bound must hold for any masked pair, not only tickets: perturb and check."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        target = as_target(
            [
                torch.randn(4, 3, generator=generator) * 0.5,
                torch.randn(2, 4, generator=generator) * 0.5,
            ]
        )
        operators = []
        for layer in target.layers:
            noise = 0.05 * torch.randn(
                2, *layer.weight.shape, generator=generator, dtype=torch.float64
            )
            operators.append(
                PairOperator(
                    layer.weight + noise[0],
                    layer.weight + noise[1],
                    torch.zeros(layer.d_out, dtype=torch.float64),
                )
            )
        certificate = certify_operators(target, operators, 1.0)
        measured = empirical_error(target, operators, 1.0, samples=3000, ascent_steps=50)
        assert 0 < measured <= certificate.bound


def test_certify_refuses_non_ticket_structure():
    target = nn.Sequential(nn.Linear(3, 2, bias=False))
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with pytest.raises(sslth.NotATicketError, match="reads 3 inputs"):
        sslth.certify(target, net)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), TypeError, "layer 0 \\(Conv2d\\): groups"),
        (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 1)), TypeError, "Sigmoid"),
        (nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), TypeError, "BatchNorm1d"),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU()), ValueError, "must end with nn.Linear"),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(4, 1)), ValueError, "do not chain"),
        (nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 1)), ValueError, "ReLU"),
        ([torch.ones(2, 2), torch.ones(2, 3)], ValueError, "do not chain"),
        ("not a model", TypeError, "target must be"),
        (nn.GRU(3, 3), TypeError, "GRU"),
    ],
)
def test_bad_targets_are_refused_by_name(bad, error, match):
    with pytest.raises(error, match=match):
        as_target(bad)


def test_nan_weight_names_the_layer_and_leaves_model_untouched():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="layer 2 .*NaN"):
        sslth.prune(model, 0.1, 0.5, progress=False)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        # bit for bit, NaN in the same places
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("bias", first_fast([False, True]))
def test_compact_export_is_the_same_function_with_fewer_units(bias):
    target = random_target(random.Random(11), depth=3, bias=bias)
    ticket = sslth.prune(target, 0.1, 0.2, seed=1, progress=False, empirical_samples=200)
    compact = ticket.export(compact=True)  # from the masks: the dense network is never built
    assert ticket._network is None
    full = ticket.export()
    x = torch.randn(256, target[0].in_features, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(compact(x), full(x), rtol=1e-12, atol=1e-12)
    hidden = [m.out_features for m in compact if isinstance(m, nn.Linear)][::2]
    kept = [int(masks.kept_neurons.sum()) for masks in ticket.masks]
    assert hidden == kept and all(h < s.hidden for h, s in zip(hidden, ticket.specs, strict=True))
    # compacting the built network gives the same modules
    again = ticket.export(compact=True)
    with torch.no_grad():
        assert torch.allclose(again(x), compact(x), rtol=1e-12, atol=1e-12)
    # and the compact network is certified like the full one
    bound = sslth.certify(target, compact).bound
    assert bound == pytest.approx(ticket.report.certified_error, rel=1e-9)


def test_a_network_too_large_for_memory_is_refused(monkeypatch):
    import sslth.ticket as ticket_module

    target = random_target(random.Random(12), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=200)
    monkeypatch.setattr(ticket_module, "available_memory", lambda device: 1000)
    with pytest.raises(sslth.NetworkTooLarge, match="export\\(compact=True\\)"):
        ticket.network  # noqa: B018
    assert ticket.export(compact=True) is not None  # needs no dense network
