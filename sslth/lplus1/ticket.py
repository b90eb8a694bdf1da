"""The l+1 ticket: a :class:`sslth.Ticket` whose random network has l+1 layers of copies.

Same public surface as a 2l ticket: ``network`` (masks through ``torch.nn.utils.prune``, in the
ticket's dtype, built on first use from the seed), ``export``, ``evaluate`` (the report
recomputed from the network as it runs), ``save`` and :func:`sslth.load`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslth.certificate import empirical_error
from sslth.errors import NotATicketError, SslthError
from sslth.lplus1.certify import LPlus1Certificate, certify_lplus1
from sslth.lplus1.layout import (
    LPlus1Masks,
    LPlus1Spec,
    build_network,
    module_bias,
    module_weight,
)
from sslth.masks import plain_copy
from sslth.report import LayerReport, Report, report_from_counts
from sslth.target import Target
from sslth.ticket import Ticket, _pack, base_payload, read_header, write_payload
from sslth.ticketfile import (
    HEADER_KEYS,
    METADATA_KEYS,
    check_keys,
    check_target_tensor,
)
from sslth.verdicts import measured_density

CONSTRUCTION = "l+1"


class LPlus1Ticket(Ticket):
    """A certified ticket of the l+1 construction (docs/design.md, "The l+1 construction").

    ``spec`` holds the sizes (ρ per layer), ``lplus1_masks`` one weight and bias mask per
    module; ``network`` is Linear, ReLU, …, Linear with l+1 Linear modules.
    """

    construction = CONSTRUCTION

    def __init__(
        self, target: Target, spec: LPlus1Spec, masks: LPlus1Masks, **settings: Any
    ) -> None:
        """``settings`` are :class:`~sslth.ticket.Ticket`'s keywords (``seed``, ``epsilon``,
        ``radius``, ``tolerances``, ``density_limit``, ``dtype``, ``device``, ``solver``,
        ``report``), passed through so the two constructions cannot drift apart; the 2l
        ``specs`` and ``masks`` stay empty, the l+1 layout is ``spec`` and ``masks``."""
        super().__init__(target, [], [], **settings)
        self.spec = spec
        self.lplus1_masks = masks

    def _build_network(self) -> nn.Sequential:
        network = build_network(self.spec, self.lplus1_masks)
        return network.to(device=self.device, dtype=self.dtype)

    def export(
        self, compact: bool = False, *, sparse: bool = False, accumulate: str | None = None
    ) -> nn.Sequential:
        """A plain ``nn.Sequential`` with the masks made permanent (pruned weights are zero),
        in the ticket's dtype and device.

        Args:
            compact, sparse, accumulate: not implemented for l+1 tickets (refused): the sparse
                module and its certificate (:mod:`sslth.sparse`) are built from random
                *pairs*, and an l+1 network has none (docs/design.md §8).

        Raises:
            SslthError: ``compact`` or ``sparse`` asked for, in one line.
        """
        if sparse or accumulate is not None:
            raise SslthError(
                "export(sparse=True) is not implemented for l+1 tickets: the sparse module and "
                "its certificate are built from 2l pairs; use export() (dense, masks applied)"
            )
        if compact:
            raise SslthError("export(compact=True) is not implemented for l+1 tickets yet")
        return nn.Sequential(*[plain_copy(module) for module in self.network])

    def certificate(self) -> LPlus1Certificate:
        """The certificate of ``network`` as it runs (no empirical check)."""
        return certify_lplus1(self.spec, self.target, self.network, self.radius)

    def evaluate(
        self,
        *,
        samples: int = 10_000,
        ascent_steps: int = 100,
        timings: dict[str, float] | None = None,
        progress: bool = False,
    ) -> Report:
        """Recompute the report from the network as it runs: certificate, empirical error,
        densities and k read off the masks. Stored in ``self.report`` and returned.

        Args:
            samples: random points of the empirical error (then gradient ascent).
            ascent_steps: steps of its projected gradient ascent.
            timings: seconds of earlier steps, carried into the report.
            progress: unused (kept for the :class:`Ticket` signature).
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise SslthError(f"samples must be a positive integer, got {samples!r}")
        timings = dict(timings or {})
        start = time.perf_counter()
        certificate = self.certificate()
        timings["certify"] = time.perf_counter() - start
        start = time.perf_counter()
        exact = nn.Sequential(*[plain_copy(m) for m in self.network]).to(
            device="cpu", dtype=torch.float64
        )
        with torch.enable_grad():
            empirical = empirical_error(
                self.target,
                [],
                self.radius,
                samples=samples,
                ascent_steps=ascent_steps,
                seed=self.seed,
                device="cpu",
                forward=exact,
            )
        timings["empirical"] = time.perf_counter() - start
        self.report = _report(self, certificate, empirical, timings)
        return self.report

    def save(self, path: str | Path) -> Path:
        """Write the ticket to one file (see :meth:`Ticket.save`): the target, the masks, the
        sizes and seed, checksums of the random weights, and a SHA-256 over all of it."""
        payload = base_payload(self, {"spec": self.spec.to_dict()})
        payload["construction"] = CONSTRUCTION
        payload["checksums"] = random_weights_checksums(self.spec)
        masks = self.lplus1_masks
        for t, (weight, bias) in enumerate(zip(masks.weights, masks.biases, strict=True)):
            payload[f"mask.{t}.weight"] = _pack(weight)
            if bias is not None:
                payload[f"mask.{t}.bias"] = _pack(bias)
        return write_payload(path, payload)


