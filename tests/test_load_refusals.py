"""``sslth.load`` refuses every malformed ticket file with a NotATicketError naming what is wrong.

Each case is a copy of one good file with one field edited, its content SHA-256 recomputed as a
deliberate forger would (so the field's own check is what refuses it, not the digest). The
refusals already covered elsewhere (tests/test_trust.py: radius, ε, density, tolerances, checksum
count, seed range, dtype, NaN weight, n, a missing mask, an edited report or mask under the
old digest; tests/test_prune.py: a pickle, a foreign file, a missing file) are not repeated.
"""

from __future__ import annotations

import json

import pytest
import torch

import sslth
from sslth.config import random_target
from sslth.errors import NotATicketError
from sslth.ticket import FORMAT_VERSION, _content_digest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    target = random_target([4, 6, 3], bias=True, seed=3)
    ticket = sslth.prune(target, 0.1, 0.4, progress=False, empirical_samples=200)
    return ticket.save(tmp_path_factory.mktemp("good") / "ticket.pt")


def _forge(path, tmp_path, edit, *, digest: bool = True):
    payload = torch.load(path, weights_only=True)
    original = payload["metadata"]
    metadata = json.loads(original)
    edit(payload, metadata)
    if payload.get("metadata") is original:  # the edit changed the parsed metadata, if at all
        payload["metadata"] = json.dumps(metadata)
    if digest:
        payload["content_sha256"] = _content_digest(payload)
    out = tmp_path / "forged.pt"
    torch.save(payload, out)
    return out


def _set(**fields):
    return lambda payload, metadata: metadata.update(fields)


def _spec(index: int, **fields):
    return lambda payload, metadata: metadata["specs"][index].update(fields)


def _tensor(key: str, value):
    return lambda payload, metadata: payload.update({key: value(payload[key])})


def _drop(key: str):
    return lambda payload, metadata: payload.pop(key)


def _pop_field(name: str):
    return lambda payload, metadata: metadata.pop(name)


def _structure(edit):
    return lambda payload, metadata: edit(metadata["structure"])


def _other_checksum(payload, metadata):
    payload["checksums"] = [payload["checksums"][0], "0" * 64]


def _shorter_mask(payload, metadata):
    payload["mask.0.second"] = payload["mask.0.second"][:-1]


def _longer_mask(payload, metadata):
    extra = torch.zeros(1, dtype=torch.uint8)
    payload["mask.0.second"] = torch.cat([payload["mask.0.second"], extra])


def _report(**fields):
    return lambda payload, metadata: metadata["report"].update(fields)


def _report_layer(**fields):
    return lambda payload, metadata: metadata["report"]["layers"][0].update(fields)


def _grown_twice(payload, metadata):
    metadata["specs"][0]["grown"] = [[1, 99], [1, 98]]


def _drop_bias_spec_keeps_tensor(payload, metadata):
    """Layer 0 claims no bias (its checksum and seed recomputed would follow) but the tensor
    stays: the key is refused before anything else reads it."""
    metadata["specs"][0]["has_bias"] = False


def _mask_padding(payload, metadata):
    packed = payload["mask.0.kept_neurons"].clone()
    packed[-1] |= 1  # 170 neurons in 22 bytes: the last byte's lowest bit is padding
    payload["mask.0.kept_neurons"] = packed


def _bad_report(payload, metadata):
    metadata["report"] = {"certified_error": 0.01, "not_a_field": 1}


