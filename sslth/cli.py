"""The ``sslth`` command: ``demo``, ``prune --config``, ``verify``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import sslth
from sslth.config import ConfigError, build_target, load_config, random_target

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
DEMO_WIDTHS = [8, 16, 4]


def _prune_and_print(target, *, epsilon, density, seed, device, progress, **kwargs) -> int:
    try:
        ticket = sslth.prune(
            target, epsilon, density, seed=seed, device=device or None, progress=progress, **kwargs
        )
    except sslth.TicketNotFound as error:
        print(f"sslth: {error}", file=sys.stderr)
        if error.best is not None and error.best.report is not None:
            print(error.best.report)
        return EXIT_NOT_FOUND
    print(ticket.report)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    target = random_target(DEMO_WIDTHS, spectral_norm=1.0, seed=args.seed)
    print(
        f"sslth demo: a random ReLU target {'-'.join(map(str, DEMO_WIDTHS))} with spectral "
        f"norm 1 per layer; ε = {args.epsilon:g}, density <= {args.density:g}, seed {args.seed}"
    )
    return _prune_and_print(
        target,
        epsilon=args.epsilon,
        density=args.density,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )


def cmd_prune(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.seed is not None:
        config.prune.seed = args.seed
    if args.device is not None:
        config.prune.device = args.device
    out = Path(args.out) / config.run_name()
    report_path, ticket_path = out / "report.json", out / "ticket.pt"
    if report_path.is_file() and ticket_path.is_file() and not args.force:
        print(f"sslth: {out} already holds this run (use --force to redo it)")
        print((out / "report.txt").read_text() if (out / "report.txt").is_file() else "")
        return EXIT_OK
    target = build_target(config.target)
    p = config.prune
    try:
        ticket = sslth.prune(
            target,
            p.epsilon,
            p.density,
            radius=p.radius,
            seed=p.seed,
            device=p.device or None,
            n=p.n,
            k=p.k,
            method=p.method,
            progress=not args.quiet,
        )
    except sslth.TicketNotFound as error:
        print(f"sslth: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    ticket.save(ticket_path)
    text = str(ticket.report)
    (out / "report.txt").write_text(text + "\n")
    (out / "settings.json").write_text(json.dumps(config.settings(), indent=2) + "\n")
    # report.json last: its presence marks the run as finished
    report_path.write_text(json.dumps(ticket.report.to_dict(), indent=2) + "\n")
    print(text)
    print(f"sslth: wrote {out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        ticket = sslth.load(args.ticket, device=args.device or "cpu")
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    stored = ticket.report
    report = ticket.evaluate(samples=args.samples, progress=True)
    print(report)
    if stored is not None:
        print(
            f"stored certified error {stored.certified_error:.6g}; recomputed "
            f"{report.certified_error:.6g}"
        )
    if report.certified_error > report.epsilon:
        print(f"sslth: certified error exceeds ε = {report.epsilon:g}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sslth {sslth.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="build a ticket for a small built-in target")
    demo.add_argument("--epsilon", type=float, default=0.05)
    demo.add_argument("--density", type=float, default=0.3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default=None)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    prune = commands.add_parser("prune", help="build a ticket from a config file")
    prune.add_argument("--config", required=True, help="a TOML file, see configs/")
    prune.add_argument("--out", default="runs", help="results go to OUT/<name of the settings>")
    prune.add_argument("--device", default=None)
    prune.add_argument("--seed", type=int, default=None, help="overrides [prune] seed")
    prune.add_argument("--force", action="store_true", help="redo a finished run")
    prune.add_argument("--quiet", action="store_true", help="no progress bars")
    prune.set_defaults(func=cmd_prune)

    verify = commands.add_parser("verify", help="load a ticket file and re-certify it")
    verify.add_argument("ticket")
    verify.add_argument("--device", default=None)
    verify.add_argument("--samples", type=int, default=10_000)
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"sslth: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError) as error:
        print(f"sslth: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
