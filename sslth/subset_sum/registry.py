"""Subset-sum solvers: classes constructed with their options, in the :data:`SOLVERS` table.

A solver is a :class:`Solver` subclass (a dataclass whose fields are its options) registered
under a name with :func:`register`. Calling it on a :class:`Problem` (validated, float64 inputs
on one device) returns a (B, m) pick mask with exactly ``k`` valid picks per row and a (B,) bool
tensor of rows it *proved* infeasible (all False for heuristics). A misspelt option fails when
the solver is built (:func:`make_solver`), not silently at solve time.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch

from sslth.errors import ConfigError


@dataclass
class Problem:
    """One validated batch of instances, all tensors on the same device."""

    values: torch.Tensor  # (B, m) float64, finite; invalid entries hold arbitrary finite values
    targets: torch.Tensor  # (B,) float64
    k: torch.Tensor  # (B,) int64, 1 <= k <= number of valid candidates of the row
    tol: torch.Tensor  # (B,) float64, > 0
    valid: torch.Tensor  # (B, m) bool
    seed: int  # of the randomized methods (with row_ids, see _common.hashed_uniform)
    row_ids: torch.Tensor  # (B,) int64: a row's randomness depends on its id alone
    memory_budget: int  # bytes a method may use for temporaries


@dataclass
class MethodOutput:
    mask: torch.Tensor  # (B, m) bool, exactly k[b] valid entries True per row
    infeasible: torch.Tensor  # (B,) bool, True only where no k-subset within tol exists
    budget_exhausted: torch.Tensor | None = None  # (B,) bool, exact search gave up there


class Solver(ABC):
    """A fixed-size subset-sum method; its dataclass fields are its options."""

    name: ClassVar[str] = ""

    @abstractmethod
    def __call__(self, problem: Problem) -> MethodOutput:
        """Solve every row of ``problem``.

        Args:
            problem: the validated batch.

        Returns:
            The pick mask, the rows proved infeasible and, for a complete search with a
            budget, the rows it gave up on.
        """


SOLVERS: dict[str, type[Solver]] = {}
S = TypeVar("S", bound=type[Solver])


def register(name: str):
    """Class decorator: make a :class:`Solver` available as ``solve(..., method=name)``."""

    def wrap(cls: S) -> S:
        cls.name = name
        SOLVERS[name] = cls
        return cls

    return wrap


def make_solver(method: str | Solver, **options) -> Solver:
    """The solver ``method`` names, built with ``options``.

    Args:
        method: a name in :data:`SOLVERS`, or a solver already built (then no options).
        **options: the solver's options (its dataclass fields).

    Returns:
        The solver.

    Raises:
        ConfigError: unknown method, or an option the solver does not have.
    """
    if isinstance(method, Solver):
        if options:
            raise ConfigError(
                f"options {sorted(options)} given beside an already built solver {method!r}"
            )
        return method
    if not isinstance(method, str) or method not in SOLVERS:
        raise ConfigError(f"unknown subset-sum method {method!r}; available: {sorted(SOLVERS)}")
    cls = SOLVERS[method]
    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"subset-sum method {method!r} has no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(sorted(known)) or 'none'})"
        )
    return cls(**options)
