"""The search state and its policies (docs/design.md, "The search", step 3).

Each round solves the layers that have no solution yet, certifies the whole network *from the
achieved errors*, and keeps the best candidate. If the certificate meets ε at the requested
density the search stops; otherwise one policy acts:

- the density is over the request: **trade a pick** in the densest layer (k − 1), or, where k
  is fixed or already 1, **grow** it;
- a layer's share of the certificate is over its budget: **repair** its instances left over
  their tolerance with the exact search; if some stay out of reach, **grow** the blocks that
  hold them (more neurons there only, and a re-solve of those instances); otherwise
  **tighten** its tolerance.

Nothing is assumed: the loop stops on the recomputed certificate and density.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from sslth.certificate import Certificate, certify_operators
from sslth.construct import PairSpec
from sslth.device import default_workers
from sslth.errors import ConfigError, TicketNotFound
from sslth.progress import Progress
from sslth.rounding import DTYPES
from sslth.search.floor import rounding_refusal
from sslth.search.layer import BlockTooSmall, LayerSolution, repair, solve_layer, tighten
from sslth.search.options import PruneOptions
from sslth.search.refine import refinable, smaller_sizes
from sslth.search.sizing import SAFETY, LayerPlan, sizes
from sslth.sparse_rounding import deployed_arithmetic
from sslth.target import Target
from sslth.verdicts import measured_density, meets_density, meets_epsilon

MAX_ROUNDS = 8
GROW_ON_DENSITY = 1.25  # n growth when the density is over and k cannot drop
TIGHTEN_RANGE = (0.3, 0.8)  # a tightened tolerance is this fraction of the old one
STALL = 0.97  # with n fixed by the caller, a round that gains less than 3% ends the search


@dataclass
class LayerState:
    """One layer's sizes, tolerance and current solution."""

    n: int
    k: int
    tolerance: float
    solution: LayerSolution | None = None
    repaired: bool = False  # the solution's unsolved instances had their exact re-solve

    def density(self) -> float:
        return measured_density(self.solution.kept(), self.solution.spec.dense_params)


@dataclass
class Candidate:
    """A complete set of layer solutions and what it reached: its certified bound and measured
    density, and the verdicts on them."""

    meets_epsilon: bool
    meets_density: bool
    bound: float
    solutions: list[LayerSolution]
    sizes: list[tuple[int, int, float]] = field(default_factory=list)  # (n, k, tolerance)

    @property
    def score(self) -> tuple[int, float]:
        """Smaller is better: meeting the density first, then the certified bound."""
        return (0 if self.meets_density else 1, self.bound)


def layer_share(certificate: Certificate, i: int) -> float:
    """How much of the certificate's exact part layer i is responsible for: the amount by
    which the bound would drop if the layer's pair were exact (E_i = β_i = 0).

    The bound is linear in err_i with coefficient Π_{j>i} (P_j + E_j), and err_i loses
    E_i (r_{i−1} + err_{i−1}) + β_i, so the share is that product. It counts the layer's
    own error, and its role in amplifying the errors below it: a layer above a zero target
    layer (P = 0, r = 0) still gets its share.
    """
    layer = certificate.layers[i]
    if certificate.gains is not None:  # a graph target: its own paths to the output
        own = layer.pair_error_norm * (layer.input_radius + layer.input_error) + layer.bias_error
        return own * certificate.gains[i]
    error_below = certificate.layers[i - 1].error_bound if i > 0 else 0.0
    gain = math.prod(c.weight_norm + c.pair_error_norm for c in certificate.layers[i + 1 :])
    own = layer.pair_error_norm * (layer.input_radius + error_below) + layer.bias_error
    return own * gain


