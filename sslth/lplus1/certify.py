"""The certificate of an l+1 ticket, read from the network as it runs (docs/design.md, "The l+1
construction", "Its certificate").

Let C_t copy every coordinate ρ_t times (‖C_t‖ = √ρ_t), a^(t) the target's activations, r_t ≥
‖a^(t)‖ over the ball (r_0 = R, r_t = ‖W_t‖ r_{t−1} + ‖b_t‖), and e_t the deviation of the copy
neurons of hidden_t from C_t a^(t), δ_t ≥ ‖e_t‖ (the constant neurons have none).

- Layer 1 is a 2l pair with target C_1 W_1: its copy rows compute exactly
  A σ(x) − B σ(−x) + offset (:func:`sslth.certificate.pair_operator`), so
  δ_1 = E_1 R + β_1 with E_1 = ‖[A − C_1 W_1, C_1 W_1 − B]‖, β_1 = ‖offset − C_1 b_1‖.
- Layer t ≥ 2: with G_t the kept weights of module t from copies to copies,
  pre-activation − C_t(W_t a + b_t) = (G_t C_{t−1} − C_t W_t) a + G_t e_{t−1} + (offset − C_t b_t),
  so δ_t = E_t r_{t−1} + P_t δ_{t−1} + β_t with E_t = ‖G_t C_{t−1} − C_t W_t‖ (G_t C_{t−1} sums
  the k picks of each weight), P_t = ‖G_t‖ (each copy carries its own deviation, and every
  copy of the next layer sums k of them per weight), and offset = (constant columns) κ + bias.
- ReLU is 1-Lipschitz and commutes with copying; ρ_l = 1, so δ_l bounds the output error of
  the exact masked network.

The rounding part is the order-independent dot-product bound (Higham §3.1) through the
modules: Δ' = ‖W‖ Δ + γ_m (‖|W|‖ (H + Δ) + ‖b‖) + underflow, H' = ‖W‖ H + ‖b‖, with m the
largest number of non-zero terms of an output (weights and bias). Every norm is an upper bound
computed in float64 from the weights the module holds, with the float64 rounding of the sums
that build A, B, G C and the offsets added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sslth.certificate import pair_operator
from sslth.errors import NotATicketError
from sslth.kinds import spectral_norm
from sslth.lplus1.layout import LPlus1Spec, copy_rows
from sslth.modules import effective_parameter, global_hook_problem, module_problem
from sslth.rounding import Arithmetic, arithmetic_of
from sslth.target import Target

_U64 = 2.0**-53
_GROW = 1 + 1e-12  # each recursion step's own float64 rounding


@dataclass
class ModuleReading:
    weight: torch.Tensor  # effective (orig · mask), float64
    bias: torch.Tensor | None  # effective, float64


@dataclass
class LayerFigures:
    """One target layer's terms of the recursion, and its achieved weights (for the report)."""

    pair_error_norm: float  # E_t
    bias_error: float  # β_t
    copy_norm: float  # P_t = ‖G_t‖ (1 for layer 1, where x enters exactly)
    input_radius: float  # r_{t−1}
    error_bound: float  # δ_t (exact arithmetic)
    weight_errors: torch.Tensor  # |achieved − target| per (copy, input[, sign]) and bias
    rounding_bound: float = 0.0


@dataclass
class LPlus1Certificate:
    radius: float
    exact: float
    rounding: float
    arithmetic: str
    layers: list[LayerFigures] = field(default_factory=list)

    @property
    def bound(self) -> float:
        return self.exact + self.rounding


def read_network(spec: LPlus1Spec, network: nn.Module) -> tuple[list[ModuleReading], Arithmetic]:
    """The modules of an l+1 ticket network, checked: Linear, ReLU, …, Linear with the spec's
    shapes, plain modules (torch's pruning hooks only), one dtype and device, finite values.

    Raises:
        NotATicketError: naming the first module that is not what the ticket holds there.
    """
    problem = global_hook_problem() or module_problem(network, (nn.Sequential,))
    if problem:
        raise NotATicketError(f"the network cannot be certified: it {problem}")
    modules = list(network)
    if len(modules) != 2 * spec.depth + 1:
        raise NotATicketError(
            f"the network has {len(modules)} modules where an l+1 ticket for this target has "
            f"{2 * spec.depth + 1} (Linear, ReLU, …, Linear)"
        )
    readings, dtypes, devices = [], set(), set()
    for position, module in enumerate(modules):
        expected = nn.ReLU if position % 2 else nn.Linear
        problem = module_problem(module, (expected,))
        if problem:
            raise NotATicketError(f"module {position} {problem}")
        if expected is nn.ReLU:
            continue
        t = position // 2
        out, inp = spec.module_shape(t)
        weight, bias = effective_parameter(module, "weight"), effective_parameter(module, "bias")
        if tuple(weight.shape) != (out, inp) or (bias is not None and bias.shape != (out,)):
            raise NotATicketError(f"module {position} is not the ticket's {inp} → {out} Linear")
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None:
                if not torch.isfinite(value).all():
                    raise NotATicketError(f"module {position}: its {name} has NaN or Inf")
                dtypes.add(value.dtype)
                devices.add(value.device.type)
        readings.append(
            ModuleReading(
                weight.cpu().to(torch.float64),
                None if bias is None else bias.cpu().to(torch.float64),
            )
        )
    if len(dtypes) > 1 or len(devices) > 1:
        raise NotATicketError(
            f"the network mixes dtypes {sorted(map(str, dtypes))} or devices {sorted(devices)}"
        )
    return readings, arithmetic_of(dtypes.pop(), devices.pop())


