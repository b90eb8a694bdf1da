"""Method ``"exact"``: batched meet in the middle over a fixed-size split.

The valid candidates of a row are compacted to the front and dealt alternately into two halves
A and B. Every k-subset takes some j from A and k - j from B, so for each feasible j we sort the
subset sums of the smaller side and binary-search ``target - s`` for every subset sum s of the
larger side; the nearest neighbours of the insertion point give the best partner. Taking the
best over all j finds the k-subset with the smallest error (up to float64 rounding), so a row
whose best is not within tol is proved infeasible.

Rows are grouped by (k, number of valid candidates) so no padding is enumerated. Rows whose
enumeration exceeds ``max_work`` subsets per row (option) or whose sorted side does not fit the
memory budget are not searched; they are reported in ``budget_exhausted`` and never called
infeasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sslth.errors import ConfigError
from sslth.subset_sum._common import combos, compact_order, groups, subset_sums
from sslth.subset_sum.registry import MethodOutput, Problem, Solver, register

DEFAULT_MAX_WORK = 4_000_000  # subsets enumerated per row, all splits together
# float64 sums of up to a few hundred terms of magnitude ~1 carry rounding far below this;
# an error this close to tol is neither claimed solved (api recomputes) nor infeasible
_SLACK = 1e-12
_COL_CHUNK = 8192
_FIRST_COLS = 32
CACHE_BYTES = 32 * 1024**2


def chunk_bytes(device: torch.device) -> int:
    """Temporaries per chunk of rows, at most (the memory budget caps it too).

    CPU: chunks that stay near the caches. CUDA: as large as the budget, so that a batch is a
    few large kernels and the host synchronisations (one per window of queries, to drop solved
    rows) are counted per chunk, not per small chunk. Rows are independent, so the chunking never
    changes an answer. The windows of queries are the same on every device (32 columns, then
    doubling up to 8192): they decide which solution a row keeps, and the same seed must give the
    same masks on every device.
    """
    return CACHE_BYTES if device.type == "cpu" else 1 << 62


def _splits(n: int, k: int) -> list[tuple[int, int, int]]:
    """(j, |A-side|, |B-side|) for every feasible split, most subsets covered first."""
    h1, h2 = (n + 1) // 2, n // 2
    js = range(max(0, k - h2), min(k, h1) + 1)
    out = [(j, math.comb(h1, j), math.comb(h2, k - j)) for j in js]
    out.sort(key=lambda s: -s[1] * s[2])
    return out


def exact_work(n: int, k: int, max_splits: int | None = None) -> tuple[int, int]:
    """(subsets enumerated per row, largest sorted side) for the MITM on n candidates."""
    sp = _splits(n, k)[:max_splits]
    return sum(a + b for _, a, b in sp), max(min(a, b) for _, a, b in sp)


def first_sorted(n: int, k: int) -> int:
    """Size of the sorted side of the first (largest) split on n candidates."""
    _, a, b = _splits(n, k)[0]
    return min(a, b)


def sorted_rows(sums: torch.Tensor) -> torch.Tensor:
    """Each row of ``sums`` sorted ascending (values only).

    On the CPU numpy's vectorised sort is 10-13x faster than ``torch.sort`` on rows of 70-500
    sums (measured, one thread), and it was half of the heuristic's time. The sorted values are
    the same multiset whatever sorts them, so the search's answer does not depend on the device.
    """
    if sums.device.type == "cpu":
        return torch.from_numpy(np.sort(sums.detach().numpy(), axis=1))
    return torch.sort(sums, dim=1).values


def mitm(
    cand: torch.Tensor,
    targets: torch.Tensor,
    tol: torch.Tensor,
    k: int,
    memory_budget: int,
    max_splits: int | None = None,
    counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k-subset of each row of ``cand`` (b, m) for ``targets``.

    Returns (best error (b,), picked columns (b, k)). Stops working on a row once it is within
    tol: any solution will do, and most rows are solved by the first, largest split. With
    ``max_splits`` only the splits covering the most subsets are searched (a heuristic).

    ``counts`` (b,): a row's candidates are its first ``counts[row]`` columns (default: all m).
    Rows of different counts are searched together, each exactly as it is searched alone (its
    own splits, sorted side, windows of queries and ties), so the operators launched follow the
    splits and windows, not the number of distinct counts (docs/design.md, "Mixed counts").
    """
    b, m = cand.shape
    device = cand.device
    if counts is None:
        counts = torch.full((b,), m, dtype=torch.long, device=device)
    sizes = counts.unique().tolist()
    # rows sorted by count: a count's rows are one run of every chunk (no per-count search)
    order = torch.argsort(counts, stable=True) if len(sizes) > 1 else None
    if order is not None:
        cand, targets, tol, counts = cand[order], targets[order], tol[order], counts[order]
    state = _Best(
        torch.full((b,), torch.inf, dtype=cand.dtype, device=device),
        torch.zeros(b, k, dtype=torch.long, device=device),
    )
    halves = (cand[:, 0::2].contiguous(), cand[:, 1::2].contiguous())
    plans = {n: _splits(n, k)[:max_splits] for n in sizes}
    for level in range(max(len(plan) for plan in plans.values())):
        # the level-th split of every count, grouped by (j, sorted side): one search each
        by_split: dict[tuple[int, int], list[int]] = {}
        for n in sizes:
            if level < len(plans[n]):
                j, size_a, size_b = plans[n][level]
                by_split.setdefault((j, 0 if size_a <= size_b else 1), []).append(n)
        for (j, s_side), ns in by_split.items():
            todo = state.err >= tol
            if len(ns) < len(sizes):
                todo &= torch.isin(counts, torch.tensor(ns, device=device))
            active = todo.nonzero().squeeze(1)
            if active.numel():
                split = _Split(k, j, s_side, ns, halves, counts, active)
                _search_split(split, state, targets, tol, memory_budget)
    if order is None:
        return state.err, state.picks
    err, picks = torch.empty_like(state.err), torch.empty_like(state.picks)
    err[order], picks[order] = state.err, state.picks
    return err, picks


