"""Validation of target networks and their conversion to float64 layer matrices."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sslth.errors import TargetError, UnsupportedTargetError
from sslth.kinds import DENSE, LayerKind
from sslth.modules import effective_parameter, global_hook_problem, module_problem


@dataclass(frozen=True)
class TargetLayer:
    """One affine layer of a target, copied to float64 (the caller's tensors are never kept)."""

    weight: torch.Tensor  # (d_out, d_in, *kernel) float64
    bias: torch.Tensor | None  # (d_out,) float64
    kind: LayerKind = field(default=DENSE)

    @property
    def d_in(self) -> int:
        return self.weight.shape[1]

    @property
    def d_out(self) -> int:
        return self.weight.shape[0]


@dataclass(frozen=True)
class Target:
    """A validated ReLU network f(x) = W_l σ(… σ(W_1 x + b_1) …) + b_l."""

    layers: tuple[TargetLayer, ...]
    flatten_input: bool = False  # the target began with nn.Flatten

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].d_in] + [layer.d_out for layer in self.layers]

    @property
    def has_bias(self) -> bool:
        return any(layer.bias is not None for layer in self.layers)

    @property
    def num_params(self) -> int:
        return sum(
            layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel())
            for layer in self.layers
        )

    def digest(self) -> str:
        """SHA-256 of the target's content: every weight and bias (float64 bytes), each layer's
        kind, and the input flattening."""
        hasher = hashlib.sha256()
        hasher.update(json.dumps({"flatten_input": self.flatten_input}).encode())
        for layer in self.layers:
            hasher.update(json.dumps(layer.kind.to_dict(), sort_keys=True).encode())
            hasher.update(json.dumps(list(layer.weight.shape)).encode())
            hasher.update(layer.weight.contiguous().numpy().tobytes())
            hasher.update(b"bias" if layer.bias is not None else b"nobias")
            if layer.bias is not None:
                hasher.update(layer.bias.contiguous().numpy().tobytes())
        return hasher.hexdigest()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the target in float64 on a (N, d_in) batch."""
        x = x.to(torch.float64)
        for index, layer in enumerate(self.layers):
            x = layer.kind.apply(x, layer.weight, layer.bias)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def network(self, pairs: list[tuple[nn.Module, nn.Module]]) -> nn.Sequential:
        """The ticket's ``nn.Sequential`` laid out like this target: each layer replaced by its
        random pair (first, ReLU, second), with the target's ReLU between layers."""
        modules: list[nn.Module] = [nn.Flatten()] if self.flatten_input else []
        for index, (first, second) in enumerate(pairs):
            modules += [first, nn.ReLU(), second]
            if index < len(self.layers) - 1:
                modules.append(nn.ReLU())
        return nn.Sequential(*modules)

    def to_module(self) -> nn.Sequential:
        """A float32 ``nn.Sequential`` that computes this target (a fresh copy)."""
        modules: list[nn.Module] = [nn.Flatten()] if self.flatten_input else []
        for index, layer in enumerate(self.layers):
            linear = nn.Linear(layer.d_in, layer.d_out, bias=layer.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(layer.weight)
                if layer.bias is not None:
                    linear.bias.copy_(layer.bias)
            modules.append(linear)
            if index < len(self.layers) - 1:
                modules.append(nn.ReLU())
        return nn.Sequential(*modules)


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
        allowed = (nn.Linear, nn.ReLU, nn.Flatten)
        if not isinstance(module, allowed):
            continue  # reported below with the supported structure
        problem = module_problem(module, allowed)
        if problem:
            raise UnsupportedTargetError(
                f"layer {position} ({type(module).__name__}) {problem}: the target would not "
                "compute what its weights say; refusing rather than certifying another function"
            )


def _layers_from_sequential(model: nn.Sequential) -> tuple[list[tuple], bool]:
    _check_computes_its_layers(model)
    modules = list(model)
    flatten = False
    if modules and isinstance(modules[0], nn.Flatten):
        flat = modules[0]
        if flat.start_dim != 1 or flat.end_dim != -1:
            raise TargetError(
                "layer 0 (Flatten): only nn.Flatten(start_dim=1, end_dim=-1) is supported"
            )
        flatten = True
        modules = modules[1:]
    offset = 1 if flatten else 0
    if not modules:
        raise TargetError("the target has no nn.Linear layer")
    layers: list[tuple] = []
    expect_linear = True
    for position, module in enumerate(modules, start=offset):
        kind = type(module).__name__
        if expect_linear:
            if not isinstance(module, nn.Linear):
                if isinstance(module, nn.ReLU):
                    raise TargetError(
                        f"layer {position} (ReLU): expected nn.Linear; two activations in a row or "
                        "a leading ReLU is not a target of the form W_l σ(… σ(W_1 x))"
                    )
                raise UnsupportedTargetError(
                    f"layer {position} ({kind}) is not supported: a target is an nn.Sequential of "
                    "nn.Linear and nn.ReLU (optionally starting with nn.Flatten)"
                )
            name = f"layer {position} (Linear {module.in_features}->{module.out_features})"
            weight = _copy(effective_parameter(module, "weight"), f"{name} weight", 2)
            bias = effective_parameter(module, "bias")
            bias = None if bias is None else _copy(bias, f"{name} bias", 1)
            layers.append((name, weight, bias))
        else:
            if not isinstance(module, nn.ReLU):
                raise UnsupportedTargetError(
                    f"layer {position} ({kind}) is not supported: between two nn.Linear layers "
                    "only nn.ReLU is allowed"
                )
        expect_linear = not expect_linear
    if expect_linear:
        raise TargetError(
            f"layer {offset + len(modules) - 1} (ReLU): the target must end with nn.Linear "
            "(no activation after the last layer)"
        )
    return layers, flatten


def as_target(target, *, allow_bias: bool = True) -> Target:
    """Validate ``target`` and return a float64 copy of its layers.

    Accepted: an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` alternating, starting and
    ending with ``nn.Linear`` (a leading ``nn.Flatten`` is allowed), a single ``nn.Linear``,
    a list of weight matrices, or a list of ``(weight, bias)`` pairs. The caller's objects are
    only read.
    """
    if isinstance(target, Target):
        return target
    flatten = False
    if isinstance(target, nn.Sequential):
        raw, flatten = _layers_from_sequential(target)
    elif isinstance(target, nn.Linear):
        problem = module_problem(target, (nn.Linear,))
        if problem:
            raise UnsupportedTargetError(f"the target ({type(target).__name__}) {problem}")
        raw, flatten = _layers_from_sequential(nn.Sequential(target))
    elif isinstance(target, nn.Module):
        raise UnsupportedTargetError(
            f"target of type {type(target).__name__} is not supported: pass an nn.Sequential of "
            "nn.Linear and nn.ReLU, or a list of weight matrices"
        )
    elif isinstance(target, Sequence) and not isinstance(target, (str, bytes)) and target:
        raw = []
        for index, item in enumerate(target):
            name = f"layer {index}"
            if isinstance(item, (tuple, list)) and len(item) == 2:
                weight = _copy(item[0], f"{name} weight", 2)
                bias = None if item[1] is None else _copy(item[1], f"{name} bias", 1)
            else:
                weight, bias = _copy(item, f"{name} weight", 2), None
            raw.append((f"{name} ({weight.shape[1]}->{weight.shape[0]})", weight, bias))
    else:
        raise UnsupportedTargetError(
            f"target must be an nn.Sequential of nn.Linear/nn.ReLU or a non-empty list of weight "
            f"matrices, got {type(target).__name__}"
        )

    layers = []
    previous_out = None
    for name, weight, bias in raw:
        if weight.shape[0] == 0 or weight.shape[1] == 0:
            raise TargetError(f"{name} has an empty weight of shape {tuple(weight.shape)}")
        if previous_out is not None and weight.shape[1] != previous_out:
            raise TargetError(
                f"{name}: shapes do not chain, it takes {weight.shape[1]} inputs but the previous "
                f"layer gives {previous_out} outputs"
            )
        if bias is not None:
            if not allow_bias:
                raise TargetError(f"{name} has a bias, which this operation does not support")
            if bias.shape != (weight.shape[0],):
                raise TargetError(
                    f"{name}: bias of shape {tuple(bias.shape)} does not match weight of shape "
                    f"{tuple(weight.shape)}; weights are (d_out, d_in), as in nn.Linear (for "
                    "scikit-learn's coefs_, pass each matrix transposed)"
                )
        previous_out = weight.shape[0]
        layers.append(TargetLayer(weight, bias))
    return Target(tuple(layers), flatten)
