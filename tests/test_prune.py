"""sslth.prune, the report, TicketNotFound, bad input, save/load (issue 4)."""

import pickle
import random

import pytest
import torch
from torch import nn

import sslth
from sslth.config import random_target as family_target
from sslth.construct import PairSpec
from sslth.kinds import spectral_norm
from tests.conftest import first_fast, random_target


def _small_target(seed=0, widths=(5, 7, 3)):
    return family_target(list(widths), seed=seed)


@pytest.mark.parametrize(
    "widths,epsilon,density",
    first_fast(
        [
            ((5, 7, 3), 0.05, 0.3),
            ((1, 4, 1), 0.02, 0.5),
            ((6, 2, 4, 2), 0.1, 0.2),
            ((3, 9), 0.05, 0.1),
        ],
        2,
        unpack=True,
    ),
)
def test_automatic_choice_meets_epsilon_and_density(widths, epsilon, density):
    target = family_target(list(widths), seed=len(widths))
    ticket = sslth.prune(target, epsilon, density, progress=False, empirical_samples=2000)
    report = ticket.report
    assert report.certified_error <= epsilon
    assert report.density <= density
    assert report.empirical_error <= report.certified_error


def test_report_matches_independent_recomputation():
    target = _small_target(3)
    ticket = sslth.prune(target, 0.05, 0.3, progress=False, empirical_samples=2000)
    report = ticket.report
    network = ticket.network
    linears = [m for m in network if isinstance(m, nn.Linear)]
    total = sum(m.weight_orig.numel() for m in linears)
    kept = sum(int(m.weight_mask.count_nonzero()) for m in linears)
    assert report.random_params == total
    assert report.ticket_params == kept
    assert report.density == pytest.approx(kept / total)
    target_params = sum(p.numel() for p in target.parameters())
    assert report.target_params == target_params
    assert report.overparameterization == pytest.approx(total / target_params)
    block = sum(m.weight_orig.shape[0] for m in linears[::2]) + sum(
        m.weight_orig.numel() for m in linears[1::2]
    )
    assert report.density_block == pytest.approx(kept / block)
    # certificate from scratch: P_i, E_i from the network's weights
    certificate = sslth.certify(target, network, 1.0)
    assert report.certified_error == pytest.approx(certificate.bound, rel=1e-12)
    assert report.certified_error_exact == pytest.approx(certificate.exact, rel=1e-12)
    err, r = 0.0, 1.0
    linears = [m for m in network if isinstance(m, nn.Linear)]
    for layer, first, second in zip(
        sslth.as_target(target).layers, linears[::2], linears[1::2], strict=True
    ):
        w = layer.weight
        u, v = first.weight.detach().double(), second.weight.detach().double()
        a = u.sum(dim=1)  # one input per neuron
        reads = (u != 0).double().argmax(dim=1)
        onehot = torch.nn.functional.one_hot(reads, w.shape[1]).double()
        positive = v @ (onehot * a.clamp(min=0)[:, None])
        negative = v @ (onehot * a.clamp(max=0)[:, None])  # = −Σ |a| V over a < 0
        e = spectral_norm(torch.cat([positive - w, w - negative], 1))
        p = spectral_norm(w)
        err, r = p * err + e * (r + err), p * r
    # the report's norms are upper bounds that include their own float64 rounding
    assert err <= report.certified_error_exact <= err * (1 + 1e-6)
    for layer_report, spec in zip(report.layers, ticket.specs, strict=True):
        assert layer_report.hidden == 2 * layer_report.n * spec.d_in
    d = report.to_dict()
    assert d["certified_error"] == report.certified_error and "timings" in d
    assert "certified error" in str(report)
    assert report.versions["torch"] == torch.__version__


