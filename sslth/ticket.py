"""The ticket: a random network, its masks, and a report recomputed from both."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sslth.certify import (
    block_pair_operator,
    certify_operators,
    empirical_error,
    network_operators,
)
from sslth.construct import PairSpec, first_layer_diagonal, pair_modules, second_layer_weight
from sslth.errors import NotATicketError
from sslth.kinds import kind_from_dict
from sslth.masks import PairMasks, apply_pair_masks, plain_copy
from sslth.report import Report, build_report, layer_report
from sslth.target import Target, TargetLayer

FORMAT = "sslth-ticket"
FORMAT_VERSION = 1


class Ticket:
    """A sparse strong lottery ticket for ``target``.

    ``network`` is the random 2l-layer ``nn.Sequential`` with the ticket's masks attached through
    ``torch.nn.utils.prune`` (``weight_orig`` holds the untouched random weights, ``weight_mask``
    the ticket). It is built on first use, regenerated from the seed.
    """

    def __init__(
        self,
        target: Target,
        specs: list[PairSpec],
        masks: list[PairMasks],
        *,
        seed: int,
        epsilon: float,
        radius: float,
        tolerances: list[float],
        device: str | torch.device = "cpu",
        solver: str = "auto",
        report: Report | None = None,
    ) -> None:
        self.target = target
        self.specs = list(specs)
        self.masks = list(masks)
        self.seed = int(seed)
        self.epsilon = float(epsilon)
        self.radius = float(radius)
        self.tolerances = [float(t) for t in tolerances]
        self.device = torch.device(device)
        self.solver = solver
        self._network: nn.Sequential | None = None
        self.report = report

    # ---------------------------------------------------------------- the network
    @property
    def network(self) -> nn.Sequential:
        if self._network is None:
            self._network = self._build_network()
        return self._network

    def _build_network(self) -> nn.Sequential:
        pairs = []
        for spec, masks in zip(self.specs, self.masks, strict=True):
            first, second = pair_modules(spec)
            apply_pair_masks(first, second, masks)
            pairs.append((first, second))
        return self.target.network(pairs).to(self.device)

    def export(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` with the masks made permanent (pruned weights are zero).

        Follows ``torch.nn.utils.prune.remove`` on a copy: each pruned tensor becomes
        ``weight_orig * weight_mask`` as the forward pass computes it now, in the module's own
        dtype and device, so ``ticket.network`` keeps its masks.
        """
        return nn.Sequential(*[plain_copy(module) for module in self.network])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    # ---------------------------------------------------------------- the report
    def evaluate(
        self,
        *,
        samples: int = 10_000,
        ascent_steps: int = 100,
        timings: dict[str, float] | None = None,
        progress: bool = False,
    ) -> Report:
        """Recompute the report from the ticket's masks and weights (certificate, empirical
        error, densities, k), store it in ``self.report`` and return it.

        When the dense network has been built, everything is read from its modules (so a
        network edited in place is what gets certified). Otherwise the same figures come from
        the compact masks and the random weights they can keep, regenerated from the seed (U's
        block diagonal and bias, and V): the dense U, 2·n·d_in² entries of which preprocessing
        keeps 2·n·d_in, is never materialized for a report.
        """
        timings = dict(timings or {})
        bar = tqdm(total=2, desc="sslth: certifying", disable=not progress, leave=False)
        start = time.perf_counter()
        if self._network is not None:
            operators, parts = self._parts_from_network()
        else:
            operators, parts = self._parts_from_masks()
        certificate = certify_operators(self.target, operators, self.radius)
        layer_reports = []
        for index, spec in enumerate(self.specs):
            first_kept, bias_mask, second_mask, diagonal = parts[index]
            layer_reports.append(
                layer_report(
                    spec,
                    self.target.layers[index],
                    operators[index],
                    certificate.layers[index],
                    first_kept,
                    bias_mask,
                    second_mask,
                    diagonal,
                    self.tolerances[index],
                )
            )
        timings["certify"] = time.perf_counter() - start
        bar.update(1)
        bar.set_description("sslth: empirical check")
        start = time.perf_counter()
        empirical = empirical_error(
            self.target,
            operators,
            self.radius,
            samples=samples,
            ascent_steps=ascent_steps,
            seed=self.seed,
            device=self.device,
        )
        timings["empirical"] = time.perf_counter() - start
        bar.update(1)
        bar.close()
        self.report = build_report(
            target=self.target,
            specs=self.specs,
            layer_reports=layer_reports,
            certificate=certificate,
            empirical=empirical,
            epsilon=self.epsilon,
            seed=self.seed,
            device=str(self.device),
            solver=self.solver,
            timings=timings,
        )
        return self.report

    def _parts_from_network(self):
        network = self.network
        operators = network_operators(network, self.device)
        linears = [m for m in network if hasattr(m, "weight")]
        parts = []
        for index, spec in enumerate(self.specs):
            first, second = linears[2 * index], linears[2 * index + 1]
            weight_mask = getattr(first, "weight_mask", None)
            weight_mask = (first.weight if weight_mask is None else weight_mask) != 0
            bias_mask = None
            if first.bias is not None:
                bias_mask = getattr(first, "bias_mask", torch.ones_like(first.bias)) != 0
            second_mask = getattr(second, "weight_mask", None)
            second_mask = (second.weight if second_mask is None else second_mask) != 0
            parts.append((weight_mask, bias_mask, second_mask, _diagonal_of(first, spec)))
        return operators, parts

    def _parts_from_masks(self):
        operators, parts = [], []
        for spec, masks in zip(self.specs, self.masks, strict=True):
            diagonal = first_layer_diagonal(spec).to(self.device)
            second = second_layer_weight(spec).to(self.device)
            second_mask = masks.second.to(self.device)
            second.mul_(second_mask)
            kept = masks.kept_neurons.to(self.device)
            operators.append(block_pair_operator(spec, kept, diagonal, second))
            del second
            weight_rows = spec.block_size * spec.d_in
            # layer_report only counts the nonzeros of U's weight mask: the kept weight rows
            parts.append((kept[:weight_rows], masks.first_bias_mask(), second_mask, diagonal))
        return operators, parts

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the ticket to one file: tensors through ``torch.save`` and JSON metadata.

        The random weights are not stored: they are regenerated from the seed on load and
        checked against the checksums stored here.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "seed": self.seed,
            "epsilon": self.epsilon,
            "radius": self.radius,
            "tolerances": self.tolerances,
            "solver": self.solver,
            "flatten_input": self.target.flatten_input,
            "specs": [spec.to_dict() for spec in self.specs],
            "report": None if self.report is None else self.report.to_dict(),
        }
        payload: dict = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "metadata": json.dumps(metadata),
            "checksums": [random_weights_checksum(spec) for spec in self.specs],
        }
        for index, (layer, masks) in enumerate(zip(self.target.layers, self.masks, strict=True)):
            payload[f"target.{index}.weight"] = layer.weight.clone()
            if layer.bias is not None:
                payload[f"target.{index}.bias"] = layer.bias.clone()
            payload[f"mask.{index}.kept_neurons"] = _pack(masks.kept_neurons)
            payload[f"mask.{index}.second"] = _pack(masks.second)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> Ticket:
        """Load a ticket saved by :meth:`save`. Never executes code from the file: it is read
        with ``torch.load(weights_only=True)`` and every field is checked."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ticket file at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
            raise NotATicketError(
                f"{path} is not an sslth ticket (refused by the safe loader: {error})"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise NotATicketError(f"{path} is not an sslth ticket (no '{FORMAT}' header)")
        if payload.get("format_version") != FORMAT_VERSION:
            raise NotATicketError(
                f"{path}: unsupported ticket format version {payload.get('format_version')}"
            )
        try:
            metadata = json.loads(payload["metadata"])
            specs = [
                PairSpec(**{**spec, "kind": kind_from_dict(spec.get("kind", {"kind": "dense"}))})
                for spec in metadata["specs"]
            ]
            layers, masks = [], []
            for index, spec in enumerate(specs):
                weight = payload[f"target.{index}.weight"]
                bias = payload.get(f"target.{index}.bias")
                if not isinstance(weight, torch.Tensor) or weight.shape != (spec.d_out, spec.d_in):
                    raise NotATicketError(f"target layer {index} does not match its random pair")
                if spec.has_bias != (bias is not None):
                    raise NotATicketError(
                        f"target layer {index}: bias does not match its random pair"
                    )
                layers.append(
                    TargetLayer(
                        weight.to(torch.float64), None if bias is None else bias.to(torch.float64)
                    )
                )
                masks.append(
                    PairMasks(
                        spec,
                        _unpack(payload[f"mask.{index}.kept_neurons"], (spec.hidden,)),
                        _unpack(payload[f"mask.{index}.second"], (spec.d_out, spec.hidden)),
                    )
                )
            checksums = payload["checksums"]
        except (KeyError, TypeError, ValueError) as error:
            raise NotATicketError(f"{path}: malformed ticket file ({error!r})") from None
        for index, spec in enumerate(specs):
            if checksums[index] != random_weights_checksum(spec):
                raise NotATicketError(
                    f"{path}: the random weights regenerated from the seed for layer {index} do "
                    "not match the stored checksum (tampered file, or a torch whose random "
                    "stream differs)"
                )
        target = Target(tuple(layers), bool(metadata.get("flatten_input", False)))
        report = metadata.get("report")
        return cls(
            target,
            specs,
            masks,
            seed=metadata["seed"],
            epsilon=metadata["epsilon"],
            radius=metadata["radius"],
            tolerances=metadata["tolerances"],
            device=device,
            solver=metadata.get("solver", "auto"),
            report=None if report is None else Report.from_dict(report),
        )


def load(path: str | Path, *, device: str | torch.device = "cpu") -> Ticket:
    """Load a ticket file written by :meth:`Ticket.save` (safe: no code is executed)."""
    return Ticket.load(path, device=device)


def random_weights_checksum(spec: PairSpec) -> str:
    """SHA-256 of the random weights a ticket can keep (U's block diagonal and bias, and V)."""
    digest = hashlib.sha256()
    digest.update(first_layer_diagonal(spec).numpy().tobytes())
    digest.update(second_layer_weight(spec).numpy().tobytes())
    return digest.hexdigest()


def _diagonal_of(first: nn.Linear, spec: PairSpec) -> torch.Tensor:
    """The random (unmasked) U entries of each neuron, read from the module."""
    weight = getattr(first, "weight_orig", first.weight).detach()
    weight = weight.reshape(weight.shape[0], weight.shape[1])
    rows = torch.arange(spec.block_size * spec.d_in, device=weight.device)
    diagonal = torch.empty(spec.hidden, dtype=weight.dtype, device=weight.device)
    diagonal[rows] = weight[rows, rows // spec.block_size]
    if spec.has_bias:
        bias = getattr(first, "bias_orig", first.bias).detach()
        diagonal[len(rows) :] = bias[len(rows) :]
    return diagonal


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.cpu().numpy().astype(np.uint8).reshape(-1)))


def _unpack(packed, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise NotATicketError("mask is not a packed uint8 tensor")
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.numpy())
    if bits.size < count or bits.size - count >= 8:
        raise NotATicketError(f"mask of {bits.size} bits does not fit shape {shape}")
    return torch.from_numpy(bits[:count].astype(bool)).reshape(shape)
