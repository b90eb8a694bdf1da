"""The report's empirical error against a known maximum (d_in = 1 or 2).

``report.empirical_error`` is a lower estimate of sup_{‖x‖ ≤ R} ‖f(x) − g(x)‖₂ (random points
of the sphere, then projected gradient ascent). For inputs of dimension 1 or 2 the true sup can
be computed: f and the masked ticket g are both continuous piecewise-affine, so e = f − g is
affine on each cell of a finite partition of the plane (or line) into convex polygons
(intervals), and ‖e‖ is convex on each cell. Its max over a cell ∩ ball is therefore at a cell
vertex inside the ball, where a cell edge crosses the circle, or, on the circle inside a cell,
at a stationary point of θ ↦ ‖e(R cos θ, R sin θ)‖². We enumerate the cells exactly (splitting
convex polygons by the zero line of every ReLU, layer by layer), collect those candidates,
evaluate the masked network on them in float64 directly, and take the max. A dense grid of the
ball (through the reference's pair operators, which tests/test_reference.py checks against the
network) cross-checks the enumeration: no grid point may beat it.

The assertions are ``true ≤ certified``, ``empirical ≤ true·(1 + 1e-9)`` and
``empirical ≥ (1 − f)·true`` with f = ``SHORTFALL``. The last one failed on several targets with
biases, whose max lies inside the ball (see ``FINDINGS``), until the estimator sampled the
interior and x = 0 as well as the sphere; they are kept as regular cases.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import sslth
from tests.conftest import first_fast
from tests.reference import (
    PairOperator,
    exact_forward,
    operator_forward,
    reference_certificate,
    target_forward,
    target_layers,
)

# The largest fraction by which the empirical error may fall short of the true max, fixed
# before measuring. Why 2 %: for a depth-1 target the certificate can be tight (certified / true
# max is 1.00 on the bias-free ones below), so a larger shortfall would make a tight
# certificate look loose and the empirical number would misstate the ticket's real error. And it is
# reachable by the method when it looks in the right place: with d_in ≤ 2 the report's 10,000
# sphere samples put one within about 0.003·R of every point of the circle, and the ascent
# ends with steps of 0.1·R·0.96^100 ≈ 0.002·R, each moving ‖e‖ by far less than 2 % of it.
SHORTFALL = 0.02

# ------------------------------------------------------------------ piecewise-affine programs
# A program is a list of steps ("affine", M, m) or ("relu",): x ↦ M x + m, or x ↦ max(x, 0).
Step = tuple


def target_program(layers: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> list[Step]:
    """f as a program: affine, relu, affine, …, affine."""
    program: list[Step] = []
    for index, (weight, bias) in enumerate(layers):
        program.append(("affine", weight, np.zeros(weight.shape[0]) if bias is None else bias))
        if index < len(layers) - 1:
            program.append(("relu",))
    return program


def ticket_program(operators: Sequence[PairOperator]) -> list[Step]:
    """g as a program, from the reference's pair operators A σ(x) − B σ(−x) + c (which
    tests/test_reference.py checks against the masked network)."""
    program: list[Step] = []
    for index, op in enumerate(operators):
        d_in = op.positive.shape[1]
        eye = np.eye(d_in)
        program += [
            ("affine", np.vstack([eye, -eye]), np.zeros(2 * d_in)),
            ("relu",),
            ("affine", np.hstack([op.positive, -op.negative]), op.offset),
        ]
        if index < len(operators) - 1:
            program.append(("relu",))
    return program


@dataclass
class Cell:
    """A convex cell (polygon vertices in order, or the two ends of an interval) on which the
    program's current activations are x ↦ P x + p."""

    vertices: np.ndarray  # (V, d)
    P: np.ndarray  # (k, d)
    p: np.ndarray  # (k,)


