"""A ticket that runs on its kept weights only: ``ticket.export(sparse=True)``.

Each random pair (U, ReLU, V) becomes a :class:`SparsePair`:

* **U is a gather and a scale.** Every kept hidden unit reads one input (for a conv, one input
  channel through a 1×1 kernel), so its pre-activation is ``a_h · x[input(h)]``; the units of
  the bias block read the constant 1 and output ``σ(c_h)``. No dense U is stored or multiplied.
* **V holds its kept entries only**, column by column (CSC: for each kept hidden unit, the rows
  it feeds and their values). At run time the kept columns are taken in chunks of
  ``CHUNK_UNITS`` units; each chunk is written into a small zeroed block and multiplied as a
  dense block (a grouped layout). A measured comparison with ``torch.sparse`` CSR products is in
  docs/benchmarks.md ("Sparse export"): the CSR kernels ran 4–7× slower than this layout here.
* **Units no output uses are gone**: only units with a kept U entry (or a positive bias) and
  at least one kept V entry are stored.

**Arithmetic.** Activations between layers are stored in the module's dtype. Inside a pair the
module computes in its *accumulation* dtype: for a float32 module ``accumulate="float64"`` (the
default) converts the float32 input and weights to float64, where a product of two float32
numbers is exact (24 + 24 significant bits < 53), sums in float64 and rounds each output once
to float32. ``accumulate="float32"`` computes everything in float32 (faster, with a larger
certified rounding term: γ over the kept terms of a row, in any order). A float64 module
computes in float64. :func:`sslth.sparse_rounding.certify_sparse` certifies the module exactly
as it computes (docs/design.md, "The sparse export").

The module's state is its buffers: per pair, the kept units' inputs (int32) and scales, V's
column starts (int32), row indices (int32) and values: about 2 numbers per kept weight. It saves
with ``torch.save(module.state_dict())`` and loads into ``SparseTicket.empty(target, dtype)``
(``load_state_dict`` then checks the target's digest, the shapes and the dtype).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from sslth.errors import NotATicketError
from sslth.inputs import accept_input
from sslth.kinds import LayerKind
from sslth.sparse_kernel import run_kernel, sparse_kernel
from sslth.target import Target

CHUNK_UNITS = 4096  # hidden units per dense block: a few MiB of V and of activations at a time
ACCUMULATIONS = {"float32": torch.float32, "float64": torch.float64}
_BUFFERS = ("inputs", "scales", "starts", "rows", "values")


class SparsePair(nn.Module):
    """One random pair (U, ReLU, V) on its kept weights: ``V σ(U x + c)``.

    Buffers: ``inputs`` (int32, the input each weight unit reads; weight units come first, the
    bias units after them), ``scales`` (U's kept entry of each unit, then the bias units' c),
    ``starts`` (int32, units + 1: unit h's V entries are ``starts[h]:starts[h+1]``), ``rows``
    (int32, the row of V's matrix view of each entry: output i, kernel position t as
    ``i · taps + t``) and ``values`` (V's kept values).
    """

    def __init__(self, kind: LayerKind, d_in: int, d_out: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.kind, self.d_in, self.d_out = kind, int(d_in), int(d_out)
        for name in _BUFFERS:
            floating = name in ("scales", "values")
            self.register_buffer(
                name,
                torch.zeros(1 if name == "starts" else 0, dtype=dtype if floating else torch.int32),
            )

    @property
    def units(self) -> int:
        return self.scales.numel()

    @property
    def bias_units(self) -> int:
        return self.scales.numel() - self.inputs.numel()

    def extra_repr(self) -> str:
        return (
            f"{self.kind.name} {self.d_in} -> {self.d_out}, {self.units} kept units, "
            f"{self.values.numel()} kept V weights"
        )

    def signed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[σ(x); σ(−x)] along the unit axis (0 for the transposed dense layout, 1 for images):
        σ(a x) = |a| σ(sign(a) x), the same number as fl(a x) then σ (rounding is symmetric)."""
        axis = 0 if x.dim() == 2 else 1
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=axis)

    def weight_hidden(self, signed: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """σ(a_h x_j(h)) for weight units ``start:stop`` from :meth:`signed_inputs`."""
        scales = self.scales[start:stop].to(signed.dtype)
        index = self.inputs[start:stop].long() + self.d_in * (scales < 0).long()
        if signed.dim() == 2:  # transposed: (2 d_in, N) → (units, N)
            return signed.index_select(0, index) * scales.abs()[:, None]
        return signed.index_select(1, index) * scales.abs().view(1, -1, 1, 1)

    def block(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """V's columns ``start:stop`` as a dense (rows, stop − start) block."""
        begin, end = int(self.starts[start]), int(self.starts[stop])
        counts = (self.starts[start + 1 : stop + 1] - self.starts[start:stop]).long()
        columns = torch.repeat_interleave(torch.arange(stop - start, device=counts.device), counts)
        dense = torch.zeros(
            self.d_out * self.kind.taps, stop - start, dtype=dtype, device=self.values.device
        )
        dense[self.rows[begin:end].long(), columns] = self.values[begin:end].to(dtype)
        return dense

    def forward_in(self, x: torch.Tensor) -> torch.Tensor:
        """The pair on ``x`` already in the accumulation dtype; the output in that dtype.

        Weight units and bias units are summed in separate products and then added: still a
        sum of each output's kept terms in some order, which is all the certificate assumes."""
        if x.dim() == 2:
            return self._dense_forward(x)
        kind = self.kind
        h, w = kind.out_hw
        out = x.new_zeros(x.shape[0], self.d_out, h, w)
        signed = self.signed_inputs(x)
        weight_units = self.inputs.numel()
        for start in range(0, self.units, CHUNK_UNITS):
            stop = min(self.units, start + CHUNK_UNITS)
            for first, last in ((start, min(stop, weight_units)), (max(start, weight_units), stop)):
                if first >= last:
                    continue
                if first < weight_units:
                    hidden = self.weight_hidden(signed, first, last)
                else:
                    constant = torch.relu(self.scales[first:last].to(x.dtype))
                    hidden = constant.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:])
                weight = kind.from_rows(self.block(first, last, x.dtype), self.d_out)
                out += functional.conv2d(
                    hidden, weight, None, kind.stride, kind.padding, kind.dilation
                )
        return out

    def _dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """A dense pair in the transposed layout: the gather copies whole rows of [σ(x); σ(−x)]ᵀ
        (one per kept unit, the batch contiguous), and each block multiplies as V_block · Hᵀ;
        the bias units' constant outputs go through V once, as a vector."""
        signed = self.signed_inputs(x.T.contiguous())
        out = x.new_zeros(self.d_out, x.shape[0])
        weight_units = self.inputs.numel()
        for start in range(0, weight_units, CHUNK_UNITS):
            stop = min(weight_units, start + CHUNK_UNITS)
            out.addmm_(self.block(start, stop, x.dtype), self.weight_hidden(signed, start, stop))
        if self.units > weight_units:
            constant = torch.relu(self.scales[weight_units:].to(x.dtype))
            out += (self.block(weight_units, self.units, x.dtype) @ constant)[:, None]
        return out.T


class SparseTicket(nn.Module):
    """A ticket network on its kept weights, laid out like its target: the target's operations
    (``nn.ReLU``, ``nn.Flatten``, pools) with each layer replaced by a :class:`SparsePair`.

    Built by ``ticket.export(sparse=True)``; an empty one to load a ``state_dict`` into by
    :meth:`empty`. Inputs of either float dtype are accepted: float32 into a float64 module is
    converted exactly; float64 into a float32 module is converted when its values are float32
    numbers and refused otherwise (:func:`sslth.inputs.accept_input`; the certificate covers
    float32 inputs of norm ≤ R).
    """

    def __init__(self, target: Target, dtype: torch.dtype, accumulate: str | None = None) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise NotATicketError(f"a sparse ticket holds float32 or float64 weights, not {dtype}")
        accumulate = accumulate or "float64"
        if accumulate not in ACCUMULATIONS:
            raise NotATicketError(
                f"accumulate must be one of {sorted(ACCUMULATIONS)}, got {accumulate!r}"
            )
        if dtype == torch.float64 and accumulate != "float64":
            raise NotATicketError("a float64 sparse ticket accumulates in float64")
        self.dtype, self.accumulate = dtype, accumulate
        self.structure = target.describe()
        self.input_shape = tuple(target.input_shape)
        self.register_buffer("target_digest", target_digest(target))
        modules: list[nn.Module] = []
        for index in range(len(target.layers) + 1):
            modules += [op.module() for op in target.ops[index]]
            if index < len(target.layers):
                layer = target.layers[index]
                modules.append(SparsePair(layer.kind, layer.d_in, layer.d_out, dtype))
        self.layers = nn.ModuleList(modules)

    @classmethod
    def empty(
        cls,
        target,
        dtype: torch.dtype = torch.float64,
        accumulate: str | None = None,
        *,
        input_shape=None,
    ) -> SparseTicket:
        """A module with ``target``'s layout and no weights, to ``load_state_dict`` into."""
        from sslth.target import as_target

        return cls(as_target(target, input_shape=input_shape), dtype, accumulate)

    def pairs(self) -> list[SparsePair]:
        return [m for m in self.layers if isinstance(m, SparsePair)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._accept(x)
        x = x.reshape(x.shape[0], *self.input_shape)
        for module in self.layers:
            x = self.run_pair(module, x) if isinstance(module, SparsePair) else module(x)
        return x

    def run_pair(self, pair: SparsePair, x: torch.Tensor) -> torch.Tensor:
        """One pair as the forward pass runs it: in the accumulation dtype, stored back; by the
        compiled kernel on the CPU (:mod:`sslth.sparse_kernel`), else by the torch layout."""
        accumulation = ACCUMULATIONS[self.accumulate]
        library = sparse_kernel() if x.device.type == "cpu" else None
        if library is not None:
            try:
                return run_kernel(library, pair, x, accumulation)
            except ValueError as error:
                raise NotATicketError(f"the sparse ticket cannot run: {error}") from None
        return pair.forward_in(x.to(accumulation)).to(self.dtype)

    def _accept(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the module's dtype, converted exactly or refused (:func:`accept_input`)."""
        return accept_input(x, self.dtype, self.values_device())

    def values_device(self) -> torch.device:
        return self.target_digest.device

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
    ) -> None:
        digest = state_dict.get(prefix + "target_digest")
        if digest is not None and not torch.equal(digest.cpu(), self.target_digest.cpu()):
            raise NotATicketError(
                "this sparse ticket was exported for another target (its target digest differs)"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )


def _resize_and_load(pair: SparsePair, state_dict, prefix, *rest) -> None:
    """Buffers of a :class:`SparsePair` take the sizes of the saved ones (their sizes are the
    ticket's kept counts); the dtype must be the module's."""
    for name in _BUFFERS:
        saved = state_dict.get(prefix + name)
        if saved is None:
            continue
        mine = getattr(pair, name)
        if not isinstance(saved, torch.Tensor) or saved.dtype != mine.dtype or saved.dim() != 1:
            raise NotATicketError(
                f"sparse pair {prefix or '.'}: buffer {name} is "
                f"{getattr(saved, 'dtype', type(saved).__name__)}"
                f"{tuple(getattr(saved, 'shape', ()))}, this module holds {mine.dtype} vectors "
                "(a module of another dtype?)"
            )
        setattr(pair, name, torch.empty_like(saved, device=mine.device))
    nn.Module._load_from_state_dict(pair, state_dict, prefix, *rest)


SparsePair._load_from_state_dict = _resize_and_load  # type: ignore[method-assign]


def target_digest(target: Target) -> torch.Tensor:
    """SHA-256 of a target's structure and weights, as 32 uint8: a loaded sparse ticket must
    belong to the target it is used with."""
    return torch.frombuffer(bytearray(bytes.fromhex(target.digest())), dtype=torch.uint8).clone()


# --------------------------------------------------------------------------- building one


def fill_pair(
    pair: SparsePair,
    a: torch.Tensor,
    column: torch.Tensor,
    c: torch.Tensor,
    rows_matrix: torch.Tensor,
) -> None:
    """Fill ``pair`` from a masked pair given per hidden unit: its U entry ``a`` (0 if pruned),
    the input it reads, its bias ``c`` (0 if none or pruned) and V's matrix view
    ``rows_matrix`` (rows, units), masked. Units with no input weight and no positive bias
    output exactly 0, and units no row uses contribute nothing: both are dropped.

    Raises:
        NotATicketError: a unit has both an input weight and a bias.
    """
    if bool(((a != 0) & (c != 0)).any()):
        h = int(((a != 0) & (c != 0)).nonzero()[0])
        raise NotATicketError(f"hidden unit {h} has both an input weight and a bias")
    used = (rows_matrix != 0).any(dim=0)
    weight_units = ((a != 0) & used).nonzero().squeeze(1)
    bias_units = ((a == 0) & (c > 0) & used).nonzero().squeeze(1)
    order = torch.cat([weight_units, bias_units])
    kept = rows_matrix[:, order]
    entries = (kept != 0).T  # (units, rows): column-major order of the kept entries
    unit_of, row_of = entries.nonzero(as_tuple=True)
    counts = torch.bincount(unit_of, minlength=order.numel())
    dtype = pair.scales.dtype
    pair.inputs = column[weight_units].to(torch.int32).contiguous()
    pair.scales = torch.cat([a[weight_units], c[bias_units]]).to(dtype).contiguous()
    starts = torch.zeros(order.numel() + 1, dtype=torch.int64)
    starts[1:] = counts.cumsum(0)
    if starts[-1] >= 2**31:
        raise NotATicketError("a pair with 2^31 or more kept V weights is not supported")
    pair.starts = starts.to(torch.int32)
    pair.rows = row_of.to(torch.int32).contiguous()
    pair.values = kept.T[unit_of, row_of].to(dtype).contiguous()


def sparse_from_parts(
    target: Target, parts, dtype: torch.dtype, accumulate: str | None, device
) -> SparseTicket:
    """A :class:`SparseTicket` from per-pair (a, column, c, V rows) as :func:`fill_pair` takes."""
    module = SparseTicket(target, dtype, accumulate)
    for pair, (a, column, c, rows_matrix) in zip(module.pairs(), parts, strict=True):
        fill_pair(pair, a, column, c, rows_matrix)
    return module.to(device)


def kept_bytes(module: SparseTicket) -> int:
    """Bytes of the module's buffers (its whole state)."""
    return sum(b.numel() * b.element_size() for b in module.buffers())


def kept_weights(module: SparseTicket) -> int:
    """Kept weights the module holds: one U entry (or bias) per unit and its V entries."""
    return sum(p.units + p.values.numel() for p in module.pairs())


def multiply_adds(module: SparseTicket) -> int:
    """Multiply-adds of one input through a faithful sparse execution: one per unit and per kept
    V weight, times the output positions (conv)."""
    total = 0
    for p in module.pairs():
        total += p.units * p.kind.in_positions + p.values.numel() * p.kind.positions
    return total


__all__ = ["SparsePair", "SparseTicket", "kept_bytes", "kept_weights", "multiply_adds"]


def parts_from_masks(spec, masks) -> tuple:
    """(a, column, c, V rows) of a ticket's pair from its compact masks and the seed, over the
    kept units only (never the dense U nor all of V's unkept columns)."""
    from sslth.construct import block_diagonal, block_second

    matrix = spec.kind.to_rows(masks.second)
    a, column, c, columns = [], [], [], []
    for block in range(spec.blocks):
        start, stop = spec.block_offsets[block], spec.block_offsets[block + 1]
        chosen = masks.kept_neurons[start:stop].nonzero().squeeze(1)
        if chosen.numel() == 0:
            continue
        value = block_diagonal(spec, block)[chosen].to(torch.float64)
        zero = torch.zeros_like(value)
        is_bias = block >= spec.d_in
        a.append(zero if is_bias else value)
        c.append(value if is_bias else zero)
        column.append(torch.full((chosen.numel(),), min(block, spec.d_in - 1), dtype=torch.long))
        columns.append(block_second(spec, block)[:, chosen] * matrix[:, start + chosen])
    if not a:
        empty = torch.zeros(0, dtype=torch.float64)
        return empty, torch.zeros(0, dtype=torch.long), empty, torch.zeros(spec.rows, 0)
    return torch.cat(a), torch.cat(column), torch.cat(c), torch.cat(columns, dim=1)


def parts_from_reading(reading, kind: LayerKind) -> tuple:
    """(a, column, c, V rows) of a pair read from a ticket network (its effective weights).

    Raises:
        NotATicketError: a hidden unit reads two inputs.
    """
    u = reading.first_weight.reshape(reading.first_weight.shape[0], -1)
    reads = (u != 0).sum(dim=1)
    if bool((reads > 1).any()):
        h = int((reads > 1).nonzero()[0])
        raise NotATicketError(f"hidden neuron {h} reads {int(reads[h])} inputs: not a ticket")
    column = (u != 0).to(torch.int8).argmax(dim=1)
    a = u.gather(1, column[:, None]).squeeze(1).to(torch.float64)
    c = torch.zeros_like(a)
    if reading.first_bias is not None:
        c = reading.first_bias.to(torch.float64)
    return a.cpu(), column.cpu(), c.cpu(), kind.to_rows(reading.second_weight).cpu()


def export_sparse(ticket, accumulate: str | None = None) -> SparseTicket:
    """``ticket.export(sparse=True)``: from the network as it is when it has been built (so
    edited masks are what is exported), else from the masks and the seed.

    Raises:
        NotATicketError: a graph target (residual adds, BatchNorm): its sparse export would
            plug a :class:`SparsePair` into each layer of the graph's steps; not built yet.
    """
    if ticket.target.graph:
        raise NotATicketError(
            "export(sparse=True) supports chain targets (Linear/Conv2d, ReLU, pools, Flatten) "
            "so far, not graph targets: use ticket.export(compact=True)"
        )
    if ticket._network is not None:
        from sslth.network import read_ticket_network

        readings, _ = read_ticket_network(ticket.target, ticket.network)
        parts = [
            parts_from_reading(reading, layer.kind)
            for reading, layer in zip(readings, ticket.target.layers, strict=True)
        ]
        dtype = readings[0].second_weight.dtype
        device = readings[0].second_weight.device
    else:
        parts = [parts_from_masks(s, m) for s, m in zip(ticket.specs, ticket.masks, strict=True)]
        dtype, device = ticket.dtype, ticket.device
    return sparse_from_parts(ticket.target, parts, dtype, accumulate, device)
