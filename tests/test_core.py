"""Construction, masks, certificate, determinism and state_dict round trips (issue 2)."""

import io
import random

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import sslth
from sslth.certify import (
    PairOperator,
    certify_operators,
    empirical_error,
    network_operators,
    pair_operator,
)
from sslth.construct import (
    PairSpec,
    RandomPair,
    first_layer_diagonal,
    first_layer_weight,
    input_of_neuron,
    subset_sum_instances,
)
from sslth.report import picks_per_instance
from sslth.target import as_target
from tests.conftest import random_target

TARGETS = [(depth, seed) for depth in (1, 2, 3, 4) for seed in range(6)]  # 24 random targets


def _ticket(depth: int, seed: int, **kwargs):
    rng = random.Random(seed * 10 + depth)
    target = random_target(rng, depth=depth)
    n, k = rng.choice([(10, 3), (12, 4), (14, 5), (16, 6)])
    try:
        ticket = sslth.prune(
            target, 0.2, 1.0, n=n, k=k, seed=seed, progress=False, empirical_samples=2000, **kwargs
        )
    except sslth.TicketNotFound as error:
        ticket = error.best
    return target, ticket, n, k


@pytest.mark.parametrize("depth,seed", TARGETS)
def test_ticket_structure_and_certificate(depth, seed):
    target, ticket, n, k = _ticket(depth, seed)
    report = ticket.report
    linears = [m for m in ticket.network if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * depth
    for index, spec in enumerate(ticket.specs):
        first, second = linears[2 * index], linears[2 * index + 1]
        # the random weights are untouched; the ticket lives in the masks
        assert torch.equal(first.weight_orig.detach(), first_layer_weight(spec))
        assert first.weight_mask.shape == first.weight_orig.shape
        # U keeps block-diagonal entries only, and only those some output uses
        off_block = torch.ones_like(first.weight_mask, dtype=torch.bool)
        off_block[torch.arange(spec.hidden), input_of_neuron(spec)] = False
        assert not first.weight_mask[off_block].any()
        used = second.weight_mask.bool().any(dim=0)
        assert torch.equal(first.weight_mask.bool().any(dim=1), used)
        # exactly k picks per (output, input, sign), read off the masks
        picks = picks_per_instance(spec, first_layer_diagonal(spec), second.weight_mask.bool())
        assert (picks == k).all()
        assert report.layers[index].k == k and report.layers[index].n == n
        # each masked pair computes A σ(x) − B σ(−x)
        op = pair_operator(first.weight.detach(), None, second.weight.detach())
        x = torch.randn(64, spec.d_in, dtype=torch.float64)
        pair_out = (
            torch.relu(x @ first.weight.detach().double().T) @ second.weight.detach().double().T
        )
        assert torch.allclose(pair_out, op(x), atol=1e-6)
    # certified bound holds and dominates the empirical error
    assert report.empirical_error <= report.certified_error
    x = torch.randn(500, linears[0].in_features)
    x = x / x.norm(dim=1, keepdim=True) * torch.rand(500, 1)
    with torch.no_grad():
        gap = (target(x).double() - ticket.network(x).double()).norm(dim=1).max()
    assert float(gap) <= report.certified_error + 1e-5  # float32 forward pass


@pytest.mark.parametrize("depth", [1, 2, 3])
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
    assert not torch.equal(other[0].weight, first.network[0].weight_orig)
    dense = sslth.construct(target, first.report.n, seed=3)
    assert torch.equal(dense[0].weight, first.network[0].weight_orig)


def test_state_dict_round_trip_keeps_masks():
    target = random_target(random.Random(7), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, seed=1, progress=False, empirical_samples=500)
    buffer = io.BytesIO()
    torch.save(ticket.network.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert any(key.endswith("weight_mask") for key in state)
    fresh = sslth.construct(target, ticket.report.n, seed=123)  # other random weights
    for module in fresh:
        if isinstance(module, nn.Linear):
            torch_prune.identity(module, "weight")
    fresh.load_state_dict(state)
    x = torch.randn(32, target[0].in_features)
    with torch.no_grad():
        assert torch.equal(fresh(x), ticket.network(x))


def test_export_is_plain_and_equal():
    target = random_target(random.Random(8), depth=2)
    ticket = sslth.prune(target, 0.1, 0.5, seed=2, progress=False, empirical_samples=500)
    plain = ticket.export()
    assert not any(torch_prune.is_pruned(m) for m in plain)
    assert all(not hasattr(m, "weight_mask") for m in plain)
    x = torch.randn(16, target[0].in_features)
    with torch.no_grad():
        assert torch.allclose(plain(x), ticket.network(x))
    assert torch_prune.is_pruned(ticket.network)  # export worked on a copy


def test_layout_is_batched_and_consistent():
    target = as_target([torch.randn(7, 5) * 0.2])
    spec = PairSpec(5, 7, 6, False, 11)
    pair = RandomPair.draw(spec)
    positive, negative = subset_sum_instances(pair, target.layers[0])
    u = first_layer_weight(spec).double()
    v = pair.second.double()
    assert positive.values.shape[0] == 7 * 5 and negative.values.shape[0] == 7 * 5
    for row in range(35):
        i, j = divmod(row, 5)
        for inst, sign in ((positive, 1), (negative, -1)):
            neurons = inst.neuron[j][inst.valid[row]]
            assert ((u[neurons, j] * sign) > 0).all()
            expected = u[neurons, j].abs() * v[i, neurons]
            assert torch.allclose(inst.values[row][inst.valid[row]], expected)
            assert inst.targets[row] == sign * target.layers[0].weight[i, j]
    # every neuron of the right sign appears exactly once per block
    counts = positive.valid[:5].sum() + negative.valid[:5].sum()
    assert int(counts) == int((u[torch.arange(spec.hidden), input_of_neuron(spec)] != 0).sum())


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


def test_network_operators_refuse_non_ticket_structure():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match="reads 3 inputs"):
        network_operators(net)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (nn.Sequential(nn.Conv2d(1, 1, 3)), TypeError, "layer 0 \\(Conv2d\\)"),
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
        assert (
            torch.equal(before[key], after[key])
            or (before[key].isnan() == after[key].isnan()).all()
        )
