"""CUDA against CPU: the solver's decisions, a CUDA prune's certificate, a CUDA ticket on CPU.

Every test here is marked ``cuda`` and skips without a CUDA device. ``SSLTH_TEST_DEVICE``
(default ``cuda``) names the device under test: ``SSLTH_TEST_DEVICE=cpu python -m pytest -m cuda
tests/test_cuda.py`` runs the same checks with the CPU standing in, which is how their logic is
checked on a machine without a GPU (``scripts/device_check.sh --device cpu`` does that).
"""

import math
import os

import pytest
import torch
from torch import nn

import sslth
from sslth.config import random_target
from sslth.subset_sum import solve

DEVICE = os.environ.get("SSLTH_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available(),
        reason="no CUDA device",
    ),
]

# float64 sums of at most 16 values in [-1, 1], added in another order on the GPU
ERROR_ATOL = 1e-12
# the certificate is float64 norms and products; the GPU's reductions differ in the last bits
CERTIFIED_RTOL = 1e-9


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CPU references are many small ops: on a shared CPU, several OpenMP threads wait on
    each other (tens of times slower when other processes compete); one thread stays fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _brute_instances(seed: int, batch: int, m: int, family: str):
    """Rows brute force can enumerate (the recipe of tests/test_subset_sum.py): random validity,
    per-row k in 1..min(n_valid, 6) and per-row tolerance in [1e-4, 1e-1], so that both solved
    and infeasible rows occur."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1
    if family == "product":
        values = values * (torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1)
    valid = torch.rand(batch, m, generator=g) < 0.7
    valid[:, 0] = True
    cap = valid.sum(dim=1).clamp(max=6)
    k = (torch.rand(batch, generator=g) * cap).long() + 1
    scale = 0.4 if family == "uniform" else 0.2
    targets = torch.randn(batch, generator=g, dtype=torch.float64) * scale * k.sqrt()
    tol = 10 ** (-1 - 3 * torch.rand(batch, generator=g, dtype=torch.float64))
    return values, targets, k, tol, valid


def _on(device: str, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


@pytest.mark.parametrize("method", ["brute", "exact", "auto"])
@pytest.mark.parametrize("family,m", [("uniform", 11), ("product", 16)])
def test_solver_decides_every_row_as_on_cpu(method: str, family: str, m: int) -> None:
    values, targets, k, tol, valid = _brute_instances(100 + m, 1000, m, family)
    cpu = solve(values, targets, k, tol, valid=valid, method=method)
    dev = solve(*_on(DEVICE, values, targets, k, tol), valid=valid.to(DEVICE), method=method)
    assert dev.mask.device.type == torch.device(DEVICE).type
    mask, error = dev.mask.cpu(), dev.error.cpu()
    # the device's picks are a valid answer: exactly k, valid candidates, error recomputed
    assert torch.equal(mask.sum(dim=1), k)
    assert not bool((mask & ~valid).any())
    picked = torch.where(mask, values, 0.0).sum(dim=1)
    torch.testing.assert_close(error, (picked - targets).abs(), rtol=0, atol=ERROR_ATOL)
    # the same decision on every row (these methods are complete at this size)
    assert torch.equal(dev.solved.cpu(), cpu.solved)
    assert torch.equal(dev.infeasible.cpu(), cpu.infeasible)
    assert torch.equal(dev.budget_exhausted.cpu(), cpu.budget_exhausted)
    assert 0.02 < float(cpu.solved.double().mean()) < 0.98  # both outcomes are exercised
    brute = cpu
    if method != "brute":
        brute = solve(values, targets, k, tol, valid=valid, method="brute")
    assert torch.equal(dev.solved.cpu(), brute.solved)
    if method == "brute":
        # the best subset of every row: the same error whichever device enumerated it
        torch.testing.assert_close(error, cpu.error, rtol=0, atol=ERROR_ATOL)
    else:
        # a solved row may pick any subset within tol; an unsolved row was searched to the end,
        # and exact returns the best subset there, as brute force does
        assert bool((error[dev.solved.cpu()] < tol[dev.solved.cpu()]).all())
        if method == "exact":
            bad = ~cpu.solved
            torch.testing.assert_close(error[bad], cpu.error[bad], rtol=0, atol=ERROR_ATOL)
            torch.testing.assert_close(error[bad], brute.error[bad], rtol=0, atol=ERROR_ATOL)


def _dense_target(bias: bool) -> nn.Sequential:
    return random_target([6, 10, 4], bias=bias, seed=3 if bias else 2)


def _cnn() -> nn.Sequential:
    """A small LeNet-like CNN on 1×6×6 images: conv, ReLU, average pool, flatten, linear."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 3),
    )
    with torch.no_grad():
        for module in model:
            if hasattr(module, "weight"):
                module.weight.mul_(0.7)
    return model