def _clip(vertices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The part of a convex polygon (or interval) where the affine function with the given
    vertex values is ≥ 0 (Sutherland–Hodgman against one half-plane)."""
    if len(vertices) == 2:  # an interval [a, b]
        a, b = vertices
        t = values[0] / (values[0] - values[1])
        cut = a + t * (b - a)
        return np.array([a, cut]) if values[0] >= 0 else np.array([cut, b])
    out = []
    count = len(vertices)
    for i in range(count):
        j = (i + 1) % count
        if values[i] >= 0:
            out.append(vertices[i])
        if values[i] * values[j] < 0:
            t = values[i] / (values[i] - values[j])
            out.append(vertices[i] + t * (vertices[j] - vertices[i]))
    return np.array(out)


def cells(program: Sequence[Step], start: Cell) -> list[Cell]:
    """Split ``start`` until the program is affine on every cell."""
    current = [start]
    minimum = 2 if start.vertices.shape[1] == 1 else 3
    for step in program:
        if step[0] == "affine":
            _, weight, bias = step
            current = [Cell(c.vertices, weight @ c.P, weight @ c.p + bias) for c in current]
            continue
        for unit in range(current[0].P.shape[0]):
            split = []
            for cell in current:
                values = cell.vertices @ cell.P[unit] + cell.p[unit]
                scale = 1e-12 * (np.abs(cell.vertices) @ np.abs(cell.P[unit]) + abs(cell.p[unit]))
                on = values >= -scale
                off = values <= scale
                if on.all() or off.all():
                    parts = [(cell.vertices, bool(on.all()))]
                else:
                    parts = [
                        (_clip(cell.vertices, values), True),
                        (_clip(cell.vertices, -values), False),
                    ]
                for vertices, active in parts:
                    if len(vertices) < minimum:  # a polygon clipped to a point or a segment
                        continue
                    P, p = cell.P, cell.p
                    if not active:  # the unit is off on this part: its activation is 0
                        P, p = P.copy(), p.copy()
                        P[unit], p[unit] = 0.0, 0.0
                    split.append(Cell(vertices, P, p))
            current = split
    return current


def _circle_crossings(a: np.ndarray, b: np.ndarray, radius: float) -> list[np.ndarray]:
    """Points of the segment [a, b] on the circle of the given radius."""
    d = b - a
    qa, qb, qc = d @ d, 2 * a @ d, a @ a - radius**2
    disc = qb * qb - 4 * qa * qc
    if qa == 0 or disc < 0:
        return []
    roots = [(-qb - np.sqrt(disc)) / (2 * qa), (-qb + np.sqrt(disc)) / (2 * qa)]
    return [a + t * d for t in roots if 0 <= t <= 1]


def _circle_maxima(M: np.ndarray, m: np.ndarray, radius: float, samples: int = 1024) -> np.ndarray:
    """Local maxima on the circle of φ(θ) = ‖M R u(θ) + m‖², u(θ) = (cos θ, sin θ): sign
    changes (+ to −) of φ' on a fine θ grid, refined by bisection to machine precision."""

    def slope(theta: np.ndarray) -> np.ndarray:
        u = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        du = np.stack([-np.sin(theta), np.cos(theta)], axis=-1)
        value = radius * u @ M.T + m
        return 2 * np.sum(value * (radius * du @ M.T), axis=-1)

    theta = np.linspace(0, 2 * np.pi, samples + 1)
    s = slope(theta)
    lo, hi = theta[:-1][(s[:-1] > 0) & (s[1:] <= 0)], theta[1:][(s[:-1] > 0) & (s[1:] <= 0)]
    for _ in range(60):
        mid = (lo + hi) / 2
        up = slope(mid) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return radius * np.stack([np.cos(lo), np.sin(lo)], axis=-1)


def candidates(
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    operators: Sequence[PairOperator],
    radius: float,
) -> np.ndarray:
    """Points of the ball among which ‖f − g‖ attains its max (see the module docstring)."""
    d_in = layers[0][0].shape[1]
    if d_in == 1:
        box = np.array([[-radius], [radius]])
    elif d_in == 2:
        box = radius * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    else:
        raise ValueError("the exact maximum is implemented for d_in = 1 or 2")
    points = []
    start = Cell(box, np.eye(d_in), np.zeros(d_in))
    for outer in cells(target_program(layers), start):
        for inner in cells(ticket_program(operators), Cell(outer.vertices, start.P, start.p)):
            vertices = inner.vertices
            points.extend(vertices)
            if d_in == 2:
                for i in range(len(vertices)):
                    points.extend(
                        _circle_crossings(vertices[i], vertices[(i + 1) % len(vertices)], radius)
                    )
                # on this cell f(x) = outer.P x + outer.p and g(x) = inner.P x + inner.p
                M, m = outer.P - inner.P, outer.p - inner.p
                points.extend(_circle_maxima(M, m, radius))
    x = np.array(points)
    length = np.linalg.norm(x, axis=1, keepdims=True)
    x = x * np.minimum(1.0, radius / np.maximum(length, 1e-300))  # on or inside the ball
    return x[np.linalg.norm(x, axis=1) <= radius * (1 + 1e-15)]


def gaps(
    network: nn.Sequential, layers: Sequence[tuple[np.ndarray, np.ndarray | None]], x: np.ndarray
) -> np.ndarray:
    """‖f(x) − g(x)‖₂ per point, both evaluated in float64 (g from the masked network)."""
    return np.linalg.norm(target_forward(layers, x) - exact_forward(network, x), axis=1)


def grid(d_in: int, radius: float, side: int) -> np.ndarray:
    """A dense grid of the ball: the segment [−R, R], or the disc (a square grid clipped to it,
    plus the circle)."""
    if d_in == 1:
        return np.linspace(-radius, radius, side)[:, None]
    axis = np.linspace(-radius, radius, side)
    x = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    x = x[np.linalg.norm(x, axis=1) <= radius]
    theta = np.linspace(0, 2 * np.pi, 8 * side, endpoint=False)
    return np.vstack([x, radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)])


