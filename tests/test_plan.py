"""sslth.plan and ``sslth plan``: the sizes prune starts from, the estimates, the warnings."""

import dataclasses
import json

import pytest
import torch
from torch import nn

import sslth
from sslth import theory
from sslth.cli import main
from sslth.config import random_target
from sslth.construct import PairSpec, layer_seed
from sslth.device import resolve_device
from sslth.search import estimate, loop, preview
from sslth.search.layer import solve_layer
from sslth.search.options import PruneOptions
from sslth.subset_sum import make_solver
from tests.conftest import first_fast

pytestmark = pytest.mark.usefixtures("one_thread")


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )


CASES = [
    (random_target([6, 9, 4], seed=1), 0.05, 0.3, {}),
    (random_target([5, 7, 3], seed=2, bias=True, spectral_norm=2.0), 0.02, 0.1, {}),
    (random_target([4, 6, 5, 2], seed=3), 0.1, 0.5, {"radius": 2.0}),
    (random_target([6, 9, 4], seed=1), 0.05, 0.3, {"n": [7, 9]}),
    (random_target([6, 9, 4], seed=1), 0.05, 0.3, {"k": 2}),
    (_cnn(), 0.1, 0.3, {"input_shape": [1, 4, 4]}),
]


@pytest.mark.parametrize("target,epsilon,density,options", first_fast(CASES, 3, unpack=True))
def test_plan_gives_the_sizes_the_search_starts_from(target, epsilon, density, options):
    planned = sslth.plan(target, epsilon, density, calibrate=False, **options)
    opts = PruneOptions(epsilon=epsilon, density=density, progress=False, **options)
    search = loop.Search(
        sslth.as_target(target, input_shape=opts.input_shape),
        opts,
        resolve_device("cpu"),
        make_solver("auto"),
    )
    expected = search.choose_sizes()
    assert [(p.n, p.k) for p in planned.layers] == [(e.n, e.k) for e in expected]
    assert [p.tolerance for p in planned.layers] == [e.tolerance for e in expected]
    assert planned.within_limits and planned.seconds is None


def test_plan_matches_what_prune_solves_first(monkeypatch):
    """The first round of a real prune solves each layer at the planned n and k."""
    target = random_target([5, 7, 3], seed=4, bias=True)
    planned = sslth.plan(target, 0.05, 0.3, calibrate=False)
    first: dict[int, tuple[int, int]] = {}

    def recording(spec, layer, k, tolerance, **kwargs):
        first.setdefault(kwargs["index"], (spec.neurons_per_input, k))
        return solve_layer(spec, layer, k, tolerance, **kwargs)

    monkeypatch.setattr(loop, "solve_layer", recording)
    ticket = sslth.prune(target, 0.05, 0.3, progress=False, empirical_samples=500)
    assert [first[i] for i in range(2)] == [(p.n, p.k) for p in planned.layers]
    # the numbers beside them: m, m/m_t, Eq. 29, instances
    layer = sslth.as_target(target).layers[0]
    row = planned.layers[0]
    assert row.instances == 2 * 5 * 7 + 7
    assert row.random_params == PairSpec(5, 7, row.n, True, 0).dense_params
    assert row.overparameterization == pytest.approx(row.random_params / (5 * 7 + 7))
    assert row.paper_n == pytest.approx(
        theory.paper_neurons_per_input(0.0886, 2, layer.d_in, layer.d_out, 0.05, 0.3)
    )
    assert planned.predicted_density < 0.3 and ticket.report.density <= 0.3


def test_estimates_are_measured_and_say_so():
    target = random_target([6, 9, 4], seed=1, bias=True)
    planned = sslth.plan(target, 0.05, 0.3)
    for layer in planned.layers:
        assert layer.sample > 0 and layer.seconds > 0 and layer.per_instance_seconds > 0
    assert planned.seconds == pytest.approx(sum(layer.seconds for layer in planned.layers))
    low, high = planned.total_seconds
    assert planned.seconds < low <= planned.expected_seconds <= high
    assert planned.memory_bytes < planned.memory_grown_bytes
    assert planned.peak_bytes == planned.memory_bytes + planned.process_bytes
    text = str(planned)
    assert "ESTIMATE" in text and "the prune's own code and threads" in text
    assert "Eq.29 n" in text and "c_amp = 0.0886" in text
    assert not planned.warnings
    data = json.loads(json.dumps(planned.to_dict()))
    assert data["layers"][0]["n"] == planned.layers[0].n
    assert data["expected_seconds"] == pytest.approx(planned.expected_seconds)


