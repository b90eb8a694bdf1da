"""The ticket: a random network, its masks, and a report recomputed from both."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sslth.certificate import certify_operators, empirical_error, masked_pair_operator
from sslth.construct import (
    SEED_LIMIT,
    PairSpec,
    block_second,
    first_layer_diagonal,
    input_of_neuron,
    layer_seed,
    pair_modules,
    second_layer_weight,
)
from sslth.errors import NetworkTooLarge, NotATicketError, SslthError
from sslth.graph import GraphNetwork, Node
from sslth.inputs import TicketSequential, accept_input
from sslth.kinds import kind_from_dict
from sslth.masks import PairMasks, apply_pair_masks, plain_copy
from sslth.network import check_operators, network_operators, read_ticket_network
from sslth.ops import RELU, Op
from sslth.report import Report, build_report, layer_report
from sslth.rounding import DTYPES
from sslth.sparse_rounding import deployed_arithmetic
from sslth.target import Target, TargetLayer
from sslth.ticketfile import (
    METADATA_KEYS,
    check_keys,
    check_plain_tensors,
    check_target_tensor,
    check_text,
    payload_keys,
    spec_problem,
    stored_report,
)

FORMAT = "sslth-ticket"
FORMAT_VERSION = 2


class Ticket:
    """A sparse strong lottery ticket for ``target``.

    ``network`` is the random 2l-layer ``nn.Sequential`` with the ticket's masks attached through
    ``torch.nn.utils.prune`` (``weight_orig`` holds the untouched random weights, ``weight_mask``
    the ticket), in the ticket's dtype (float64 by default). It is built on first use,
    regenerated from the seed.
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
        density_limit: float = 1.0,
        dtype: torch.dtype = torch.float64,
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
        self.density_limit = float(density_limit)
        self.dtype = dtype
        self.device = torch.device(device)
        self.solver = solver
        self._network: nn.Sequential | None = None
        self._deployment: nn.Module | None = None  # the sparse export ticket(x) runs (float32)
        self.report = report
        self.stored_report: Report | None = None  # what a loaded file claimed (see verify)

    # ---------------------------------------------------------------- the network
    @property
    def network(self) -> nn.Sequential:
        if self._network is None:
            self._network = self._build_network()
        return self._network

    def _build_network(self) -> nn.Sequential:
        needed = network_bytes(self.specs, self.dtype)
        available = available_memory(self.device)
        if available is not None and needed > 0.8 * available:
            raise NetworkTooLarge(
                f"the dense masked network has {sum(s.dense_params for s in self.specs):,} "
                f"random weights: about {needed / 2**30:.1f} GiB with torch's masks and cached "
                f"weights, and {available / 2**30:.1f} GiB are available on {self.device}. "
                "ticket.export(compact=True) builds the same function from the kept units only "
                "(never the dense network)"
            )
        pairs = []
        for spec, masks in zip(self.specs, self.masks, strict=True):
            first, second = pair_modules(spec)
            apply_pair_masks(first, second, masks)
            pairs.append((first, second))
        return self.target.network(pairs).to(device=self.device, dtype=self.dtype)

    def export(
        self, compact: bool = False, *, sparse: bool = False, accumulate: str | None = None
    ) -> nn.Module:
        """A plain ``nn.Sequential`` (a :class:`~sslth.inputs.TicketSequential`, which takes
        float32 or float64 inputs whatever its dtype) with the masks made permanent (pruned
        weights are zero), or
        with ``sparse=True`` a :class:`~sslth.sparse.SparseTicket` that runs on the kept weights
        only.

        Follows ``torch.nn.utils.prune.remove`` on a copy: each pruned tensor becomes
        ``weight_orig * weight_mask`` as the forward pass computes it now, in the module's own
        dtype and device, so ``ticket.network`` keeps its masks. The network is checked to be a
        ticket's structure first (:func:`sslth.network.read_ticket_network`).

        Args:
            compact: drop the hidden units no output uses (their U entry is pruned, so they
                output exactly 0): the same function, with only the kept units. Built from the
                masks and the seed when ``ticket.network`` has not been built (so it never
                materializes the dense random network), else from the network as it is.
            sparse: return the sparse module (U as a gather and a scale, V's kept entries
                only), built like ``compact``; ``sslth.certify(target, module)`` certifies it
                as it computes. A float32 ticket's report certifies this module.
            accumulate: the sparse module's accumulation dtype, ``"float64"`` (default: exact
                products of float32 numbers and a float64 sum) or ``"float32"`` (faster, a
                larger certified rounding term). Only with ``sparse=True``.

        Returns:
            The plain network (or sparse module), in the ticket's dtype and on its device.
        """
        if sparse:
            from sslth.sparse import export_sparse

            return export_sparse(self, accumulate)
        if accumulate is not None:
            raise SslthError("accumulate= applies to export(sparse=True) only")
        if compact and self._network is None:
            return self._compact_from_masks()
        read_ticket_network(self.target, self.network)
        steps = self.network.steps if self.target.graph else self.network
        plain = [plain_copy(module) for module in steps]
        if compact:
            plain = _drop_dead_units(plain, self.specs)
        if self.target.graph:
            return GraphNetwork(self.target.graph, self.target.input_shape, plain, 3)
        return TicketSequential(*plain)

    def _compact_from_masks(self) -> nn.Module:
        pairs = []
        for spec, masks in zip(self.specs, self.masks, strict=True):
            kept = masks.kept_neurons.nonzero().squeeze(1)
            blocks = input_of_neuron(spec)[kept]
            diagonal = first_layer_diagonal(spec)[kept]
            first, second = spec.kind.pair_modules(
                spec.d_in, spec.d_out, kept.numel(), spec.has_bias
            )
            weight = torch.zeros(kept.numel(), spec.d_in)
            reads = blocks < spec.d_in
            weight[reads.nonzero().squeeze(1), blocks[reads]] = diagonal[reads]
            matrix = spec.kind.to_rows(masks.second)
            columns = []
            for block in range(spec.blocks):
                start, stop = spec.block_offsets[block], spec.block_offsets[block + 1]
                chosen = masks.kept_neurons[start:stop].nonzero().squeeze(1)
                if chosen.numel():
                    values = block_second(spec, block)[:, chosen]
                    columns.append(values * matrix[:, start + chosen])
            rows = torch.cat(columns, dim=1) if columns else torch.zeros(spec.rows, 0)
            with torch.no_grad():
                first.weight.copy_(weight.view(first.weight.shape))
                if spec.has_bias:
                    first.bias.copy_(torch.where(reads, 0.0, diagonal))
                second.weight.copy_(spec.kind.from_rows(rows, spec.d_out))
            pairs.append((first, second))
        network = self.target.network(pairs).to(device=self.device, dtype=self.dtype)
        return network if self.target.graph else TicketSequential(*network)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The ticket on ``x`` (float32 or float64), as its report certifies it: a float64
        ticket runs ``ticket.network`` (a float32 input is converted exactly); a float32 ticket
        runs its sparse export (float64 accumulation; a float64 input is converted when its
        values are float32 numbers, else refused: pass ``x.float()``), rebuilt from
        ``ticket.network`` when that has been built (and maybe edited)."""
        x = accept_input(x, self.dtype, self.device)
        if self.dtype == torch.float32 and not self.target.graph:
            if self._deployment is None or self._network is not None:
                self._deployment = self.export(sparse=True)
            return self._deployment(x)
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

        When the dense network has been built, everything is read from its modules as their
        forward pass uses them, in their dtype and on their device (so a network edited in
        place is what gets certified, or refused if it is no longer a ticket). Otherwise the
        same figures come from the compact masks and the random weights they can keep,
        regenerated from the seed, for the ticket's dtype and device: the dense U, 2·n·d_in²
        entries of which preprocessing keeps 2·n·d_in, is never materialized for a report.

        Args:
            samples: random sphere points of the empirical error (then gradient ascent).
            ascent_steps: steps of its projected gradient ascent.
            timings: seconds of earlier steps, carried into the report.
            progress: show a progress bar.

        Returns:
            The report (also ``self.report``).
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise SslthError(f"samples must be a positive integer, got {samples!r}")
        timings = dict(timings or {})
        bar = tqdm(total=2, desc="sslth: certifying", disable=not progress, leave=False)
        start = time.perf_counter()
        operators, certificate, layer_reports = self._certified()
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
            density_limit=self.density_limit,
            seed=self.seed,
            device=str(self.device),
            solver=self.solver,
            timings=timings,
        )
        return self.report

    def _certified(self):
        """(operators, certificate, per-layer reports), read from the network when it is built,
        else from the masks and the seed (see :meth:`evaluate`)."""
        network_arithmetic = None
        if self._network is not None:
            operators, parts, network_arithmetic = self._parts_from_network()
        else:
            operators, parts = self._parts_from_masks()
        # what ticket(x) runs: the network (float64, graphs), or the sparse export (float32)
        arithmetic = deployed_arithmetic(self.dtype, self.device, self.target)
        certificate = certify_operators(self.target, operators, self.radius, arithmetic)
        if network_arithmetic is not None:
            # the probe runs the network, so it allows the network's own rounding: a float32
            # ticket's report certifies its sparse export, whose rounding term is far smaller
            probed = certificate
            if network_arithmetic != arithmetic:
                probed = certify_operators(self.target, operators, self.radius, network_arithmetic)
            check_operators(self.target, self.network, operators, probed)
        layer_reports = [
            layer_report(
                spec,
                self.target.layers[index],
                operators[index],
                certificate.layers[index],
                *parts[index],  # first_kept, bias_mask, second_mask, diagonal
                self.tolerances[index],
            )
            for index, spec in enumerate(self.specs)
        ]
        return operators, certificate, layer_reports

    def _parts_from_network(self):
        readings, arithmetic = read_ticket_network(self.target, self.network)
        operators = network_operators(self.target, readings, self.device)
        parts = []
        for index, (spec, reading) in enumerate(zip(self.specs, readings, strict=True)):
            if reading.second_weight.shape != (spec.d_out, spec.hidden, *spec.kind.kernel_shape):
                raise NotATicketError(
                    f"pair {index + 1} of the network has V of shape "
                    f"{tuple(reading.second_weight.shape)}, not the ticket's"
                )
            parts.append(
                (
                    reading.first_weight_mask,
                    reading.first_bias_mask,
                    reading.second_mask,
                    _diagonal_of(reading, spec),
                )
            )
        return operators, parts, arithmetic

    def _parts_from_masks(self):
        operators, parts = [], []
        for spec, masks in zip(self.specs, self.masks, strict=True):
            operators.append(masked_pair_operator(spec, masks, self.device))
            # layer_report only counts the nonzeros of U's weight mask: the kept weight rows
            parts.append(
                (
                    masks.kept_neurons[: spec.weight_neurons],
                    masks.first_bias_mask(),
                    masks.second,
                    first_layer_diagonal(spec),
                )
            )
        return operators, parts

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the ticket to one file: tensors through ``torch.save``, JSON metadata, and a
        SHA-256 over all of it.

        The random weights are not stored: they are regenerated from the seed on load and
        checked against per-layer checksums stored here.
        """
        payload = base_payload(self, {"specs": [spec.to_dict() for spec in self.specs]})
        payload["checksums"] = [random_weights_checksum(spec) for spec in self.specs]
        for index, masks in enumerate(self.masks):
            payload[f"mask.{index}.kept_neurons"] = _pack(masks.kept_neurons)
            payload[f"mask.{index}.second"] = _pack(masks.second)
        return write_payload(path, payload)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        samples: int = 2_000,
    ) -> Ticket:
        """Load a ticket saved by :meth:`save`, and recompute its report.

        Never executes code from the file (``torch.load(weights_only=True)``). Refuses a file
        whose content does not match its SHA-256, whose fields are not valid arguments (ε,
        radius, density, seed, sizes, tolerances), whose target has NaN or Inf weights, or
        whose random weights, regenerated from the seed, do not match their checksums. The
        report is then recomputed from the masks and weights (``samples`` sphere points for the
        empirical error); the file's own report is kept as ``stored_report``, for comparison
        only.

        Raises:
            FileNotFoundError: no file at ``path``.
            NotATicketError: any of the refusals above, naming the field.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ticket file at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise NotATicketError(
                f"{path} is not an sslth ticket (refused by the safe loader: {detail})"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise NotATicketError(f"{path} is not an sslth ticket (no '{FORMAT}' header)")
        version = payload.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise NotATicketError(
                f"{path}: ticket format version {payload.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; re-create the ticket with this sslth"
            )
        check_plain_tensors(payload, path)
        if payload.get("content_sha256") != _content_digest(payload):
            raise NotATicketError(
                f"{path}: the content does not match its SHA-256 checksum (the file was "
                "modified or damaged)"
            )
        construction = payload.get("construction", "2l")
        if construction == "l+1":
            from sslth.lplus1.ticket import ticket_from_payload

            ticket = ticket_from_payload(payload, path, device)
        elif construction == "2l":
            ticket = _ticket_from_payload(payload, path, device)
        else:
            raise NotATicketError(f"{path}: unknown construction {construction!r}")
        ticket.evaluate(samples=samples)
        return ticket


def base_payload(ticket: Ticket, extra_metadata: dict) -> dict:
    """The fields every ticket file holds: header, JSON metadata (with ``extra_metadata``) and
    the target's weights."""
    metadata = {
        "seed": ticket.seed,
        "epsilon": ticket.epsilon,
        "radius": ticket.radius,
        "density_limit": ticket.density_limit,
        "dtype": str(ticket.dtype).replace("torch.", ""),
        "tolerances": ticket.tolerances,
        "solver": ticket.solver,
        "structure": ticket.target.describe(),
        **extra_metadata,
        "report": None if ticket.report is None else ticket.report.to_dict(),
    }
    payload: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(metadata),
    }
    for index, layer in enumerate(ticket.target.layers):
        payload[f"target.{index}.weight"] = layer.weight.clone()
        if layer.bias is not None:
            payload[f"target.{index}.bias"] = layer.bias.clone()
    return payload


