"""The fields of a ticket file that :meth:`sslth.Ticket.load` checks beyond their values: which
keys a file may hold, a pair spec in the exact form :meth:`PairSpec.to_dict` writes, the target's
tensors, and the stored report's types.

A file is refused when anything in it is not what :meth:`sslth.Ticket.save` writes: an unknown
key, a grown block out of range, a tensor of another dtype or layout, a report field of the wrong
type. Every refusal is a :class:`~sslth.errors.NotATicketError` of one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from sslth.construct import PairSpec
from sslth.errors import NotATicketError
from sslth.report import LayerReport, Report

HEADER_KEYS = ("format", "format_version", "metadata", "checksums", "content_sha256")
METADATA_KEYS = (
    "seed",
    "epsilon",
    "radius",
    "density_limit",
    "dtype",
    "tolerances",
    "solver",
    "structure",
    "specs",
    "report",
)
# target weights as Ticket.save writes them (float64), or float32 (converted without loss)
TARGET_DTYPES = (torch.float64, torch.float32)
_TEXT_LIMIT = 200  # characters of a name (solver, device, ...) printed in a report


def check_keys(keys, expected, what: str, path: Path) -> None:
    """Refuse keys beyond ``expected`` (missing ones are refused by their own checks)."""
    unknown = sorted(str(key) for key in keys if key not in set(expected))
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise NotATicketError(f"{path}: unknown {what} {shown}{more}")


def check_plain_tensors(payload: dict, path: Path) -> None:
    """Every tensor of the file is a plain dense (strided, not quantized) tensor: the only
    kind save writes, and the only kind whose bytes the content digest reads."""
    for key, value in payload.items():
        if isinstance(value, torch.Tensor) and (
            type(value) is not torch.Tensor or value.layout != torch.strided or value.is_quantized
        ):
            raise NotATicketError(f"{path}: field {str(key)[:40]!r} is not a plain dense tensor")


def payload_keys(specs: list[PairSpec]) -> list[str]:
    """Every key a file for ``specs`` holds."""
    keys = list(HEADER_KEYS)
    for index, spec in enumerate(specs):
        keys += [f"target.{index}.weight", f"mask.{index}.kept_neurons", f"mask.{index}.second"]
        if spec.has_bias:
            keys.append(f"target.{index}.bias")
    return keys


def spec_problem(raw: dict, spec: PairSpec) -> str | None:
    """Why ``raw`` is not the dict ``spec.to_dict()`` writes (types, order of ``grown``
    included), or why its grown blocks cannot be; None when it is."""
    for entry in spec.grown:
        block, neurons = entry
        if not 0 <= block < spec.blocks:
            return f"grown block {block} is not one of its {spec.blocks} blocks"
        if neurons < spec.neurons_per_input:
            return f"grown block {block} has n_j = {neurons} < n = {spec.neurons_per_input}"
    written = json.dumps(spec.to_dict(), sort_keys=True)
    if json.dumps(raw, sort_keys=True) != written:
        return "its fields are not what save writes (a type, a duplicate or unordered grown block)"
    return None


def check_target_tensor(tensor: torch.Tensor, name: str, path: Path) -> None:
    """A target weight or bias: a plain dense float64 (or float32) tensor of finite values."""
    if type(tensor) is not torch.Tensor or tensor.layout != torch.strided:
        raise NotATicketError(f"{path}: target {name} is not a plain dense tensor")
    if tensor.dtype not in TARGET_DTYPES:
        raise NotATicketError(
            f"{path}: target {name} is {str(tensor.dtype).replace('torch.', '')}, not float64 "
            "or float32 (a conversion would change or drop values)"
        )
    if not torch.isfinite(tensor).all():
        raise NotATicketError(f"{path}: target {name} has NaN or Inf")


def check_text(value, name: str, path: Path) -> str:
    """A name printed in a report: one printable line, not too long."""
    if not isinstance(value, str) or not value.isprintable() or len(value) > _TEXT_LIMIT:
        raise NotATicketError(
            f"{path}: {name} must be one printable line of at most {_TEXT_LIMIT} characters"
        )
    return value


def stored_report(data, path: Path) -> Report | None:
    """The report a file claims, each field of the type :class:`Report` declares."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise NotATicketError(f"{path}: the stored report is malformed (not an object)")
    data = {"construction": "2l", **data}  # files from before the l+1 construction
    _check_fields(Report, data, "report", path)
    layers = data["layers"]
    if not isinstance(layers, list):
        raise NotATicketError(f"{path}: the stored report is malformed (layers is not a list)")
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise NotATicketError(f"{path}: the stored report is malformed (layer {index})")
        _check_fields(LayerReport, layer, f"report layer {index}", path)
    for name, kind in (("timings", "number"), ("versions", "text")):
        values = data[name]
        if not isinstance(values, dict) or not all(
            _is(key, "text") and _is(value, kind) for key, value in values.items()
        ):
            raise NotATicketError(f"{path}: the stored report is malformed ({name})")
    return Report.from_dict(data)


def _check_fields(cls, data: dict, what: str, path: Path) -> None:
    fields = {field.name: field.type for field in dataclasses.fields(cls)}
    unknown = sorted(str(key)[:40] for key in data if key not in fields)
    if unknown:
        raise NotATicketError(
            f"{path}: the stored report is malformed ({what} has unknown field {unknown[0]!r})"
        )
    for name, declared in fields.items():
        if name not in data:
            raise NotATicketError(f"{path}: the stored report is malformed ({what} lacks {name})")
        kind = {"float": "number", "int": "integer", "str": "text"}.get(declared)
        if kind is not None and not _is(data[name], kind):
            raise NotATicketError(
                f"{path}: the stored report is malformed ({what} {name} is not a {kind})"
            )


def _is(value, kind: str) -> bool:
    """``value`` is a JSON ``kind``: text (one printable line), integer or number (not a bool;
    NaN is a number: an empirical error can be NaN)."""
    if kind == "text":
        return isinstance(value, str) and value.isprintable() and len(value) <= _TEXT_LIMIT
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == "integer" else isinstance(value, (int, float))
