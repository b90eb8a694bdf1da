"""Reading a ticket network exactly as it runs, and certifying it.

:func:`read_ticket_network` accepts only the structure a ticket has (the target's layout, each
layer replaced by its pair U, ReLU, V), with plain modules and no hooks other than
``torch.nn.utils.prune``'s, and reads the weights the forward pass uses (``weight_orig *
weight_mask``). Anything else is refused with :class:`~sslth.errors.NotATicketError` naming the
module: a certificate is only ever issued for the function the network computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sslth.certificate import Certificate, PairOperator, certify_operators, pair_operator
from sslth.errors import NotATicketError
from sslth.graph import GraphNetwork, check_graph, expected_steps
from sslth.inputs import TicketSequential
from sslth.kinds import LAYER_MODULES, has_convolution
from sslth.modules import (
    effective_parameter,
    global_hook_problem,
    module_problem,
    pruning_state,
)
from sslth.ops import RELU, Op, op_of_module
from sslth.probe import affine_probe_problem, op_probe_problem, operator_probe_problem
from sslth.rounding import Arithmetic, arithmetic_of
from sslth.target import Target, as_target


@dataclass
class PairReading:
    """One pair of a ticket network as its forward pass sees it."""

    first_weight: torch.Tensor  # U, effective (original times mask)
    first_bias: torch.Tensor | None  # c, effective
    second_weight: torch.Tensor  # V, effective
    first_weight_mask: torch.Tensor  # bool, U's shape: its mask, or its non-zeros if unpruned
    first_bias_mask: torch.Tensor | None
    second_mask: torch.Tensor  # bool, V's shape
    first_original: torch.Tensor  # U before masking (weight_orig, or the weight itself)
    first_bias_original: torch.Tensor | None


def _mask(module: nn.Module, name: str) -> torch.Tensor:
    state = pruning_state(module, name)
    if state is not None:
        return state[1].detach() != 0
    return effective_parameter(module, name) != 0


def _expected_layout(target: Target) -> list[tuple[str, object]]:
    """(role, layer index or operation) per module of a ticket network for ``target``."""
    layout: list[tuple[str, object]] = []
    for index in range(len(target.layers) + 1):
        layout += [("op", op) for op in target.ops[index]]
        if index < len(target.layers):
            layout += [("first", index), ("relu", None), ("second", index)]
    return layout


def read_ticket_network(target: Target, network: nn.Module) -> tuple[list[PairReading], Arithmetic]:
    """The pairs of ``network`` and its arithmetic, if it has exactly a ticket's structure for
    ``target``.

    Raises:
        NotATicketError: naming the first module that is not what a ticket holds there.
    """
    problem = global_hook_problem()
    if problem:
        raise NotATicketError(f"the network cannot be certified: {problem}")
    if target.graph:
        modules, layout = _graph_steps(target, network), expected_steps(target)
    else:
        problem = module_problem(network, (TicketSequential, nn.Sequential))
        if problem:
            raise NotATicketError(f"the network ({type(network).__name__}) {problem}")
        modules, layout = list(network), _expected_layout(target)
    if len(modules) != len(layout):
        raise NotATicketError(
            f"the network has {len(modules)} modules where a ticket for this target has "
            f"{len(layout)} ({' '.join(role for role, _ in layout)})"
        )
    readings: list[PairReading] = []
    first = None
    dtypes, devices = set(), set()
    for position, (module, (role, index)) in enumerate(zip(modules, layout, strict=True)):
        name = f"module {position} ({type(module).__name__})"
        if role == "op":
            expected_module = index.module()
            _check(module, (type(expected_module),), name, type(expected_module).__name__)
            if op_of_module(module) != index:
                raise NotATicketError(f"{name}: a ticket has {index} there")
        elif role == "relu":
            _check(module, (nn.ReLU,), name, "nn.ReLU")
        else:
            layer = target.layers[index]
            expected = layer.kind.module_types()
            _check(module, expected, name, " or ".join(t.__name__ for t in expected))
            problem = layer.kind.module_problem(module, role == "first")
            if problem:
                raise NotATicketError(f"{name} {problem}")
            for param in ("weight", "bias"):
                value = effective_parameter(module, param)
                if value is None:
                    continue
                dtypes.add(value.dtype)
                devices.add(value.device.type)
                if not torch.isfinite(value).all():
                    raise NotATicketError(f"{name}: its {param} has NaN or Inf entries")
            if role == "first":
                _check_shape(module, layer, name, first=True)
                first = module
                continue
            _check_shape(module, layer, name, first=False)
            if effective_parameter(module, "bias") is not None and bool(
                (effective_parameter(module, "bias") != 0).any()
            ):
                raise NotATicketError(f"{name}: the second layer of a pair has no bias")
            readings.append(_reading(first, module))
    if len(dtypes) > 1 or len(devices) > 1:
        raise NotATicketError(
            f"the network mixes dtypes {sorted(map(str, dtypes))} or devices {sorted(devices)}"
        )
    dtype = dtypes.pop() if dtypes else torch.float32
    device = devices.pop() if devices else "cpu"
    # every module was checked against its layer's kind above: the kinds say whether it has a conv
    convolution = has_convolution(layer.kind for layer in target.layers)
    arithmetic = arithmetic_of(dtype, device, convolution=convolution)
    _probe(target, modules, layout, dtype, device)
    return readings, arithmetic


def _op_shapes(target: Target) -> list[tuple[int, ...]]:
    """The per-example input shape of each operation step, in the order of the layout."""
    if target.graph:
        shapes = check_graph(target.graph, target.layers, target.input_shape)
        return [shapes[node.inputs[0]] for node in target.graph if node.op is not None]
    shapes, shape = [], tuple(target.input_shape)
    for index in range(len(target.layers) + 1):
        for op in target.ops[index]:
            shapes.append(shape)
            shape = op.out_shape(shape)
        if index < len(target.layers):
            shape = target.layers[index].out_shape
    return shapes


def _probe(target: Target, modules, layout, dtype: torch.dtype, device: str) -> None:
    """Run every module on the probe inputs (:mod:`sslth.probe`) and refuse, by name, one that
    does not compute the operation or the affine map of the weights just read."""
    op_shapes = iter(_op_shapes(target))
    hidden: tuple[int, ...] = ()
    for position, (module, (role, index)) in enumerate(zip(modules, layout, strict=True)):
        if role == "op":
            problem = op_probe_problem(module, index, next(op_shapes), dtype, device)
        elif role == "relu":
            problem = op_probe_problem(module, Op(RELU), hidden, dtype, device)
        else:
            layer = target.layers[index]
            weight = effective_parameter(module, "weight")
            bias = effective_parameter(module, "bias")
            kind, shape = layer.kind, hidden
            if role == "first":
                shape = layer.in_shape
                kind = kind.first_kind()
                hidden = (weight.shape[0], *shape[1:])
            problem = affine_probe_problem(module, weight, bias, kind, shape, dtype, device)
        if problem:
            raise NotATicketError(f"module {position} ({type(module).__name__}) {problem}")


def _graph_steps(target: Target, network: nn.Module) -> list[nn.Module]:
    """The steps of a graph ticket's :class:`~sslth.graph.GraphNetwork`, once its class and the
    structure its forward runs (graph, input shape, modules per layer) are a ticket's."""
    problem = module_problem(network, (GraphNetwork,))
    if problem:
        raise NotATicketError(f"the network ({type(network).__name__}) {problem}")
    if type(network.__dict__.get("_modules", {}).get("steps")) is not nn.ModuleList:
        raise NotATicketError("the network's steps are not a plain nn.ModuleList")
    if network.graph != target.graph:
        raise NotATicketError("the network runs another graph than the target's")
    if network.input_shape != target.input_shape or network.per_layer != 3:
        raise NotATicketError(
            f"the network reshapes inputs to {network.input_shape} with {network.per_layer} "
            f"modules per layer; a ticket for this target has {target.input_shape} and 3"
        )
    return list(network.steps)


