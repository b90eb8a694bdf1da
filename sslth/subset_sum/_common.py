"""Helpers shared by the subset-sum methods: combination tables, compaction, seeding."""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch

DEFAULT_SEED = 0x5EED  # of the randomized methods, when the caller gives none


@lru_cache(maxsize=256)
def _combos_cpu(n: int, r: int) -> torch.Tensor:
    if r == 0:
        return torch.zeros(1, 0, dtype=torch.long)
    flat = list(itertools.chain.from_iterable(itertools.combinations(range(n), r)))
    return torch.tensor(flat, dtype=torch.long).reshape(math.comb(n, r), r)


_DEVICE_CACHE: dict[tuple[int, int, str], torch.Tensor] = {}


def combos(n: int, r: int, device: torch.device) -> torch.Tensor:
    """All r-subsets of range(n) as a (C(n, r), r) long table, lexicographic, cached per device."""
    key = (n, r, str(device))
    t = _DEVICE_CACHE.get(key)
    if t is None:
        t = _combos_cpu(n, r).to(device)
        if len(_DEVICE_CACHE) > 512:  # tables are small, but do not grow without bound
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = t
    return t


def subset_sums(vals: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(b, n) values, (C, r) index table -> (b, C) sums, without a (b, C, r) temporary."""
    b = vals.shape[0]
    if table.shape[1] == 0:
        return vals.new_zeros(b, table.shape[0])
    out = vals.index_select(1, table[:, 0])  # index_select beats advanced indexing on CPU
    for t in range(1, table.shape[1]):
        out += vals.index_select(1, table[:, t])
    return out


def compact_order(valid: torch.Tensor) -> torch.Tensor:
    """Column order per row putting the valid candidates first (stable, so deterministic)."""
    # a scatter of running counts: linear time, where a stable sort of the flags is not
    v = valid.to(torch.int32)
    n_valid = v.sum(dim=1, keepdim=True)
    dest = torch.where(valid, v.cumsum(dim=1) - 1, n_valid + (1 - v).cumsum(dim=1) - 1)
    cols = torch.arange(valid.shape[1], device=valid.device).expand_as(dest)
    return torch.empty_like(dest, dtype=torch.long).scatter_(1, dest.long(), cols)


_LOW32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x · constant) mod 2^32 for x < 2^32, in int64 without overflow (16-bit halves)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _LOW32


def _murmur32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finalizer: a bijection that scatters nearby integers."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def hashed_uniform(seed: int, row_ids: torch.Tensor, columns: int, salt: int) -> torch.Tensor:
    """(rows, columns) float64 in [0, 1): a hash of (seed, salt, row id, column).

    Counter-based rather than drawn from a generator, so a row's numbers depend on that row
    alone: the same on every device, whatever the chunking, the batch or the worker that
    solves the row."""
    key = int(seed) * 0x9E3779B1 + int(salt) * 0x7FEB352D
    base = _murmur32(torch.tensor([key & _LOW32, (key >> 32) & _LOW32], dtype=torch.int64))
    device = row_ids.device
    rows = _murmur32((row_ids.to(torch.int64) & _LOW32) ^ int(base[0]))
    rows = _murmur32(rows ^ ((row_ids.to(torch.int64) >> 32) & _LOW32) ^ int(base[1]))
    cols = torch.arange(columns, device=device, dtype=torch.int64)
    mixed = _murmur32(rows[:, None] ^ _murmur32(cols * 0x27D4EB2D & _LOW32)[None, :])
    return mixed.to(torch.float64) / 2.0**32


def groups(k: torch.Tensor, n: torch.Tensor) -> list[tuple[tuple[int, int], torch.Tensor]]:
    """Split row indices by distinct (k, n) pairs of two non-negative integer (B,) tensors."""
    span = int(n.max()) + 1 if n.numel() else 1
    key = k * span + n  # 1-d key: unique over rows of a 2-d tensor is far slower
    uniq, inverse = torch.unique(key, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=uniq.shape[0]).tolist()
    return [
        ((u // span, u % span), rows)
        for u, rows in zip(uniq.tolist(), order.split(counts), strict=True)
    ]
