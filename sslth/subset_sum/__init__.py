"""Batched fixed-size subset sum: pick exactly k of m candidates whose sum is near a target.

The public entry point is :func:`solve`. Solvers are classes constructed with their options
(:class:`Exact`, :class:`Fast`, :class:`Auto`, :class:`Brute`), named in :data:`SOLVERS` (see
:mod:`sslth.subset_sum.registry`). Whatever a solver returns, :func:`solve` recomputes the
error of the picked subsets in float64 from the values themselves, so a solver cannot report a
sum it did not pick.

Methods: ``"auto"`` (default: complete search where affordable, random-subset heuristic first
elsewhere), ``"exact"`` (batched meet in the middle; proves infeasibility, reports rows beyond
its budget in ``budget_exhausted``), ``"fast"`` (heuristic, proves nothing) and ``"brute"``
(the test oracle, m up to about 20).
"""

from sslth.subset_sum.api import SolveResult, solve
from sslth.subset_sum.brute import Brute
from sslth.subset_sum.exact import Exact
from sslth.subset_sum.fast import Auto, Fast
from sslth.subset_sum.registry import SOLVERS, Solver, make_solver, register

__all__ = [
    "SOLVERS",
    "Auto",
    "Brute",
    "Exact",
    "Fast",
    "SolveResult",
    "Solver",
    "make_solver",
    "register",
    "solve",
]
