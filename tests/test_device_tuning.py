"""The GPU's chunking (chunks as large as the memory budget) gives the CPU's answers.

No GPU is needed: the CUDA chunk size is forced onto the CPU, and every pick, error and status
must equal those of the CPU chunking on the same instances.
"""

from __future__ import annotations

import pytest
import torch

import sslth.subset_sum.exact as exact
from sslth.subset_sum import solve
from sslth.subset_sum.api import DEFAULT_MEMORY_BUDGET, default_memory_budget


def _instances(batch: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    values = (torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1) * (
        torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1
    )
    valid = torch.rand(batch, m, generator=g) < 0.6
    valid[:, :12] = True
    targets = torch.randn(batch, generator=g, dtype=torch.float64) * 0.05
    return values, valid, targets


@pytest.mark.parametrize("method", ["exact", "auto"])
@pytest.mark.parametrize(("m", "k", "tol"), [(20, 5, 4e-5), (40, 7, 1e-4), (30, 3, 1e-6)])
@pytest.mark.slow
def test_chunk_size_never_changes_an_answer(monkeypatch, method, m, k, tol) -> None:
    values, valid, targets = _instances(200, m, seed=m + k)
    huge = exact.chunk_bytes(torch.device("cuda"))
    results = []
    for size in (1 << 17, huge):  # a few rows per chunk, then every row in one chunk
        monkeypatch.setattr(exact, "chunk_bytes", lambda device, size=size: size)
        results.append(solve(values, targets, k, tol, valid=valid, method=method, seed=3))
    small, large = results
    assert torch.equal(small.mask, large.mask)
    assert torch.equal(small.error, large.error)
    assert torch.equal(small.solved, large.solved)
    assert torch.equal(small.infeasible, large.infeasible)
    if method == "exact":
        # every row decided (the cases hold solved and proved-infeasible rows between them)
        assert int(small.solved.sum()) + int(small.infeasible.sum()) == len(small)


def test_cuda_chunks_are_larger() -> None:
    assert exact.chunk_bytes(torch.device("cpu")) < exact.chunk_bytes(torch.device("cuda"))


def test_default_budget_and_bad_budgets() -> None:
    assert default_memory_budget(torch.device("cpu")) == DEFAULT_MEMORY_BUDGET
    values, valid, targets = _instances(8, 12, seed=0)
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(ValueError, match="memory_budget"):
            solve(values, targets, 3, 1e-3, valid=valid, memory_budget=bad)
