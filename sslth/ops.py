"""The parameter-free operations between a target's layers: ReLU, Flatten, max and average
pooling with non-overlapping windows.

Each is 1-Lipschitz in ℓ2 and maps 0 to 0, so the certificate's recursion passes through them
unchanged (docs/design.md, "Layer kinds and operations"): ‖φ(u) − φ(v)‖ ≤ ‖u − v‖ and
‖φ(u)‖ ≤ ‖u‖. For max pooling each output is one of its window's inputs and windows are
disjoint; for average pooling (mean)² ≤ mean of squares. ReLU, max pooling and Flatten are
exact in floating point; average pooling rounds (:meth:`Op.rounding_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

RELU, FLATTEN, MAXPOOL, AVGPOOL = "relu", "flatten", "maxpool", "avgpool"
_NAMES = (RELU, FLATTEN, MAXPOOL, AVGPOOL)


@dataclass(frozen=True)
class Op:
    """One operation; ``kernel`` is the pooling window (= stride) for the pools."""

    name: str
    kernel: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        if self.name not in _NAMES:
            raise ValueError(f"unknown operation {self.name!r}")
        object.__setattr__(self, "kernel", tuple(int(k) for k in self.kernel))

    @property
    def is_pool(self) -> bool:
        return self.name in (MAXPOOL, AVGPOOL)

    def module(self) -> nn.Module:
        """A fresh ``nn`` module computing this operation."""
        if self.name == RELU:
            return nn.ReLU()
        if self.name == FLATTEN:
            return nn.Flatten()
        pool = nn.MaxPool2d if self.name == MAXPOOL else nn.AvgPool2d
        return pool(self.kernel, stride=self.kernel)

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-example shape after the operation (``shape`` excludes the batch)."""
        if self.name == RELU:
            return shape
        if self.name == FLATTEN:
            size = 1
            for s in shape:
                size *= s
            return (size,)
        if len(shape) != 3:
            raise ValueError(f"{self.name} needs a (C, H, W) input, got shape {shape}")
        c, h, w = shape
        out = (h // self.kernel[0], w // self.kernel[1])
        if min(out) < 1:
            raise ValueError(f"{self.name} {self.kernel} does not fit an input of {shape}")
        return (c, *out)

    def apply(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The operation on a batch ``x`` of per-example shape ``shape``."""
        if self.name == RELU:
            return torch.relu(x)
        if self.name == FLATTEN:
            return x.reshape(x.shape[0], -1)
        images = x.reshape(x.shape[0], *shape)
        if self.name == MAXPOOL:
            return functional.max_pool2d(images, self.kernel, self.kernel)
        return functional.avg_pool2d(images, self.kernel, self.kernel)

    def rounding_terms(self) -> int:
        """Terms of the floating-point sum (and division) one output takes: 0 if exact."""
        if self.name != AVGPOOL:
            return 0
        return self.kernel[0] * self.kernel[1] + 1

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"op": self.name}
        if self.is_pool:
            data["kernel"] = list(self.kernel)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Op:
        if not isinstance(data, dict) or data.get("op") not in _NAMES:
            raise ValueError(f"not an operation: {data!r}")
        return cls(data["op"], tuple(data.get("kernel", (1, 1))))


def op_of_module(module: nn.Module) -> Op | str:
    """The :class:`Op` a module computes, or why sslth cannot take it (a message)."""
    if isinstance(module, nn.ReLU):
        return Op(RELU)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            return "only nn.Flatten(start_dim=1, end_dim=-1) is supported"
        return Op(FLATTEN)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "MaxPool2d" if isinstance(module, nn.MaxPool2d) else "AvgPool2d"
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        if stride != kernel:
            return f"{kind} with stride {stride} != kernel {kernel}: windows overlap or skip"
        if _pair(module.padding) != (0, 0) or module.ceil_mode:
            return f"{kind} with padding or ceil_mode is not supported"
        if isinstance(module, nn.MaxPool2d):
            if _pair(module.dilation) != (1, 1) or module.return_indices:
                return "MaxPool2d with dilation or return_indices is not supported"
            return Op(MAXPOOL, kernel)
        if module.divisor_override is not None:
            return "AvgPool2d with divisor_override is not supported"
        return Op(AVGPOOL, kernel)
    return f"{type(module).__name__} is not supported"


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


SUPPORTED_OPS = (nn.ReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d)
