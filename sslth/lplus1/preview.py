"""``sslth.plan(..., construction="l+1")``: the sizes the l+1 search starts from, without solving.

Per target layer t the row shows what the first round of :func:`sslth.lplus1.search.prune_lplus1`
uses, from the same function (:func:`sslth.lplus1.plan.plan_for`): ``n`` is ρ_{t−1}, the copies
of each input the layer's instances choose from (for t = 1, the univariate neurons per input and
sign), ``k`` is k_t, the tolerance δ_t; m is module t's weights (and module 0's for t = 1, as
:meth:`LPlus1Spec.layer_params` charges them). Time and memory are not estimated: the estimates
of :mod:`sslth.search.estimate` model the 2l solve.
"""

from __future__ import annotations

import math
import time

from sslth import theory
from sslth.lplus1.layout import LPlus1Spec, replicated_layer
from sslth.lplus1.plan import LPlus1Plan, plan_for
from sslth.lplus1.search import check_request
from sslth.search.preview import BEYOND_PARAMS, C_AMP, LayerPreview, Plan, _bytes
from sslth.search.sizing import expected_kept, instance_count
from sslth.target import Target, TargetLayer


def _spec(target: Target, sizes: LPlus1Plan, seed: int) -> LPlus1Spec:
    biases = tuple(layer.bias is not None for layer in target.layers)
    return LPlus1Spec(tuple(target.widths), biases, sizes.copies, seed)


def _instances_and_kept(layer: TargetLayer, t: int, spec: LPlus1Spec, k: int) -> tuple[int, float]:
    """Layer t's (1-based) subset-sum instances and expected kept weights: layer 1 is the 2l
    pair of C_1 W_1 (two instances per weight, a sign each); a later one has one instance per
    copy row and input (and bias), each keeping exactly k weights."""
    copies = replicated_layer(layer, spec.rho(t))
    if t == 1:
        return instance_count(copies), expected_kept(copies, spec.copies[0], k)
    instances = copies.weight.numel() + (0 if copies.bias is None else copies.bias.numel())
    return instances, float(k * instances)


def _rows(target: Target, opts, sizes: LPlus1Plan | None, beyond: LPlus1Plan | None):
    """One :class:`LayerPreview` per target layer; when ``sizes`` is None (beyond
    ``max_random_params``) n, k and m are None and ``needed_n``/``needed_params`` show
    ``beyond``'s."""
    depth, rows = len(target.layers), []
    shown = sizes if sizes is not None else beyond
    spec = None if shown is None else _spec(target, shown, opts.seed)
    for t, layer in enumerate(target.layers, start=1):
        paper_n = math.inf
        if 0 < opts.density < 1:
            paper_n = theory.paper_neurons_per_input(
                C_AMP, depth, layer.d_in, layer.d_out, opts.epsilon, opts.density
            )
        row = dict(
            index=t,
            shape=layer.kind.label(layer.d_in, layer.d_out),
            n=None,
            k=None,
            tolerance=math.nan,
            instances=0,
            target_params=layer.weight.numel() + (0 if layer.bias is None else layer.bias.numel()),
            random_params=None,
            expected_density=None,
            paper_n=paper_n,
            seconds=None,
            memory_bytes=None,
            transient_bytes=None,
        )
        if spec is not None:
            k = shown.picks[t - 1]
            instances, kept = _instances_and_kept(layer, t, spec, k)
            params = spec.layer_params(t)
            row.update(tolerance=shown.tolerances[t - 1], instances=instances)
            if sizes is not None:
                row.update(
                    n=spec.copies[t - 1], k=k, random_params=params, expected_density=kept / params
                )
            else:
                row.update(needed_n=spec.copies[t - 1], needed_params=params)
        rows.append(LayerPreview(**row))
    return rows


def _warning(opts, beyond: LPlus1Plan | None, rows) -> str:
    """The one line a refused request gets (prune would raise TicketNotFound)."""
    if beyond is None:
        return (
            f"no l+1 network of up to {BEYOND_PARAMS:.0e} weights per module is predicted to "
            f"reach ε = {opts.epsilon:g} at density {opts.density:g}: raise density or ε"
        )
    needed = sum(row.needed_params for row in rows)
    return (
        f"the l+1 network needs ρ = {list(beyond.copies)}, k = {list(beyond.picks)} "
        f"(m = {needed:,} random weights, about {_bytes(4 * needed)} as float32), over "
        f"max_random_params = {opts.max_random_params:,}: prune would refuse; raise density "
        "or ε (or max_random_params, if the machine holds it)"
    )


def plan_lplus1_preview(target: Target, opts, *, started: float, device: str) -> Plan:
    """The :class:`Plan` of an l+1 request (see the module docstring).

    Args:
        target: the validated target.
        opts: the request (:class:`PruneOptions` with ``construction="l+1"``).
        started: ``time.perf_counter()`` when ``plan`` was called.
        device: the resolved device, as text.

    Raises:
        ConfigError: a target the l+1 construction does not take, or n/k fixed.
    """
    check_request(target, opts)
    sizing = time.perf_counter()
    sizes = plan_for(target, opts)  # exactly the first round of the search
    sizing = time.perf_counter() - sizing
    beyond = plan_for(target, opts, max_params=BEYOND_PARAMS) if sizes is None else None
    rows = _rows(target, opts, sizes, beyond)
    return Plan(
        layers=tuple(rows),
        epsilon=opts.epsilon,
        density=opts.density,
        radius=opts.radius,
        device=device,
        solver=opts.method if isinstance(opts.method, str) else repr(opts.method),
        widths=target.widths,
        seconds=None,
        report_seconds=None,
        memory_bytes=None,
        memory_grown_bytes=None,
        process_bytes=0,
        available_bytes=None,
        available_what="",
        planning_seconds=time.perf_counter() - started,
        sizing_seconds=sizing,
        warnings=() if sizes is not None else (_warning(opts, beyond, rows),),
        construction="l+1",
    )


__all__ = ["plan_lplus1_preview"]
