"""Brute-force enumeration of every k-subset: the test oracle, for m up to about 20."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from sslth.subset_sum.registry import MethodOutput, Problem, Solver, register

MAX_SUBSETS = 200_000


def _combinations(m: int, k: int, device) -> torch.Tensor:
    combos = list(itertools.combinations(range(m), k))
    return torch.tensor(combos, dtype=torch.long, device=device).reshape(len(combos), k)


@register("brute")
@dataclass(frozen=True)
class Brute(Solver):
    """Enumerate all C(m, k) subsets; picks the best, so it both solves and proves."""

    def __call__(self, problem: Problem) -> MethodOutput:
        return _brute(problem)


def _brute(problem: Problem) -> MethodOutput:
    values, valid = problem.values, problem.valid
    batch, m = values.shape
    mask = torch.zeros(batch, m, dtype=torch.bool, device=values.device)
    for k in problem.k.unique().tolist():
        if math.comb(m, k) > MAX_SUBSETS:
            raise ValueError(
                f"brute force would enumerate C({m}, {k}) = {math.comb(m, k)} subsets; "
                f"use method='exact' for m > ~20"
            )
        rows = (problem.k == k).nonzero().squeeze(1)
        combos = _combinations(m, k, values.device)  # (C, k), lexicographic
        # rows per chunk so that the (rows, C) sums fit the memory budget
        per_chunk = max(1, problem.memory_budget // (combos.shape[0] * k * 8 * 3))
        for chunk in rows.split(per_chunk):
            sums = values[chunk][:, combos].sum(dim=2)  # (b, C)
            ok = valid[chunk][:, combos].all(dim=2)
            err = (sums - problem.targets[chunk, None]).abs()
            err = torch.where(ok, err, torch.inf)
            best = err.argmin(dim=1)  # first minimum: lexicographically smallest subset
            mask[chunk.unsqueeze(1), combos[best]] = True
    # every subset was looked at, so "best not within tol" proves infeasibility
    proved = torch.ones(batch, dtype=torch.bool, device=values.device)
    return MethodOutput(mask=mask, infeasible=proved)
