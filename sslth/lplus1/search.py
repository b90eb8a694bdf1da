"""``prune(..., construction="l+1")``: plan, solve, certify, and adjust until ε and the density
are met (the same steps as the 2l search, with simpler policies):

- a layer whose instances a random draw left without a solution within its tolerance, or a
  group with fewer than k candidates of a sign: its input copies ρ grow (× 1.25);
- a layer whose share of the certificate is over its budget: its tolerance is tightened
  (× 0.3 to 0.8 by how far over), and the planner chooses ρ and k again.
"""

from __future__ import annotations

import math
import time

import torch

from sslth.errors import ConfigError, TicketNotFound
from sslth.lplus1.layout import LPlus1Masks, LPlus1Spec
from sslth.lplus1.plan import layer_shares, plan_for
from sslth.lplus1.solve import LayerPicks, TooFewCandidates, solve_layer
from sslth.lplus1.ticket import LPlus1Ticket
from sslth.ops import RELU
from sslth.rounding import DTYPES
from sslth.search.sizing import SAFETY
from sslth.target import Target
from sslth.verdicts import measured_density, meets_density, meets_epsilon

MAX_ROUNDS = 12
_GROWTH = 1.25


def check_target(target: Target) -> None:
    """The l+1 construction takes dense MLPs: Linear and one ReLU between two layers.

    Raises:
        ConfigError: a conv layer or another operation, in one line.
    """
    if target.has_conv:
        raise ConfigError(
            "construction='l+1' does not support convolutional targets yet; use the default "
            "construction='2l'"
        )
    for index, group in enumerate(target.ops):
        names = [op.name for op in group]
        inner = 0 < index < len(target.layers)
        if names != ([RELU] if inner else []):
            raise ConfigError(
                f"construction='l+1' takes a plain MLP (Linear, ReLU, …, Linear); this target "
                f"has {names or 'no ReLU'} before layer {index + 1}"
            )
    if len(target.layers) < 2:
        raise ConfigError(
            "construction='l+1' needs at least 2 layers (with 1 layer it is the 2l pair: use "
            "construction='2l')"
        )


def check_request(target: Target, options) -> None:
    """What ``prune`` and ``plan`` refuse alike: a target :func:`check_target` refuses, and n
    or k fixed by the caller.

    Raises:
        ConfigError: in one line.
    """
    check_target(target)
    if options.n is not None or options.k is not None:
        raise ConfigError("construction='l+1' searches its own ρ and k: leave n and k unset")