def _bias_or_zeros(bias: torch.Tensor | None, size: int) -> torch.Tensor:
    return torch.zeros(size, dtype=torch.float64) if bias is None else bias


def _check_constants(spec: LPlus1Spec, readings: list[ModuleReading], t: int) -> torch.Tensor:
    """κ: the values of hidden_t's constant neurons, which must read nothing but their bias."""
    start = spec.copy_width(t)
    rows = readings[t].weight[start:]
    if bool((rows != 0).any()):
        raise NotATicketError(
            f"a constant neuron of hidden layer {t} keeps an input weight: not an l+1 ticket"
        )
    return torch.relu(_bias_or_zeros(readings[t].bias, spec.width(t))[start:])


def _first_layer(spec, target, readings, radius):
    """E_1, β_1 and the achieved weights of the first pair (modules 0 and 1, copy rows)."""
    layer, rho = target.layers[0], spec.rho(1)
    rows = spec.copy_width(1)
    op = pair_operator(readings[0].weight, readings[0].bias, readings[1].weight[:rows])
    goal = copy_rows(layer.weight, rho)
    stacked = torch.cat([op.positive - goal, goal - op.negative], dim=1)
    stats = op.stats
    magnitude = torch.linalg.vector_norm(torch.cat([stats.abs_positive, stats.abs_negative], 1))
    entry_rounding = 2 * (stats.terms_per_entry + 1) * _U64 * float(magnitude)
    pair_error = spectral_norm(stacked) * _GROW + entry_rounding
    pair_error += 2 * _U64 * float(torch.linalg.vector_norm(stacked))
    offset = op.offset + _bias_or_zeros(readings[1].bias, spec.width(1))[:rows]
    goal_bias = copy_rows(_bias_or_zeros(layer.bias, layer.d_out)[:, None], rho)[:, 0]
    offset_terms = stats.terms_per_entry + 2
    bias_error = float(torch.linalg.vector_norm(offset - goal_bias)) * _GROW + 2 * _U64 * (
        offset_terms * float(torch.linalg.vector_norm(stats.abs_offset))
        + float(torch.linalg.vector_norm(offset))
    )
    errors = [stacked.abs().reshape(-1)]
    if layer.bias is not None:
        errors.append((offset - goal_bias).abs())
    return pair_error, bias_error, torch.cat(errors)


def _copy_layer(spec, target, readings, t):
    """E_t, β_t, P_t and the achieved weights of layer t ≥ 2 (module t, copy rows)."""
    layer, rho_in, rho = target.layers[t - 1], spec.rho(t - 1), spec.rho(t)
    rows, columns = spec.copy_width(t), spec.copy_width(t - 1)
    weight = readings[t].weight[:rows]
    copies = weight[:, :columns]
    achieved = copies.reshape(rows, layer.d_in, rho_in).sum(dim=2)  # G_t C_{t−1}
    magnitude = copies.abs().reshape(rows, layer.d_in, rho_in).sum(dim=2)
    goal = copy_rows(layer.weight, rho)
    error = achieved - goal
    pair_error = spectral_norm(error) * _GROW + 2 * (rho_in + 1) * _U64 * float(
        torch.linalg.vector_norm(magnitude)
    )
    kappa = (
        _check_constants(spec, readings, t - 1)
        if spec.has_constants(t - 1)
        else torch.zeros(0, dtype=torch.float64)
    )
    through = weight[:, columns:]
    offset = through @ kappa + _bias_or_zeros(readings[t].bias, spec.width(t))[:rows]
    goal_bias = copy_rows(_bias_or_zeros(layer.bias, layer.d_out)[:, None], rho)[:, 0]
    terms = through.shape[1] + 2
    bias_error = float(torch.linalg.vector_norm(offset - goal_bias)) * _GROW + 2 * terms * _U64 * (
        float(torch.linalg.vector_norm(through.abs() @ kappa))
        + float(torch.linalg.vector_norm(offset))
    )
    copy_norm = spectral_norm(copies) * _GROW
    errors = [error.abs().reshape(-1)]
    if layer.bias is not None:
        errors.append((offset - goal_bias).abs())
    return pair_error, bias_error, copy_norm, torch.cat(errors)


