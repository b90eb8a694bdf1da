"""Input validation, chunking and result recomputation around the registered methods."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from sslth.subset_sum._common import DEFAULT_SEED
from sslth.subset_sum.registry import MethodOutput, Problem, Solver, make_solver

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
# on CUDA: half the device memory free when the solve starts, within these bounds
_CUDA_BUDGET_RANGE = (256 * 1024**2, 16 * 1024**3)


def default_memory_budget(device: torch.device) -> int:
    """The solver's budget for temporaries on ``device``: 2 GiB on the CPU; on CUDA half of
    the free device memory (``torch.cuda.mem_get_info``), between 256 MiB and 16 GiB."""
    if device.type != "cuda":
        return DEFAULT_MEMORY_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    low, high = _CUDA_BUDGET_RANGE
    return int(min(max(free // 2, low), high))


@dataclass
class SolveResult:
    """Outcome of :func:`solve` for a batch of B instances.

    ``error`` is recomputed in float64 from ``mask`` and the input values, never taken from a
    method's bookkeeping.
    """

    mask: torch.Tensor  # (B, m) bool, exactly k True per row, only on valid candidates
    error: torch.Tensor  # (B,) float64, |sum of picked values - target|
    solved: torch.Tensor  # (B,) bool, error < tol
    infeasible: torch.Tensor  # (B,) bool, proved: no k-subset within tol exists
    budget_exhausted: torch.Tensor  # (B,) bool, an exact search stopped on its budget there

    def __len__(self) -> int:
        return self.mask.shape[0]


def _as_batch_tensor(x, batch: int, dtype: torch.dtype, device, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


# bytes per (row, candidate) that a method holds in whole-batch tensors (float64 copies, int64
# column orders, random keys, masks); rows beyond budget / this go to separate method calls
_BYTES_PER_ENTRY = 64


def _run_chunked(fn, problem: Problem) -> MethodOutput:
    """Call a method on row chunks so its whole-batch temporaries fit the memory budget."""
    batch, m = problem.values.shape
    rows = max(1, problem.memory_budget // (2 * _BYTES_PER_ENTRY * max(m, 1)))
    if batch <= rows:
        return fn(problem)
    outs = []
    for start in range(0, batch, rows):
        sl = slice(start, start + rows)
        sub = Problem(
            problem.values[sl],
            problem.targets[sl],
            problem.k[sl],
            problem.tol[sl],
            problem.valid[sl],
            problem.seed,
            problem.row_ids[sl],
            problem.memory_budget,
        )
        outs.append(fn(sub))
    exhausted = [
        o.budget_exhausted if o.budget_exhausted is not None else torch.zeros_like(o.infeasible)
        for o in outs
    ]
    return MethodOutput(
        mask=torch.cat([o.mask for o in outs]),
        infeasible=torch.cat([o.infeasible for o in outs]),
        budget_exhausted=torch.cat(exhausted),
    )


def solve(
    values: torch.Tensor,
    targets: torch.Tensor,
    k: int | torch.Tensor,
    tol: float | torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    method: str | Solver = "auto",
    seed: int = DEFAULT_SEED,
    row_ids: torch.Tensor | None = None,
    memory_budget: int | None = None,
    generator: torch.Generator | None = None,
    **options,
) -> SolveResult:
    """Pick exactly ``k`` of the ``m`` valid candidates of each row, summing close to its target.

    Args:
        values: (B, m) float32 or float64 candidate values, on any device.
        targets: (B,) target sums.
        k: subset size, an int or a (B,) integer tensor.
        tol: tolerance, a float or (B,) tensor; a row is solved when |sum - target| < tol.
        valid: optional (B, m) bool; False marks candidates that may not be picked.
        method: a name in :data:`sslth.subset_sum.SOLVERS` or a :class:`Solver` already built.
        seed: seeds the randomized methods.
        row_ids: (B,) integer ids of the rows (default 0..B−1): a randomized method's choices
            for a row depend only on (seed, its id), so the same row gets the same pick on every
            device, in any batch or chunk.
        memory_budget: bytes the solver may use for temporaries; work is chunked to fit.
            Default: :func:`default_memory_budget` of the device.
        generator: instead of ``seed``, a ``torch.Generator`` whose initial seed is used.
        **options: the named solver's options (for example ``max_work`` for ``"exact"``); an
            option it does not have raises :class:`~sslth.errors.ConfigError`.

    Returns:
        A :class:`SolveResult` whose errors are recomputed from the picks.
    """
    solver = make_solver(method, **options)
    _check_values(values)
    batch, m = values.shape
    device = values.device
    values = values.to(torch.float64)
    targets = _as_batch_tensor(targets, batch, torch.float64, device, "targets")
    k = _batch_k(k, batch, device)
    tol = _as_batch_tensor(tol, batch, torch.float64, device, "tol")
    valid = _batch_valid(valid, batch, m, device)
    if memory_budget is None:
        memory_budget = default_memory_budget(device)
    _check_memory_budget(memory_budget)
    if batch > 0:
        _check_rows(values, targets, k, tol, valid)
    if generator is not None:
        seed = generator.initial_seed()
    row_ids = _batch_row_ids(row_ids, batch, device)
    problem = Problem(values, targets, k, tol, valid, int(seed), row_ids, int(memory_budget))
    if batch == 0:
        return _empty_result(m, device)
    out = _run_chunked(solver, problem)
    return _recomputed_result(solver, out, problem)


def _check_values(values) -> None:
    """Refuse ``values`` that are not a (B, m) floating-point tensor."""
    if not isinstance(values, torch.Tensor) or values.dim() != 2:
        raise ValueError("values must be a (B, m) tensor")
    if not (values.dtype.is_floating_point):
        raise ValueError(f"values must be float32 or float64, got {values.dtype}")


def _batch_k(k, batch: int, device) -> torch.Tensor:
    """``k`` (an int or integer tensor) as a (B,) int64 tensor; anything else is refused."""
    if isinstance(k, torch.Tensor) and (k.is_floating_point() or k.dtype == torch.bool):
        raise ValueError(f"k must be an integer or an integer tensor, got dtype {k.dtype}")
    if not isinstance(k, torch.Tensor) and (isinstance(k, bool) or int(k) != k):
        raise ValueError(f"k must be an integer, got {k!r}")
    return _as_batch_tensor(k, batch, torch.int64, device, "k")


def _batch_valid(valid, batch: int, m: int, device) -> torch.Tensor:
    """``valid`` as a (B, m) bool tensor on ``device`` (all True when None)."""
    if valid is None:
        return torch.ones(batch, m, dtype=torch.bool, device=device)
    valid = torch.as_tensor(valid, device=device)
    if valid.dtype != torch.bool or valid.shape != (batch, m):
        raise ValueError(f"valid must be a bool tensor of shape ({batch}, {m})")
    return valid


def _check_memory_budget(memory_budget) -> None:
    """Refuse a memory budget that is not a positive integer."""
    if (
        isinstance(memory_budget, bool)
        or not isinstance(memory_budget, numbers.Integral)
        or memory_budget <= 0
    ):
        raise ValueError(f"memory_budget must be a positive integer, got {memory_budget!r}")


def _check_rows(
    values: torch.Tensor,
    targets: torch.Tensor,
    k: torch.Tensor,
    tol: torch.Tensor,
    valid: torch.Tensor,
) -> None:
    """Refuse non-finite values or targets, tol <= 0, k < 1 and rows with fewer than k valid
    candidates (a non-empty batch)."""
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).any(dim=1).nonzero()[0])
        raise ValueError(f"values contain NaN or Inf (first in row {bad})")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or Inf")
    if not (tol > 0).all():
        raise ValueError(f"tol must be > 0, got a minimum of {float(tol.min())}")
    if not (k >= 1).all():
        raise ValueError(f"k must be >= 1, got a minimum of {int(k.min())}")
    n_valid = valid.sum(dim=1)
    short = k > n_valid
    if short.any():
        row = int(short.nonzero()[0])
        raise ValueError(
            f"impossible k: row {row} asks for k={int(k[row])} of only "
            f"{int(n_valid[row])} valid candidates ({int(short.sum())} rows affected)"
        )


def _batch_row_ids(row_ids, batch: int, device) -> torch.Tensor:
    """``row_ids`` as a (B,) integer tensor (0..B-1 when None)."""
    if row_ids is None:
        return torch.arange(batch, device=device)
    row_ids = torch.as_tensor(row_ids, device=device)
    if row_ids.shape != (batch,) or row_ids.dtype.is_floating_point:
        raise ValueError(f"row_ids must be ({batch},) integers")
    return row_ids


def _empty_result(m: int, device) -> SolveResult:
    """The result for a batch of zero rows."""
    empty = torch.zeros(0, dtype=torch.bool, device=device)
    return SolveResult(
        torch.zeros(0, m, dtype=torch.bool, device=device),
        torch.zeros(0, dtype=torch.float64, device=device),
        empty,
        empty.clone(),
        empty.clone(),
    )


def _recomputed_result(solver, out: MethodOutput, problem: Problem) -> SolveResult:
    """Check the method's mask and recompute error, solved and the flags from it."""
    values, targets, k, tol, valid = (
        problem.values,
        problem.targets,
        problem.k,
        problem.tol,
        problem.valid,
    )
    batch, m = values.shape
    mask = out.mask
    picked = (mask & valid).sum(dim=1)
    if mask.shape != (batch, m) or bool((mask & ~valid).any()) or bool((picked != k).any()):
        raise RuntimeError(f"subset-sum solver {solver!r} returned an invalid mask")
    error = (torch.where(mask, values, 0.0).sum(dim=1) - targets).abs()
    solved = error < tol
    infeasible = out.infeasible & ~solved
    exhausted = out.budget_exhausted
    if exhausted is None:
        exhausted = torch.zeros(batch, dtype=torch.bool, device=values.device)
    return SolveResult(mask, error, solved, infeasible, exhausted & ~solved)