def _masks(spec: LPlus1Spec, picks: list[LayerPicks]) -> LPlus1Masks:
    """The module masks of the picks: module t keeps its copy rows' picks; module 0 keeps the
    univariate neurons some pick uses; a constant neuron keeps only its bias, when used."""
    weights, biases = [], []
    for t in range(spec.depth + 1):
        out, inp = spec.module_shape(t)
        weight = torch.zeros(out, inp, dtype=torch.bool)
        bias = torch.zeros(out, dtype=torch.bool) if spec.has_constants(t) else None
        used = picks[t].used_inputs if t < spec.depth else None  # layer t+1's picks, 0-based t
        if t == 0:
            d_in, size = spec.dims[0], spec.copy_width(0)
            neurons = torch.arange(size)
            weight[neurons, neurons // (size // d_in)] = used[:size]
        else:
            weight[: spec.copy_width(t)] = picks[t - 1].weight_mask
        if bias is not None:
            start = spec.copy_width(t)
            bias[start:] = used[start:]
        weights.append(weight)
        biases.append(bias)
    return LPlus1Masks(weights, biases)


def _solve_all(spec, target, plan, options) -> list[LayerPicks] | int:
    """Every layer's picks, or the 0-based index of a layer whose groups are too thin."""
    picks = []
    for t in range(1, spec.depth + 1):
        try:
            picks.append(
                solve_layer(
                    spec,
                    target,
                    t,
                    plan.picks[t - 1],
                    plan.tolerances[t - 1],
                    method=options.method,
                    seed=options.seed,
                )
            )
        except TooFewCandidates:
            return t - 1
    return picks


def prune_lplus1(target: Target, options) -> LPlus1Ticket:
    """The l+1 search (see the module docstring) for ``options`` (a :class:`PruneOptions`).

    Raises:
        TicketNotFound: no ticket met ε and the density within ``max_random_params``.
        ConfigError: the target is not a dense MLP, or n/k were given.
    """
    check_request(target, options)
    start = time.perf_counter()
    depth = len(target.layers)
    scales, minimum = [1.0] * depth, [1] * depth
    best, best_key = None, None
    for _ in range(MAX_ROUNDS):
        plan = plan_for(target, options, scales=scales, minimum=minimum)
        if plan is None:
            break
        spec = LPlus1Spec(
            tuple(target.widths),
            tuple(layer.bias is not None for layer in target.layers),
            plan.copies,
            options.seed,
        )
        picks = _solve_all(spec, target, plan, options)
        if isinstance(picks, int):
            minimum[picks] = max(minimum[picks], math.ceil(spec.copies[picks] * _GROWTH))
            continue
        ticket = _ticket(target, spec, _masks(spec, picks), plan, options)
        certificate = ticket.certificate()
        density = measured_density(ticket.lplus1_masks.kept, spec.random_params)
        dense_enough = meets_density(density, options.density)
        key = (not dense_enough, certificate.bound)
        if best_key is None or key < best_key:
            best, best_key = ticket, key
        if meets_epsilon(certificate.bound, options.epsilon) and dense_enough:
            break
        if certificate.rounding >= SAFETY * options.epsilon:
            break  # the arithmetic alone leaves no room: no size or tolerance can help
        _adjust(spec, picks, certificate, options, scales, minimum)
    if best is None:
        raise TicketNotFound(
            f"no l+1 network within max_random_params = {options.max_random_params:,} is "
            f"predicted to reach ε = {options.epsilon:g} at density <= {options.density:g}; "
            "raise the density, ε or max_random_params"
        )
    report = best.evaluate(
        samples=options.empirical_samples, timings={"search": time.perf_counter() - start}
    )
    if report.rounding_error >= SAFETY * options.epsilon:
        raise TicketNotFound(
            f"the {report.arithmetic} rounding term alone is {report.rounding_error:.3g}, beyond "
            f"what ε = {options.epsilon:g} leaves room for: use dtype='float64', or raise ε",
            best=best,
        )
    if not (report.meets_epsilon and report.meets_density):
        raise TicketNotFound(
            f"no l+1 ticket met ε = {options.epsilon:g} at density <= {options.density:g}: the "
            f"best reached certified error {report.certified_error:.4g} at density "
            f"{report.density:.4g} with ρ = {list(best.spec.copies)}, k = {report.k}. Raise "
            "density or ε, or max_random_params.",
            best=best,
        )
    return best


def _ticket(target, spec, masks, plan, options) -> LPlus1Ticket:
    return LPlus1Ticket(
        target,
        spec,
        masks,
        seed=options.seed,
        epsilon=options.epsilon,
        radius=options.radius,
        tolerances=list(plan.tolerances),
        density_limit=options.density,
        dtype=DTYPES[options.dtype],
        device="cpu" if options.device is None else options.device,
        solver=options.method if isinstance(options.method, str) else repr(options.method),
    )


def _adjust(spec, picks, certificate, options, scales, minimum) -> None:
    """One policy step: grow the input copies of layers with unsolved instances, else tighten
    the tolerance of the layers over their budget."""
    unsolved = [t for t, p in enumerate(picks) if not bool(p.solved.all())]
    for t in unsolved:
        minimum[t] = max(minimum[t], math.ceil(spec.copies[t] * _GROWTH))
    if unsolved:
        return
    room = max(options.epsilon - certificate.rounding, 0.0)
    budget = SAFETY * room / spec.depth
    for t, share in enumerate(layer_shares(certificate.layers, spec.depth)):
        if share > budget:
            scales[t] *= min(0.8, max(0.3, budget / share))