# (name, target factory, ε, density, extra prune options)
TARGETS = [
    ("dense", lambda: _dense_target(False), 0.05, 0.3, {}),
    ("dense-bias", lambda: _dense_target(True), 0.05, 0.3, {}),
    ("cnn", _cnn, 0.1, 0.4, {"input_shape": [1, 6, 6]}),
]


@pytest.fixture(scope="module", params=TARGETS, ids=[t[0] for t in TARGETS])
def pruned(request, tmp_path_factory):
    """One prune per target on the device under test (shared by the tests below)."""
    name, make, epsilon, density, options = request.param
    target = make()
    ticket = sslth.prune(
        target,
        epsilon,
        density,
        device=DEVICE,
        seed=0,
        progress=False,
        empirical_samples=1000,
        **options,
    )
    path = ticket.save(tmp_path_factory.mktemp(name) / "ticket.pt")
    return target, ticket, path, epsilon, density, options


def test_prune_on_the_device_certifies_within_epsilon(pruned) -> None:
    target, ticket, _, epsilon, density, options = pruned
    report = ticket.report
    assert report.device.split(":")[0] == torch.device(DEVICE).type
    assert next(ticket.network.parameters()).device.type == torch.device(DEVICE).type
    assert report.meets_epsilon and report.certified_error <= epsilon
    assert report.meets_density and report.density <= density
    assert 0.0 <= report.empirical_error <= report.certified_error
    # certified again from scratch, from the network the ticket runs on the device
    bound = sslth.certify(target, ticket.network, ticket.radius, **options)
    assert bound.bound == pytest.approx(report.certified_error, rel=CERTIFIED_RTOL)


def test_device_ticket_loaded_on_cpu_certifies_the_same(pruned) -> None:
    target, ticket, path, epsilon, _, options = pruned
    loaded = sslth.load(path, device="cpu", samples=1000)
    assert loaded.report.device == "cpu"
    assert next(loaded.network.parameters()).device.type == "cpu"
    # the report is recomputed on the CPU from the file's masks and the regenerated weights
    assert loaded.report.certified_error == pytest.approx(
        ticket.report.certified_error, rel=CERTIFIED_RTOL
    )
    assert loaded.report.certified_error <= epsilon
    assert loaded.report.density == ticket.report.density
    assert loaded.report.ticket_params == ticket.report.ticket_params
    assert loaded.report.n == ticket.report.n and loaded.report.k == ticket.report.k
    assert 0.0 <= loaded.report.empirical_error <= loaded.report.certified_error
    # the same masks: both networks compute the same function (up to float64 rounding)
    shape = options["input_shape"] if "input_shape" in options else [target[0].in_features]
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        on_cpu = loaded.network(x)
        on_device = ticket.network(x.to(DEVICE)).cpu()
    scale = max(1.0, float(on_cpu.abs().max()))
    torch.testing.assert_close(on_device, on_cpu, rtol=0, atol=1e-9 * scale)
    assert math.isfinite(loaded.report.certified_error)


def test_device_prune_picks_the_cpu_masks(pruned) -> None:
    """The same seed gives the same masks on every device: the random weights come from CPU
    generators and the solver's randomness from a hash of each instance's id."""
    target, ticket, _, epsilon, density, options = pruned
    on_cpu = sslth.prune(
        target,
        epsilon,
        density,
        device="cpu",
        seed=0,
        progress=False,
        empirical_samples=1000,
        **options,
    )
    assert ticket.report.n == on_cpu.report.n and ticket.report.k == on_cpu.report.k
    for device_masks, cpu_masks in zip(ticket.masks, on_cpu.masks, strict=True):
        assert torch.equal(device_masks.second.cpu(), cpu_masks.second)
        assert torch.equal(device_masks.kept_neurons.cpu(), cpu_masks.kept_neurons)