@dataclass
class _Best:
    """Per row of a :func:`mitm`: the best error so far and its picked columns."""

    err: torch.Tensor  # (b,)
    picks: torch.Tensor  # (b, k) long


class _Split:
    """One split j + (k − j) of :func:`mitm` over the active rows of some counts ``ns`` (their
    rows one run per count, counts ascending): which half is sorted, its subsets per count,
    and the query half's subsets in one table for all counts."""

    def __init__(self, k, j, s_side, ns, halves, counts, active) -> None:
        device = active.device
        self.k, self.j, self.s_side, self.q_side = k, j, s_side, 1 - s_side
        self.halves, self.active, self.device = halves, active, device
        r = (j, k - j)
        self.r_s, self.r_q = r[s_side], r[1 - s_side]
        self.ns = ns
        self.h_s = [_half(n, s_side) for n in ns]
        self.h_q = [_half(n, 1 - s_side) for n in ns]
        self.n_s = max(math.comb(h, self.r_s) for h in self.h_s)
        self.n_q = max(math.comb(h, self.r_q) for h in self.h_q)
        # where each count's rows start among the active ones (they are sorted by count)
        if len(ns) == 1:
            self.starts = [0, active.numel()]
        else:
            bounds = torch.searchsorted(counts[active], torch.tensor(ns, device=device))
            self.starts = bounds.tolist() + [active.numel()]
        self.counts = counts
        # the query half right-aligned: a count's subsets of its last h columns are the last
        # C(h, r) subsets of the widest table, in their own lexicographic order
        self.width_q = max(self.h_q)
        self.q_table = combos(self.width_q, self.r_q, device)
        total = self.q_table.shape[0]
        # per count (indexed by the count): its query subsets, where they start in the table,
        # and where its sorted-side table starts among all counts' tables back to back
        real, first, at = [0] * (max(ns) + 1), [0] * (max(ns) + 1), 0
        tables = [combos(h, self.r_s, device) for h in self.h_s]
        for n, h, table in zip(ns, self.h_q, tables, strict=True):
            real[n], first[n] = math.comb(h, self.r_q), at
            at += table.shape[0]
        self.q_real = torch.tensor(real, device=device)
        self.q_offset = total - self.q_real
        self.s_tables, self.s_first = tables, torch.tensor(first, device=device)
        self.s_flat = torch.cat(tables) if len(tables) > 1 else tables[0]

    def runs(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(count index, start, stop) of each count's rows among active[lo:hi], chunk-relative."""
        out = []
        for index in range(len(self.ns)):
            start, stop = max(self.starts[index], lo), min(self.starts[index + 1], hi)
            if start < stop:
                out.append((index, start - lo, stop - lo))
        return out


def _half(n: int, side: int) -> int:
    """Columns of half ``side`` (0: even columns, 1: odd) of n candidates."""
    return (n + 1) // 2 if side == 0 else n // 2


def _search_split(split: _Split, state: _Best, targets, tol, memory_budget: int) -> None:
    """Search one split on its active rows, a chunk of rows at a time, and keep each row's
    better pick."""
    device = split.device
    # rows per chunk: the sorted side and the first window of queries within the budget
    # (whole-batch temporaries were 3x slower on the CPU: ``chunk_bytes``); a later, wider
    # window is looked up in pieces of its live rows that fit the same budget, so the
    # chunk count (and the operators launched) follows the sorted side, not the widest
    # window; rows are independent, so neither changes an answer
    budget = min(memory_budget, chunk_bytes(device)) // 2  # half sorted, half windows
    per_row = 8 * (3 * split.n_s + 8 * min(split.n_q, _FIRST_COLS)) + 64
    rows_per_chunk = max(1, budget // per_row)
    b = state.err.shape[0]
    active = split.active
    for lo in range(0, active.numel(), rows_per_chunk):
        hi = min(lo + rows_per_chunk, active.numel())
        rows = active if hi - lo == b else active[lo:hi]
        runs = split.runs(lo, hi)
        sums_s = _sorted_side_sums(split, rows, runs)
        query = _Query(split, rows, runs)
        r_err, r_sum, r_q = _search_rows(
            sums_s,
            query,
            targets=targets[rows],
            tol=tol[rows],
            start_err=state.err[rows],
            budget=budget,
            max_cols=min(split.n_q, _COL_CHUNK),
        )
        old_err = state.err[rows]
        improved = r_err < old_err
        state.err[rows] = torch.where(improved, r_err, old_err)
        # the sorted side's pick: the first subset with the matched sum (padding is +inf)
        pick_s = (sums_s == r_sum[:, None]).to(torch.uint8).argmax(dim=1)
        counts = split.counts[rows]
        positions = {
            split.s_side: split.s_flat[split.s_first[counts] + pick_s],
            split.q_side: query.positions(r_q),
        }
        picks = torch.cat([2 * positions[0], 2 * positions[1] + 1], dim=1)
        state.picks[rows] = torch.where(improved[:, None], picks, state.picks[rows])


def _sorted_side_sums(split: _Split, rows: torch.Tensor, runs) -> torch.Tensor:
    """(rows, n_s): each row's subset sums of its sorted half, in its count's table order,
    padded with +inf (never the nearest, and sorted last)."""
    half = split.halves[split.s_side]
    if len(runs) == 1:
        index = runs[0][0]
        values = half if rows.numel() == half.shape[0] else half[rows]
        sums = subset_sums(values[:, : split.h_s[index]], split.s_tables[index])
        if sums.shape[1] == split.n_s:
            return sums
    sums = torch.full((rows.numel(), split.n_s), torch.inf, dtype=half.dtype, device=rows.device)
    for index, start, stop in runs:
        part = half[rows[start:stop], : split.h_s[index]]
        table = split.s_tables[index]
        sums[start:stop, : table.shape[0]] = subset_sums(part, table)
    return sums


class _Query:
    """The query half's subset sums of a chunk of rows, a window of columns at a time.

    One count in the chunk: the columns are its table's (``index_select``, shared by every
    row). Several: the half right-aligned, so each row's columns are the last ``C(h, r)`` of
    one table, and a window is looked up per row from its offset (``gather``); columns past
    a row's own are marked invalid."""

    def __init__(self, split: _Split, rows: torch.Tensor, runs) -> None:
        half = split.halves[split.q_side]
        self.split, self.single = split, len(runs) == 1
        counts = split.counts[rows]
        if self.single:
            index = runs[0][0]
            values = half if rows.numel() == half.shape[0] else half[rows]
            self.values = values[:, : split.h_q[index]]
            self.table = combos(split.h_q[index], split.r_q, rows.device)
            self.n_q = self.table.shape[0]
            return
        self.n_q = split.n_q
        width = split.width_q
        self.shift = width - torch.div(
            counts + (1 - split.q_side), 2, rounding_mode="floor"
        )  # columns of padding on the left
        source = torch.arange(width, device=rows.device) - self.shift[:, None]
        padded = half[rows].gather(1, source.clamp(min=0))
        self.values = torch.where(source >= 0, padded, torch.inf)
        self.offset, self.real = split.q_offset[counts], split.q_real[counts]
        self.columns = [split.q_table[:, t].contiguous() for t in range(split.r_q)]

    def sums(self, part, c0: int, width: int):
        """(query sums (p, w), valid (p, w) or None) of window c0..c0 + width − 1 for the
        chunk's rows ``part`` (None: all)."""
        values = self.values if part is None else self.values[part]
        if self.single:
            return subset_sums(values, self.table[c0 : c0 + width]), None
        offset = self.offset if part is None else self.offset[part]
        real = self.real if part is None else self.real[part]
        window = torch.arange(c0, c0 + width, device=values.device)
        index = (offset[:, None] + window).clamp_(max=self.split.q_table.shape[0] - 1)
        out = values.gather(1, self.columns[0][index]) if self.columns else None
        if out is None:
            out = values.new_zeros(index.shape)
        for column in self.columns[1:]:
            out += values.gather(1, column[index])
        return out, window < real[:, None]

    def positions(self, column: torch.Tensor) -> torch.Tensor:
        """(rows, r) positions in each row's query half of its query subset ``column``."""
        if self.single:
            return self.table[column]
        picked = self.split.q_table[self.offset + column]
        return picked - self.shift[:, None]


def _search_rows(
    sums_s: torch.Tensor,
    query: _Query,
    targets: torch.Tensor,
    tol: torch.Tensor,
    start_err: torch.Tensor,
    budget: int,
    max_cols: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One split of :func:`mitm` on one chunk of rows: sort the sorted side's subset sums
    ``sums_s`` and look each query subset's complement up in them.

    Returns (best error per row (r,) starting from ``start_err``, the sorted-side sum it
    matched (r,), the query subset's column (r,)).
    """
    device = sums_s.device
    n_s, n_q = sums_s.shape[1], query.n_q
    n_rows = sums_s.shape[0]
    sorted_s = sorted_rows(sums_s)
    r_err = start_err.clone()
    # the sorted side's pick is remembered by its sum and found again in the unsorted
    # sums at the end (the first equal one: deterministic), so no argsort is needed
    r_sum = torch.zeros(n_rows, dtype=sums_s.dtype, device=device)
    r_q = torch.zeros(n_rows, dtype=torch.long, device=device)
    # most rows are solved after a small fraction of the queries: look them up in
    # growing column chunks and drop the solved rows in between
    live = torch.arange(n_rows, device=device)
    c0, width = 0, _FIRST_COLS
    while c0 < n_q and live.numel() > 0:
        columns = min(width, n_q - c0)
        piece = max(1, budget // (64 * columns + 64))
        for part in live.split(piece):
            whole = part.numel() == n_rows
            l_sorted = sorted_s if whole else sorted_s[part]
            subsets, valid = query.sums(None if whole else part, c0, columns)
            q = targets[part, None] - subsets
            pos = torch.searchsorted(l_sorted, q)
            lo = (pos - 1).clamp_(min=0)
            hi = pos.clamp_(max=n_s - 1)
            e_lo = (l_sorted.gather(1, lo) - q).abs_()
            e_hi = (l_sorted.gather(1, hi) - q).abs_()
            use_hi = e_hi < e_lo
            err = torch.where(use_hi, e_hi, e_lo)
            if valid is not None:  # a column past the row's own subsets
                err = torch.where(valid, err, torch.inf)
            idx = torch.where(use_hi, hi, lo)
            m_err, m_col = err.min(dim=1)
            # keep the better of old and new per row by ``where``: no boolean-mask
            # indexing, so no host sync (only the shrinking of ``live`` needs one)
            old_err = r_err[part]
            better = m_err < old_err
            r_err[part] = torch.where(better, m_err, old_err)
            matched = l_sorted.gather(1, idx.gather(1, m_col[:, None])).squeeze(1)
            r_sum[part] = torch.where(better, matched, r_sum[part])
            r_q[part] = torch.where(better, m_col + c0, r_q[part])
        c0 += width
        keep = r_err[live] >= tol[live]
        if not query.single:  # rows whose own subsets are all looked up
            keep &= query.real[live] > c0
        live = live[keep]
        width = min(2 * width, max_cols)
    return r_err, r_sum, r_q


def _over_budget(n: int, k: int, max_work: int, memory_budget: int) -> bool:
    """Whether the complete search on n candidates enumerates more than ``max_work`` subsets
    per row or its largest sorted side does not fit the memory budget."""
    work, biggest_sorted = exact_work(n, k)
    return work > max_work or 8 * 4 * biggest_sorted > memory_budget


def exact_rows(
    problem: Problem, rows: torch.Tensor, max_work: int = DEFAULT_MAX_WORK
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the exact search on a subset of rows.

    Returns (mask (r, m), infeasible (r,), exhausted (r,)); exhausted rows get the first k valid
    candidates as a placeholder mask.
    """
    values, valid = problem.values[rows], problem.valid[rows]
    r, m = values.shape
    device = values.device
    mask = torch.zeros(r, m, dtype=torch.bool, device=device)
    infeasible = torch.zeros(r, dtype=torch.bool, device=device)
    exhausted = torch.zeros(r, dtype=torch.bool, device=device)
    if r == 0:
        return mask, infeasible, exhausted
    k_all = problem.k[rows]
    n_valid = valid.sum(dim=1)
    order = compact_order(valid)
    tol = problem.tol[rows]
    targets = problem.targets[rows]
    # one search per k: rows of every count together (``mitm``'s ``counts``)
    for (k, _), g in groups(k_all, torch.zeros_like(k_all)):
        n = n_valid[g]
        sizes = n.unique().tolist()
        over = [s for s in sizes if _over_budget(s, k, max_work, problem.memory_budget)]
        if over:
            out = torch.isin(n, torch.tensor(over, device=device))
            beyond = g[out]
            exhausted[beyond] = True
            mask[beyond.unsqueeze(1), order[beyond, :k]] = True
            g, n = g[~out], n[~out]
            if g.numel() == 0:
                continue
        cols = order[g, : max(s for s in sizes if s not in over)]
        cand = values[g].gather(1, cols)
        err, picks = mitm(cand, targets[g], tol[g], k, problem.memory_budget, counts=n)
        mask[g.unsqueeze(1), cols.gather(1, picks)] = True
        infeasible[g] = err > tol[g] + _SLACK
    return mask, infeasible, exhausted


@register("exact")
@dataclass(frozen=True)
class Exact(Solver):
    """Complete meet-in-the-middle search; see the module docstring.

    Args:
        max_work: subsets a row may enumerate (all splits together); rows beyond it are
            reported in ``budget_exhausted``, never called infeasible.
    """

    max_work: int = DEFAULT_MAX_WORK

    def __post_init__(self) -> None:
        if isinstance(self.max_work, bool) or not isinstance(self.max_work, int):
            raise ConfigError(f"exact: max_work must be an integer, got {self.max_work!r}")
        if self.max_work < 1:
            raise ConfigError(f"exact: max_work must be >= 1, got {self.max_work}")

    def __call__(self, problem: Problem) -> MethodOutput:
        rows = torch.arange(problem.values.shape[0], device=problem.values.device)
        mask, infeasible, exhausted = exact_rows(problem, rows, self.max_work)
        return MethodOutput(mask=mask, infeasible=infeasible, budget_exhausted=exhausted)