class Search:
    """The state of one prune: per-layer sizes and solutions, the best candidate so far."""

    def __init__(
        self,
        target: Target,
        options: PruneOptions,
        device: torch.device,
        solver,
        progress: Progress | None = None,
    ) -> None:
        self.target = target
        self.options = options
        self.device = device
        self.solver = solver
        self.workers = options.threads or default_workers(device)
        depth = len(target.layers)
        self.fixed_n = options.per_layer("n", depth)
        self.fixed_k = options.per_layer("k", depth)
        self.states: list[LayerState] = []
        self.budgets: list[float] = []
        # a float32 ticket is certified as its sparse export runs (float64 accumulation)
        self.arithmetic = deployed_arithmetic(DTYPES[options.dtype], device, target)
        self.best: Candidate | None = None
        self.timings: dict[str, float] = {}
        # the caller opens and closes the bar (prune: ``with Progress(...)``); none: silent
        self.progress = progress if progress is not None else Progress(False, "")

    # ---------------------------------------------------------------- plan
    def choose_sizes(self) -> list[LayerPlan]:
        """Choose each layer's n, k and tolerance (:func:`sslth.search.sizing.sizes`).

        Raises:
            TicketNotFound: no random network within ``max_random_params`` is predicted to
                reach the density at a layer's tolerance.
        """
        start = time.perf_counter()
        options = self.options
        plans = sizes(self.target, options)
        for i, (layer, plan) in enumerate(zip(self.target.layers, plans, strict=True)):
            if not plan.found:
                raise TicketNotFound(
                    f"layer {i + 1} ({layer.d_in}->{layer.d_out}): no random network of at "
                    f"most {options.max_random_params:,} parameters is predicted to reach "
                    f"density {options.density:g} with per-weight tolerance "
                    f"{plan.tolerance:.3g} (from ε = {options.epsilon:g}); raise density or ε, "
                    "or max_random_params"
                )
        refusal = rounding_refusal(self.target, plans, options, self.arithmetic)
        if refusal is not None:
            raise TicketNotFound(refusal)
        self.budgets = [plan.budget for plan in plans]
        self.states = [LayerState(p.n, p.k, p.tolerance) for p in plans]
        self.clock("plan", start)
        return plans

    # ---------------------------------------------------------------- rounds
    def run(self) -> Candidate:
        """Solve rounds until the certificate meets ε at the density, or ``MAX_ROUNDS``."""
        last_bound = math.inf
        for round_ in range(MAX_ROUNDS):
            self.solve_missing()
            candidate = self.evaluate()
            self.progress.event(
                f"round {round_ + 1}: certified {candidate.bound:.4g} (exact "
                f"{self.certificate.exact:.4g} + rounding {self.certificate.rounding:.2g}; "
                f"ε = {self.options.epsilon:g}), density {self.density():.4g} "
                f"(limit {self.options.density:g})"
            )
            if candidate.meets_epsilon and candidate.meets_density:
                break
            if self.certificate.rounding >= SAFETY * self.options.epsilon:
                break  # only a different arithmetic helps: prune() says which
            stalled = candidate.bound > STALL * last_bound
            if candidate.meets_density and stalled and self.fixed_n is not None:
                break  # tightening no longer pays: the sizes were fixed by the caller
            last_bound = candidate.bound if candidate.meets_density else math.inf
            if not candidate.meets_density:
                if not self.trade_pick():
                    break
                continue
            self.reduce_error(self.certificate)
        return self.best

    def clock(self, step: str, start: float) -> None:
        """Add the seconds since ``start`` to ``step`` of the report's timings."""
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - start

    def _timed(self, action, *args) -> None:
        start = time.perf_counter()
        action(*args)
        self.clock("re-solve", start)

    def solve_missing(self) -> None:
        """Draw and solve every layer that has no solution (new sizes, or the first round).

        Raises:
            ConfigError: the caller's n and k leave a block with fewer than k neurons of a
                sign.
            TicketNotFound: no larger network within the limits has such blocks filled.
        """
        start = time.perf_counter()
        for i, state in enumerate(self.states):
            if state.solution is not None:
                continue
            while state.solution is None:
                try:
                    state.solution = self.solve(i, state.n, state.k, state.tolerance)
                except BlockTooSmall as error:
                    self.fill_blocks(i, error)
            state.repaired = False
        self.clock("solve", start)

    def solve(self, i: int, n: int, k: int, tolerance: float) -> LayerSolution:
        """Draw layer i's pair at n and solve every instance with k picks within
        ``tolerance`` (blocks short of k neurons of a sign grow unless the caller fixed n).

        Raises:
            BlockTooSmall: a block has fewer than k neurons of a sign and cannot grow.
        """
        return solve_layer(
            self.spec(i, n),
            self.target.layers[i],
            k,
            tolerance,
            index=i,
            device=self.device,
            solver=self.solver,
            workers=self.workers,
            grow_blocks=self.fixed_n is None,
            progress=self.progress,
        )

    def fill_blocks(self, i: int, error: BlockTooSmall) -> None:
        """With n fixed by the caller, a block of layer i's random pair has fewer than k
        neurons of a sign (with n searched, the block itself grows): lower k, or, when the
        caller fixed k too, tell them."""
        state = self.states[i]
        if self.fixed_k is None and state.k > 1:
            state.k -= 1
        else:
            raise ConfigError(str(error)) from None

    def spec(self, i: int, n: int) -> PairSpec:
        return PairSpec.for_layer(self.target.layers[i], n, self.options.seed, i)

    def density(self) -> float:
        kept = sum(state.solution.kept() for state in self.states)
        return measured_density(kept, sum(s.solution.spec.dense_params for s in self.states))

    def certify(self) -> Certificate:
        operators = [state.solution.operator() for state in self.states]
        return certify_operators(self.target, operators, self.options.radius, self.arithmetic)

    def candidate(self) -> Candidate:
        """The current solutions as a candidate: certified (``self.certificate``) and measured."""
        self.certificate = self.certify()
        return Candidate(
            meets_epsilon(self.certificate.bound, self.options.epsilon),
            meets_density(self.density(), self.options.density),
            self.certificate.bound,
            [state.solution for state in self.states],
            [(s.n, s.k, s.tolerance) for s in self.states],
        )

    def evaluate(self) -> Candidate:
        """Certify the current solutions, remember the best candidate, and return this one."""
        start = time.perf_counter()
        candidate = self.candidate()
        self.clock("search certify", start)
        if self.best is None or candidate.score < self.best.score:
            self.best = candidate
        return candidate

    # ---------------------------------------------------------------- policies
    def trade_pick(self) -> bool:
        """Density over the request: one pick less in the densest layer, or a larger n there
        where k cannot drop. False when the caller fixed both."""
        densest = max(range(len(self.states)), key=lambda j: self.states[j].density())
        state = self.states[densest]
        if self.fixed_k is None and state.k > 1:
            state.k -= 1
            change = f"k {state.k + 1} → {state.k}"
        elif self.fixed_n is None:
            before, state.n = state.n, int(math.ceil(state.n * GROW_ON_DENSITY))
            change = f"n {before} → {state.n}"
        else:
            return False
        self.progress.event(f"density over the limit: layer {densest + 1}, {change}")
        self._redraw(state)
        return True

    def reduce_error(self, certificate: Certificate) -> None:
        """Certificate over ε: act on every layer whose share is over its budget (the budgets
        shrink by what the rounding term takes)."""
        room = max(self.options.epsilon - certificate.rounding, 0.0)
        scale = SAFETY * room / max(certificate.exact, 1e-300)
        for i, state in enumerate(self.states):
            share = layer_share(certificate, i)
            if share <= self.budgets[i] * scale:
                continue
            solution = state.solution
            if solution.unsolved_fraction() > 0 and not state.repaired:
                # a few instances over their tolerance can dominate a spectral norm: give them
                # the complete search first, before touching the tolerance of every instance
                self._timed(repair, solution)
                state.repaired = True
                continue
            if solution.unsolved_fraction() > 0 and self.fixed_n is None:
                # what is left was proved out of reach in this random network (or beyond the
                # search's budget): more neurons in those blocks, and only there
                start = time.perf_counter()
                grown = solution.grow_unsolved()
                self.clock("re-solve", start)
                if grown:
                    state.repaired = False
                    continue
            self.tighten(i, scale * self.budgets[i] / max(share, 1e-300))

    def tighten(self, i: int, ratio: float) -> None:
        """A smaller tolerance for layer i (its share over budget by 1/ratio), and a re-solve of
        the instances not within it."""
        state = self.states[i]
        low, high = TIGHTEN_RANGE
        state.tolerance = state.tolerance * max(low, min(high, ratio))
        self._timed(tighten, state.solution, state.tolerance, self.solver)

    def refine(self) -> Candidate:
        """After a success: shrink n of the small layers, one size of
        :func:`~sslth.search.refine.smaller_sizes` at a time, keeping each while the ticket
        still meets ε and the density and the layer stays within its budget.

        Returns:
            The last candidate that met every condition, certified and measured like any other
            (also ``self.best``; the states hold its solutions).
        """
        start = time.perf_counter()
        self.restore(self.best)
        for i, layer in enumerate(self.target.layers):
            if not refinable(layer):
                continue
            fixed_k = None if self.fixed_k is None else self.fixed_k[i]
            state = self.states[i]
            for n, k in smaller_sizes(layer, state.n, fixed_k, self.options.density):
                if not self._try_size(i, n, k):
                    break
        self.clock("refine", start)
        return self.best

    def _try_size(self, i: int, n: int, k: int) -> bool:
        """Solve layer i at (n, k); keep it (the new best) if the ticket still meets ε and the
        density and the layer's share stays within its budget, else put the old one back."""
        state = self.states[i]
        self.progress.event(f"refine: layer {i + 1}, n {state.n} → {n}")
        try:
            solution = self.solve(i, n, k, state.tolerance)
        except BlockTooSmall:
            return False
        before = (state.n, state.k, state.solution)
        state.n, state.k, state.solution = n, k, solution
        candidate = self.candidate()
        if (
            candidate.meets_epsilon
            and candidate.meets_density
            and layer_share(self.certificate, i) <= self.budgets[i]
        ):
            self.best = candidate
            return True
        state.n, state.k, state.solution = before
        return False

    def restore(self, candidate: Candidate) -> None:
        """Put the states on ``candidate``'s solutions and sizes."""
        for state, solution, (n, k, tolerance) in zip(
            self.states, candidate.solutions, candidate.sizes, strict=True
        ):
            state.n, state.k, state.tolerance, state.solution = n, k, tolerance, solution

    def _redraw(self, state: LayerState) -> None:
        state.solution = None
