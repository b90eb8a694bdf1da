"""Attack the certificate of ``sslth.prune`` over a population of random targets.

    python scripts/attack_report.py --count 100 --seed 0 [--quick] [--no-known] [--all]
                                    [--attack-best] [--dtype float32|float64]

For each random target (depth 1–4, widths 1–10, with or without biases, Gaussian layers rescaled
to a spectral norm in [0.1, 3], radius log-uniform in [1e-3, 1e3], ε log-uniform in [1e-4, 1e-1],
density in {0.1, 0.3, 0.5, 1.0}) it builds a ticket, then searches the ball with
``tests.attack.worst_gap`` for an input where the float32 ``ticket.network`` is farther from the
float64 target than ``ticket.report.certified_error`` (``--dtype`` picks the network's dtype
where ``sslth.prune`` takes one; float32 by default). Targets with no ticket (``TicketNotFound``)
are counted and skipped (``--attack-best`` attacks the best ticket such an error carries, whose
certified error is still a claimed bound). Then the same for the known reports (a 2→3 target
with biases at radius 1e-6, ε = 1e-6 at radius 1, radii 1e3 to 1e6; best tickets attacked too),
unless ``--no-known``.

Each violation is printed with its settings, the certified error, the gap found, the gap of the
same network in float64 at that point (``exact``: above the certificate means the exact-arithmetic
bound itself is wrong, below it means rounding is what breaks it), gap / certified, the attack's
phase that found the point and whether the module was called on that row alone or in a batch
(the rounding differs). Exit code 0 whatever is found: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# the attack lives with the tests (tests/attack.py); make the repository root importable
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sslth  # noqa: E402
from tests.attack import QUICK, Attack, float64_copy, worst_gap  # noqa: E402

DENSITIES = (0.1, 0.3, 0.5, 1.0)


@dataclass
class Case:
    """One request to ``sslth.prune``: the target's description and the settings."""

    label: str
    widths: list[int]
    bias: bool
    norms: list[float]
    radius: float
    epsilon: float
    density: float
    seed: int  # seeds the target's weights and the ticket

    def settings(self) -> str:
        norms = ",".join(f"{n:.2g}" for n in self.norms)
        return (
            f"{'-'.join(map(str, self.widths))} bias={'y' if self.bias else 'n'} norms={norms} "
            f"R={self.radius:.3g} eps={self.epsilon:.3g} density={self.density:g} "
            f"seed={self.seed}"
        )


def build_target(case: Case) -> nn.Sequential:
    """Gaussian layers rescaled to the case's spectral norms; biases N(0, 0.3²) if any."""
    generator = torch.Generator().manual_seed(case.seed)
    modules: list[nn.Module] = []
    pairs = list(zip(case.widths[:-1], case.widths[1:], strict=True))
    for index, ((d_in, d_out), norm) in enumerate(zip(pairs, case.norms, strict=True)):
        layer = nn.Linear(d_in, d_out, bias=case.bias)
        with torch.no_grad():
            weight = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
            layer.weight.copy_(weight * (norm / torch.linalg.matrix_norm(weight, ord=2)))
            if case.bias:
                layer.bias.copy_(0.3 * torch.randn(d_out, generator=generator))
        modules.append(layer)
        if index < len(pairs) - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def random_cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        depth = rng.randint(1, 4)
        cases.append(
            Case(
                label=f"random {index}",
                widths=[rng.randint(1, 10) for _ in range(depth + 1)],
                bias=rng.random() < 0.5,
                norms=[log_uniform(rng, 0.1, 3.0) for _ in range(depth)],
                radius=log_uniform(rng, 1e-3, 1e3),
                epsilon=log_uniform(rng, 1e-4, 1e-1),
                density=rng.choice(DENSITIES),
                seed=rng.randrange(2**31),
            )
        )
    return cases


def known_cases() -> list[Case]:
    """The reports the certificate is known to fail today, a few seeds each."""
    cases = [
        Case("2→3 bias R=1e-6", [2, 3], True, [1.0], 1e-6, 1e-3, 0.5, seed) for seed in range(3)
    ]
    cases += [Case("eps=1e-6 R=1", [2, 3, 2], False, [1.0, 1.0], 1.0, 1e-6, 0.5, 0)]
    cases += [Case("eps=1e-6 R=1", [3, 2], True, [1.0], 1.0, 1e-6, 0.5, 1)]
    for radius in (1e3, 1e4, 1e5, 1e6):
        cases += [Case(f"R={radius:g}", [3, 4, 2], False, [1.0, 1.0], radius, 1e-3, 0.5, 0)]
        cases += [Case(f"R={radius:g}", [3, 2], True, [1.0], radius, 1e-3, 0.5, 1)]
    return cases


@dataclass
class Outcome:
    case: Case
    certified: float
    attack: Attack
    prune_seconds: float
    best: bool = False  # the best ticket of a TicketNotFound, which misses ε

    @property
    def ratio(self) -> float:
        return self.attack.ratio(self.certified)

    @property
    def exact_ratio(self) -> float:
        return self.attack.exact_gap / self.certified if self.certified > 0 else math.inf

    def row(self) -> str:
        return (
            f"{self.case.label + (' (best)' if self.best else ''):<22} {self.certified:11.4e} "
            f"{self.attack.gap:11.4e} {self.attack.exact_gap:11.4e} {self.ratio:10.6g} "
            f"{self.exact_ratio:10.6g}  "
            f"{self.attack.source + '/' + self.attack.mode:<15} {self.case.settings()}"
        )