def write_payload(path: str | Path, payload: dict) -> Path:
    """Seal ``payload`` with its SHA-256 and write it atomically to ``path``."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise NotATicketError(f"{path} is a folder; give a file name for the ticket")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload["content_sha256"] = _content_digest(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def read_header(payload: dict, path: Path) -> tuple[dict, int, float, float, float, str]:
    """(metadata, seed, ε, radius, density limit, dtype name) of a checksum-verified payload,
    each validated."""
    try:
        metadata = json.loads(payload["metadata"])
    except (KeyError, TypeError, ValueError):
        raise NotATicketError(f"{path}: metadata is missing or not JSON") from None
    if not isinstance(metadata, dict):
        raise NotATicketError(f"{path}: metadata is not a JSON object")
    seed = _field(metadata, "seed", path)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise NotATicketError(f"{path}: seed must be an integer in [0, 2^62), got {seed!r}")
    epsilon = _positive(metadata, "epsilon", path)
    radius = _positive(metadata, "radius", path)
    density_limit = _positive(metadata, "density_limit", path, upper=1.0)
    dtype_name = _field(metadata, "dtype", path)
    if dtype_name not in DTYPES:
        raise NotATicketError(f"{path}: dtype must be one of {sorted(DTYPES)}, got {dtype_name!r}")
    return metadata, seed, epsilon, radius, density_limit, dtype_name


def network_bytes(specs: list[PairSpec], dtype: torch.dtype) -> int:
    """Bytes of a ticket's dense masked network: torch's pruning keeps, per weight tensor, the
    original, the mask (in the weight's dtype) and the masked weight."""
    item = torch.empty(0, dtype=dtype).element_size()
    weights = sum(spec.dense_params for spec in specs)
    return 3 * item * weights


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _drop_dead_units(modules: list[nn.Module], specs: list[PairSpec]) -> list[nn.Module]:
    """The modules of a plain ticket network, its pairs (``specs``, in order) without their
    hidden units that output 0 (no input weight and no positive bias, or no output weight)."""
    modules = list(modules)
    weighted = [i for i, m in enumerate(modules) if getattr(m, "weight", None) is not None]
    pairs = zip(specs, weighted[::2], weighted[1::2], strict=True)
    for spec, first_index, second_index in pairs:
        first, second = modules[first_index], modules[second_index]
        u = first.weight.detach().reshape(first.weight.shape[0], -1)
        bias = first.bias.detach() if first.bias is not None else torch.zeros(u.shape[0])
        v = second.weight.detach()
        alive = ((u != 0).any(dim=1) | (bias > 0)) & (v.transpose(0, 1) != 0).reshape(
            v.shape[1], -1
        ).any(dim=1)
        keep = alive.nonzero().squeeze(1)
        small = spec.kind.pair_modules(spec.d_in, spec.d_out, keep.numel(), first.bias is not None)
        modules[first_index] = _keep_units(small[0], first, keep, output=True)
        modules[second_index] = _keep_units(small[1], second, keep, output=False)
    return modules


def _keep_units(
    copy: nn.Module, module: nn.Module, keep: torch.Tensor, *, output: bool
) -> nn.Module:
    """``copy`` (a module of the kind's shape) holding ``module``'s weights of the output (or
    input) units ``keep``."""
    weight = module.weight.detach()
    weight = weight[keep] if output else weight[:, keep]
    copy = copy.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        copy.weight.copy_(weight)
        if module.bias is not None:
            copy.bias.copy_(module.bias.detach()[keep] if output else module.bias.detach())
    return copy


def _field(metadata: dict, name: str, path: Path):
    if name not in metadata:
        raise NotATicketError(f"{path}: field {name!r} is missing")
    return metadata[name]


def _positive(metadata: dict, name: str, path: Path, *, upper: float | None = None) -> float:
    value = _field(metadata, name, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotATicketError(f"{path}: {name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0 and (upper is None or value <= upper)):
        raise NotATicketError(f"{path}: {name} must be finite and > 0, got {value!r}")
    return float(value)


def _spec(raw, index: int, seed: int, path: Path) -> PairSpec:
    """Layer ``index``'s pair spec, exactly as :meth:`PairSpec.to_dict` writes it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("grown", []), list):
        raise NotATicketError(f"{path}: spec of layer {index} is malformed (not an object)")
    try:
        spec = PairSpec(
            **{
                **raw,
                "kind": kind_from_dict(raw.get("kind")),
                "grown": tuple(tuple(pair) for pair in raw.get("grown", [])),
            }
        )
    except (TypeError, ValueError, AttributeError, NotATicketError) as error:
        raise NotATicketError(f"{path}: spec of layer {index} is malformed ({error})") from None
    for name in ("d_in", "d_out", "neurons_per_input"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NotATicketError(f"{path}: layer {index} {name} must be >= 1, got {value!r}")
    problem = spec_problem(raw, spec)
    if problem:
        raise NotATicketError(f"{path}: spec of layer {index} is malformed: {problem}")
    if not isinstance(spec.has_bias, bool) or spec.seed != layer_seed(seed, index):
        raise NotATicketError(f"{path}: layer {index}'s seed or bias flag is inconsistent")
    return spec


def _target_layer(payload: dict, index: int, spec: PairSpec, path: Path) -> TargetLayer:
    """Target layer ``index`` of a file: its tensors, shaped like its pair and checked."""
    weight = payload.get(f"target.{index}.weight")
    bias = payload.get(f"target.{index}.bias")
    shape = (spec.d_out, spec.d_in, *spec.kind.kernel_shape)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != shape:
        raise NotATicketError(f"{path}: target layer {index} does not match its random pair")
    if spec.has_bias != (bias is not None) or (
        bias is not None
        and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (spec.d_out,))
    ):
        raise NotATicketError(f"{path}: target layer {index}: bias does not match its pair")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None:
            check_target_tensor(tensor, f"layer {index} {name}", path)
    return TargetLayer(
        weight.to(torch.float64), None if bias is None else bias.to(torch.float64), spec.kind
    )


def _ticket_from_payload(payload: dict, path: Path, device) -> Ticket:
    """Validate every field of a (checksum-verified) payload and build the ticket."""
    metadata, seed, epsilon, radius, density_limit, dtype_name = read_header(payload, path)
    check_keys(metadata, METADATA_KEYS, "metadata field", path)
    raw_specs = _field(metadata, "specs", path)
    if not isinstance(raw_specs, list) or not raw_specs:
        raise NotATicketError(f"{path}: specs must be a non-empty list")
    specs = [_spec(raw, index, seed, path) for index, raw in enumerate(raw_specs)]
    tolerances = _field(metadata, "tolerances", path)
    if (
        not isinstance(tolerances, list)
        or len(tolerances) != len(specs)
        or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0
            for t in tolerances
        )
    ):
        raise NotATicketError(
            f"{path}: tolerances must be {len(specs)} finite positive numbers, got {tolerances!r}"
        )
    checksums = payload.get("checksums")
    if not isinstance(checksums, list) or len(checksums) != len(specs):
        raise NotATicketError(f"{path}: checksums must be a list of {len(specs)} digests")
    check_keys(payload, payload_keys(specs), "key", path)
    layers = [_target_layer(payload, index, spec, path) for index, spec in enumerate(specs)]
    masks = [
        PairMasks(
            spec,
            _unpack(payload.get(f"mask.{index}.kept_neurons"), (spec.hidden,), path),
            _unpack(
                payload.get(f"mask.{index}.second"),
                (spec.d_out, spec.hidden, *spec.kind.kernel_shape),
                path,
            ),
        )
        for index, spec in enumerate(specs)
    ]
    for index, spec in enumerate(specs):
        if checksums[index] != random_weights_checksum(spec):
            raise NotATicketError(
                f"{path}: the random weights regenerated from the seed for layer {index} do "
                "not match the stored checksum (tampered file, or a torch whose random "
                "stream differs)"
            )
    target = _target(layers, metadata, path)
    header = (metadata, seed, epsilon, radius, density_limit, dtype_name)
    return _loaded_ticket(Ticket, target, specs, masks, header, tolerances, device, path)


def _loaded_ticket(cls, target, specs, masks, header: tuple, tolerances, device, path: Path):
    """A ``cls`` (:class:`Ticket` or the l+1 ticket) built from a validated file's target,
    specs, masks, header (:func:`read_header`'s tuple) and tolerances, with its stored report."""
    metadata, seed, epsilon, radius, density_limit, dtype_name = header
    ticket = cls(
        target,
        specs,
        masks,
        seed=seed,
        epsilon=epsilon,
        radius=radius,
        tolerances=[float(t) for t in tolerances],
        density_limit=density_limit,
        dtype=DTYPES[dtype_name],
        device=device,
        solver=check_text(_field(metadata, "solver", path), "solver", path),
    )
    ticket.stored_report = stored_report(_field(metadata, "report", path), path)
    return ticket


def _target(layers: list[TargetLayer], metadata: dict, path: Path) -> Target:
    """The target of a file, its structure (operations, input shape) validated."""
    structure = _field(metadata, "structure", path)
    try:
        ops = tuple(tuple(Op.from_dict(op) for op in group) for group in structure["ops"])
        input_shape = tuple(int(s) for s in structure["input_shape"])
        graph = tuple(Node.from_dict(node) for node in structure.get("graph", ()))
        folds = structure.get("fold_errors")
        if folds is not None:
            layers = [
                replace(layer, fold_error=_fold_error(fold))
                for layer, fold in zip(layers, folds, strict=True)
            ]
        target = Target(tuple(layers), () if graph else ops, input_shape, graph)
        if len(ops) != len(layers) + 1 or target.describe() != structure:
            raise ValueError("the structure does not match the layers")
        if not graph:
            _check_relus(ops)
        target.run(torch.zeros(1, target.input_size, dtype=torch.float64), _check_shapes(target))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise NotATicketError(f"{path}: the target's structure is malformed ({error})") from None
    return target


def _fold_error(fold) -> tuple[float, float]:
    """A stored fold error bound pair: two finite non-negative numbers."""
    weight, bias = (float(value) for value in fold)
    if not (math.isfinite(weight) and math.isfinite(bias) and weight >= 0 and bias >= 0):
        raise ValueError(f"fold error bounds {fold!r} are not finite non-negative numbers")
    return weight, bias


def _check_relus(ops: tuple[tuple[Op, ...], ...]) -> None:
    """The activation rules ``prune`` applies to a target (one ReLU between two layers, none
    before the first or after the last), so that a file cannot carry a structure no prune made."""
    last = len(ops) - 1
    for index, group in enumerate(ops):
        relus = sum(op.name == RELU for op in group)
        expected = 0 if index in (0, last) else 1
        if relus != expected:
            where = {0: "before the first layer", last: "after the last layer"}.get(
                index, f"between layers {index} and {index + 1}"
            )
            raise ValueError(f"{relus} ReLU {where}, where a target has {expected}")


def _check_shapes(target: Target):
    """A stand-in layer for :meth:`Target.run` that checks each layer receives its shape."""

    def layer(index: int, values: torch.Tensor) -> torch.Tensor:
        expected = math.prod(target.layers[index].in_shape)
        if values.shape[1] != expected:
            raise ValueError(f"layer {index} receives {values.shape[1]} values, not {expected}")
        return torch.zeros(values.shape[0], math.prod(target.layers[index].out_shape))

    return layer


def load(path: str | Path, *, device: str | torch.device = "cpu", samples: int = 2_000) -> Ticket:
    """Load a ticket file written by :meth:`Ticket.save` and recompute its report (safe: no
    code is executed; see :meth:`Ticket.load`)."""
    return Ticket.load(path, device=device, samples=samples)


def random_weights_checksum(spec: PairSpec) -> str:
    """SHA-256 of the random weights a ticket can keep (U's block diagonal and bias, and V)."""
    digest = hashlib.sha256()
    digest.update(first_layer_diagonal(spec).numpy().tobytes())
    digest.update(second_layer_weight(spec).numpy().tobytes())
    return digest.hexdigest()


def _content_digest(payload: dict) -> str:
    """SHA-256 over every field of a ticket file but the digest itself, in a fixed order."""
    digest = hashlib.sha256()
    for key in sorted(k for k in payload if k != "content_sha256"):
        value = payload[key]
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            # the bytes as stored, whatever the dtype (numpy has no bfloat16)
            digest.update(value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=repr).encode())
    return digest.hexdigest()


def _diagonal_of(reading, spec: PairSpec) -> torch.Tensor:
    """The random (unmasked) U entries of each neuron, read from the module."""
    weight = reading.first_original
    weight = weight.reshape(weight.shape[0], weight.shape[1])
    rows = torch.arange(spec.weight_neurons, device=weight.device)
    blocks = input_of_neuron(spec).to(weight.device)[rows]
    diagonal = torch.empty(spec.hidden, dtype=weight.dtype, device=weight.device)
    diagonal[rows] = weight[rows, blocks]
    if spec.has_bias:
        diagonal[len(rows) :] = reading.first_bias_original[len(rows) :]
    return diagonal


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.cpu().numpy().astype(np.uint8).reshape(-1)))


def _unpack(packed, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
        raise NotATicketError(f"{path}: a mask is missing or not a packed uint8 tensor")
    count = math.prod(shape)
    size = 8 * packed.numel()
    if size < count or size - count >= 8:
        raise NotATicketError(f"{path}: a mask of {size} bits does not fit shape {shape}")
    bits = np.unpackbits(packed.numpy())
    if bits[count:].any():  # packbits pads with zeros
        raise NotATicketError(f"{path}: a mask has bits set past its shape {shape}")
    return torch.from_numpy(bits[:count].astype(bool)).reshape(shape)
