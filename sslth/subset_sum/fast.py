"""Methods ``"fast"`` (batched heuristic) and ``"auto"`` (the default).

``fast`` is a meet in the middle on random halves of a random subset: each row keeps n' of its
valid candidates, drawn at random, with n' just large enough that, by a Gaussian estimate of
the density of k-sums, some tens of solutions are expected among them; the kept candidates
are dealt into two halves and only the few splits j + (k - j) that cover the most k-subsets are
searched (:func:`sslth.subset_sum.exact.mitm`, which drops rows as soon as they are solved).
Nothing is proved.

``auto`` runs the complete search directly where it is affordable (it stops on a row at the
first solution, so on instances with many solutions it is as fast as a heuristic) and the
heuristic first where the full search would enumerate much more than the heuristic does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sslth.errors import ConfigError
from sslth.subset_sum._common import groups, hashed_uniform
from sslth.subset_sum.exact import DEFAULT_MAX_WORK, exact_rows, exact_work, first_sorted, mitm
from sslth.subset_sum.registry import MethodOutput, Problem, Solver, register

MIN_N = 24  # keep at least this many candidates, so rows with few solutions still get a chance
TARGET_LAMBDA = 40.0  # expected solutions among the kept candidates (Gaussian estimate)
# with many picks the search's cost grows fast with the kept count while a miss costs only a
# second round on a fresh subset: fewer expected solutions, on fewer candidates, pay (measured:
# 2.3x on the k = 9 instances of a 784-500-10 prune, no family of bench_subset_sum slower)
MANY_PICKS, MANY_PICKS_LAMBDA, MANY_PICKS_MIN_N = 6, 10.0, 16
MAX_SPLITS = 3  # splits j + (k - j) searched by the heuristic, largest first
ROUNDS = 2  # heuristic rounds in auto, each on a fresh random subset
FAST_MAX_WORK = 200_000  # subsets per row the heuristic may enumerate
HEURISTIC_RATIO = 4  # auto: see the choice between heuristic and exact search
FLOAT32_MARGIN = 8  # float32 search only where the tolerance is 8x its worst-case rounding


def _kept_count(
    values: torch.Tensor,
    valid: torch.Tensor,
    targets: torch.Tensor,
    k: torch.Tensor,
    tol: torch.Tensor,
    n_valid: torch.Tensor,
) -> torch.Tensor:
    """Per row, how many candidates to keep: enough for ~TARGET_LAMBDA expected solutions."""
    max_n = values.shape[1]
    nv = n_valid.clamp(min=1).to(torch.float64)
    vv = torch.where(valid, values, 0.0)
    mean = vv.sum(dim=1) / nv
    var = (torch.where(valid, values - mean[:, None], 0.0) ** 2).sum(dim=1) / nv
    kf = k.to(torch.float64)
    sd = (kf * var).sqrt().clamp(min=1e-30)
    log_dens = -0.5 * ((targets - kf * mean) / sd) ** 2 - sd.log() - 0.5 * math.log(2 * math.pi)
    # smallest n' with log C(n', k) >= threshold, by a binary search in a per-k table (a
    # (B, m) table of log-binomials costs more than the rest of a plentiful solve)
    wanted = torch.where(k >= MANY_PICKS, MANY_PICKS_LAMBDA, TARGET_LAMBDA).to(torch.float64)
    threshold = wanted.log() - (2 * tol).log() - log_dens
    need = torch.full_like(k, max_n)
    grid = torch.arange(1, max_n + 1, device=values.device, dtype=torch.float64)
    for kk in k.unique().tolist():
        rows = (k == kk).nonzero().squeeze(1)
        rest = (grid - kk).clamp(min=0).add(1).lgamma()
        log_comb = (grid + 1).lgamma() - math.lgamma(kk + 1) - rest
        log_comb = torch.where(grid >= kk, log_comb, -torch.inf)
        pos = torch.searchsorted(log_comb, threshold[rows].contiguous())
        need[rows] = (pos + 1).clamp(max=max_n)
    need = ((need + 3) // 4) * 4  # fewer distinct groups
    floor = torch.where(k >= MANY_PICKS, MANY_PICKS_MIN_N, MIN_N)
    need = torch.maximum(torch.maximum(need, floor), 2 * k)
    return torch.minimum(need, n_valid)


def search_dtype(cand: torch.Tensor, tol: torch.Tensor, k: int) -> torch.dtype:
    """float32, unless it cannot resolve some row's tolerance: a k-sum of float32-rounded
    candidates is off by up to about 2k · 2^-24 · max|c| (each candidate's rounding and each
    addition's), so a row whose tolerance is within ``FLOAT32_MARGIN`` of that is searched in
    float64. In float32 such rows came back ~100x over their tolerance whatever n was (a
    ResNet-20 plans tolerances ~1e-10: 97% of its instances missed; issue 20)."""
    if cand.numel() == 0:
        return torch.float32
    resolution = 2 * k * 2.0**-24 * cand.abs().amax(dim=1)
    return torch.float64 if bool((tol < FLOAT32_MARGIN * resolution).any()) else torch.float32


def _affordable(n: int, k: int, max_splits: int) -> int:
    """Large k: the kept count shrunk until the searched splits are affordable (n = k always
    is)."""
    while n > k and exact_work(n, k, max_splits)[0] > FAST_MAX_WORK:
        n -= 1
    return n


def _float64_rows(
    cand: torch.Tensor, tol: torch.Tensor, k: int, counts: torch.Tensor, kept: torch.Tensor
) -> torch.Tensor:
    """(rows,) bool: the rows searched in float64: :func:`search_dtype` of each kept count's
    rows (their first ``counts[row]`` columns of ``cand``), as if it were searched alone."""
    inside = torch.arange(cand.shape[1], device=cand.device) < counts[:, None]
    resolution = 2 * k * 2.0**-24 * torch.where(inside, cand.abs(), 0.0).amax(dim=1)
    short = (tol < FLOAT32_MARGIN * resolution).to(torch.int64)
    per_count = torch.zeros(int(kept.max()) + 1, dtype=torch.int64, device=cand.device)
    return per_count.index_add_(0, kept, short)[kept] > 0


def fast_rows(
    problem: Problem, rows: torch.Tensor, attempt: int, max_splits: int = MAX_SPLITS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the heuristic on a subset of rows (``attempt`` picks another random subset per row);
    returns (mask (r, m), error (r,))."""
    values, valid = problem.values[rows], problem.valid[rows]
    r, m = values.shape
    device = values.device
    mask = torch.zeros(r, m, dtype=torch.bool, device=device)
    errors = torch.full((r,), torch.inf, dtype=torch.float64, device=device)
    if r == 0:
        return mask, errors
    k_all, tol, targets = problem.k[rows], problem.tol[rows], problem.targets[rows]
    n_valid = valid.sum(dim=1)
    kept = _kept_count(values, valid, targets, k_all, tol, n_valid)
    # random order of the valid candidates, invalid ones last
    keys = hashed_uniform(problem.seed, problem.row_ids[rows], m, attempt)
    keys = keys + (~valid).to(torch.float64) * 2
    perm = keys.argsort(dim=1, stable=True)
    # one search per k and dtype: rows of every kept count together (``mitm``'s ``counts``)
    for (k, _), g in groups(k_all, torch.zeros_like(k_all)):
        n = before = kept[g]
        sizes = n.unique().tolist()
        affordable = {size: _affordable(size, k, max_splits) for size in sizes}
        if any(size != shrunk for size, shrunk in affordable.items()):
            lookup = [affordable.get(size, 0) for size in range(max(sizes) + 1)]
            n = torch.tensor(lookup, device=device)[n]
        cols = perm[g, : max(affordable.values())]
        cand = values[g].gather(1, cols)
        # the heuristic proves nothing, so it searches in float32 (half the memory traffic of
        # its sorts and lookups) where float32 resolves the tolerance; solve() recomputes
        # every error of the picks in float64
        wide = _float64_rows(cand, tol[g], k, n, before)
        parts = [(wide, torch.float64), (~wide, torch.float32)] if bool(wide.any()) else []
        for rows_of, dtype in parts or [(None, torch.float32)]:
            sub = slice(None) if rows_of is None else rows_of.nonzero().squeeze(1)
            if rows_of is not None and sub.numel() == 0:
                continue
            err, picks = mitm(
                cand[sub].to(dtype),
                targets[g][sub].to(dtype),
                tol[g][sub].to(dtype),
                k,
                problem.memory_budget,
                max_splits,
                counts=n[sub],
            )
            mask[g[sub].unsqueeze(1), cols[sub].gather(1, picks)] = True
            errors[g[sub]] = err.to(errors.dtype)
    return mask, errors


def _check_count(solver: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{solver}: {name} must be a positive integer, got {value!r}")


@register("fast")
@dataclass(frozen=True)
class Fast(Solver):
    """Randomized heuristic; never claims infeasibility.

    Args:
        max_splits: splits j + (k - j) searched per row, those covering the most subsets.
    """

    max_splits: int = MAX_SPLITS

    def __post_init__(self) -> None:
        _check_count("fast", "max_splits", self.max_splits)

    def __call__(self, problem: Problem) -> MethodOutput:
        batch = problem.values.shape[0]
        device = problem.values.device
        rows = torch.arange(batch, device=device)
        mask, _ = fast_rows(problem, rows, 0, self.max_splits)
        infeasible = torch.zeros(batch, dtype=torch.bool, device=device)
        return MethodOutput(mask=mask, infeasible=infeasible)


def _error(problem: Problem, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    picked = torch.where(mask, problem.values[rows], 0.0).sum(dim=1)
    return (picked - problem.targets[rows]).abs()


@register("auto")
@dataclass(frozen=True)
class Auto(Solver):
    """Exact search where affordable, else heuristic rounds, then exact on what is left.

    Args:
        max_splits: splits the heuristic searches per row.
        max_work: subsets a row's exact search may enumerate.
    """

    max_splits: int = MAX_SPLITS
    max_work: int = DEFAULT_MAX_WORK

    def __post_init__(self) -> None:
        _check_count("auto", "max_splits", self.max_splits)
        _check_count("auto", "max_work", self.max_work)

    def __call__(self, problem: Problem) -> MethodOutput:
        return _auto(problem, self.max_splits, self.max_work)


def _auto(problem: Problem, max_splits: int, max_work: int) -> MethodOutput:
    values, valid = problem.values, problem.valid
    batch, m = values.shape
    device = values.device
    n_valid = valid.sum(dim=1)
    kept = _kept_count(values, valid, problem.targets, problem.k, problem.tol, n_valid)
    # the heuristic only pays where it searches a strict subset or the full search is out of
    # budget; elsewhere the early-stopping exact search does the same work and also proves
    # the exact search stops on a row at its first solution, so its cost on plentiful rows is
    # mostly the sorted side of its first split: the heuristic is used only where that side is
    # much larger than on the kept subset, or where the full search is out of budget
    heuristic = torch.zeros(batch, dtype=torch.bool, device=device)
    for (k, n), g in groups(problem.k, n_valid):
        if exact_work(n, k)[0] > max_work:
            heuristic[g] = True
            continue
        sub = kept[g]
        for n_kept in sub.unique().tolist():
            if first_sorted(n, k) > HEURISTIC_RATIO * first_sorted(n_kept, k):
                heuristic[g[sub == n_kept]] = True
    mask = torch.zeros(batch, m, dtype=torch.bool, device=device)
    err = torch.full((batch,), torch.inf, dtype=torch.float64, device=device)
    todo = heuristic.nonzero().squeeze(1)
    for attempt in range(ROUNDS):
        if todo.numel() == 0:
            break
        f_mask, _ = fast_rows(problem, todo, attempt, max_splits)
        f_err = _error(problem, todo, f_mask)
        better = f_err < err[todo]
        mask[todo[better]] = f_mask[better]
        err[todo[better]] = f_err[better]
        todo = todo[err[todo] >= problem.tol[todo]]

    left = (~heuristic).nonzero().squeeze(1)
    left = torch.cat([left, heuristic.nonzero().squeeze(1)])
    left = left[err[left] >= problem.tol[left]].sort().values
    e_mask, e_inf, e_exh = exact_rows(problem, left, max_work)
    # rows the exact search could not afford keep the heuristic's pick when it has one
    keep = ~e_exh | ~heuristic[left]
    mask[left[keep]] = e_mask[keep]
    infeasible = torch.zeros(batch, dtype=torch.bool, device=device)
    exhausted = torch.zeros(batch, dtype=torch.bool, device=device)
    infeasible[left] = e_inf
    exhausted[left] = e_exh
    return MethodOutput(mask=mask, infeasible=infeasible, budget_exhausted=exhausted)