def test_the_estimate_is_its_parts(monkeypatch):
    """The whole-prune estimate is the sum of what the plan shows: sizing, first round, one
    round's bookkeeping and certificate, refine (by each layer's steps) and the report; and each
    layer is timed with the prune's own solve_layer, at one intra-op thread (the sizing too, as
    in the prune), on a sample of its instances scaled by the layer's count."""
    calls = []
    real = estimate.solve_layer

    def recording(spec, layer, k, tolerance, **kwargs):
        calls.append((spec.neurons_per_input, k, tolerance, torch.get_num_threads(), layer.d_in))
        return real(spec, layer, k, tolerance, **kwargs)

    monkeypatch.setattr(estimate, "solve_layer", recording)
    sizing_threads = []
    real_sizes = preview.sizes

    def sizing(*args):
        sizing_threads.append(torch.get_num_threads())
        return real_sizes(*args)

    monkeypatch.setattr(preview, "sizes", sizing)
    monkeypatch.setattr(estimate, "SAMPLE_INSTANCES", {"cpu": 600, "cuda": 600})
    monkeypatch.setattr(estimate, "SAMPLE_BLOCKS", 4)
    target = random_target([40, 30, 5], seed=2)
    planned = sslth.plan(target, 0.05, 0.3, threads=2)
    first, second = planned.layers
    assert {(n, k, tol) for n, k, tol, _, _ in calls} == {
        (layer.n, layer.k, layer.tolerance) for layer in planned.layers
    }
    assert all(threads == 1 for *_, threads, _ in calls) and sizing_threads == [1]
    assert first.sample < first.instances  # a sample of layer 1 ...
    assert second.sample == second.instances  # ... and all of layer 2 (small)
    assert any(d_in < 40 for *_, d_in in calls) and any(d_in == 30 for *_, d_in in calls)
    refine = sum(
        steps * (layer.refine_step_seconds + planned.certificate_seconds)
        for layer in planned.layers
        if (steps := min(layer.refine_steps, estimate.REFINE_EXPECTED_STEPS))
    )
    assert all(0 < layer.refine_steps <= 6 for layer in planned.layers)
    assert planned.expected_seconds == pytest.approx(
        planned.sizing_seconds
        + planned.seconds
        + planned.round_seconds
        + refine
        + planned.report_seconds
    )
    assert planned.round_seconds >= planned.certificate_seconds > 0
    assert planned.report_seconds > planned.certificate_seconds


def test_memory_formula_against_a_solved_layer():
    """The formula's kept bytes against the tensors a real layer solution holds (the random V,
    the picks, the masks and the operators), with the byte counts sslth.search.layer exports."""
    target = sslth.as_target(random_target([12, 20], seed=5, bias=True))
    layer = target.layers[0]
    spec = PairSpec(12, 20, 30, True, layer_seed(0, 0))
    solution = solve_layer(
        spec, layer, 6, 1e-3, index=0, device=torch.device("cpu"), solver=make_solver("auto")
    )
    solution.operator()
    tensors = [solution._second_t, solution.diagonal, solution.masks().second]
    for picks in solution.signs.values():
        tensors += [picks.exists, picks.positions, picks.second, picks.sums]
        tensors += [picks.magnitudes, picks.errors]
    operator = solution.operator()
    tensors += [operator.positive, operator.negative]
    tensors += [operator.stats.abs_positive, operator.stats.abs_negative]
    held = sum(t.numel() * t.element_size() for t in tensors)
    kept, transient = estimate.layer_memory(layer, 30, 6)
    assert 0.9 * held <= kept <= 1.25 * held
    assert transient > estimate.layer_memory(layer, 20, 6)[1] > 0  # wider blocks hold more
    # the search's peak: the layers before keep theirs while the next is solved
    assert estimate.peak_memory([(10, 5), (3, 20)]) == 33
    assert estimate.peak_memory([(10, 50), (3, 20)]) == 60
    assert estimate.peak_memory([(10, 5), (3, 20)], report=40) == 53  # the report, at the end
    small, large = (estimate.report_memory(target, samples) for samples in (100, 10_000))
    assert 0 < small < large


def test_beyond_the_limits_is_reported_and_prune_refuses():
    target = random_target([6, 9, 4], seed=1)
    planned = sslth.plan(target, 1e-4, 0.01, max_random_params=20_000, calibrate=False)
    assert not planned.within_limits and planned.random_params is None
    beyond = [layer for layer in planned.layers if layer.n is None]
    assert beyond and all(layer.needed_n is not None for layer in beyond)
    assert all(layer.needed_params > 20_000 for layer in beyond)
    assert any("prune would refuse" in warning for warning in planned.warnings)
    assert "beyond max_random_params" in str(planned)
    with pytest.raises(sslth.TicketNotFound):
        sslth.prune(target, 1e-4, 0.01, max_random_params=20_000, progress=False)