HEADER = (
    f"{'case':<22} {'certified':>11} {'gap':>11} {'exact':>11} {'ratio':>10} {'exact/cert':>10}  "
    f"{'found by/mode':<15} settings"
)


def run(
    cases: list[Case], knobs: dict, show_all: bool, attack_best: bool, dtype_option: dict
) -> dict:
    """Prune and attack every case; print violations (or every row) as they come. With
    ``attack_best``, a ``TicketNotFound``'s best ticket is attacked too (against its own
    certified error). ``dtype_option`` goes to ``sslth.prune`` as is."""
    tried = found = not_found = attacked_best = 0
    violations: list[Outcome] = []
    worst: Outcome | None = None
    prune_seconds = attack_seconds = 0.0
    print(HEADER, flush=True)
    for case in cases:
        tried += 1
        target = build_target(case)
        began = time.perf_counter()
        try:
            ticket = sslth.prune(
                target,
                case.epsilon,
                case.density,
                radius=case.radius,
                seed=case.seed % 2**16,
                progress=False,
                empirical_samples=500,
                **dtype_option,
            )
        except sslth.TicketNotFound as error:
            not_found += 1
            ticket, best = error.best, True
        else:
            found += 1
            best = False
        spent = time.perf_counter() - began
        prune_seconds += spent
        if best:
            # the best ticket misses ε, but its certified error is still a claimed bound
            if not attack_best or ticket is None:
                continue
            attacked_best += 1
        attack = worst_gap(
            float64_copy(target), ticket.network, case.radius, case.widths[0], seed=0, **knobs
        )
        attack_seconds += attack.seconds
        outcome = Outcome(case, float(ticket.report.certified_error), attack, spent, best)
        if worst is None or outcome.ratio > worst.ratio:
            worst = outcome
        if outcome.ratio > 1.0:
            violations.append(outcome)
        if show_all or outcome.ratio > 1.0:
            print(outcome.row(), flush=True)
    return {
        "tried": tried,
        "found": found,
        "not_found": not_found,
        "attacked_best": attacked_best,
        "violations": violations,
        "worst": worst,
        "prune_seconds": prune_seconds,
        "attack_seconds": attack_seconds,
    }


def summarize(title: str, result: dict, seconds: float) -> None:
    violations: list[Outcome] = result["violations"]
    exact = sum(1 for v in violations if v.exact_ratio > 1.0)
    worst: Outcome | None = result["worst"]
    print(f"\n{title}")
    print(f"  targets tried      {result['tried']}")
    print(
        f"  tickets found      {result['found']}   (TicketNotFound: {result['not_found']}; "
        f"best tickets of those attacked: {result['attacked_best']})"
    )
    print(
        f"  violations         {len(violations)}   (of which the float64 network also exceeds "
        f"the certificate: {exact})"
    )
    if worst is not None:
        print(
            f"  worst gap/cert     {worst.ratio:.6g}   "
            f"({worst.case.label}: {worst.case.settings()})"
        )
    print(
        f"  time               {seconds:.1f} s   (prune {result['prune_seconds']:.1f} s, "
        f"attack {result['attack_seconds']:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="random targets (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the population (default 0)")
    parser.add_argument("--quick", action="store_true", help="the attack's cheaper QUICK knobs")
    parser.add_argument("--no-known", action="store_true", help="skip the known reports")
    parser.add_argument("--all", action="store_true", help="print every ticket, not only failures")
    parser.add_argument(
        "--attack-best",
        action="store_true",
        help="on TicketNotFound, attack its best ticket (always done for the known reports)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="dtype of ticket.network to attack (default float32), where sslth.prune takes one",
    )
    args = parser.parse_args(argv)
    knobs = dict(QUICK) if args.quick else {}

    began = time.perf_counter()
    dtype_option = _dtype_option(args.dtype)
    print(f"ticket.network dtype: {args.dtype}  ({_version()})\n")
    result = run(
        random_cases(args.count, args.seed), knobs, args.all, args.attack_best, dtype_option
    )
    summarize(f"random targets (count {args.count}, seed {args.seed})", result, _since(began))
    if not args.no_known:
        print()
        began = time.perf_counter()
        result = run(known_cases(), knobs, args.all, True, dtype_option)
        summarize("known reports", result, _since(began))
    return 0


def _dtype_option(dtype: str) -> dict:
    """``{"dtype": dtype}`` where ``sslth.prune`` has that option; older versions build float32
    networks only, and take no such option."""
    options = getattr(sslth, "PruneOptions", None)
    if options is not None and "dtype" in {f.name for f in dataclasses.fields(options)}:
        return {"dtype": dtype}
    if dtype != "float32":
        raise SystemExit(f"this sslth ({_version()}) builds float32 networks only")
    return {}


def _version() -> str:
    return f"sslth {getattr(sslth, '__version__', '?')} from {Path(sslth.__file__).parent}"


def _since(began: float) -> float:
    return time.perf_counter() - began


if __name__ == "__main__":
    raise SystemExit(main())
