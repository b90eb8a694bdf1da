"""``sslth verify`` agrees with the report it checks, by construction.

An evaluated ticket's report and the one ``load`` recomputes are the same numbers computed the
same way: both reduce each pair through ``certify._Reduction``, whose sums over neurons run in
neuron order whatever the chunking (the network's pair in chunks of V, the compact masks block
by block), and which counts a bias neuron apart from the input column it is filed under. Before,
17 of 337 untampered float64 tickets of an outside audit failed ``verify``: a bias neuron was
counted in column 0 by one path and column d_in − 1 by the other (changing the terms per entry
of the float64 rounding of A, B and the offset), and the offset was a matmul over the chunk.
"""

import math
import random

import pytest
import torch

import sslth
from sslth.certificate import _Reduction, recomputation_tolerance
from sslth.cli import main, verification_problems
from sslth.kinds import DENSE
from tests.random_tickets import random_ticket

FIELDS = ("certified_error", "certified_error_exact", "rounding_error", "density", "density_block")


def _saved_and_loaded(ticket: sslth.Ticket, path, rng: random.Random) -> sslth.Ticket:
    """Evaluate the ticket (from its network half the time, as after ``ticket(x)``), save it,
    load it (which recomputes the report from the masks)."""
    if rng.random() < 0.5:
        ticket.network  # noqa: B018  (built: evaluate reads the modules as they run)
    ticket.evaluate(samples=16, ascent_steps=1)
    ticket.save(path)
    return sslth.load(path, samples=16)


def _check_agreement(count: int, seed: int, tmp_path) -> int:
    rng = random.Random(seed)
    for index in range(count):
        ticket = random_ticket(rng)
        loaded = _saved_and_loaded(ticket, tmp_path / f"t{index}.pt", rng)
        assert verification_problems(loaded) == []
        for name in FIELDS:  # bit for bit, not merely within verify's tolerance
            assert getattr(loaded.report, name) == getattr(ticket.report, name), name
    return count


def test_random_evaluated_tickets_verify(tmp_path, one_thread):
    assert _check_agreement(12, seed=0, tmp_path=tmp_path) == 12


@pytest.mark.slow
def test_100_random_evaluated_tickets_verify(tmp_path, one_thread):
    # scripts/verify_agreement.py runs 320 (0 failures, 0 fields off by a bit)
    assert _check_agreement(100, seed=1, tmp_path=tmp_path) == 100


def test_network_and_masks_give_the_same_bits(one_thread):
    rng = random.Random(5)
    for _ in range(10):
        ticket = random_ticket(rng)
        from_masks = ticket.evaluate(samples=8, ascent_steps=1)
        ticket.network  # noqa: B018
        from_network = ticket.evaluate(samples=8, ascent_steps=1)
        for name in FIELDS:
            assert getattr(from_network, name) == getattr(from_masks, name), name


def test_the_reduction_does_not_depend_on_chunks_or_bias_columns():
    generator = torch.Generator().manual_seed(0)
    hidden, d_in, d_out = 40, 5, 3
    a = torch.randn(hidden, generator=generator, dtype=torch.float64)
    column = torch.randint(0, d_in, (hidden,), generator=generator)
    c = torch.zeros(hidden, dtype=torch.float64)
    a[30:], c[30:] = 0.0, torch.rand(10, generator=generator, dtype=torch.float64)  # bias
    v = torch.randn(d_out, hidden, generator=generator, dtype=torch.float64) * 1e3

    def reduce(bounds, bias_column):
        filed = column.clone()
        filed[30:] = bias_column
        reduction = _Reduction(d_in, d_out, DENSE, torch.device("cpu"))
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            reduction.add(a[start:stop], filed[start:stop], c[start:stop], v[:, start:stop])
        return reduction.result()

    one = reduce([0, hidden], 0)
    for bounds, bias_column in (([0, 7, 30, 33, hidden], d_in - 1), ([0, 1, 2, hidden], 2)):
        other = reduce(bounds, bias_column)
        for name in ("positive", "negative", "offset"):
            assert torch.equal(getattr(one, name), getattr(other, name)), name
        for name, mine in vars(one.stats).items():
            theirs = getattr(other.stats, name)
            same = torch.equal(mine, theirs) if isinstance(mine, torch.Tensor) else mine == theirs
            assert same, name


def test_verify_tolerance_comes_from_the_norm_error():
    # one norm per layer in each product: ((1 + s) / (1 − s))^l − 1, about 2·l·s
    assert math.isclose(recomputation_tolerance(3), 6e-9, rel_tol=1e-6)
    assert recomputation_tolerance(1) < recomputation_tolerance(2)


def test_verify_cli_accepts_an_evaluated_ticket_and_refuses_an_edited_report(tmp_path, capsys):
    rng = random.Random(3)
    ticket = random_ticket(rng)
    ticket.network  # noqa: B018
    ticket.evaluate(samples=16, ascent_steps=1)
    ticket.save(tmp_path / "t.pt")
    assert main(["verify", str(tmp_path / "t.pt"), "--samples", "16"]) == 0
    ticket.report.certified_error *= 1 + 4 * recomputation_tolerance(len(ticket.specs))
    ticket.save(tmp_path / "edited.pt")
    assert main(["verify", str(tmp_path / "edited.pt"), "--samples", "16"]) == 1
    assert "stored certified_error" in capsys.readouterr().err
