"""``sslth.prune``: ε and density in, a certified ticket out.

The search reads as its steps (docs/design.md, "The search"):

1. **options** (:mod:`sslth.search.options`): one dataclass, validated;
2. **sizes** (:mod:`sslth.search.sizing`): per-layer tolerance, n and k, without solving;
3. **solve rounds** (:mod:`sslth.search.loop`): solve, certify from the achieved errors, and
   apply one policy (trade a pick, repair, grow, tighten) until ε and the density are met;
4. **refine** (:mod:`sslth.search.refine`): shrink n of the small layers;
5. **ticket**: the masks of the best candidate, with a report recomputed from them.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from sslth.device import intra_op_threads, resolve_device
from sslth.errors import TicketNotFound
from sslth.fields import describe
from sslth.progress import Progress
from sslth.rounding import DTYPES
from sslth.search.loop import Candidate, Search
from sslth.search.options import PruneOptions, as_options
from sslth.search.sizing import SAFETY
from sslth.sizes import check_random_params, layer_sizes
from sslth.subset_sum import make_solver
from sslth.target import as_target
from sslth.ticket import Ticket


def prune(target, epsilon: float | PruneOptions, density: float | None = None, **options) -> Ticket:
    start = time.perf_counter()
    options = as_options(epsilon, density, options, caller="prune")
    target = as_target(target, input_shape=options.input_shape)
    check_random_params(layer_sizes(target), options.max_random_params, options.construction)
    if options.construction == "l+1":
        from sslth.lplus1.search import prune_lplus1

        with intra_op_threads(1):
            return prune_lplus1(target, options)
    device, solver = resolve_device(options.device), make_solver(options.method)
    with intra_op_threads(1):
        # the bar's ticker thread stops however the search ends (an error included)
        with Progress(options.progress, "sslth: solving") as progress:
            search = Search(target, options, device, solver, progress)
            search.choose_sizes()
            best = search.run()
            if options.refine and search.fixed_n is None:
                if best.meets_epsilon and best.meets_density:
                    best = search.refine()
        return _ticket(search, best, start)


prune.__doc__ = f"""Find a mask of a random 2l-layer network whose subnetwork approximates
    ``target`` within ``epsilon`` (certified, over the ball of radius ``radius``) with at most
    ``density`` of the random network's weights kept.

    Args:
        target: an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` (see
            :func:`sslth.as_target`), or a list of weights or (weight, bias) pairs. It is only
            read, never modified.
        epsilon, density: see below; or, instead of them and ``options``, a whole
            :class:`sslth.PruneOptions` as ``epsilon`` (``prune(target, options)``).
        **options: the fields of :class:`sslth.PruneOptions`:

{describe(PruneOptions, indent=12)}

    Returns:
        The :class:`Ticket`, its report recomputed from the masks and random weights it holds.

    Raises:
        TicketNotFound: no ticket met both ε and the density within ``max_random_params``;
            ``error.best`` is the closest one.
        ConfigError: an unknown or invalid option (the message names it).
        TargetError: a target sslth cannot take (the message names the layer).
    """


def _ticket(search: Search, best: Candidate, start: float) -> Ticket:
    """The ticket of the best candidate, its report recomputed; TicketNotFound if it misses."""
    options = search.options
    ticket = Ticket(
        search.target,
        [s.spec for s in best.solutions],
        [s.masks() for s in best.solutions],
        seed=options.seed,
        epsilon=options.epsilon,
        radius=options.radius,
        tolerances=[s.tolerance for s in best.solutions],
        density_limit=options.density,
        dtype=DTYPES[options.dtype],
        device=search.device,
        solver=options.method if isinstance(options.method, str) else repr(options.method),
    )
    # the dense network is not built here: the report is recomputed from the masks and the
    # random weights they can keep, and ``ticket.network`` regenerates the rest from the seed
    report = ticket.evaluate(
        samples=options.empirical_samples, timings=search.timings, progress=options.progress
    )
    if options.progress:
        tqdm.write(
            f"sslth: certified error {report.certified_error:.4g} (ε = {options.epsilon:g}), "
            f"density {report.density:.4g}",
            file=sys.stderr,
        )
    if report.rounding_error >= options.epsilon * SAFETY and report.meets_density:
        remedy = (
            "Use dtype='float64' (its rounding is ~1e-9 of float32's), or raise ε."
            if report.arithmetic != "float64"
            else "Raise ε, or lower the radius."
        )
        raise TicketNotFound(
            f"the {report.arithmetic} rounding term alone is {report.rounding_error:.3g}, beyond "
            f"what ε = {options.epsilon:g} leaves room for (the exact part is "
            f"{report.certified_error_exact:.3g}): a {report.arithmetic} module cannot be "
            f"certified to this ε. {remedy}",
            best=ticket,
        )
    if not (report.meets_epsilon and report.meets_density):
        sizes = best.sizes
        raise TicketNotFound(
            f"no ticket met ε = {options.epsilon:g} at density <= {options.density:g}: the best "
            f"reached certified error {report.certified_error:.4g} at density "
            f"{report.density:.4g} with n = {[s[0] for s in sizes]}, k = "
            f"{[s[1] for s in sizes]}. "
            + (
                "Leave n and k to the automatic search, or raise them. "
                if search.fixed_n is not None
                else ""
            )
            + "Raise density or ε, or max_random_params.",
            best=ticket,
        )
    return ticket


__all__ = ["PruneOptions", "TicketNotFound", "prune"]