def true_max(
    network: nn.Sequential,
    layers: Sequence[tuple[np.ndarray, np.ndarray | None]],
    operators: Sequence[PairOperator],
    radius: float,
) -> tuple[float, np.ndarray]:
    """sup over the ball of ‖f(x) − g(x)‖ and a point attaining it."""
    x = candidates(layers, operators, radius)
    values = gaps(network, layers, x)
    best = int(values.argmax())
    return float(values[best]), x[best]


# ------------------------------------------------------------------ the enumeration itself


def _zero_operators(layers: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> list:
    return [
        PairOperator(np.zeros_like(w), np.zeros_like(w), np.zeros(w.shape[0])) for w, _ in layers
    ]


def test_enumeration_finds_known_maxima() -> None:
    """The candidate set contains the max where it is known in closed form: an interior
    vertex (a tent relu(b − |x₁| − |x₂|), max b at the origin), a smooth maximum on the circle
    (a linear map M x, max R·σ_max(M)), and an interval end and a kink in 1D."""
    # tent: hidden units ±x₁, ±x₂ (so |x₁| + |x₂| = Σ relu), then relu(b − Σ), read out
    b = 0.3
    hidden = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    tent = [(hidden, None), (-np.ones((1, 4)), np.array([b])), (np.ones((1, 1)), None)]
    x = candidates(tent, _zero_operators(tent), 1.0)
    values = np.abs(target_forward(tent, x)[:, 0])
    assert values.max() == pytest.approx(b, rel=1e-15)
    assert np.linalg.norm(x[values.argmax()]) < 1e-12
    # a linear map: the max over the disc of radius R is R·σ_max on the circle
    M = np.array([[0.3, -1.1], [0.8, 0.4], [0.2, 0.5]])
    linear = [(M, None)]
    x = candidates(linear, _zero_operators(linear), 2.5)
    values = np.linalg.norm(target_forward(linear, x), axis=1)
    assert values.max() == pytest.approx(2.5 * np.linalg.norm(M, 2), rel=1e-12)
    # 1D: relu(x + 0.1) − 1.5 relu(x − 0.2) on [−1, 1] peaks at its kink x = 0.2 (0.3; the
    # ends give 0 and 0.1)
    one = [(np.array([[1.0], [1.0]]), np.array([0.1, -0.2])), (np.array([[1.0, -1.5]]), None)]
    x = candidates(one, _zero_operators(one), 1.0)
    values = np.abs(target_forward(one, x)[:, 0])
    assert values.max() == pytest.approx(0.3, rel=1e-14)
    assert x[values.argmax(), 0] == pytest.approx(0.2, rel=1e-14)


# ------------------------------------------------------------------ tickets against their max


@dataclass(frozen=True)
class Case:
    """A target (spectral norm 1 per layer, biases ``bias_scale``·N(0, 1) if any) and the
    ball it is certified on; ε = 0.05·R, density 0.4, the report's default 10,000 samples."""

    widths: tuple[int, ...]
    bias: bool
    radius: float
    bias_scale: float
    seed: int


def build_target(case: Case) -> nn.Sequential:
    generator = torch.Generator().manual_seed(case.seed)
    modules: list[nn.Module] = []
    depth = len(case.widths) - 1
    for index in range(depth):
        d_in, d_out = case.widths[index], case.widths[index + 1]
        linear = nn.Linear(d_in, d_out, bias=case.bias)
        with torch.no_grad():
            weight = torch.randn(d_out, d_in, generator=generator)
            linear.weight.copy_(weight / torch.linalg.matrix_norm(weight, ord=2))
            if case.bias:
                linear.bias.copy_(case.bias_scale * torch.randn(d_out, generator=generator))
        modules.append(linear)
        if index < depth - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def prune_case(case: Case) -> tuple[nn.Sequential, sslth.Ticket]:
    target = build_target(case)
    ticket = sslth.prune(
        target, 0.05 * case.radius, 0.4, radius=case.radius, seed=case.seed, progress=False
    )
    return target, ticket


# Spread over the four classes (d_in = 1 or 2, with or without biases), depth 1 to 3.
CASES = [
    Case((1, 3), False, 1.0, 0.0, 11),
    Case((1, 4, 2), False, 2.0, 0.0, 12),
    Case((1, 3, 3, 1), False, 1.0, 0.0, 13),
    Case((2, 2), False, 1.0, 0.0, 21),
    Case((2, 5, 3), False, 3.0, 0.0, 22),
    Case((2, 4, 4, 2), False, 1.0, 0.0, 23),
    Case((1, 3), True, 1.0, 0.5, 31),
    Case((1, 4, 2), True, 2.0, 0.3, 32),
    Case((1, 3, 3, 1), True, 1.0, 0.5, 33),
    Case((2, 3), True, 1.0, 0.5, 41),
    Case((2, 4, 2), True, 2.0, 1.0, 42),
    Case((2, 3, 3, 1), True, 1.0, 0.5, 43),
]

# Targets with biases on which the report's empirical error fell short of the true max by more
# than SHORTFALL when it sampled only the sphere. Each max is inside the ball (often at x = 0 or
# on an axis, where the ticket's first pair has its kinks), and the ascent started from the
# best sphere samples (in 1D copies of one of ±R) never reached it. Two of them are regular
# cases above (CASES[7] at ratio 0.439, CASES[10] at 0.748), chosen before measuring; three
# come from a random search. The estimator now also samples the ball, x = 0 and the axes.
FINDINGS = [
    Case((1, 1, 2, 2), True, 1.0, 1.0, 357185),  # ratio 0.385, max at x = 0.588
    Case((1, 3), True, 3.0, 1.0, 830881),  # ratio 0.905, max at x = 0
    Case((2, 2, 1, 5), True, 3.0, 1.0, 447821),  # ratio 0.963, max at (0.617, 0)
]


@functools.cache
def measured(case: Case) -> tuple[float, np.ndarray, float, float, float]:
    """(true max, where, empirical error, certified error, best grid value) of a case."""
    target, ticket = prune_case(case)
    layers = target_layers(target)
    reference = reference_certificate(ticket.network, layers, case.radius)
    best, point = true_max(ticket.network, layers, reference.operators, case.radius)
    x = grid(case.widths[0], case.radius, 20_001 if case.widths[0] == 1 else 401)
    on_grid = np.linalg.norm(
        target_forward(layers, x) - operator_forward(reference.operators, x), axis=1
    )
    report = ticket.report
    return best, point, report.empirical_error, report.certified_error, float(on_grid.max())


def _name(case: Case) -> str:
    return f"d{case.widths[0]}-{'bias' if case.bias else 'nobias'}-{case.seed}"


@pytest.mark.parametrize("case", first_fast(CASES + FINDINGS, 2), ids=_name)
def test_true_max_dominates(case: Case) -> None:
    """The enumerated max is the max (no grid point beats it), lies below the certificate,
    and the empirical error never exceeds it (it is a lower estimate)."""
    best, point, empirical, certified, on_grid = measured(case)
    assert np.linalg.norm(point) <= case.radius * (1 + 1e-15)
    assert on_grid <= best * (1 + 1e-9)
    assert best <= certified * (1 + 1e-9)
    assert empirical <= best * (1 + 1e-9)


@pytest.mark.parametrize("case", first_fast(CASES + FINDINGS, 2), ids=_name)
def test_empirical_error_close_to_true_max(case: Case) -> None:
    """The report's empirical error is within SHORTFALL (2 %) of the true max."""
    best, point, empirical, _, _ = measured(case)
    assert empirical >= (1 - SHORTFALL) * best, (
        f"empirical {empirical:.6g} is {empirical / best:.4f} of the true max {best:.6g} "
        f"at x = {point}"
    )
