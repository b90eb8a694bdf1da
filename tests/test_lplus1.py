"""The l+1 construction (issue 21): the option, the network it builds, its certificate against an
independent float64 reference and an attack, the ticket's file, figure and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import sslth
from sslth.cli import main
from sslth.config import load_config, load_target
from sslth.errors import ConfigError, NotATicketError
from sslth.lplus1 import search as lplus1_search
from sslth.lplus1.layout import build_network, module_weight
from sslth.lplus1.plan import plan_for
from sslth.lplus1.solve import solve_layer
from tests.attack import QUICK, float64_copy, worst_gap
from tests.reference_lplus1 import exact_forward, reference_bound

EPSILON, DENSITY = 0.1, 0.3


def _target(widths, bias: bool, seed: int = 0) -> nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    modules = []
    for index in range(len(widths) - 1):
        layer = nn.Linear(widths[index], widths[index + 1], bias=bias)
        with torch.no_grad():
            weight = torch.randn(widths[index + 1], widths[index], generator=generator)
            layer.weight.copy_(weight / torch.linalg.matrix_norm(weight, ord=2))
            if bias:
                layer.bias.copy_(0.3 * torch.randn(widths[index + 1], generator=generator))
        modules += [layer, nn.ReLU()]
    return nn.Sequential(*modules[:-1])


def _layers(target: nn.Sequential):
    return [
        (
            m.weight.detach().double().numpy(),
            None if m.bias is None else m.bias.detach().double().numpy(),
        )
        for m in target
        if isinstance(m, nn.Linear)
    ]


@pytest.fixture(scope="module", params=[False, True], ids=["no-bias", "bias"])
def case(request):
    target = _target([3, 4, 4, 2], request.param, seed=int(request.param))
    torch.set_num_threads(1)
    ticket = sslth.prune(
        target,
        EPSILON,
        DENSITY,
        construction="l+1",
        dtype="float32",
        empirical_samples=300,
        progress=False,
    )
    return target, ticket


def test_construction_other_than_2l_or_lplus1_is_refused_by_name():
    with pytest.raises(ConfigError, match="construction"):
        sslth.PruneOptions(0.1, 0.3, construction="3l")


def test_conv_target_is_refused_in_one_line():
    target = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match="convolutional") as error:
        sslth.prune(target, 0.1, 0.3, construction="l+1", input_shape=[1, 4, 4], progress=False)
    assert "\n" not in str(error.value)


def test_fixed_n_or_k_are_refused_for_lplus1_by_prune_and_plan():
    target = _target([2, 3, 2], False)
    with pytest.raises(ConfigError, match="n and k"):
        sslth.prune(target, 0.1, 0.3, construction="l+1", k=2, progress=False)
    with pytest.raises(ConfigError, match="n and k"):
        sslth.plan(target, 0.1, 0.3, construction="l+1", n=4, calibrate=False)


def test_plan_gives_the_sizes_the_lplus1_prune_solves_first(monkeypatch):
    """sslth.plan's ρ, k, tolerance, instances and m per layer are what the first round of the
    l+1 search hands the solver (recorded at solve_layer), for a target with biases."""
    target = _target([3, 4, 4, 2], True, seed=3)
    planned = sslth.plan(target, EPSILON, DENSITY, construction="l+1", calibrate=False)
    assert planned.construction == "l+1" and planned.within_limits
    first: dict[int, tuple] = {}

    def recording(spec, target_, t, k, tolerance, **kwargs):
        picks = solve_layer(spec, target_, t, k, tolerance, **kwargs)
        first.setdefault(t, (spec.copies[t - 1], k, tolerance, len(picks.errors), spec))
        return picks

    monkeypatch.setattr(lplus1_search, "solve_layer", recording)
    ticket = sslth.prune(
        target, EPSILON, DENSITY, construction="l+1", progress=False, empirical_samples=200
    )
    assert sorted(first) == [1, 2, 3]
    for row in planned.layers:
        rho, k, tolerance, instances, spec = first[row.index]
        assert (row.n, row.k, row.tolerance, row.instances) == (rho, k, tolerance, instances)
        assert row.random_params == spec.layer_params(row.index)
    assert planned.random_params == first[1][4].random_params
    assert "construction l+1" in str(planned)
    assert ticket.report.density <= DENSITY


def test_plan_beyond_max_random_params_says_what_lplus1_needs():
    target = _target([3, 4, 4, 2], False)
    planned = sslth.plan(
        target, EPSILON, DENSITY, construction="l+1", calibrate=False, max_random_params=2000
    )
    assert not planned.within_limits and planned.random_params is None
    assert all(row.n is None and row.needed_n >= 1 for row in planned.layers)
    (warning,) = planned.warnings
    assert "over max_random_params = 2,000" in warning
    with pytest.raises(sslth.TicketNotFound):
        sslth.prune(
            target, EPSILON, DENSITY, construction="l+1", progress=False, max_random_params=2000
        )


def test_the_ticket_meets_the_request_with_exactly_k_picks(case):
    target, ticket = case
    report = ticket.report
    assert isinstance(ticket, sslth.Ticket) and report.construction == "l+1"
    assert report.certified_error <= EPSILON and report.density <= DENSITY
    assert report.empirical_error <= report.certified_error
    for layer in report.layers:
        assert layer.k == layer.k_min == layer.k_max >= 1
    linears = [m for m in ticket.network if isinstance(m, nn.Linear)]
    assert len(linears) == len(target) // 2 + 2  # l + 1
    kept = sum(int(m.weight_mask.count_nonzero()) for m in linears) + sum(
        int(m.bias_mask.count_nonzero()) for m in linears if m.bias is not None
    )
    total = sum(m.weight.numel() + (0 if m.bias is None else m.bias.numel()) for m in linears)
    assert report.ticket_params == kept and report.random_params == total
    assert math.isclose(report.density, kept / total)


def test_random_weights_are_uniform_and_come_from_the_seed(case):
    _, ticket = case
    spec = ticket.spec
    for t, module in enumerate(m for m in ticket.network if isinstance(m, nn.Linear)):
        original = module.weight_orig.detach()
        assert float(original.abs().max()) <= 1.0
        assert torch.equal(original, module_weight(spec, t))
    again = build_network(spec, ticket.lplus1_masks)
    for a, b in zip(again.state_dict().values(), ticket.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_certificate_matches_the_independent_reference(case):
    target, ticket = case
    exact, deltas = reference_bound(ticket.network, _layers(target), 1.0)
    report = ticket.report
    assert report.certified_error_exact >= exact
    assert math.isclose(report.certified_error_exact, exact, rel_tol=1e-6)
    for layer, delta in zip(report.layers, deltas, strict=True):
        assert math.isclose(layer.error_bound, delta, rel_tol=1e-6)
    assert math.isclose(sslth.certify(target, ticket.network).bound, report.certified_error)


def test_no_point_of_the_ball_exceeds_the_certificate(case):
    target, ticket = case
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 3, generator=generator, dtype=torch.float64)
    x /= torch.linalg.vector_norm(x, dim=1, keepdim=True) / torch.rand(2000, 1, generator=generator)
    layers = _layers(target)
    out = x.numpy()
    for index, (w, b) in enumerate(layers):
        out = out @ w.T + (0 if b is None else b)
        out = np.maximum(out, 0) if index < len(layers) - 1 else out
    gaps = np.linalg.norm(out - exact_forward(ticket.network, x.numpy()), axis=1)
    assert gaps.max() <= ticket.report.certified_error_exact
    attack = worst_gap(float64_copy(target), ticket.network, 1.0, 3, seed=0, **QUICK)
    assert attack.gap <= ticket.report.certified_error


def test_save_load_recomputes_and_refuses_a_tampered_file(case, tmp_path):
    from sslth.cli import verification_problems

    _, ticket = case
    path = ticket.save(tmp_path / "t.pt")
    loaded = sslth.load(path, samples=200)
    assert type(loaded).__name__ == "LPlus1Ticket" and not verification_problems(loaded)
    assert loaded.report.certified_error == ticket.report.certified_error
    for a, b in zip(loaded.lplus1_masks.weights, ticket.lplus1_masks.weights, strict=True):
        assert torch.equal(a, b)
    payload = torch.load(path, weights_only=True)
    payload["mask.1.weight"][0] ^= 1
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(NotATicketError, match="SHA-256"):
        sslth.load(tmp_path / "bad.pt")


def test_an_edited_network_is_certified_as_it_runs_or_refused(case):
    target, ticket = case
    network = ticket.export()
    last = network[-1]
    with torch.no_grad():
        last.weight[0, 0] += 3.0
    certificate = sslth.certify(target, network)
    assert certificate.bound > ticket.report.certified_error
    exact, _ = reference_bound(network, _layers(target), 1.0)
    assert math.isclose(certificate.exact, exact, rel_tol=1e-6)
    spec = ticket.spec
    if spec.has_constants(1):
        edited = ticket.export()
        with torch.no_grad():
            edited[2].weight[spec.copy_width(1), 0] = 0.5
        with pytest.raises(NotATicketError, match="constant neuron"):
            sslth.certify(target, edited)
    first = ticket.export()
    with torch.no_grad():
        first[0].weight[0] = 0.5  # a univariate neuron reads every input
    with pytest.raises(NotATicketError, match="reads"):
        sslth.certify(target, first)


@pytest.mark.slow
def test_sparse_and_compact_export_are_refused_in_one_line(case):
    _, ticket = case
    for kwargs in ({"sparse": True}, {"sparse": True, "accumulate": "float32"}, {"compact": True}):
        with pytest.raises(sslth.SslthError, match="not implemented for l\\+1") as error:
            ticket.export(**kwargs)
        assert "\n" not in str(error.value)


def test_masks_figure_and_error_histogram(case, tmp_path):
    pytest.importorskip("matplotlib")
    import sslth.plot

    _, ticket = case
    sslth.plot.masks(ticket, tmp_path / "m.png")
    sslth.plot.error_histogram(ticket, tmp_path / "h.png")
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "h.png").stat().st_size > 0


def _config_and_options(path):
    config = load_config(path)
    return config, config.options({"progress": False})


def test_cli_plan_reads_construction_from_the_toml(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        "[target]\nwidths = [3, 4, 2]\nseed = 1\n[prune]\nepsilon = 0.1\ndensity = 0.3\n"
        'construction = "l+1"\n'
    )
    assert main(["plan", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["construction"] == "l+1" and data["within_limits"]
    target = load_target(*_config_and_options(config))[1]
    expected = plan_for(target, load_config(config).options({"progress": False}))
    assert [row["n"] for row in data["layers"]] == list(expected.copies)
    assert [row["k"] for row in data["layers"]] == list(expected.picks)
