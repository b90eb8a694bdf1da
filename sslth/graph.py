"""Graph targets: a target's layers and operations wired as a small dataflow graph.

A chain target (``Target.graph == ()``) is read as today: operations, a layer, operations, …
A *graph* target also has residual adds. Its ``graph`` is a tuple of :class:`Node` in
topological order: node 0 is the input, every other node reads earlier nodes, and the last node
is the output. Each target layer is exactly one ``layer`` node, in layer order. Adds are
weightless: the ticket's network keeps them as structure (:class:`GraphNetwork`), each layer
node becomes the layer's random pair U, ReLU, V.

The certificate over a graph (:mod:`sslth.graph_certify`) propagates the chain's bounds node by
node and sums them at an add (docs/design.md, "Graph targets").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sslth.inputs import accept_input, module_dtype
from sslth.ops import AVGPOOL, Op

INPUT, LAYER, OP, ADD = "input", "layer", "op", "add"
_KINDS = (INPUT, LAYER, OP, ADD)


@dataclass(frozen=True)
class Node:
    """One node: the input, a target layer (``layer`` is its index), a parameter-free
    operation (``op``) or the sum of two nodes. ``inputs`` are indices of earlier nodes;
    ``name`` says where the node came from in the model (for messages only)."""

    kind: str
    inputs: tuple[int, ...] = ()
    layer: int = -1
    op: Op | None = None
    name: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"node": self.kind, "inputs": list(self.inputs)}
        if self.kind == LAYER:
            data["layer"] = self.layer
        if self.kind == OP:
            data["op"] = self.op.to_dict()
        if self.name:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Node:
        if not isinstance(data, dict) or data.get("node") not in _KINDS:
            raise ValueError(f"not a graph node: {data!r}")
        kind = data["node"]
        inputs = tuple(int(i) for i in data.get("inputs", ()))
        op = Op.from_dict(data["op"]) if kind == OP else None
        layer = int(data["layer"]) if kind == LAYER else -1
        return cls(kind, inputs, layer, op, str(data.get("name", "")))


def op_gain(op: Op, shape: tuple[int, ...]) -> float:
    """An upper bound on the ℓ2 operator norm (and Lipschitz constant) of ``op`` on inputs of
    ``shape``: 1 for ReLU, Flatten and max pooling; 1/√(kh·kw) for average pooling, a linear map
    each of whose outputs is the mean of its own window ((Σ x/s)² ≤ Σ x²/s)."""
    if op.name == AVGPOOL:
        return 1.0 / math.sqrt(op.kernel[0] * op.kernel[1])
    return 1.0


def check_graph(graph: tuple[Node, ...], layers, input_shape: tuple[int, ...]) -> list:
    """The per-example shape of every node; raises ValueError naming the first node whose
    wiring or shapes are wrong (so a file cannot carry a graph no trace made)."""
    if not graph or graph[0].kind != INPUT or graph[0].inputs:
        raise ValueError("a graph starts with its input node")
    shapes: list[tuple[int, ...]] = []
    seen_layers: list[int] = []
    for index, node in enumerate(graph):
        where = f"graph node {index} ({node.name or node.kind})"
        if node.kind not in _KINDS:
            raise ValueError(f"{where}: unknown node kind {node.kind!r}")
        arity = {INPUT: 0, LAYER: 1, OP: 1, ADD: 2}[node.kind]
        if len(node.inputs) != arity or any(not 0 <= i < index for i in node.inputs):
            raise ValueError(f"{where}: reads {list(node.inputs)}, needs {arity} earlier node(s)")
        if node.kind == INPUT:
            if index:
                raise ValueError(f"{where}: a second input")
            shapes.append(tuple(input_shape))
            continue
        shape = shapes[node.inputs[0]]
        if node.kind == LAYER:
            if node.layer != len(seen_layers) or node.layer >= len(layers):
                raise ValueError(f"{where}: layer {node.layer} out of order")
            seen_layers.append(node.layer)
            layer = layers[node.layer]
            if shape != layer.in_shape:
                raise ValueError(
                    f"{where}: receives shape {shape}, the layer takes {layer.in_shape}"
                )
            shapes.append(layer.out_shape)
        elif node.kind == OP:
            if not isinstance(node.op, Op):
                raise ValueError(f"{where}: no operation")
            shapes.append(node.op.out_shape(shape))
        else:
            other = shapes[node.inputs[1]]
            if shape != other:
                raise ValueError(f"{where}: adds shapes {shape} and {other}")
            shapes.append(shape)
    if len(seen_layers) != len(layers):
        raise ValueError(f"the graph uses {len(seen_layers)} of {len(layers)} layers")
    consumed = {i for node in graph for i in node.inputs}
    unused = [i for i in range(len(graph) - 1) if i not in consumed]
    if unused:
        raise ValueError(f"graph node {unused[0]} is computed but never used")
    return shapes


def run_graph(
    target, x: torch.Tensor, layer: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """:meth:`Target.run` for a graph target: flattened values (N, size) at every node."""
    count = x.shape[0]
    values: list[torch.Tensor | None] = []
    shapes: list[tuple[int, ...]] = []
    last_use = {i: j for j, node in enumerate(target.graph) for i in node.inputs}
    for index, node in enumerate(target.graph):
        if node.kind == INPUT:
            value, shape = x.reshape(count, -1), target.input_shape
        elif node.kind == LAYER:
            value = layer(node.layer, values[node.inputs[0]])
            shape = target.layers[node.layer].out_shape
        elif node.kind == OP:
            source = node.inputs[0]
            value = node.op.apply(values[source], shapes[source]).reshape(count, -1)
            shape = node.op.out_shape(shapes[source])
        else:
            value, shape = values[node.inputs[0]] + values[node.inputs[1]], shapes[node.inputs[0]]
        values.append(value)
        shapes.append(shape)
        for source in node.inputs:  # free what no later node reads
            if last_use[source] == index:
                values[source] = None
    return values[-1]


class GraphNetwork(nn.Module):
    """An ``nn.Module`` that runs a graph target's structure: ``steps`` holds, node by node,
    one module per operation and ``per_layer`` modules per layer (the target's layer, or a
    ticket's U, ReLU, V); adds are done in ``forward``. Inputs are (N, *input_shape), or
    flattened (N, size)."""

    def __init__(
        self,
        graph: tuple[Node, ...],
        input_shape: tuple[int, ...],
        steps: list[nn.Module],
        per_layer: int,
    ) -> None:
        super().__init__()
        self.graph = tuple(graph)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.per_layer = int(per_layer)
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, device = module_dtype(self)
        if dtype is not None:  # float32 or float64 inputs, converted exactly (sslth.inputs)
            x = accept_input(x, dtype, device)
        x = x.reshape(x.shape[0], *self.input_shape)
        values: list[torch.Tensor] = []
        steps = iter(self.steps)
        for node in self.graph:
            if node.kind == INPUT:
                value = x
            elif node.kind == ADD:
                value = values[node.inputs[0]] + values[node.inputs[1]]
            else:
                value = values[node.inputs[0]]
                for _ in range(1 if node.kind == OP else self.per_layer):
                    value = next(steps)(value)
            values.append(value)
        return values[-1]

    def extra_repr(self) -> str:
        adds = sum(node.kind == ADD for node in self.graph)
        return f"nodes={len(self.graph)}, adds={adds}, input_shape={self.input_shape}"


def graph_network(target, per_layer: list[list[nn.Module]]) -> GraphNetwork:
    """The :class:`GraphNetwork` of ``target`` with ``per_layer[i]`` in place of layer i."""
    steps: list[nn.Module] = []
    for node in target.graph:
        if node.kind == OP:
            steps.append(node.op.module())
        elif node.kind == LAYER:
            steps += per_layer[node.layer]
    width = {len(modules) for modules in per_layer}
    if len(width) != 1:
        raise ValueError("every layer needs the same number of modules")
    return GraphNetwork(target.graph, target.input_shape, steps, width.pop())


def expected_steps(target) -> list[tuple[str, object]]:
    """(role, layer index or operation) per step of a ticket's :class:`GraphNetwork`."""
    layout: list[tuple[str, object]] = []
    for node in target.graph:
        if node.kind == OP:
            layout.append(("op", node.op))
        elif node.kind == LAYER:
            layout += [("first", node.layer), ("relu", None), ("second", node.layer)]
    return layout


def propagate(
    target,
    start: Any,
    layer_step: Callable[[int, Any], Any],
    op_step: Callable[[Op, tuple[int, ...], Any], Any],
    add_step: Callable[[Any, Any], Any],
) -> Any:
    """Carry a value (e.g. bounds (r, err)) from the input through the graph: ``layer_step``
    at each layer node, ``op_step`` at each operation, ``add_step`` at each add; returns the
    output node's value."""
    shapes = check_graph(target.graph, target.layers, target.input_shape)
    values: list[Any] = []
    for node in target.graph:
        if node.kind == INPUT:
            value = start
        elif node.kind == LAYER:
            value = layer_step(node.layer, values[node.inputs[0]])
        elif node.kind == OP:
            source = node.inputs[0]
            value = op_step(node.op, shapes[source], values[source])
        else:
            value = add_step(values[node.inputs[0]], values[node.inputs[1]])
        values.append(value)
    return values[-1]


def output_gains(target, norms: list[float]) -> list[float]:
    """For each layer, a bound on how much a deviation of its output grows by the network's
    output, given each layer's Lipschitz bound ``norms[i]``: the sum over the paths from the
    layer to the output of the products of the gains along them (a chain: Π_{j>i} norms[j])."""
    shapes = check_graph(target.graph, target.layers, target.input_shape)
    gain = [0.0] * len(target.graph)
    gain[-1] = 1.0
    for index in range(len(target.graph) - 1, 0, -1):
        node = target.graph[index]
        if node.kind == LAYER:
            gain[node.inputs[0]] += gain[index] * norms[node.layer]
        elif node.kind == OP:
            gain[node.inputs[0]] += gain[index] * op_gain(node.op, shapes[node.inputs[0]])
        else:
            for source in node.inputs:
                gain[source] += gain[index]
    result = [0.0] * len(target.layers)
    for index, node in enumerate(target.graph):
        if node.kind == LAYER:
            result[node.layer] = gain[index]
    return result


def input_radii(target, radius: float, norms: list[float]) -> list[float]:
    """For each layer, a bound on the norm of its input over the ball ‖x‖ ≤ radius (a sum of
    the branches' bounds at an add)."""
    radii = [0.0] * len(target.layers)

    def layer_step(index: int, r: float) -> float:
        radii[index] = r
        layer = target.layers[index]
        bias = 0.0 if layer.bias is None else float(torch.linalg.vector_norm(layer.bias))
        return norms[index] * r + bias * math.sqrt(layer.kind.positions)

    propagate(
        target,
        float(radius),
        layer_step,
        lambda op, shape, r: r * op_gain(op, shape),
        lambda a, b: a + b,
    )
    return radii