def certify_lplus1(
    spec: LPlus1Spec, target: Target, network: nn.Module, radius: float
) -> LPlus1Certificate:
    """The certified bound on sup_{‖x‖ ≤ radius} ‖target(x) − network(x)‖ for an l+1 ticket
    network as it runs (exact part by the copy recursion, plus the rounding part).

    Args:
        spec: the sizes of the l+1 network.
        target: the target.
        network: the ticket's network (masked, or plain with zeros for pruned weights).
        radius: R.

    Returns:
        The certificate.

    Raises:
        NotATicketError: the network is not an l+1 ticket's structure, named.
    """
    readings, arithmetic = read_network(spec, network)
    for t in range(1, spec.depth):
        if spec.has_constants(t):
            _check_constants(spec, readings, t)
    r, delta = float(radius), 0.0
    layers = []
    for t in range(1, spec.depth + 1):
        layer = target.layers[t - 1]
        if t == 1:
            pair_error, bias_error, errors = _first_layer(spec, target, readings, r)
            copy_norm = 1.0
            new_delta = pair_error * r + bias_error
        else:
            pair_error, bias_error, copy_norm, errors = _copy_layer(spec, target, readings, t)
            new_delta = pair_error * r + copy_norm * delta + bias_error
        delta = new_delta * _GROW
        layers.append(LayerFigures(pair_error, bias_error, copy_norm, r, delta, errors))
        bias_norm = 0.0 if layer.bias is None else float(torch.linalg.vector_norm(layer.bias))
        r = (spectral_norm(layer.weight) * r + bias_norm) * _GROW
    rounding = rounding_bound(readings, float(radius), arithmetic, layers, spec)
    return LPlus1Certificate(float(radius), delta, rounding, arithmetic.name, layers)


def rounding_bound(
    readings: list[ModuleReading],
    radius: float,
    arithmetic: Arithmetic,
    layers: list[LayerFigures],
    spec: LPlus1Spec,
) -> float:
    """Δ: how far the module's floating-point output can be from the exact masked network's
    over the ball (module by module; see the module docstring).

    Raises:
        NotATicketError: a value could overflow the arithmetic at this radius.
    """
    if arithmetic.exact:
        return 0.0
    height, delta = float(radius), 0.0
    for t, reading in enumerate(readings):
        weight, bias = reading.weight, reading.bias
        terms = int((weight != 0).sum(dim=1).max()) if weight.numel() else 0
        bias_norm = 0.0
        if bias is not None:
            terms += int(bool((bias != 0).any()))
            bias_norm = float(torch.linalg.vector_norm(bias))
        norm = spectral_norm(weight) * _GROW
        magnitude = spectral_norm(weight.abs()) * _GROW
        largest = magnitude * (height + delta) + bias_norm
        if not largest < arithmetic.largest / 8:
            raise NotATicketError(
                f"module {2 * t}: values up to {largest:.3g} could overflow {arithmetic.name} at "
                f"radius {radius:g}; use float64 or a smaller radius"
            )
        scale = max(1.0, float(weight.abs().max()) if weight.numel() else 0.0)
        if bias is not None and bias.numel():
            scale = max(scale, float(bias.abs().max()))
        delta = (
            norm * delta
            + arithmetic.gamma(max(terms, 1)) * largest
            + scale * arithmetic.underflow(max(terms, 1), weight.shape[0])
        ) * _GROW
        height = (norm * height + bias_norm) * _GROW
        if t >= 1:
            layers[t - 1].rounding_bound = delta
    return delta


def spec_of_network(target: Target, network: nn.Module, seed: int = 0) -> LPlus1Spec:
    """The l+1 sizes an (l+1)-Linear network for ``target`` has, read off its module widths
    (hidden_0 = 2ρ_0 (d_0 + [b_1]), hidden_t = ρ_t (d_t + 2 [b_{t+1}])).

    Raises:
        NotATicketError: the widths fit no l+1 network for this target.
    """
    linears = [m for m in network if isinstance(m, nn.Linear)]
    dims = tuple(target.widths)
    biases = tuple(layer.bias is not None for layer in target.layers)
    if len(linears) != len(dims):
        raise NotATicketError(f"{len(linears)} Linear modules for an l+1 ticket of {dims}")
    copies = []
    for t, linear in enumerate(linears[:-1]):
        unit = 2 * (dims[0] + biases[0]) if t == 0 else dims[t] + 2 * biases[t]
        if linear.out_features % unit:
            raise NotATicketError(
                f"module {2 * t} has {linear.out_features} outputs: not an l+1 width"
            )
        copies.append(linear.out_features // unit)
    if min(copies) < 1:
        raise NotATicketError("an l+1 network has at least one copy per neuron")
    return LPlus1Spec(dims, biases, tuple(copies), seed)


__all__ = ["LPlus1Certificate", "certify_lplus1", "spec_of_network"]
