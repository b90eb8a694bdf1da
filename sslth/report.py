"""The ticket report: every figure recomputed from the masks and weights of the ticket."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field

import torch

from sslth._version import __version__
from sslth.certificate import Certificate, PairOperator
from sslth.construct import PairSpec, input_of_neuron
from sslth.target import Target
from sslth.verdicts import measured_density, meets_density, meets_epsilon


@dataclass
class LayerReport:
    d_in: int
    d_out: int
    n: int  # neurons_per_input: a block holds 2n hidden neurons (as planned)
    k: int  # picks per (output, input, sign); -1 if it differs between instances
    k_min: int
    k_max: int
    hidden: int
    grown_blocks: int  # blocks the search gave more than n neurons per sign pair
    n_max: int  # the most neurons per input of any block
    random_params: int
    kept_params: int
    density: float
    tolerance: float  # per-weight target tolerance the solver was given
    max_weight_error: float  # max over |A − W| and |B − W| (and the bias)
    mean_weight_error: float
    weights_over_tolerance: int
    pair_error_norm: float  # E_i
    bias_error: float  # β_i
    error_bound: float  # err_i of the certificate (exact arithmetic)
    rounding_bound: float = 0.0  # Δ_i: floating-point deviation of the module after pair i


@dataclass
class Report:
    epsilon: float
    radius: float
    certified_error: float  # certified_error_exact + rounding_error: the number that is certified
    certified_error_exact: float  # the masked network in exact arithmetic
    rounding_error: float  # the module's floating-point rounding, in ``arithmetic``
    arithmetic: str  # the arithmetic certified: "float64", "float32", …
    empirical_error: float
    density: float  # kept / all weights of the random network (the paper's count)
    density_limit: float  # the density asked for
    density_block: float  # kept / (block-diagonal U entries + V entries)
    random_params: int
    ticket_params: int
    target_params: int
    overparameterization: float  # random_params / target_params
    ticket_to_target: float  # ticket_params / target_params
    seed: int
    device: str
    solver: str
    layers: list[LayerReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    construction: str = "2l"  # "2l" (pairs, the paper's) or "l+1" (Burkholz 2022's copies)

    @property
    def n(self) -> list[int]:
        return [layer.n for layer in self.layers]

    @property
    def k(self) -> list[int]:
        return [layer.k for layer in self.layers]

    @property
    def meets_epsilon(self) -> bool:
        return meets_epsilon(self.certified_error, self.epsilon)

    @property
    def meets_density(self) -> bool:
        return meets_density(self.density, self.density_limit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        data = dict(data)
        data["layers"] = [LayerReport(**layer) for layer in data.get("layers", [])]
        return cls(**data)

    def __str__(self) -> str:
        ok = "yes" if self.meets_epsilon else "NO"
        dense_ok = "yes" if self.meets_density else "NO"
        lines = [
            "sslth ticket report",
            f"  certified error   {self.certified_error:.6g}   (ε = {self.epsilon:g}, "
            f"radius {self.radius:g}; within ε: {ok})",
            f"    = exact {self.certified_error_exact:.6g} + rounding {self.rounding_error:.3g}"
            f"   (the module in {self.arithmetic}, inputs with ||x||_2 <= {self.radius:g})",
            f"  empirical error   {self.empirical_error:.6g}   "
            "(sphere and ball samples + gradient ascent)",
            f"  density           {self.density:.6g}   (kept / random params, limit "
            f"{self.density_limit:g}: {dense_ok}; block-diagonal count {self.density_block:.6g})",
            f"  params            random {self.random_params:,}   ticket {self.ticket_params:,}   "
            f"target {self.target_params:,}",
            f"  overparam. m/m_t  {self.overparameterization:.4g}   ticket/target "
            f"{self.ticket_to_target:.4g}",
            f"  seed {self.seed}   device {self.device}   solver {self.solver}"
            + ("" if self.construction == "2l" else f"   construction {self.construction}"),
            "",
            "  layer  d_in  d_out     n     k   hidden   density    tolerance   max err     "
            "E_i         err bound",
        ]
        for index, layer in enumerate(self.layers, start=1):
            k = str(layer.k) if layer.k >= 0 else f"{layer.k_min}-{layer.k_max}"
            lines.append(
                f"  {index:>5} {layer.d_in:>5} {layer.d_out:>6} {layer.n:>5} {k:>5} "
                f"{layer.hidden:>8} {layer.density:>9.4g} {layer.tolerance:>12.4g} "
                f"{layer.max_weight_error:>9.3g} {layer.pair_error_norm:>11.4g} "
                f"{layer.error_bound:>11.4g}"
            )
        if self.timings:
            steps = "   ".join(f"{name} {seconds:.2f}s" for name, seconds in self.timings.items())
            lines += ["", f"  time  {steps}"]
        return "\n".join(lines)


def versions() -> dict[str, str]:
    return {
        "sslth": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def picks_per_instance(
    spec: PairSpec, diagonal: torch.Tensor, second_mask: torch.Tensor
) -> torch.Tensor:
    """Number of kept V entries per instance (matrix-view row, input, sign), read off the
    masks: the ticket's k. The bias block counts only at the kind's bias tap."""
    matrix = spec.kind.to_rows(second_mask)
    sign = diagonal.to(second_mask.device)
    blocks = input_of_neuron(spec).to(second_mask.device)

    def per_block(selected: torch.Tensor) -> torch.Tensor:
        # kept entries of each (row, block) among the neurons of one sign
        counts = torch.zeros(spec.rows, spec.blocks, dtype=torch.int32, device=matrix.device)
        columns = selected.nonzero().squeeze(1)
        counts.index_add_(1, blocks[columns], matrix[:, columns].to(torch.int32))
        return counts

    positive, negative = per_block(sign > 0), per_block(sign < 0)
    parts = [positive[:, : spec.d_in].reshape(-1), negative[:, : spec.d_in].reshape(-1)]
    if spec.has_bias:
        bias_rows = positive.view(spec.d_out, spec.taps, spec.blocks)[:, spec.kind.bias_tap]
        parts.append(bias_rows[:, spec.d_in])
    return torch.cat(parts)


def layer_report(
    spec: PairSpec,
    layer_target,
    operator: PairOperator,
    certificate_layer,
    first_weight_mask: torch.Tensor,
    first_bias_mask: torch.Tensor | None,
    second_mask: torch.Tensor,
    diagonal: torch.Tensor,
    tolerance: float,
) -> LayerReport:
    kept = int(first_weight_mask.count_nonzero()) + int(second_mask.count_nonzero())
    if first_bias_mask is not None:
        kept += int(first_bias_mask.count_nonzero())
    picks = picks_per_instance(spec, diagonal, second_mask.bool())
    k_min, k_max = int(picks.min()), int(picks.max())
    w = layer_target.weight.to(operator.positive.device)
    errors = [(operator.positive - w).abs().reshape(-1), (operator.negative - w).abs().reshape(-1)]
    if layer_target.bias is not None:
        errors.append((operator.offset - layer_target.bias.to(w.device)).abs())
    errors = torch.cat(errors)
    return LayerReport(
        d_in=spec.d_in,
        d_out=spec.d_out,
        n=spec.neurons_per_input,
        grown_blocks=sum(1 for _, n in spec.grown if n > spec.neurons_per_input),
        n_max=max(spec.block_neurons),
        k=k_min if k_min == k_max else -1,
        k_min=k_min,
        k_max=k_max,
        hidden=spec.hidden,
        random_params=spec.dense_params,
        kept_params=kept,
        density=measured_density(kept, spec.dense_params),
        tolerance=float(tolerance),
        max_weight_error=float(errors.max()),
        mean_weight_error=float(errors.mean()),
        weights_over_tolerance=int((errors >= tolerance).sum()),
        pair_error_norm=certificate_layer.pair_error_norm,
        bias_error=certificate_layer.bias_error,
        error_bound=certificate_layer.error_bound,
        rounding_bound=certificate_layer.rounding_bound,
    )


def build_report(
    *,
    target: Target,
    specs: list[PairSpec],
    layer_reports: list[LayerReport],
    certificate: Certificate,
    empirical: float,
    epsilon: float,
    density_limit: float,
    seed: int,
    device: str,
    solver: str,
    timings: dict[str, float],
) -> Report:
    return report_from_counts(
        kept=sum(layer.kept_params for layer in layer_reports),
        random_params=sum(spec.dense_params for spec in specs),
        block_params=sum(spec.block_params for spec in specs),
        target_params=target.num_params,
        certificate=certificate,
        empirical=empirical,
        epsilon=float(epsilon),
        density_limit=float(density_limit),
        seed=int(seed),
        device=device,
        solver=solver,
        layers=layer_reports,
        timings=timings,
    )


def report_from_counts(
    *,
    kept: int,
    random_params: int,
    block_params: int,
    target_params: int,
    certificate: Certificate,
    empirical: float,
    epsilon: float,
    density_limit: float,
    seed: int,
    device,
    solver: str,
    layers: list[LayerReport],
    timings: dict[str, float],
    construction: str = "2l",
) -> Report:
    """A :class:`Report` from a ticket's parameter counts and certificate: the densities and
    ratios are derived here, for the 2l and the l+1 tickets alike."""
    return Report(
        epsilon=epsilon,
        radius=certificate.radius,
        certified_error=certificate.bound,
        certified_error_exact=certificate.exact,
        rounding_error=certificate.rounding,
        arithmetic=certificate.arithmetic,
        empirical_error=empirical,
        density=measured_density(kept, random_params),
        density_limit=density_limit,
        density_block=kept / block_params,
        random_params=random_params,
        ticket_params=kept,
        target_params=target_params,
        overparameterization=random_params / target_params,
        ticket_to_target=kept / target_params,
        seed=seed,
        device=str(device),
        solver=solver,
        layers=layers,
        timings={name: round(seconds, 4) for name, seconds in timings.items()},
        versions=versions(),
        construction=construction,
    )
