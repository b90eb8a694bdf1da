"""The report against an independent float64 reference (tests/reference.py).

The reference never imports ``sslth``: it reads the ticket's masked ``nn.Sequential`` and the
target's weights and recomputes, with plain loops and numpy's SVD, every pair's A, B and
offset, the certificate recursion, the parameter counts and each subset-sum instance's k. The
tests below hold the report to it on biased, unbiased and mixed targets of depth 1–4 with
d_in ≠ d_out, widths 1–8, layer norms 0.3–2 and radii 0.5–5.

Tolerance. The reference computes E_i, β_i, P_i and the recursion in float64 in its own order
(plain loops against ``index_add_``; numpy's LAPACK SVD against torch's), so on its own it is
within a few ulps (~1e-15 relative) of the exact values. The package reports *upper bounds*
(the trust issue, docs/design.md §3): each norm raised by its float64 rounding, 1e-9 relative plus
~1e-10 for the sums that built A and B; every monomial of err_l holds at most one norm per
layer, so at depth ≤ 4 the report may exceed the exact recursion by ~5e-9 relative. A
certificate figure therefore has to lie in [ref·(1 − RTOL_DOWN), ref·(1 + RTOL_UP)] (plus
ATOL) with ``RTOL_DOWN = 1e-12`` (a report below the exact value is not a bound) and
``RTOL_UP = 1e-8`` (2x the rounding allowance). Both are far below any formula slip: every
planted bug in ``test_planted_bugs_are_caught`` moves the bound by more than 1e-4 relative.
``ATOL = 1e-14`` covers quantities that are exactly 0 on one side and a sum of rounding
residues on the other (the bias error of a bias-free layer). Figures that are not rounded up
(the max entry error) must agree within ``RTOL = 1e-9`` either way.

When the report carries the floating-point rounding term, ``certified_error_exact`` is the
exact-arithmetic part and must match the reference's recursion as above; ``certified_error``
(exact plus rounding) must never be below the reference.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import sslth
from tests.conftest import first_fast
from tests.reference import (
    LayerFigures,
    ReferenceCertificate,
    exact_forward,
    layout_violations,
    pair_operator,
    recursion,
    reference_certificate,
    target_forward,
    target_layers,
    ticket_pairs,
)

RTOL = 1e-9
RTOL_DOWN = 1e-12
RTOL_UP = 1e-8
ATOL = 1e-14


@dataclass(frozen=True)
class Case:
    """One target and one ``sslth.prune`` request. ``bias`` has one flag per layer."""

    widths: tuple[int, ...]
    norms: tuple[float, ...]
    bias: tuple[bool, ...]
    radius: float
    epsilon: float
    density: float
    seed: int
    flatten: tuple[int, ...] | None = None  # input shape of a target that starts with Flatten


# Every case is known to succeed (a TicketNotFound here is a failure, not a skip). ε is scaled
# with the output scale R·ΠP_i so that the search stays small.
CASES = [
    Case((3, 5, 2), (1.0, 1.0), (True, True), 2.0, 0.05, 0.4, 1),
    Case((2, 8, 1, 3, 4), (1.5, 1.5, 1.5, 1.5), (False,) * 4, 1.0, 0.2, 0.4, 2),
    Case((8, 1), (0.3,), (True,), 5.0, 0.05, 0.3, 3),
    Case((1, 6), (2.0,), (True,), 0.5, 0.05, 0.4, 4),
    Case((4, 3, 6), (0.3, 2.0), (True, False), 1.5, 0.05, 0.4, 5),
    Case((5, 2, 7, 1), (1.0, 0.5, 2.0), (False, False, False), 3.0, 0.15, 0.4, 6),
    Case((7, 4), (1.2,), (False,), 1.0, 0.02, 0.2, 7),
    Case((2, 3, 2, 3, 1), (0.8, 1.2, 0.6, 1.0), (True,) * 4, 2.0, 0.1, 0.4, 8),
    Case((6, 6, 2), (0.7, 0.7), (False, True), 4.0, 0.1, 0.4, 9),
    Case((1, 1), (1.0,), (True,), 1.0, 0.01, 0.5, 10),
    Case((6, 3), (1.0,), (True,), 1.0, 0.05, 0.4, 11, flatten=(2, 3)),
    Case((3, 4, 2, 2, 5), (1.0, 1.0, 1.0, 1.0), (True, False, True, False), 1.0, 0.2, 0.4, 12),
]


def build_target(case: Case) -> nn.Sequential:
    """A target with the case's widths, per-layer spectral norms and biases."""
    generator = torch.Generator().manual_seed(1000 + case.seed)
    modules: list[nn.Module] = [nn.Flatten()] if case.flatten else []
    depth = len(case.widths) - 1
    for index in range(depth):
        d_in, d_out = case.widths[index], case.widths[index + 1]
        linear = nn.Linear(d_in, d_out, bias=case.bias[index])
        with torch.no_grad():
            weight = torch.randn(d_out, d_in, generator=generator)
            linear.weight.copy_(weight * case.norms[index] / torch.linalg.matrix_norm(weight, 2))
            if case.bias[index]:
                linear.bias.copy_(0.5 * torch.randn(d_out, generator=generator))
        modules.append(linear)
        if index < depth - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