def test_ticket_not_found_for_an_impossible_request():
    target = _small_target(1)
    with pytest.raises(sslth.TicketNotFound) as caught:
        sslth.prune(target, 1e-3, 0.5, n=4, k=2, progress=False, empirical_samples=500)
    error = caught.value
    assert error.best is not None
    assert error.best_certified_error > 1e-3
    message = str(error)
    assert "best reached certified error" in message and "Raise density or ε" in message


def test_density_too_small_for_any_network():
    with pytest.raises(sslth.TicketNotFound, match="max_random_params"):
        sslth.prune(_small_target(2), 1e-4, 1e-5, progress=False, max_random_params=100_000)


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize(
    "target,kwargs,error,match",
    [
        (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), {}, TypeError, "groups"),
        (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 1)), {}, TypeError, "Sigmoid"),
        (
            nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)),
            {},
            TypeError,
            "BatchNorm1d",
        ),
        (None, {"epsilon": 0.0}, ValueError, "epsilon"),
        (None, {"epsilon": -1.0}, ValueError, "epsilon"),
        (None, {"density": 0.0}, ValueError, "density"),
        (None, {"density": 1.5}, ValueError, "density"),
        (None, {"radius": 0.0}, ValueError, "radius"),
        (None, {"n": [4]}, ValueError, "n has 1 entries"),
        (None, {"n": 4, "k": 0}, ValueError, "k must be positive"),
        (None, {"n": 2, "k": 5}, ValueError, "impossible k"),
        (42, {}, TypeError, "target must be"),
    ],
)
def test_bad_input_is_refused_and_model_untouched(target, kwargs, error, match):
    model = _model() if target is None else target
    before = (
        {k: v.clone() for k, v in model.state_dict().items()}
        if isinstance(model, nn.Module)
        else None
    )
    args = {"epsilon": 0.1, "density": 0.5}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sslth.prune(model, args.pop("epsilon"), args.pop("density"), progress=False, **args)
    if before is not None:
        after = model.state_dict()
        assert all(torch.equal(before[key], after[key]) for key in before)


def test_nan_weight_refused():
    model = _model()
    with torch.no_grad():
        model[0].weight[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sslth.prune(model, 0.1, 0.5, progress=False)


def test_model_untouched_on_success():
    model = random_target(random.Random(3), depth=2, bias=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sslth.prune(model, 0.1, 0.5, progress=False, empirical_samples=500)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "weight_mask") for m in model)


def test_save_load_round_trip(tmp_path):
    target = random_target(random.Random(4), depth=2, bias=True)
    ticket = sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=500)
    path = ticket.save(tmp_path / "ticket.pt")
    loaded = sslth.load(path)
    x = torch.randn(64, target[0].in_features)
    with torch.no_grad():
        assert torch.equal(loaded.network(x.double()), ticket.network(x.double()))
    assert loaded.report.certified_error == pytest.approx(ticket.report.certified_error)
    again = loaded.evaluate(samples=500)
    assert again.certified_error == pytest.approx(ticket.report.certified_error, rel=1e-12)
    assert again.density == ticket.report.density


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "sslth-ticket", "payload": _Exploit()}, handle)
    with pytest.raises(ValueError, match="not an sslth ticket"):
        sslth.load(path)
    assert not (tmp_path / "PWNED").exists()
    torch.save({"weights": torch.ones(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an sslth ticket"):
        sslth.load(tmp_path / "foreign.pt")


def test_tampered_ticket_is_refused(tmp_path):
    target = _small_target(5)
    ticket = sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=500)
    path = ticket.save(tmp_path / "ticket.pt")
    payload = torch.load(path, weights_only=True)
    spec = PairSpec(**__import__("json").loads(payload["metadata"])["specs"][0])
    assert spec.neurons_per_input == ticket.report.n[0]
    payload["metadata"] = payload["metadata"].replace(
        f'"seed": {spec.seed}', f'"seed": {spec.seed + 1}'
    )
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="checksum"):
        sslth.load(tmp_path / "tampered.pt")
    with pytest.raises(FileNotFoundError):
        sslth.load(tmp_path / "missing.pt")