@pytest.mark.parametrize(
    "edit, needle",
    [
        # the header
        (lambda p, m: p.update(format_version=FORMAT_VERSION - 1), "format version 1 is not 2"),
        (lambda p, m: p.pop("format_version"), "format version None"),
        (lambda p, m: p.update(format="sslth-tickets"), "no 'sslth-ticket' header"),
        # the metadata as a whole
        (lambda p, m: p.update(metadata="{not json"), "metadata is missing or not JSON"),
        (lambda p, m: p.pop("metadata"), "metadata is missing or not JSON"),
        (lambda p, m: p.update(metadata=torch.zeros(2)), "metadata is missing or not JSON"),
        (lambda p, m: p.update(metadata="[1, 2]"), "metadata is not a JSON object"),
        # scalar fields
        (_pop_field("seed"), "field 'seed' is missing"),
        (_pop_field("epsilon"), "field 'epsilon' is missing"),
        (_pop_field("dtype"), "field 'dtype' is missing"),
        (_pop_field("tolerances"), "field 'tolerances' is missing"),
        (_set(seed=True), "seed must be an integer"),
        (_set(seed=-1), "seed must be an integer"),
        (_set(seed=1.5), "seed must be an integer"),
        (_set(epsilon="0.1"), "epsilon must be a number, got '0.1'"),
        (_set(radius=True), "radius must be a number, got True"),
        (_set(radius=0), "radius must be finite and > 0"),
        (_set(density_limit=float("inf")), "density_limit must be finite and > 0"),
        (_set(tolerances=[1e-3, -1e-3]), "tolerances must be 2 finite positive numbers"),
        (_set(tolerances=[1e-3, True]), "tolerances must be 2 finite positive numbers"),
        (_set(tolerances=[1e-3, "x"]), "tolerances must be 2 finite positive numbers"),
        (_set(tolerances=1e-3), "tolerances must be 2 finite positive numbers"),
        # the pair specs
        (_set(specs=[]), "specs must be a non-empty list"),
        (_set(specs={"0": {}}), "specs must be a non-empty list"),
        (_pop_field("specs"), "field 'specs' is missing"),
        (_spec(0, extra=1), "spec of layer 0 is malformed"),
        (_spec(1, kind={"kind": "sparse"}), "spec of layer 1 is malformed"),
        (_spec(0, kind="dense"), "spec of layer 0 is malformed"),
        (lambda p, m: m["specs"].__setitem__(0, [1, 2]), "spec of layer 0 is malformed"),
        (lambda p, m: m["specs"][0].pop("d_in"), "spec of layer 0 is malformed"),
        (_spec(0, d_in="4"), "layer 0 d_in must be >= 1"),
        (_spec(1, d_out=True), "layer 1 d_out must be >= 1"),
        (_spec(1, d_in=0), "layer 1 d_in must be >= 1"),
        (_spec(0, has_bias=1), "layer 0's seed or bias flag is inconsistent"),
        (_spec(1, seed=12345), "layer 1's seed or bias flag is inconsistent"),
        # the stored random-weight checksums
        (lambda p, m: p.update(checksums="abc"), "checksums must be a list of 2 digests"),
        (lambda p, m: p.pop("checksums"), "checksums must be a list of 2 digests"),
        (_other_checksum, "layer 1 do not match the stored checksum"),
        # the target's tensors
        (_tensor("target.0.weight", lambda w: w.T.contiguous()), "target layer 0 does not match"),
        (_tensor("target.1.weight", lambda w: w[:, :-1]), "target layer 1 does not match"),
        (_drop("target.1.weight"), "target layer 1 does not match its random pair"),
        (_tensor("target.0.weight", lambda w: w.tolist()), "target layer 0 does not match"),
        (_drop("target.0.bias"), "target layer 0: bias does not match its pair"),
        (_tensor("target.1.bias", lambda b: b[:2]), "target layer 1: bias does not match"),
        (_tensor("target.1.bias", lambda b: b.tolist()), "target layer 1: bias does not match"),
        (
            _tensor("target.1.bias", lambda b: torch.where(b == b[0], torch.inf, b)),
            "target layer 1 bias has NaN or Inf",
        ),
        # the packed masks
        (_tensor("mask.0.second", lambda m: m.to(torch.int16)), "not a packed uint8 tensor"),
        (_tensor("mask.1.kept_neurons", lambda m: m[None]), "not a packed uint8 tensor"),
        (_tensor("mask.0.second", lambda m: m.tolist()), "not a packed uint8 tensor"),
        (_shorter_mask, "a mask of 1016 bits does not fit shape"),
        (_longer_mask, "a mask of 1032 bits does not fit shape"),
        # the target's structure
        (_pop_field("structure"), "field 'structure' is missing"),
        (_structure(lambda s: s.pop("ops")), "the target's structure is malformed"),
        (_structure(lambda s: s["ops"].pop()), "the target's structure is malformed"),
        (_structure(lambda s: s["ops"][1].append({"op": "gelu"})), "structure is malformed"),
        (_structure(lambda s: s.update(input_shape=[5])), "the target's structure is malformed"),
        (_structure(lambda s: s.update(input_shape=["x"])), "the target's structure is malformed"),
        # the stored report (kept only for comparison, but it must parse)
        (_bad_report, "the stored report is malformed"),
        (_set(report={"layers": [{"bogus": 1}]}), "the stored report is malformed"),
        (_report(certified_error="0.01"), "report certified_error is not a number"),
        (_report(certified_error=True), "report certified_error is not a number"),
        (_report(seed=1.5), "report seed is not a integer"),
        (_report(solver="auto\n  certified error 0"), "report solver is not a text"),
        (_report(layers={"0": {}}), "layers is not a list"),
        (_report(layers=[1]), "malformed (layer 0)"),
        (_report_layer(k="3"), "report layer 0 k is not a integer"),
        (_report(timings={"certify": "fast"}), "malformed (timings)"),
        (_report(versions={"torch": "2\n"}), "malformed (versions)"),
        (_report(versions=[]), "malformed (versions)"),
        (_set(report=[1]), "the stored report is malformed (not an object)"),
        (_pop_field("report"), "field 'report' is missing"),
        # issue 23: every field is what save writes, or the file is refused
        (_spec(0, grown=[[99, -5]]), "grown block 99 is not one of its 5 blocks"),
        (_spec(0, grown=[[0, 0]]), "grown block 0 has n_j = 0"),
        (_spec(0, grown=[[0, -3]]), "grown block 0 has n_j = -3"),
        (_grown_twice, "not what save writes"),
        (_spec(0, grown=[["1", 99]]), "not what save writes"),
        (_spec(0, grown=[[1.0, 99]]), "not what save writes"),
        (_spec(0, grown=[[True, 99]]), "not what save writes"),
        (_spec(0, grown=[[1, 99, 3]]), "spec of layer 0 is malformed"),
        (_spec(0, grown=[["a", 99]]), "spec of layer 0 is malformed"),
        (_spec(0, grown=5), "spec of layer 0 is malformed"),
        (_spec(0, grown=[5]), "spec of layer 0 is malformed"),
        (lambda p, m: m["specs"][0].pop("grown"), "not what save writes"),
        (_spec(0, kind={"kind": "dense", "extra": 1}), "spec of layer 0 is malformed"),
        (_tensor("target.0.weight", lambda w: w.to(torch.complex128)), "is complex128"),
        (_tensor("target.0.weight", lambda w: (w * 100).to(torch.int64)), "is int64"),
        (_tensor("target.0.weight", lambda w: w.to(torch.float16)), "is float16"),
        (_tensor("target.0.weight", lambda w: w.to(torch.bfloat16)), "is bfloat16"),
        (_tensor("target.1.bias", lambda b: b.to(torch.complex64)), "is complex64"),
        (_tensor("target.0.weight", torch.nn.Parameter), "not a plain dense tensor"),
        (lambda p, m: p.update(extra=torch.zeros(1)), "unknown key 'extra'"),
        (lambda p, m: p.update({"target.2.weight": torch.zeros(1)}), "unknown key"),
        (_drop_bias_spec_keeps_tensor, "unknown key 'target.0.bias'"),
        (_set(note="hi"), "unknown metadata field 'note'"),
        (_set(solver=5), "solver must be one printable line"),
        (_set(solver="auto\n  certified error 1e-9"), "solver must be one printable line"),
        (_set(solver="x" * 201), "solver must be one printable line"),
        (_pop_field("solver"), "field 'solver' is missing"),
        (lambda p, m: p.update(format_version=2.0), "format version 2.0 is not 2"),
        (lambda p, m: p.update(format_version=True), "format version True is not 2"),
        (_mask_padding, "a mask has bits set past its shape"),
    ],
)
def test_each_malformed_field_is_refused_by_name(saved, tmp_path, edit, needle):
    forged = _forge(saved, tmp_path, edit)
    with pytest.raises(NotATicketError) as caught:
        sslth.load(forged, samples=50)
    assert needle in str(caught.value)
    assert str(forged) in str(caught.value)  # the message names the file
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(
    "ops",
    [
        [[], [], []],
        [[], [{"op": "relu"}, {"op": "relu"}], []],
        [[{"op": "relu"}], [{"op": "relu"}], []],
        [[], [{"op": "relu"}], [{"op": "relu"}]],
    ],
    ids=["no-relu", "two-relus", "leading-relu", "trailing-relu"],
)
def test_a_structure_prune_would_refuse_is_refused(saved, tmp_path, ops):
    """prune's activation rules hold for a loaded file too (found by this test: load once
    checked a file's structure only for shapes)."""
    forged = _forge(saved, tmp_path, _structure(lambda s: s.update(ops=ops)))
    with pytest.raises(NotATicketError, match="structure.*ReLU"):
        sslth.load(forged, samples=50)


