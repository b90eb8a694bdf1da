"""Validation of target networks and their conversion to float64 layers.

A target is an ``nn.Sequential`` of affine layers (``nn.Linear``, ``nn.Conv2d``) with exactly one
``nn.ReLU`` between consecutive layers, and parameter-free operations around them (``nn.Flatten``,
``nn.MaxPool2d`` and ``nn.AvgPool2d`` with non-overlapping windows; see :mod:`sslth.ops`). It is
read as its forward pass computes it, or refused with an error naming the module.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sslth.errors import TargetError, UnsupportedTargetError
from sslth.graph import check_graph, graph_network, run_graph
from sslth.kinds import DENSE, LAYER_MODULES, LayerKind, has_convolution, kind_of_module
from sslth.modules import (
    effective_parameter,
    global_hook_problem,
    module_problem,
    tensor_problem,
)
from sslth.ops import RELU, SUPPORTED_OPS, Op, op_of_module
from sslth.probe import affine_probe_problem, op_probe_problem
from sslth.sizes import check_example_size, check_example_values

_LAYERS = LAYER_MODULES


@dataclass(frozen=True)
class TargetLayer:
    """One affine layer of a target, copied to float64 (the caller's tensors are never kept)."""

    weight: torch.Tensor  # (d_out, d_in, *kernel) float64
    bias: torch.Tensor | None  # (d_out,) float64
    kind: LayerKind = field(default=DENSE)
    # bounds on ||ΔW||₂ and ||Δb|| (per position) between these float64 weights and the model's
    # in exact arithmetic: nonzero only for a folded BatchNorm (sslth/fold.py)
    fold_error: tuple[float, float] = (0.0, 0.0)

    @property
    def d_in(self) -> int:
        return self.weight.shape[1]

    @property
    def d_out(self) -> int:
        return self.weight.shape[0]

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Per-example output shape: (d_out,), or (c_out, H_out, W_out) for a conv."""
        return self.kind.out_shape(self.d_out)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.kind.in_shape(self.d_in)


def _default_ops(depth: int) -> tuple[tuple[Op, ...], ...]:
    return ((),) + ((Op(RELU),),) * (depth - 1) + ((),)


@dataclass(frozen=True)
class Target:
    """A validated network f = φ_l ∘ L_l ∘ φ_{l−1} ∘ … ∘ L_1 ∘ φ_0 of affine layers L_i and
    parameter-free operations φ_i (one ReLU in each φ_i between layers).

    ``ops[i]`` are the operations before layer i (``ops[l]`` after the last); the default is a
    plain MLP. ``input_shape`` is the shape of one example; the certificate is over the ℓ2 ball
    of the flattened input.

    A *graph* target (residual adds) has a non-empty ``graph`` (:mod:`sslth.graph`): its
    layers and operations are wired by the graph's nodes, and ``ops`` are all empty.
    """

    layers: tuple[TargetLayer, ...]
    ops: tuple[tuple[Op, ...], ...] = ()
    input_shape: tuple[int, ...] = ()
    graph: tuple = ()

    def __post_init__(self) -> None:
        if self.graph:
            object.__setattr__(self, "graph", tuple(self.graph))
            if any(self.ops):
                raise TargetError("a graph target keeps its operations in the graph, not in ops")
            object.__setattr__(self, "ops", ((),) * (len(self.layers) + 1))
        if not self.ops:
            object.__setattr__(self, "ops", _default_ops(len(self.layers)))
        if not self.input_shape:
            object.__setattr__(self, "input_shape", self.layers[0].in_shape)
        if self.graph:
            try:
                check_graph(self.graph, self.layers, self.input_shape)
            except ValueError as error:
                raise TargetError(str(error)) from None
        check_example_size(self)

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].d_in] + [layer.d_out for layer in self.layers]

    @property
    def has_bias(self) -> bool:
        return any(layer.bias is not None for layer in self.layers)

    @property
    def has_conv(self) -> bool:
        return has_convolution(layer.kind for layer in self.layers)

    @property
    def num_params(self) -> int:
        return sum(
            layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
            for layer in self.layers
        )

    def describe(self) -> dict:
        """The structure (not the weights) as JSON-ready data; a graph target adds its nodes,
        a folded BatchNorm its fold error bounds."""
        data = {
            "input_shape": list(self.input_shape),
            "ops": [[op.to_dict() for op in group] for group in self.ops],
            "kinds": [layer.kind.to_dict() for layer in self.layers],
        }
        if self.graph:
            data["graph"] = [node.to_dict() for node in self.graph]
        if any(any(layer.fold_error) for layer in self.layers):
            data["fold_errors"] = [list(layer.fold_error) for layer in self.layers]
        return data

    def digest(self) -> str:
        """SHA-256 of the target's content: its structure, every weight and bias (float64)."""
        hasher = hashlib.sha256()
        hasher.update(json.dumps(self.describe(), sort_keys=True).encode())
        for layer in self.layers:
            hasher.update(json.dumps(list(layer.weight.shape)).encode())
            hasher.update(layer.weight.contiguous().numpy().tobytes())
            hasher.update(b"bias" if layer.bias is not None else b"nobias")
            if layer.bias is not None:
                hasher.update(layer.bias.contiguous().numpy().tobytes())
        return hasher.hexdigest()

    def run(self, x: torch.Tensor, layer: Callable[[int, torch.Tensor], torch.Tensor]):
        """The target's structure with ``layer(i, x)`` in place of each affine layer, on a
        batch of flattened inputs (N, input_size); returns (N, output size)."""
        if self.graph:
            return run_graph(self, x, layer)
        count = x.shape[0]
        x = x.reshape(count, -1)
        shape = self.input_shape
        for index in range(len(self.layers) + 1):
            for op in self.ops[index]:
                x = op.apply(x, shape).reshape(count, -1)
                shape = op.out_shape(shape)
            if index < len(self.layers):
                x = layer(index, x)
                shape = self.layers[index].out_shape
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the target in float64 on a batch of flattened inputs."""

        def exact(index: int, values: torch.Tensor) -> torch.Tensor:
            target = self.layers[index]
            return target.kind.apply(values, target.weight, target.bias)

        return self.run(x.to(torch.float64), exact)

    def network(self, pairs: list[tuple[nn.Module, nn.Module]]) -> nn.Module:
        """The ticket's ``nn.Sequential`` laid out like this target: each layer replaced by its
        random pair (first, ReLU, second), every operation in its place (a
        :class:`~sslth.graph.GraphNetwork` for a graph target)."""
        if self.graph:
            return graph_network(self, [[first, nn.ReLU(), second] for first, second in pairs])
        modules: list[nn.Module] = []
        for index in range(len(self.layers) + 1):
            modules += [op.module() for op in self.ops[index]]
            if index < len(self.layers):
                first, second = pairs[index]
                modules += [first, nn.ReLU(), second]
        return nn.Sequential(*modules)


def chain_of(nodes: tuple, layers: tuple[TargetLayer, ...], input_shape) -> Target | None:
    """The chain :class:`Target` of a traced graph, when the graph is a plain chain with the
    chain's ReLU rules (one between two layers, none before the first or after the last); None
    otherwise (it stays a graph target)."""
    from sslth.graph import LAYER, OP

    groups: list[list[Op]] = [[]]
    for index, node in enumerate(nodes[1:], start=1):
        if node.inputs != (index - 1,) or node.kind not in (LAYER, OP):
            return None
        if node.kind == LAYER:
            groups.append([])
        else:
            groups[-1].append(node.op)
    relus = [sum(op.name == RELU for op in group) for group in groups]
    if relus[0] or relus[-1] or any(count != 1 for count in relus[1:-1]):
        return None
    return Target(layers, tuple(tuple(group) for group in groups), tuple(input_shape))


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if not torch.isfinite(tensor).all():
        bad = "NaN" if torch.isnan(tensor).any() else "Inf"
        raise TargetError(f"{name} contains {bad} values; a target must have finite weights")


def _copy(tensor, name: str, dims: int) -> torch.Tensor:
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    if not isinstance(tensor, torch.Tensor):
        raise UnsupportedTargetError(
            f"{name} must be a tensor or array, got {type(tensor).__name__}"
        )
    problem = tensor_problem(tensor)
    if problem:
        raise UnsupportedTargetError(f"{name} {problem}")
    if tensor.dim() != dims:
        raise TargetError(f"{name} must have {dims} dimensions, got shape {tuple(tensor.shape)}")
    if not (tensor.dtype.is_floating_point or tensor.dtype in (torch.int32, torch.int64)):
        raise UnsupportedTargetError(f"{name} has unsupported dtype {tensor.dtype}")
    copy = tensor.detach().to(device="cpu", dtype=torch.float64).clone()
    _check_finite(name, copy)
    return copy


def _check_computes_its_layers(model: nn.Sequential) -> None:
    """Refuse a model whose forward is not the plain stack of its layers (see
    :mod:`sslth.modules`), naming the module and the reason."""
    problem = global_hook_problem()
    if problem:
        raise UnsupportedTargetError(f"the target cannot be certified: {problem}")
    problem = module_problem(model, (nn.Sequential,))
    if problem:
        raise UnsupportedTargetError(
            f"the target ({type(model).__name__}) {problem}, so its forward may not be the "
            "stack of its layers; pass a plain nn.Sequential"
        )
    for position, module in enumerate(model):
        allowed = _LAYERS + SUPPORTED_OPS
        if not isinstance(module, allowed):
            continue  # reported with the supported structure
        problem = module_problem(module, allowed)
        if problem:
            raise UnsupportedTargetError(
                f"layer {position} ({type(module).__name__}) {problem}; sslth refuses rather "
                "than certify a function the target may not compute"
            )


_SUPPORTED = (
    "a target is an nn.Sequential of nn.Linear / nn.Conv2d layers with one nn.ReLU between "
    "them, and nn.Flatten, nn.MaxPool2d, nn.AvgPool2d (kernel == stride)"
)


def _split(model: nn.Sequential) -> tuple[list[tuple[int, nn.Module]], list[list]]:
    """The affine layers (position, module) and the operations around them."""
    layers: list[tuple[int, nn.Module]] = []
    groups: list[list[tuple[int, Op]]] = [[]]
    for position, module in enumerate(model):
        name = type(module).__name__
        if isinstance(module, _LAYERS):
            kind_of_module(module).check_module(module, position)
            layers.append((position, module))
            groups.append([])
            continue
        if not isinstance(module, SUPPORTED_OPS):
            raise UnsupportedTargetError(
                f"layer {position} ({name}) is not supported: {_SUPPORTED}"
            )
        op = op_of_module(module)
        if isinstance(op, str):
            raise UnsupportedTargetError(f"layer {position} ({name}): {op}")
        groups[-1].append((position, op))
    if not layers:
        raise TargetError("the target has no nn.Linear or nn.Conv2d layer")
    for index, group in enumerate(groups):
        relus = [position for position, op in group if op.name == RELU]
        if index == 0 and relus:
            raise TargetError(
                f"layer {relus[0]} (ReLU): a leading ReLU is not a target of the form "
                "W_l σ(… σ(W_1 x)); expected nn.Linear or nn.Conv2d first"
            )
        if index == len(groups) - 1 and relus:
            raise TargetError(
                f"layer {relus[0]} (ReLU): the target must end with nn.Linear or nn.Conv2d "
                "(no activation after the last layer)"
            )
        if 0 < index < len(groups) - 1 and len(relus) != 1:
            where = f"layers {layers[index - 1][0]} and {layers[index][0]}"
            if not relus:
                raise TargetError(f"{where}: no nn.ReLU between two layers")
            raise TargetError(f"layer {relus[1]} (ReLU): two activations in a row between {where}")
    return layers, groups


def _from_sequential(model: nn.Sequential, input_shape: Sequence[int] | None) -> Target:
    _check_computes_its_layers(model)
    layers, groups = _split(model)
    first = layers[0][1]
    if input_shape is None:
        if kind_of_module(first).convolution or any(op.is_pool for _, op in groups[0]):
            raise TargetError(
                "input_shape=(C, H, W) is required: the target has a conv or pooling layer, "
                "whose output depends on the image size"
            )
        input_shape = (first.in_features,)
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise TargetError(f"input_shape must be positive sizes, got {tuple(input_shape)}")
    start_shape = shape
    target_layers, ops = [], []
    for index, group in enumerate(groups):
        for position, op in group:
            try:
                out_shape = op.out_shape(shape)
            except ValueError as error:
                raise TargetError(f"layer {position}: {error}") from None
            problem = op_probe_problem(model[position], op, shape, torch.float64, "cpu")
            if problem:
                raise UnsupportedTargetError(f"layer {position} ({op.name}) {problem}")
            shape = out_shape
        ops.append(tuple(op for _, op in group))
        if index == len(layers):
            break
        position, module = layers[index]
        target_layers.append(_read_layer(module, position, shape, index + 1))
        shape = target_layers[-1].out_shape
    return Target(tuple(target_layers), tuple(ops), start_shape)


def _read_layer(module: nn.Module, position, shape: tuple[int, ...], number: int) -> TargetLayer:
    """The float64 layer of ``module``, which receives examples of ``shape``; ``number`` is its
    place among the target's layers (from 1), for the size check's message."""
    kind, name, dims = kind_of_module(module).read_module(module, position, shape)
    weight = _copy(effective_parameter(module, "weight"), f"{name} weight", dims)
    if weight.numel() == 0:
        raise TargetError(
            f"{name} has an empty weight of shape {tuple(weight.shape)}: a layer needs at "
            "least one input and one output"
        )
    bias = effective_parameter(module, "bias")
    bias = None if bias is None else _copy(bias, f"{name} bias", 1)
    if bias is not None:
        try:
            kind.bias_tap  # noqa: B018  (raises when no kernel position can carry the bias)
        except ValueError as error:
            raise UnsupportedTargetError(f"{name}: {error}") from None
    layer = TargetLayer(weight, bias, kind)
    # sized before it runs on the probe inputs: an oversized example would exhaust memory there
    check_example_values(shape, [layer], number)
    _probe_layer(module, name, weight, bias, kind, shape)
    return layer


def _probe_layer(module, name: str, weight, bias, kind: LayerKind, shape) -> None:
    """Refuse a layer that, run on the probe inputs, does not compute the map of the weights
    just read (:mod:`sslth.probe`): whatever dressing the structural checks missed."""
    ran = effective_parameter(module, "weight")
    problem = affine_probe_problem(module, weight, bias, kind, shape, ran.dtype, ran.device)
    if problem:
        raise UnsupportedTargetError(f"{name} {problem}")


def as_target(target, *, input_shape: Sequence[int] | None = None) -> Target:
    """Validate ``target`` and return a float64 copy of its layers.

    Args:
        target: an ``nn.Sequential`` (see the module docstring), any other ``nn.Module`` whose
            forward ``torch.fx`` can trace (a model class with BatchNorm, Dropout, residual
            adds, global pooling: :mod:`sslth.trace`), a single ``nn.Linear``, a list of dense
            weight matrices (d_out, d_in), or a list of ``(weight, bias)`` pairs. The caller's
            objects are only read.
        input_shape: the shape of one example, e.g. (C, H, W); required when the target has a
            conv or pooling layer.

    Returns:
        The :class:`Target`.

    Raises:
        TargetError: bad values or shapes (a ``ValueError``), naming the layer.
        UnsupportedTargetError: a structure sslth does not take (a ``TypeError``), named.
    """
    if isinstance(target, Target):
        return target
    from sslth.trace import needs_trace, trace

    if isinstance(target, nn.Sequential) and not needs_trace(target):
        return _from_sequential(target, input_shape)
    if isinstance(target, _LAYERS):
        problem = module_problem(target, _LAYERS)
        if problem:
            raise UnsupportedTargetError(f"the target ({type(target).__name__}) {problem}")
        return _from_sequential(nn.Sequential(target), input_shape)
    if isinstance(target, nn.Module):
        return trace(target, input_shape)
    if not (isinstance(target, Sequence) and not isinstance(target, (str, bytes)) and target):
        raise UnsupportedTargetError(
            f"target must be an nn.Sequential of layers or a non-empty list of weight matrices, "
            f"got {type(target).__name__}"
        )
    layers = []
    previous_out = None
    for index, item in enumerate(target):
        name = f"layer {index}"
        if isinstance(item, (tuple, list)) and len(item) == 2:
            weight = _copy(item[0], f"{name} weight", 2)
            bias = None if item[1] is None else _copy(item[1], f"{name} bias", 1)
        else:
            weight, bias = _copy(item, f"{name} weight", 2), None
        name = f"{name} ({weight.shape[1]}->{weight.shape[0]})"
        if weight.shape[0] == 0 or weight.shape[1] == 0:
            raise TargetError(f"{name} has an empty weight of shape {tuple(weight.shape)}")
        if previous_out is not None and weight.shape[1] != previous_out:
            raise TargetError(
                f"{name}: shapes do not chain, it takes {weight.shape[1]} inputs but the previous "
                f"layer gives {previous_out} outputs"
            )
        if bias is not None and bias.shape != (weight.shape[0],):
            raise TargetError(
                f"{name}: bias of shape {tuple(bias.shape)} does not match weight of shape "
                f"{tuple(weight.shape)}; weights are (d_out, d_in), as in nn.Linear (for "
                "scikit-learn's coefs_, pass each matrix transposed)"
            )
        previous_out = weight.shape[0]
        layers.append(TargetLayer(weight, bias))
    if input_shape is not None and tuple(input_shape) != (layers[0].d_in,):
        raise TargetError(
            f"input_shape {tuple(input_shape)} does not match the first layer's "
            f"{layers[0].d_in} inputs"
        )
    return Target(tuple(layers))
