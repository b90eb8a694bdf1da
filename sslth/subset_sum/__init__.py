"""Batched fixed-size subset sum: pick exactly k of m candidates whose sum is near a target.

The public entry point is :func:`solve`. Methods plug into :data:`METHODS` (see
:mod:`sslth.subset_sum.registry`); whatever a method returns, :func:`solve` recomputes the
error of the picked subsets in float64 from the values themselves, so a method cannot report a
sum it did not pick.

Methods: ``"auto"`` (default: complete search where affordable, random-subset heuristic first
elsewhere), ``"exact"`` (batched meet in the middle; proves infeasibility, reports rows beyond
its budget in ``budget_exhausted``), ``"fast"`` (heuristic, proves nothing) and ``"brute"``
(the test oracle, m up to about 20).
"""

from sslth.subset_sum import brute as _brute  # noqa: F401  (registers "brute")
from sslth.subset_sum import exact as _exact  # noqa: F401  (registers "exact")
from sslth.subset_sum import fast as _fast  # noqa: F401  (registers "fast", "auto")
from sslth.subset_sum.api import SolveResult, solve
from sslth.subset_sum.registry import METHODS, register

__all__ = ["METHODS", "SolveResult", "register", "solve"]