def test_the_unedited_copy_loads(saved, tmp_path):
    """The forging itself is harmless: a copy with nothing edited loads and re-certifies."""
    ticket = sslth.load(_forge(saved, tmp_path, lambda p, m: None), samples=50)
    assert ticket.report.certified_error == pytest.approx(ticket.stored_report.certified_error)
    assert ticket.report.certified_error <= 0.1


@pytest.mark.parametrize(
    "edit",
    [
        _tensor("mask.1.second", lambda m: m ^ torch.full_like(m, 0b00010000)),  # mask bits
        _set(epsilon=0.5),
        _tensor("target.0.bias", lambda b: b + 1e-3),
        _other_checksum,
    ],
)
def test_any_edit_without_a_new_digest_is_refused(saved, tmp_path, edit):
    forged = _forge(saved, tmp_path, edit, digest=False)
    with pytest.raises(NotATicketError, match="does not match its SHA-256 checksum"):
        sslth.load(forged, samples=50)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "refused by the safe loader"),
        (b"not a zip or a pickle", "refused by the safe loader"),
        (None, "refused by the safe loader"),  # a truncated copy of the good file
    ],
)
def test_unreadable_files_are_refused(saved, tmp_path, content, needle):
    path = tmp_path / "bad.pt"
    path.write_bytes(saved.read_bytes()[:200] if content is None else content)
    with pytest.raises(NotATicketError, match=needle):
        sslth.load(path)