def test_warnings_for_time_and_memory(monkeypatch):
    target = random_target([6, 9, 4], seed=1)
    monkeypatch.setattr(estimate, "memory_limit", lambda device: (1024, "available RAM"))
    planned = sslth.plan(target, 0.05, 0.3, calibrate=False)
    assert len(planned.warnings) == 1 and "exceeds the 1 KiB of available RAM" in str(planned)
    slow = dataclasses.replace(
        planned,
        seconds=2 * preview.HOUR,
        report_seconds=1.0,
        round_seconds=0.0,
        certificate_seconds=0.0,
    )
    (warning,) = [w for w in preview._warnings(slow, PruneOptions(0.05, 0.3)) if "take" in w]
    assert "estimated to take 2 h" in warning


def test_plan_refuses_unknown_options():
    with pytest.raises(sslth.ConfigError, match="unknown plan option 'epsilonn'"):
        sslth.plan(random_target([3, 2]), 0.1, 0.5, epsilonn=1)


def test_cli_plan(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        "[target]\nwidths = [6, 9, 4]\nseed = 1\n[prune]\nepsilon = 0.05\ndensity = 0.5\n"
    )
    assert main(["plan", "--config", str(config), "--density", "0.3", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert "sslth plan: target 6-9-4" in out and "density <= 0.3" in out  # the flag wins
    assert "memory: an ESTIMATE" in out
    assert main(["plan", "--config", str(config), "--density", "0.3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["within_limits"] and data["seconds"] > 0 and len(data["layers"]) == 2
    # a request prune would refuse: exit 1, with the reason
    flags = ["--density", "0.01", "--epsilon", "1e-4", "--max-random-params", "20000"]
    assert main(["plan", "--config", str(config), "--no-calibrate", *flags]) == 1
    assert "prune would refuse" in capsys.readouterr().out


def test_the_empirical_estimate_counts_the_checks_points(monkeypatch):
    """The report's empirical check is estimated from one timed batch of its gap and a few
    timed ascent steps, scaled by counts: those counts are the points and the ascent the real
    check (sslth.certificate.empirical_error) runs, and the scaling is linear in them."""
    target = sslth.as_target(random_target([7, 5, 3], seed=0, bias=True))
    cpu = torch.device("cpu")
    options = PruneOptions(epsilon=0.1, density=0.5, empirical_samples=301)
    rows = {False: [], True: []}  # forward calls without and with autograd
    real_forward = type(target).forward

    def recording(self, x):
        rows[torch.is_grad_enabled()].append(len(x))
        return real_forward(self, x)

    monkeypatch.setattr(type(target), "forward", recording)
    sslth.empirical_error(
        target, estimate._stand_in(target, cpu), 1.0, samples=options.empirical_samples,
        ascent_steps=estimate.ASCENT_STEPS,
    )  # fmt: skip
    checked = 1 + 2 * 7 + 2 * (301 // 2)  # x = 0, ±R e_j, both random kinds
    ascent = [estimate.ASCENT_POINTS] * estimate.ASCENT_STEPS
    assert sum(rows[False]) == checked + estimate.ASCENT_POINTS and rows[True] == ascent
    # with a clock that says 1 s per timed call: the batch's share and the ascent's
    monkeypatch.setattr(type(target), "forward", real_forward)
    monkeypatch.setattr(estimate, "_timed", lambda device, action, *a: (1.0, action(*a)))
    probe = min(estimate.PROBE_POINTS, checked)
    assert estimate.empirical_seconds(target, options, cpu) == pytest.approx(
        checked / probe + estimate.ASCENT_STEPS / estimate.ASCENT_PROBE
    )


@pytest.mark.parametrize(
    "target,options",
    [
        (random_target([5, 7, 3], seed=4, bias=True), {}),
        (_cnn(), {"input_shape": [1, 4, 4], "epsilon": 0.1}),
    ],
    ids=["mlp", "cnn"],
)
def test_the_planned_instances_are_those_the_first_round_solves(monkeypatch, target, options):
    """The time estimate scales each layer's sample by the plan's instance count: that count
    is what the search's first round hands the solver (counted by the progress updates that
    follow each layer's first announcement, as the bar counts solved instances)."""
    from sslth.progress import Progress

    request = {"epsilon": 0.05, "density": 0.3, **options}
    planned = sslth.plan(target, calibrate=False, **request)
    steps: list[list] = []  # [announced reason, announced count, solved]
    real_add, real_update = Progress.add, Progress.update

    def add(self, count, reason):
        steps.append([reason, count, 0])
        real_add(self, count, reason)

    def update(self, count):
        steps[-1][2] += count
        real_update(self, count)

    monkeypatch.setattr(Progress, "add", add)
    monkeypatch.setattr(Progress, "update", update)
    sslth.prune(target, progress=False, empirical_samples=200, **request)
    for row in planned.layers:
        first = next(step for step in steps if step[0].startswith(f"layer {row.index} "))
        assert first[1] == first[2] == row.instances, (row.index, first)
