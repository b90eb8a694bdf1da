"""Counting the torch operators a piece of code dispatches, and the host-sync-like ones.

The search's cost on a GPU is dominated by how many operators it launches and how often the
host waits for the device, not by the arithmetic (docs/benchmarks.md, "Operators"). This
counter makes both visible on any machine, a CPU included: it is a ``TorchDispatchMode``, so it
sees every ATen operator called in *its own thread* (a dispatch mode is thread-local: count a
prune with ``threads=1``).

Host-sync-like operators are those whose result size or value the host must read before it can
go on: ``nonzero``, ``item`` / ``_local_scalar_dense``, ``equal``, ``is_nonzero``, ``unique``,
``masked_select``, ``repeat_interleave`` without an output size, and indexing by a boolean mask.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_LIKE = frozenset(
    {
        "nonzero",
        "nonzero_static",
        "item",
        "_local_scalar_dense",
        "equal",
        "is_nonzero",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "masked_select",
        "repeat_interleave",
        "bincount",
        "allclose",
    }
)
_MASK_INDEXED = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8)
        for index in (indices or ())
    )


class OperatorCounter(TorchDispatchMode):
    """Count the ATen operators dispatched in this thread while the counter is entered.

    Example::

        with OperatorCounter() as counter:
            sslth.prune(model, 0.01, 0.1, threads=1)
        print(counter.total, counter.syncs, counter.by_name.most_common(10))

    Attributes:
        by_name: operator name (the overload packet, e.g. ``index_select``) → calls.
        sync_by_name: the host-sync-like calls among them (a boolean-mask ``index`` is named
            ``index[bool]``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_name: Counter[str] = Counter()
        self.sync_by_name: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.by_name[name] += 1
        if name in SYNC_LIKE:
            self.sync_by_name[name] += 1
        elif name in _MASK_INDEXED and _bool_index(args):
            self.sync_by_name[f"{name}[bool]"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """Operators dispatched."""
        return sum(self.by_name.values())

    @property
    def syncs(self) -> int:
        """Host-sync-like operators among them."""
        return sum(self.sync_by_name.values())

    def summary(self, top: int = 12) -> str:
        """A few lines: the totals, the most called operators and every sync-like one."""
        common = ", ".join(f"{name} {count:,}" for name, count in self.by_name.most_common(top))
        syncs = ", ".join(f"{name} {count:,}" for name, count in self.sync_by_name.most_common())
        return (
            f"{self.total:,} torch operators dispatched, {self.syncs:,} host-sync-like\n"
            f"  most called: {common}\n"
            f"  host-sync-like: {syncs or 'none'}"
        )


# captured when the class is defined: a later patch of the class's method is not the counter
_COUNTING_DISPATCH = OperatorCounter.__torch_dispatch__


def is_plain_counter(mode: object) -> bool:
    """Whether ``mode`` is sslth's own :class:`OperatorCounter`, unmodified: its exact class,
    with the dispatch method it was defined with and no per-instance override. Only such a
    mode passes every operator through unchanged, so only it may be active while a module is
    certified.

    Args:
        mode: an active dispatch mode.

    Returns:
        True for a plain counter, False for anything else (a subclass, a patched class or
        instance, another mode).
    """
    return (
        type(mode) is OperatorCounter
        and OperatorCounter.__torch_dispatch__ is _COUNTING_DISPATCH
        and "__torch_dispatch__" not in vars(mode)
    )