@pytest.mark.parametrize("obj", [[1, 2, 3], torch.ones(3), {"format": "other"}])
def test_other_torch_files_have_no_header(tmp_path, obj):
    torch.save(obj, tmp_path / "other.pt")
    with pytest.raises(NotATicketError, match="no 'sslth-ticket' header"):
        sslth.load(tmp_path / "other.pt")


def test_a_folder_is_neither_loaded_nor_overwritten(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="no ticket file"):
        sslth.load(tmp_path)
    ticket = sslth.load(saved, samples=50)
    with pytest.raises(NotATicketError, match="is a folder"):
        ticket.save(tmp_path)


def test_a_sparse_tensor_is_refused_before_its_digest_is_read(saved, tmp_path):
    """The digest reads a tensor's bytes: a sparse one (which no forger can digest either) is
    refused by name first, not with torch's error."""
    forged = _forge(
        saved, tmp_path, _tensor("target.0.weight", torch.Tensor.to_sparse), digest=False
    )
    with pytest.raises(NotATicketError, match="'target.0.weight' is not a plain dense tensor"):
        sslth.load(forged, samples=50)


@pytest.mark.parametrize(
    "edit",
    [
        _spec(0, grown=[[99, -5]]),
        _spec(0, grown=[[0, 0]]),
        _tensor("target.0.weight", lambda w: w.to(torch.complex128)),
        _set(note="hi"),
    ],
)
def test_verify_refuses_a_malformed_file_in_one_line_with_exit_2(saved, tmp_path, capsys, edit):
    from sslth.cli import main

    forged = _forge(saved, tmp_path, edit)
    assert main(["verify", str(forged), "--samples", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sslth: error: ") and len(err.strip().splitlines()) == 1