def _check(module: nn.Module, expected: tuple[type, ...], name: str, what: str) -> None:
    problem = module_problem(module, expected)
    if problem:
        raise NotATicketError(f"{name} {problem}: a ticket has a plain {what} there")


def _check_shape(module: nn.Module, layer, name: str, *, first: bool) -> None:
    weight = effective_parameter(module, "weight")
    if first and weight.shape[1] != layer.d_in:
        raise NotATicketError(
            f"{name}: takes {weight.shape[1]} inputs, the target layer {layer.d_in}"
        )
    if not first and weight.shape[0] != layer.d_out:
        raise NotATicketError(
            f"{name}: gives {weight.shape[0]} outputs, the target layer {layer.d_out}"
        )


def _reading(first: nn.Module, second: nn.Module) -> PairReading:
    u = effective_parameter(first, "weight")
    v = effective_parameter(second, "weight")
    if u.shape[0] != v.shape[1]:
        raise NotATicketError(
            f"a pair's layers do not chain: {u.shape[0]} hidden units, then {v.shape[1]} inputs"
        )
    bias = effective_parameter(first, "bias")
    original = _original(first, "weight")
    bias_original = None if bias is None else _original(first, "bias")
    return PairReading(
        first_weight=u,
        first_bias=bias,
        second_weight=v,
        first_weight_mask=_mask(first, "weight"),
        first_bias_mask=None if bias is None else _mask(first, "bias"),
        second_mask=_mask(second, "weight"),
        first_original=original,
        first_bias_original=bias_original,
    )


