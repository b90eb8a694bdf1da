"""Ticket files (sslth/ticket.py): the content digest guards every field.

An outside mutation audit found that removing or retyping ``content_sha256`` went unnoticed by
the suite; each form is refused here with one line, and the untouched file still loads.
"""

from __future__ import annotations

import pytest
import torch

import sslth
from sslth.config import random_target
from sslth.ticket import _content_digest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    target = random_target([3, 4, 2], bias=True, seed=11)
    ticket = sslth.prune(target, 0.1, 0.5, progress=False, empirical_samples=200)
    return ticket.save(tmp_path_factory.mktemp("ticket") / "ticket.pt")


def _rewrite(path, tmp_path, edit):
    payload = torch.load(path, weights_only=True)
    edit(payload)
    out = tmp_path / "edited.pt"
    torch.save(payload, out)
    return out


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.pop("content_sha256"),
        lambda p: p.update(content_sha256=None),
        lambda p: p.update(content_sha256=p["content_sha256"].encode()),
        lambda p: p.update(content_sha256=[p["content_sha256"]]),
        lambda p: p.update(content_sha256=int(p["content_sha256"], 16)),
        lambda p: p.update(content_sha256=p["content_sha256"].upper()),
        lambda p: p.update(content_sha256=""),
    ],
    ids=["removed", "none", "bytes", "list", "int", "upper-case", "empty"],
)
def test_a_removed_or_retyped_digest_is_refused(saved, tmp_path, edit):
    with pytest.raises(sslth.NotATicketError, match="SHA-256"):
        sslth.load(_rewrite(saved, tmp_path, edit), samples=100)


def test_a_field_edited_under_the_old_digest_is_refused_and_the_file_itself_loads(saved, tmp_path):
    def bump_seed(payload):
        payload["metadata"] = payload["metadata"].replace('"seed": ', '"seed": 1', 1)

    with pytest.raises(sslth.NotATicketError, match="SHA-256"):
        sslth.load(_rewrite(saved, tmp_path, bump_seed), samples=100)
    payload = torch.load(saved, weights_only=True)
    assert payload["content_sha256"] == _content_digest(payload)
    assert sslth.load(saved, samples=100).report.certified_error <= 0.1
