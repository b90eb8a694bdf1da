"""Dressed ticket networks and targets against ``sslth.certify``: certified or refused, and
the observed error of what runs (docs/reliability.md, "Dressings").

Each dressing triples what the first layer computes while something that looks like the
original weights stays in place (tests/test_modules.py holds the same dressings). For each,
the honest 5-8-4 ticket (R = 1.5) is dressed, certified if sslth accepts it, and the module
that runs is attacked on 4,000 points of the sphere; a ratio observed/certified above 1 is a
false certificate. Run with ``PYTHONPATH`` at a checkout to measure that checkout::

    PYTHONPATH=. python3 scripts/attack_dressings.py
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import torch

_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(_ROOT))  # PYTHONPATH, when set, says which sslth is measured

import sslth  # noqa: E402
from sslth.config import random_target  # noqa: E402

_SPEC = importlib.util.spec_from_file_location("dressings", _ROOT / "tests" / "dressings.py")
dressings = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(dressings)
DRESSINGS = dressings.DRESSINGS
RADIUS = 1.5


def _observed(target, network) -> float:
    dtype = next(t for t in network.state_dict().values()).dtype
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 5, generator=generator, dtype=torch.float64)
    x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True) * RADIUS
    with torch.no_grad():
        exact = copy.deepcopy(target).double()(x)
        ran = network(x.to(dtype)).double()
    return float(torch.linalg.vector_norm(exact - ran, dim=1).max())


def main() -> None:
    target = random_target([5, 8, 4], bias=True, seed=3)
    ticket = sslth.prune(target, 0.05, 0.5, radius=RADIUS, progress=False, empirical_samples=300)
    honest = sslth.certify(target, ticket.export(), RADIUS).bound
    print(
        f"honest ticket: certified {honest:.4g}, observed {_observed(target, ticket.export()):.4g}"
    )
    print(f"{'dressing':42} {'side':7} {'certified':>10} {'observed':>9} {'ratio':>8}")
    for name, (dress, _) in DRESSINGS.items():
        for side in ("ticket", "target"):
            network, dressed_target = ticket.export(), copy.deepcopy(target).double()
            dress(network[0] if side == "ticket" else dressed_target[0])
            try:
                if side == "ticket":
                    bound = sslth.certify(target, network, RADIUS).bound
                    observed = _observed(target, network)
                else:
                    found = sslth.prune(
                        dressed_target,
                        0.05,
                        0.5,
                        radius=RADIUS,
                        progress=False,
                        empirical_samples=300,
                    )
                    bound = found.report.certified_error
                    observed = _observed(dressed_target, found.export())
                ratio = f"{observed / bound:8.3g}"
                print(f"{name:42} {side:7} {bound:10.4g} {observed:9.4g} {ratio}")
            except Exception as error:  # noqa: BLE001 - a refusal is the outcome measured
                print(f"{name:42} {side:7} refused: {type(error).__name__}: {str(error)[:70]}")


if __name__ == "__main__":
    main()