def _original(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor before masking: ``<name>_orig`` under torch's pruning hook, else itself."""
    state = pruning_state(module, name)
    return (getattr(module, name) if state is None else state[0]).detach()


def network_operators(
    target: Target, readings: list[PairReading], device: torch.device | None = None
) -> list[PairOperator]:
    """The (A, B, offset) and magnitudes of each read pair."""
    operators = []
    for layer, reading in zip(target.layers, readings, strict=True):
        u, c, v = reading.first_weight, reading.first_bias, reading.second_weight
        if device is not None:
            u, v = u.to(device), v.to(device)
            c = None if c is None else c.to(device)
        operators.append(pair_operator(u, c, v, layer.kind))
    return operators


def certify(target, network: nn.Module, radius: float = 1.0, *, input_shape=None) -> Certificate:
    """Certified bound on sup_{||x|| ≤ radius} ||target(x) − network(x)|| for ``network`` as it
    runs: its masks and weights as the forward pass uses them, in its dtype and on its device.

    Args:
        target: the target (anything :func:`sslth.as_target` accepts).
        network: a ticket network (e.g. ``ticket.network`` or ``ticket.export()``), or a
            sparse ticket (``ticket.export(sparse=True)``), certified with its own summation
            scheme (:mod:`sslth.sparse_rounding`).
        radius: R.
        input_shape: the shape of one example, for a target with conv or pooling layers.

    Returns:
        The :class:`~sslth.certificate.Certificate` (``bound`` = exact part + rounding part); for
        an l+1 ticket network (l+1 Linear modules), an
        :class:`~sslth.lplus1.certify.LPlus1Certificate` with the same fields.

    Raises:
        NotATicketError: the network is not a ticket's structure for this target (a module
            replaced, a subclass, a hook, …), named.
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, float)):
        raise NotATicketError(f"radius must be a number, got {radius!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise NotATicketError(f"radius must be finite and > 0, got {radius!r}")
    target = as_target(target, input_shape=input_shape)
    from sslth.sparse import SparseTicket

    if isinstance(network, SparseTicket):
        from sslth.sparse_rounding import certify_sparse

        return certify_sparse(target, network, float(radius))
    depth = len(target.layers)
    if depth >= 2 and isinstance(network, nn.Sequential) and len(network) == 2 * depth + 1:
        # l+1 modules (Linear, ReLU, …, Linear): the l+1 construction (a 2l ticket of a depth
        # >= 2 target has 4l − 1 modules)
        from sslth.lplus1.certify import certify_lplus1, spec_of_network

        spec = spec_of_network(target, network)
        return certify_lplus1(spec, target, network, float(radius))
    readings, arithmetic = read_ticket_network(target, network)
    operators = network_operators(target, readings)
    certificate = certify_operators(target, operators, float(radius), arithmetic)
    check_operators(target, network, operators, certificate)
    return certificate


def check_operators(target: Target, network: nn.Module, operators, certificate) -> None:
    """Refuse ``network`` when, run on the probe points of the ball, it strays from the
    operators its certificate reasons about by more than the certified rounding
    (:func:`sslth.probe.operator_probe_problem`). Chain targets only for now: a graph ticket's
    modules are checked one by one (its adds are structure)."""
    if target.graph:
        return
    weight = next(m for m in network if isinstance(m, LAYER_MODULES))
    ran = effective_parameter(weight, "weight")
    problem = operator_probe_problem(target, network, operators, certificate, ran.dtype, ran.device)
    if problem:
        raise NotATicketError(f"the network's {problem}: not what a ticket computes")
