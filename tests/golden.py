"""Golden tickets: the masks (a SHA-256 per layer) and report figures of a fixed set of targets.

``python -m tests.golden --write`` records them into ``tests/data/golden.json``; the
regression test (``tests/test_golden.py``) rebuilds the fast ones and compares. A deliberate
change of the search or the certificate re-records them, and says why in the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import torch

import sslth
from sslth.config import random_target as family_target
from sslth.experiments import theorem3

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden.json"
DIGITS_TARGET = DATA / "digits_target.pt"
DIGITS_SETTINGS = {"epsilon": 0.0638, "radius": 4.806, "density": 0.1}

# report fields that depend only on the masks and the weights (not on timing or versions)
FIELDS = ("certified_error", "density", "density_block", "random_params", "ticket_params")


def _conftest_target(seed: int, depth: int, bias: bool):
    from tests.conftest import random_target

    return random_target(random.Random(seed), depth=depth, bias=bias)


def cases() -> dict[str, tuple[object, dict, bool]]:
    """name -> (target, prune keyword arguments, in the fast tier): the fast tier keeps one
    case of each family (automatic sizes, bias, fixed n and k); the whole suite runs all."""
    out: dict[str, tuple[object, dict, bool]] = {}
    for seed in (0, 1):
        for density in (0.5, 0.2, 0.05):
            out[f"theorem3-quick-w4-l2-s{seed}-g{density:g}"] = (
                theorem3.make_target(4, 2, seed),
                dict(
                    epsilon=0.1,
                    density=density,
                    seed=seed,
                    refine=True,
                    max_random_params=200_000,
                ),
                seed == 0 and density == 0.5,
            )
    out["bias-random-10-12-3"] = (
        family_target([10, 12, 3], bias=True, seed=1),
        dict(epsilon=0.05, density=0.3),
        False,
    )
    for seed, depth in ((11, 1), (12, 2), (13, 3)):
        out[f"bias-conftest-s{seed}-l{depth}"] = (
            _conftest_target(seed, depth, True),
            dict(epsilon=0.05, density=0.3, seed=seed),
            depth == 1,
        )
    out["fixed-n-k-bias"] = (
        _conftest_target(21, 2, True),
        dict(epsilon=0.2, density=1.0, n=12, k=4, seed=3),
        True,
    )
    if DIGITS_TARGET.is_file():
        out["digits-64-32-10"] = (
            _digits_target(),
            dict(
                epsilon=DIGITS_SETTINGS["epsilon"],
                density=DIGITS_SETTINGS["density"],
                radius=DIGITS_SETTINGS["radius"],
            ),
            False,
        )
    out["random-196-100-10"] = (
        family_target([196, 100, 10], seed=0),
        dict(epsilon=0.01, density=0.1),
        False,
    )
    return out


def _digits_target() -> torch.nn.Sequential:
    state = torch.load(DIGITS_TARGET, weights_only=True)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model.load_state_dict(state)
    return model


def fingerprint(ticket: sslth.Ticket) -> dict:
    """Mask hashes per layer, n and k per layer, and the report's mask-determined figures."""
    layers = []
    for masks in ticket.masks:
        digest = hashlib.sha256()
        digest.update(masks.kept_neurons.to(torch.uint8).numpy().tobytes())
        digest.update(masks.second.to(torch.uint8).numpy().tobytes())
        layers.append(digest.hexdigest())
    report = ticket.report
    return {
        "masks": layers,
        "n": report.n,
        "k": report.k,
        **{name: getattr(report, name) for name in FIELDS},
    }


def build(name: str, target, kwargs: dict) -> dict:
    try:
        ticket = sslth.prune(target, progress=False, empirical_samples=500, **kwargs)
        found = True
    except sslth.TicketNotFound as error:
        ticket, found = error.best, False
    return {"found": found, **fingerprint(ticket)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, (target, kwargs, _) in cases().items():
        results[name] = build(name, target, kwargs)
        print(name, json.dumps(results[name])[:200], flush=True)
    if args.write:
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    elif GOLDEN.is_file():
        stored = json.loads(GOLDEN.read_text())
        bad = [name for name in results if stored.get(name) != results[name]]
        print("differs:", bad or "nothing")


if __name__ == "__main__":
    main()
