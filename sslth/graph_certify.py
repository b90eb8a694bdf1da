"""The certificate of a graph target (residual adds, global pooling): the chain's bounds carried
node by node (docs/design.md, "Graph targets").

At every node two pairs of bounds over the ball ‖x‖ ≤ R are carried:

* exact part: r ≥ ‖f_v(x)‖ (the target's value at node v) and err ≥ ‖g_v(x) − f_v(x)‖ (the
  exact masked ticket's);
* rounding part: Z ≥ ‖g_v(x)‖ and Δ ≥ ‖g̃_v(x) − g_v(x)‖ (g̃ the module as it runs).

A layer node updates them as one pair of a chain does (:func:`sslth.certificate.layer_step`,
:func:`sslth.certificate.pair_rounding`). An operation with Lipschitz constant and norm bound c
(1 for ReLU, Flatten and max pooling, 1/√(kh·kw) for average pooling, global pooling included)
multiplies r, err, Z and Δ by c; average pooling also rounds, by γ_{s+1} times the window
means of |g̃|, whose norm is at most c (Z + Δ). At an add y = a + b, the triangle inequality
gives r = r_a + r_b, err = err_a + err_b, Z = Z_a + Z_b, and the float sum rounds each entry
by at most u |ã + b̃|: Δ = Δ_a + Δ_b + γ_1 (Z + Δ_a + Δ_b), plus underflow.
"""

from __future__ import annotations

import math

from sslth.certificate import Certificate, LayerCertificate, layer_step, pair_rounding
from sslth.errors import NotATicketError
from sslth.graph import op_gain, output_gains, propagate
from sslth.rounding import Arithmetic

_UP = 1 + 1e-12  # the propagation's own float64 rounding


def certify_graph(target, operators: list, radius: float, arithmetic: Arithmetic) -> Certificate:
    """The certificate of a graph target from its pairs' operators (see the module docstring).

    Args:
        target: a :class:`~sslth.target.Target` with a graph.
        operators: one :class:`~sslth.certificate.PairOperator` per target layer.
        radius: R.
        arithmetic: the arithmetic of the module that runs.

    Returns:
        The certificate, with per-layer ``gains`` for the search.
    """
    layers: list[LayerCertificate | None] = [None] * len(target.layers)

    def exact_layer(index: int, value: tuple[float, float]) -> tuple[float, float]:
        r, err = value
        certificate, err_out, r_out = layer_step(target.layers[index], operators[index], r, err)
        certificate.input_error = err
        layers[index] = certificate
        return r_out, err_out

    def exact_op(op, shape, value: tuple[float, float]) -> tuple[float, float]:
        gain = op_gain(op, shape)
        if gain == 1.0:
            return value
        return value[0] * gain * _UP, value[1] * gain * _UP

    def exact_add(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return (a[0] + b[0]) * _UP, (a[1] + b[1]) * _UP

    _, error = propagate(target, (float(radius), 0.0), exact_layer, exact_op, exact_add)
    rounding = 0.0
    if not arithmetic.exact:
        rounding = _graph_rounding(target, operators, radius, arithmetic, layers)
    gains = output_gains(target, [c.weight_norm + c.pair_error_norm for c in layers])
    return Certificate(float(radius), error, rounding, arithmetic.name, layers, gains)


def _graph_rounding(target, operators, radius: float, arithmetic: Arithmetic, layers) -> float:
    """Δ at the output: (Z, Δ) carried through the graph (see the module docstring)."""

    def rounding_layer(index: int, value: tuple[float, float]) -> tuple[float, float]:
        z, delta = pair_rounding(
            index, target.layers[index], operators[index], *value, arithmetic, radius, layers[index]
        )
        layers[index].rounding_bound = delta
        return z, delta

    def rounding_op(op, shape, value: tuple[float, float]) -> tuple[float, float]:
        z, delta = value
        gain = op_gain(op, shape)
        terms = op.rounding_terms()
        if gain != 1.0:
            z, delta = z * gain * _UP, delta * gain * _UP
        if terms:
            outputs = math.prod(op.out_shape(shape))
            delta = (
                delta + arithmetic.gamma(terms) * (z + delta) + arithmetic.underflow(terms, outputs)
            ) * _UP
        return z, delta

    def rounding_add(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        z = (a[0] + b[0]) * _UP
        delta = a[1] + b[1]
        largest = z + delta
        if not largest < arithmetic.largest / 8:
            raise NotATicketError(
                f"a residual add reaches values up to {largest:.3g}, which could overflow "
                f"{arithmetic.name} at radius {radius:g}; use float64 or a smaller radius"
            )
        # the float sum rounds each entry by u |ã + b̃|; with flush-to-zero each operand and
        # the result can lose η more (underflow of a one-term sum bounds it)
        size = _add_size(target)
        delta = (delta + arithmetic.gamma(1) * largest + arithmetic.underflow(1, size)) * _UP
        return z, delta

    _, delta = propagate(target, (float(radius), 0.0), rounding_layer, rounding_op, rounding_add)
    return delta


def _add_size(target) -> int:
    """The largest number of entries one add sums (a bound for every add's underflow)."""
    from sslth.graph import ADD, check_graph

    shapes = check_graph(target.graph, target.layers, target.input_shape)
    sizes = [math.prod(shapes[i]) for i, node in enumerate(target.graph) if node.kind == ADD]
    return max(sizes, default=1)
