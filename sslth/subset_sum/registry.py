"""Registry of subset-sum methods.

A method is a function ``method(problem: Problem) -> MethodOutput``. It receives validated,
float64 inputs on one device and returns a (B, m) pick mask with exactly ``k`` valid picks per
row, and a (B,) bool tensor of rows it *proved* infeasible (all False for heuristics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Problem:
    """One validated batch of instances, all tensors on the same device."""

    values: torch.Tensor  # (B, m) float64, finite; invalid entries hold arbitrary finite values
    targets: torch.Tensor  # (B,) float64
    k: torch.Tensor  # (B,) int64, 1 <= k <= number of valid candidates of the row
    tol: torch.Tensor  # (B,) float64, > 0
    valid: torch.Tensor  # (B, m) bool
    generator: torch.Generator | None
    memory_budget: int  # bytes a method may use for temporaries
    options: dict


@dataclass
class MethodOutput:
    mask: torch.Tensor  # (B, m) bool, exactly k[b] valid entries True per row
    infeasible: torch.Tensor  # (B,) bool, True only where no k-subset within tol exists
    budget_exhausted: torch.Tensor | None = None  # (B,) bool, exact search gave up there


MethodFn = Callable[[Problem], MethodOutput]
METHODS: dict[str, MethodFn] = {}


def register(name: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator that makes a method available as ``solve(..., method=name)``."""

    def wrap(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn

    return wrap
