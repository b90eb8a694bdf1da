"""Untampered, evaluated random tickets must pass ``sslth verify``: build COUNT random tickets
(dense and conv, with and without biases, float64 and float32, some evaluated from their built
network), save, load (which recomputes the report), and count verify's problems and the
fields that differ from the stored report by even one bit.

    python scripts/verify_agreement.py [COUNT] [SEED]
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import torch

import sslth
from sslth.cli import verification_problems

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.random_tickets import random_ticket  # noqa: E402

FIELDS = ("certified_error", "certified_error_exact", "rounding_error", "density", "density_block")


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 320
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(1)
    rng = random.Random(seed)
    failures = differing = 0
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            ticket = random_ticket(rng)
            if rng.random() < 0.5:
                ticket.network  # noqa: B018  (evaluate then reads the modules as they run)
            ticket.evaluate(samples=16, ascent_steps=1)
            path = ticket.save(Path(folder) / f"t{index}.pt")
            loaded = sslth.load(path, samples=16)
            problems = verification_problems(loaded)
            failures += bool(problems)
            differing += any(
                getattr(loaded.report, name) != getattr(ticket.report, name) for name in FIELDS
            )
            if problems:
                print(f"ticket {index}: {'; '.join(problems)}")
    print(f"{count} tickets: {failures} verify failures, {differing} with a field not bit-equal")
    return int(bool(failures or differing))


if __name__ == "__main__":
    sys.exit(main())
