"""Refine, a policy of the search: after a first success, which smaller sizes to try for a small
layer (docs/design.md, "The search", step 4). :meth:`sslth.search.loop.Search.refine` tries
them, one at a time, and keeps each while the ticket still meets ε and the density and the
layer stays within its budget."""

from __future__ import annotations

from collections.abc import Iterator

from sslth.search.sizing import choose_k
from sslth.target import TargetLayer

REFINE_MAX_INSTANCES = 200_000  # larger layers are not refined: a re-solve costs too much
REFINE_STEPS = 6
SHRINK = 8  # each step removes n // SHRINK neurons per input (at least one)


def refinable(layer: TargetLayer) -> bool:
    """Whether a layer is small enough for refine to re-solve it (``REFINE_MAX_INSTANCES``)."""
    return layer.d_out * layer.kind.taps * (2 * layer.d_in + 1) <= REFINE_MAX_INSTANCES


def smaller_sizes(
    layer: TargetLayer, n: int, fixed_k: int | None, density: float
) -> Iterator[tuple[int, int]]:
    """The (n, k) refine tries for a layer now at n, in order: each step removes
    ``max(1, n // SHRINK)`` neurons per input from the last, at most ``REFINE_STEPS`` steps;
    k is the caller's, or :func:`choose_k`'s at the new n. It ends early where no k fits.

    The caller stops at the first size that fails, so each size is a step from the last
    accepted one.
    """
    for _ in range(REFINE_STEPS):
        n -= max(1, n // SHRINK)
        if n < 1:
            return
        k = fixed_k if fixed_k is not None else choose_k(layer, n, density)
        if k < 1 or k > n:
            return
        yield n, k
