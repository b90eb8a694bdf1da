"""The rounding term a plan will be certified with, predicted before solving (docs/design.md,
"The rounding floor").

The certificate's rounding term (:func:`sslth.certificate.pair_rounding`, and node by node
:mod:`sslth.graph_certify`) does not shrink with the tolerances: it is set by the magnitudes the
pairs keep, the sums' lengths and the norm bounds Z inside the network. All three are known
from the plan, to within a few percent, without drawing a weight:

* M = ‖[|A|, |B|]‖: every entry of |A| (|B|) sums the k picks' |u_h v_h|, each about
  E|u| E|v| = 1/4 for the uniform(−1, 1) random weights, so M ≈ (k/4) · taps · √(2 d_in d_out),
  the norm of a constant non-negative kernel (measured: 0.87–0.99 of it on residual targets);
* S, capped at P + E (:func:`sslth.certificate.pair_rounding`), is about P = ‖W‖: E, the
  pair's error norm, is what the tolerances make small;
* the sums: m_V = 2 k d_in taps (+ k with a bias) terms per output, m_U = 1 per hidden neuron.

Carried through the target as the certificate carries (Z, Δ), this gives the rounding term of
the plan; :data:`RELIABILITY` of it is a lower estimate, so the search refuses an ε that the
rounding alone leaves out of reach before it solves anything.
"""

from __future__ import annotations

import math

import torch

from sslth.certificate import _target_norm
from sslth.graph import op_gain, propagate
from sslth.search.sizing import LayerPlan
from sslth.target import Target

# the share of the prediction the search counts on: the measured M were 0.87–0.99 of the model
RELIABILITY = 0.5


def _layer(layer, plan: LayerPlan, arithmetic, z: float, delta: float) -> tuple[float, float]:
    """(Z', Δ') after one pair, as :func:`sslth.certificate.pair_rounding` with the model's
    M, S and fan-ins (underflow left out: it only adds)."""
    k = plan.k or 1
    taps = layer.kind.taps
    magnitudes = (k / 4) * taps * math.sqrt(2 * layer.d_in * layer.d_out)
    signed = _target_norm(layer)  # cached: the certificate needs it too
    has_bias = layer.bias is not None
    terms = 2 * k * layer.d_in * taps + (k if has_bias else 0)
    size = magnitudes * (z + delta)
    hidden = arithmetic.gamma(1) * math.sqrt(2.0) * size
    delta = signed * delta + hidden + arithmetic.gamma(terms) * (size + hidden)
    bias = float(torch.linalg.vector_norm(layer.bias)) if has_bias else 0.0
    return signed * z + bias * math.sqrt(layer.kind.positions), delta


def _op(op, shape, value: tuple[float, float], arithmetic) -> tuple[float, float]:
    z, delta = value
    gain = op_gain(op, shape)
    z, delta = z * gain, delta * gain
    terms = op.rounding_terms()
    if terms:
        delta += arithmetic.gamma(terms) * (z + delta)
    return z, delta


def predicted_rounding(
    target: Target, plans: list[LayerPlan], radius: float, arithmetic
) -> tuple[float, float]:
    """The rounding term the certificate is predicted to give a ticket of these sizes.

    Args:
        target: the target.
        plans: its :class:`LayerPlan` (k of each layer).
        radius: R.
        arithmetic: a :class:`~sslth.rounding.Arithmetic` with the dense rounding scheme.

    Returns:
        (rounding term, largest norm bound Z on a value inside the network).
    """
    largest = [float(radius)]

    def layer_step(index: int, value: tuple[float, float]) -> tuple[float, float]:
        z, delta = _layer(target.layers[index], plans[index], arithmetic, *value)
        largest.append(z)
        return z, delta

    def add(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        z, delta = a[0] + b[0], a[1] + b[1]
        return z, delta + arithmetic.gamma(1) * (z + delta)

    start = (float(radius), 0.0)
    if target.graph:
        _, delta = propagate(
            target, start, layer_step, lambda op, s, v: _op(op, s, v, arithmetic), add
        )
        return delta, max(largest)
    value = start
    shape = tuple(target.input_shape)
    for index, layer in enumerate(target.layers):
        for op in target.ops[index]:
            value, shape = _op(op, shape, value, arithmetic), op.out_shape(shape)
        value, shape = layer_step(index, value), layer.out_shape
    for op in target.ops[len(target.layers)]:
        value, shape = _op(op, shape, value, arithmetic), op.out_shape(shape)
    return value[1], max(largest)


def rounding_refusal(target: Target, plans: list[LayerPlan], options, arithmetic) -> str | None:
    """One line saying why ``options.epsilon`` is out of reach of the rounding term alone, or
    None: the search stops once the rounding term reaches ``SAFETY`` ε (only another
    arithmetic or radius helps then), so a plan whose lower estimate
    (:data:`RELIABILITY` of :func:`predicted_rounding`) already does is refused before solving.
    Arithmetics with their own scheme (the sparse export) and exact ones are not predicted."""
    from sslth.search.sizing import SAFETY

    if arithmetic.exact or getattr(arithmetic, "rounding_bound", None) is not None:
        return None
    if any(plan.k is None for plan in plans):
        return None  # the plan refuses already, for its sizes
    rounding, largest = predicted_rounding(target, plans, options.radius, arithmetic)
    if RELIABILITY * rounding < SAFETY * options.epsilon:
        return None
    return (
        f"ε = {options.epsilon:g} is out of reach of the {arithmetic.name} certificate of this "
        f"target: its rounding term alone is predicted at {rounding:.3g} (norm bounds inside "
        f"the network reach {largest:.3g} at radius {options.radius:g}) and must stay below "
        f"{SAFETY:g} ε; the smallest ε it can reach is about {2 * rounding:.3g}. Raise ε or "
        "lower the radius (docs/benchmarks.md, ResNet-20)"
    )