@functools.cache
def built(index: int) -> tuple[nn.Sequential, sslth.Ticket]:
    """The target and ticket of ``CASES[index]``, pruned once per session."""
    case = CASES[index]
    target = build_target(case)
    ticket = sslth.prune(
        target,
        case.epsilon,
        case.density,
        radius=case.radius,
        seed=case.seed,
        progress=False,
        empirical_samples=500,
    )
    return target, ticket


@functools.cache
def reference_of(index: int) -> ReferenceCertificate:
    """The reference's certificate of ``CASES[index]``'s ticket, computed once."""
    target, ticket = built(index)
    offsets = [spec.block_offsets for spec in ticket.specs]
    return reference_certificate(
        ticket.network, target_layers(target), CASES[index].radius, offsets
    )


def ball(count: int, case: Case, seed: int) -> np.ndarray:
    """Random points of the ball of radius R (half on the sphere, half inside), shaped as the
    target's input."""
    rng = np.random.default_rng(seed)
    dim = case.widths[0]
    x = rng.standard_normal((count, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scale = np.ones((count, 1))
    scale[count // 2 :] = rng.random((count - count // 2, 1))
    x *= scale * case.radius
    return x.reshape(count, *case.flatten) if case.flatten else x


def close(a: float, b: float) -> bool:
    """Equal up to float64 rounding (figures the package does not round up)."""
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + ATOL


def within(reported: float, reference: float) -> bool:
    """A reported certificate figure equals the reference's up to the package's upward
    rounding: never below it, at most RTOL_UP above (see the module docstring)."""
    return reference * (1 - RTOL_DOWN) - ATOL <= reported <= reference * (1 + RTOL_UP) + ATOL


def exact_part(report: sslth.Report) -> float:
    """The exact-arithmetic certified error: ``certified_error_exact`` once the rounding term
    exists (docs/design.md §3), ``certified_error`` before."""
    return getattr(report, "certified_error_exact", report.certified_error)


def certificate_mismatches(
    report: sslth.Report, figures: list[LayerFigures], bound: float
) -> list[str]:
    """Every figure of the report's certificate that differs from the reference's (empty when
    they agree); used by the tests and by the planted-bug check of this comparison."""
    problems = []
    for index, (got, want) in enumerate(zip(report.layers, figures, strict=True)):
        layer_bound = getattr(got, "error_bound_exact", got.error_bound)
        for name, value, expected in [
            ("E_i", got.pair_error_norm, want.pair_error_norm),
            ("β_i", got.bias_error, want.bias_error),
            ("err_i", layer_bound, want.error_bound),
        ]:
            if not within(value, expected):
                problems.append(f"layer {index}: {name} {value!r} != reference {expected!r}")
    if not within(exact_part(report), bound):
        problems.append(f"certified error {exact_part(report)!r} != reference {bound!r}")
    if report.certified_error < bound * (1 - RTOL_DOWN) - ATOL:
        problems.append(f"certified error {report.certified_error!r} below reference {bound!r}")
    return problems


@pytest.mark.parametrize("index", first_fast(range(len(CASES)), 3))
def test_certificate_matches_reference(index: int) -> None:
    """E_i, β_i, err_i of every layer and the certified error equal the reference's
    recursion, recomputed from the ticket's masked weights; the reported P_i-based bound is
    never below it."""
    case = CASES[index]
    target, ticket = built(index)
    reference = reference_of(index)
    assert certificate_mismatches(ticket.report, reference.layers, reference.bound) == []
    # the per-layer max entry error |A − W|, |B − W|, |c − b| too
    for layer, op, (weight, bias) in zip(
        ticket.report.layers, reference.operators, target_layers(target), strict=True
    ):
        errors = [np.abs(op.positive - weight), np.abs(op.negative - weight)]
        if bias is not None:
            errors.append(np.abs(op.offset - bias))
        assert close(layer.max_weight_error, max(float(e.max()) for e in errors))
    assert reference.bound <= case.epsilon


@pytest.mark.parametrize("index", first_fast(range(len(CASES)), 3))
def test_counts_and_k_match_reference(index: int) -> None:
    """Density, ticket and random parameter counts match the masks exactly, per layer and in
    total; every subset-sum instance (each output, input and sign, and each output's bias
    instance) keeps exactly the report's k V entries; U keeps only its block diagonal, and a
    neuron's U entry is kept iff some output picked it."""
    case = CASES[index]
    target, ticket = built(index)
    report = ticket.report
    reference = reference_of(index)
    assert report.ticket_params == reference.ticket_params
    assert report.random_params == reference.random_params
    assert report.density == reference.density
    assert report.density <= case.density
    pairs = ticket_pairs(ticket.network)
    for layer, kept, dense, picks, (u, v), d_in, spec in zip(
        report.layers,
        reference.kept_params,
        reference.dense_params,
        reference.picks,
        pairs,
        case.widths[:-1],
        ticket.specs,
        strict=True,
    ):
        assert (layer.kept_params, layer.random_params) == (kept, dense)
        counts = np.concatenate([value.ravel() for value in picks.values()])
        assert layer.k >= 1 and layer.k_min == layer.k_max == layer.k
        assert (counts == layer.k).all(), f"k per instance {sorted(set(counts))} != {layer.k}"
        assert layout_violations(u, d_in, spec.block_offsets) == []
        u_kept = (u.weight_mask != 0).any(axis=1)
        if u.bias_mask is not None:
            u_kept |= u.bias_mask != 0
        assert np.array_equal(u_kept, (v.weight_mask != 0).any(axis=0))


@pytest.mark.parametrize("index", first_fast(range(len(CASES)), 3))
def test_pairs_compute_operator(index: int) -> None:
    """On random points, each masked pair's float64 output V σ(U x + c) equals the
    reference's A σ(x) − B σ(−x) + offset (to 1e-10 of the sum of absolute terms), layer by
    layer, and the whole masked network equals the composition."""
    case = CASES[index]
    target, ticket = built(index)
    reference = reference_of(index)
    x = ball(300, case, seed=index).reshape(300, -1)
    # also points well outside the ball: the identity is exact everywhere
    x = np.vstack([x, 3 * case.radius * np.random.default_rng(index).standard_normal(x.shape)])
    pairs = ticket_pairs(ticket.network)
    for position, ((u, v), op) in enumerate(zip(pairs, reference.operators, strict=True)):
        c = np.zeros(u.weight.shape[0]) if u.bias is None else u.bias
        network_out = np.maximum(x @ u.weight.T + c, 0.0) @ v.weight.T
        scale = (np.abs(x) @ np.abs(u.weight).T + np.abs(c)) @ np.abs(v.weight).T
        assert np.all(np.abs(network_out - op(x)) <= 1e-10 * scale + 1e-300)
        x = op(x)
        if position < len(pairs) - 1:
            x = np.maximum(x, 0.0)
    points = ball(300, case, seed=index + 100)
    whole = exact_forward(ticket.network, points)
    composed = points.reshape(len(points), -1)
    for position, op in enumerate(reference.operators):
        composed = op(composed)
        if position < len(reference.operators) - 1:
            composed = np.maximum(composed, 0.0)
    assert np.allclose(whole, composed, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", first_fast(range(len(CASES)), 3))
def test_bound_dominates_float64_gap(index: int) -> None:
    """The claimed bound (and the reference's) is at least ‖f(x) − g(x)‖ evaluated in float64
    on random points of the ball, and at least the report's empirical error."""
    case = CASES[index]
    target, ticket = built(index)
    layers = target_layers(target)
    reference = reference_of(index)
    x = ball(4000, case, seed=index)
    gap = np.linalg.norm(target_forward(layers, x) - exact_forward(ticket.network, x), axis=1)
    # float64 evaluation differs from exact arithmetic by ~1e-16 of the activations' size
    assert gap.max() <= reference.bound * (1 + 1e-9) + 1e-12
    assert gap.max() <= ticket.report.certified_error * (1 + 1e-9) + 1e-12
    assert ticket.report.empirical_error <= ticket.report.certified_error * (1 + 1e-9)
    # the target the reference reads is the one sslth reads (float32 → float64 is exact)
    for (weight, bias), layer in zip(layers, sslth.as_target(target).layers, strict=True):
        assert np.array_equal(weight, layer.weight.numpy())
        assert (bias is None) == (layer.bias is None)
        assert bias is None or np.array_equal(bias, layer.bias.numpy())


def test_planted_bugs_are_caught() -> None:
    """The comparison can fail: feeding the recursion a plausible slip (‖b_i‖ dropped from the
    radius, P_i = 1, β_i dropped, B's sign flipped in E_i) makes ``certificate_mismatches``
    report a difference on at least one case for every slip, by more than 1e-4 relative."""
    caught = {name: False for name in ("no ‖b‖ in r", "P = 1", "no β", "B sign")}
    moved = dict.fromkeys(caught, 0.0)  # largest relative change of the bound per slip
    for index, case in enumerate(CASES):
        target, ticket = built(index)
        layers = target_layers(target)
        reference = reference_of(index)
        figures = reference.layers
        norms = [f.weight_norm for f in figures]
        errors = [f.pair_error_norm for f in figures]
        betas = [f.bias_error for f in figures]
        bias_norms = [f.bias_norm for f in figures]
        flipped = [
            float(np.linalg.norm(np.hstack([op.positive - w, w + op.negative]), 2))
            for op, (w, _) in zip(reference.operators, layers, strict=True)
        ]
        slips = {
            "no ‖b‖ in r": (norms, errors, betas, [0.0] * len(norms)),
            "P = 1": ([1.0] * len(norms), errors, betas, bias_norms),
            "no β": (norms, errors, [0.0] * len(norms), bias_norms),
            "B sign": (norms, flipped, betas, bias_norms),
        }
        # unchanged inputs reproduce the reference exactly (the slips are the only change)
        assert recursion(norms, errors, betas, bias_norms, case.radius)[-1][1] == reference.bound
        for name, (p, e, beta, b) in slips.items():
            steps = recursion(p, e, beta, b, case.radius)
            planted = [
                LayerFigures(p[i], e[i], beta[i], b[i], r_in, err)
                for i, (r_in, err) in enumerate(steps)
            ]
            if certificate_mismatches(ticket.report, planted, steps[-1][1]):
                caught[name] = True
            change = abs(steps[-1][1] - reference.bound) / reference.bound
            moved[name] = max(moved[name], change)
    assert all(caught.values()), caught
    # each slip is far outside the tolerance band, not just past its edge
    assert min(moved.values()) > 1e-4, moved


def test_reference_rejects_non_tickets() -> None:
    """The reference refuses pairs that do not compute A σ(x) − B σ(−x) + c: a neuron reading
    two inputs, a neuron reading an input and a bias, a second layer with a bias."""
    u = np.array([[0.5, 0.0], [0.0, -0.3], [0.0, 0.0]])
    c = np.array([0.0, 0.0, 0.7])
    v = np.array([[1.0, 2.0, 3.0]])
    op = pair_operator(u, c, v)
    assert np.allclose(op.positive, [[0.5, 0.0]])
    assert np.allclose(op.negative, [[0.0, -0.6]])
    assert np.allclose(op.offset, [2.1])
    with pytest.raises(ValueError, match="reads inputs"):
        pair_operator(np.array([[0.5, 0.1], [0.0, -0.3], [0.0, 0.0]]), c, v)
    with pytest.raises(ValueError, match="and a bias"):
        pair_operator(u, np.array([0.2, 0.0, 0.7]), v)
    with pytest.raises(ValueError, match="nonzero bias"):
        pair_operator(u, c, v, np.array([0.1]))
    # the checks read the masks: one extra kept U entry in a copy of a real ticket is refused
    target, ticket = built(0)
    network = masked_copy(ticket.network)
    with torch.no_grad():
        row = int(torch.nonzero(network[0].weight_mask[:, 0])[0])
        network[0].weight_mask[row, 1] = 1.0
    with pytest.raises(ValueError, match="reads inputs"):
        reference_certificate(network, target_layers(target), CASES[0].radius)
    # the copy itself is a faithful ticket: unmodified, it certifies like the original
    copied = reference_certificate(masked_copy(ticket.network), target_layers(target), 2.0)
    assert copied.bound == reference_of(0).bound


def masked_copy(network: nn.Sequential) -> nn.Sequential:
    """A fresh copy of a pruned network (same ``*_orig`` and ``*_mask``), to mutate safely
    (``copy.deepcopy`` refuses pruned modules)."""
    modules: list[nn.Module] = []
    for module in network:
        if not isinstance(module, nn.Linear):
            modules.append(type(module)())
            continue
        linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        for name in ("weight", "bias"):
            orig = getattr(module, f"{name}_orig", getattr(module, name))
            if orig is None:
                continue
            with torch.no_grad():
                getattr(linear, name).copy_(orig)
            mask = getattr(module, f"{name}_mask", None)
            if mask is not None:
                torch_prune.custom_from_mask(linear, name, mask.clone())
        modules.append(linear)
    return nn.Sequential(*modules)


def test_reference_is_independent() -> None:
    """tests/reference.py imports nothing from sslth (its whole point)."""
    source = Path(__file__).with_name("reference.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(name.split(".")[0] == "sslth" for name in names), names