def random_weights_checksums(spec: LPlus1Spec) -> list[str]:
    """SHA-256 of each module's random weights (and bias), regenerated from the seed."""
    sums = []
    for t in range(spec.depth + 1):
        digest = hashlib.sha256(module_weight(spec, t).numpy().tobytes())
        bias = module_bias(spec, t)
        if bias is not None:
            digest.update(bias.numpy().tobytes())
        sums.append(digest.hexdigest())
    return sums


def picks_of(spec: LPlus1Spec, masks: LPlus1Masks, t: int) -> torch.Tensor:
    """Kept candidates per instance of target layer t (1-based), read off the masks: the k."""
    rows, mask = spec.copy_width(t), masks.weights[t]
    d_in = spec.dims[t - 1]
    if t == 1:
        rho0 = spec.copies[0]
        first = module_weight(spec, 0)
        columns = torch.arange(2 * rho0 * d_in)
        a = first[columns, columns // (2 * rho0)]
        block = mask[:rows, : 2 * rho0 * d_in].reshape(rows, d_in, 2 * rho0)
        positive = (a > 0).reshape(d_in, 2 * rho0)
        parts = [(block & positive).sum(2).reshape(-1), (block & ~positive).sum(2).reshape(-1)]
    else:
        rho = spec.rho(t - 1)
        parts = [mask[:rows, : rho * d_in].reshape(rows, d_in, rho).sum(2).reshape(-1)]
    if spec.biases[t - 1]:
        parts.append(mask[:rows, spec.copy_width(t - 1) :].sum(1))
    return torch.cat(parts)


def _layer_report(ticket: LPlus1Ticket, certificate: LPlus1Certificate, t: int) -> LayerReport:
    spec, masks = ticket.spec, ticket.lplus1_masks
    layer = ticket.target.layers[t - 1]
    figures = certificate.layers[t - 1]
    kept = int(masks.weights[t].count_nonzero())
    if masks.biases[t] is not None:
        kept += int(masks.biases[t].count_nonzero())
    if t == 1:
        kept += int(masks.weights[0].count_nonzero())
        if masks.biases[0] is not None:
            kept += int(masks.biases[0].count_nonzero())
    picks = picks_of(spec, masks, t)
    k_min, k_max = int(picks.min()), int(picks.max())
    errors = figures.weight_errors
    random = spec.layer_params(t)
    return LayerReport(
        d_in=layer.d_in,
        d_out=layer.d_out,
        n=spec.copies[t - 1],
        k=k_min if k_min == k_max else -1,
        k_min=k_min,
        k_max=k_max,
        hidden=spec.width(t) if t < spec.depth else spec.width(t - 1),
        grown_blocks=0,
        n_max=spec.copies[t - 1],
        random_params=random,
        kept_params=kept,
        density=measured_density(kept, random),
        tolerance=float(ticket.tolerances[t - 1]),
        max_weight_error=float(errors.max()),
        mean_weight_error=float(errors.mean()),
        weights_over_tolerance=int((errors >= ticket.tolerances[t - 1]).sum()),
        pair_error_norm=figures.pair_error_norm,
        bias_error=figures.bias_error,
        error_bound=figures.error_bound,
        rounding_bound=figures.rounding_bound,
    )


def _report(ticket, certificate, empirical: float, timings: dict) -> Report:
    spec = ticket.spec
    return report_from_counts(
        kept=ticket.lplus1_masks.kept,
        random_params=spec.random_params,
        block_params=spec.block_params,
        target_params=ticket.target.num_params,
        certificate=certificate,
        empirical=empirical,
        epsilon=ticket.epsilon,
        density_limit=ticket.density_limit,
        seed=ticket.seed,
        device=ticket.device,
        solver=ticket.solver,
        layers=[_layer_report(ticket, certificate, t) for t in range(1, spec.depth + 1)],
        timings=timings,
        construction=CONSTRUCTION,
    )


def ticket_from_payload(payload: dict, path: Path, device) -> LPlus1Ticket:
    """Validate every field of a checksum-verified l+1 payload and build the ticket."""
    from sslth.ticket import _field, _loaded_ticket, _positive, _target, _unpack

    metadata, seed, epsilon, radius, density_limit, dtype_name = read_header(payload, path)
    expected = [key if key != "specs" else "spec" for key in METADATA_KEYS]
    check_keys(metadata, expected, "metadata field", path)
    raw = _field(metadata, "spec", path)
    layers = _target_layers(payload, path)
    target = _target(layers, metadata, path)
    try:
        spec = LPlus1Spec(
            tuple(target.widths),
            tuple(layer.bias is not None for layer in layers),
            tuple(raw["copies"]),
            seed,
        )
        if spec.to_dict() != raw or any(isinstance(c, bool) for c in raw["copies"]):
            raise ValueError("it does not match the target")
    except (TypeError, ValueError, KeyError) as error:
        raise NotATicketError(f"{path}: the l+1 spec is malformed ({error})") from None
    tolerances = _field(metadata, "tolerances", path)
    if not isinstance(tolerances, list) or len(tolerances) != spec.depth:
        raise NotATicketError(f"{path}: tolerances must be {spec.depth} numbers")
    for value in tolerances:
        _positive({"tolerance": value}, "tolerance", path)
    weights, biases = [], []
    for t in range(spec.depth + 1):
        weights.append(_unpack(payload.get(f"mask.{t}.weight"), spec.module_shape(t), path))
        has = spec.has_constants(t)
        if has != (f"mask.{t}.bias" in payload):
            raise NotATicketError(f"{path}: module {t}'s bias mask does not match the spec")
        biases.append(_unpack(payload[f"mask.{t}.bias"], (spec.width(t),), path) if has else None)
    check_keys(payload, _payload_keys(spec), "key", path)
    if payload.get("checksums") != random_weights_checksums(spec):
        raise NotATicketError(
            f"{path}: the random weights regenerated from the seed do not match the stored "
            "checksums (tampered file, or a torch whose random stream differs)"
        )
    header = (metadata, seed, epsilon, radius, density_limit, dtype_name)
    masks = LPlus1Masks(weights, biases)
    return _loaded_ticket(LPlus1Ticket, target, spec, masks, header, tolerances, device, path)


def _target_layers(payload: dict, path: Path):
    """The target layers stored in a payload (dense), checked finite."""
    from sslth.target import TargetLayer

    layers, index = [], 0
    while f"target.{index}.weight" in payload:
        weight, bias = payload[f"target.{index}.weight"], payload.get(f"target.{index}.bias")
        for name, tensor in (("weight", weight), ("bias", bias)):
            if tensor is not None:
                check_target_tensor(tensor, f"layer {index} {name}", path)
                if tensor.dim() != (2 if name == "weight" else 1):
                    raise NotATicketError(f"{path}: target layer {index} {name} is malformed")
        if bias is not None and bias.shape[0] != weight.shape[0]:
            raise NotATicketError(f"{path}: target layer {index} bias does not match its weight")
        layers.append(
            TargetLayer(weight.to(torch.float64), None if bias is None else bias.to(torch.float64))
        )
        index += 1
    if not layers:
        raise NotATicketError(f"{path}: the file holds no target layer")
    return layers


def _payload_keys(spec: LPlus1Spec) -> list[str]:
    """Every key an l+1 ticket file for ``spec`` holds."""
    keys = [*HEADER_KEYS, "construction"]
    for index, has_bias in enumerate(spec.biases):
        keys.append(f"target.{index}.weight")
        if has_bias:
            keys.append(f"target.{index}.bias")
    for t in range(spec.depth + 1):
        keys.append(f"mask.{t}.weight")
        if spec.has_constants(t):
            keys.append(f"mask.{t}.bias")
    return keys


__all__ = ["CONSTRUCTION", "LPlus1Ticket", "random_weights_checksums", "ticket_from_payload"]
