"""Refine: after a first success, shrink n of the small layers while the ticket still meets ε,
the layer stays within its budget and the density within the request (docs/design.md, "The
search", step 4)."""

from __future__ import annotations

from sslth.search.layer import BlockTooSmall, solve_layer
from sslth.search.loop import Candidate, Search, layer_share
from sslth.search.plan import choose_k

REFINE_MAX_INSTANCES = 200_000  # larger layers are not refined: a re-solve costs too much
REFINE_STEPS = 6
SHRINK = 8  # each step removes n // SHRINK neurons per input (at least one)


def refine(search: Search) -> Candidate:
    """Greedy, layer by layer: try a smaller n, keep it while every condition still holds.

    Args:
        search: a search whose best candidate meets ε and the density, with its states on that
            candidate.

    Returns:
        The refined candidate (also stored as ``search.best``).
    """
    options = search.options
    for i, layer in enumerate(search.target.layers):
        state = search.states[i]
        if layer.d_out * layer.kind.taps * (2 * layer.d_in + 1) > REFINE_MAX_INSTANCES:
            continue
        for _ in range(REFINE_STEPS):
            n_try = state.n - max(1, state.n // SHRINK)
            if n_try < 1:
                break
            k_try = (
                search.fixed_k[i]
                if search.fixed_k is not None
                else choose_k(layer, n_try, options.density)
            )
            if k_try < 1 or k_try > n_try:
                break
            search.progress.event(f"refine: layer {i + 1}, n {state.n} → {n_try}")
            try:
                solution = solve_layer(
                    search.spec(i, n_try),
                    layer,
                    k_try,
                    state.tolerance,
                    index=i,
                    device=search.device,
                    solver=search.solver,
                    workers=search.workers,
                    progress=search.progress,
                )
            except BlockTooSmall:
                break
            previous = state.solution
            state.solution = solution
            certificate = search.certify()
            if (
                certificate.bound <= options.epsilon
                and layer_share(certificate, i) <= search.budgets[i]
                and search.density() <= options.density
            ):
                state.n, state.k = n_try, k_try
            else:
                state.solution = previous
                break
    search.best = Candidate(
        True,
        0.0,
        [s.solution for s in search.states],
        [(s.n, s.k, s.tolerance) for s in search.states],
    )
    return search.best
