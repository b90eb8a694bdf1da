"""The ``sslth`` command: ``demo``, ``plan --config``, ``prune --config``, ``verify``.

Exit codes: 0 success, 1 no ticket met the request (or a ticket failed its verification, or
``plan`` finds a layer no random network within ``max_random_params`` is predicted to serve),
2 a usage error (bad flag, config, target or ticket file), 141 the reader of stdout went away
(``sslth plan … | head``: the code a shell gives a program that SIGPIPE ends, without a
traceback). Only the errors sslth raises on
purpose are reported as one line; anything else is a bug and surfaces with its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import sslth
from sslth.certificate import recomputation_tolerance
from sslth.config import load_config, load_target, random_target, run_name, settings
from sslth.device import resolve_device
from sslth.errors import ConfigError, SslthError, TicketNotFound
from sslth.fields import add_arguments, overrides
from sslth.search.options import PruneOptions
from sslth.search.preview import plan

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, as a shell reports `yes | head`
DEMO_WIDTHS = [8, 16, 4]
DEMO_REQUEST = {"epsilon": 0.05, "density": 0.3}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), like every other
    usage error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _prune_and_print(target, options: PruneOptions) -> tuple[int, sslth.Ticket | None]:
    """Prune and print the ticket's report; when no ticket meets the request, print the best
    one's report (if the search got that far) and the reason, and return exit code 1."""
    try:
        ticket = sslth.prune(target, options)
    except TicketNotFound as error:
        print(f"sslth: {error}", file=sys.stderr)
        if error.best is not None and error.best.report is not None:
            print("the best ticket found:")
            print(error.best.report)
        return EXIT_NOT_FOUND, None
    print(ticket.report)
    return EXIT_OK, ticket


def cmd_demo(args: argparse.Namespace) -> int:
    target = random_target(DEMO_WIDTHS, spectral_norm=1.0, seed=0)
    given = overrides(PruneOptions, args)
    options = PruneOptions(**{**DEMO_REQUEST, "progress": not args.quiet, **given})
    print(
        f"sslth demo: a random ReLU target {'-'.join(map(str, DEMO_WIDTHS))} with spectral "
        f"norm 1 per layer; ε = {options.epsilon:g}, density <= {options.density:g}, "
        f"seed {options.seed}"
    )
    return _prune_and_print(target, options)[0]


def cmd_prune(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    options = config.options({**overrides(PruneOptions, args), "progress": not args.quiet})
    model, target = load_target(config, options)
    out_root = Path(args.out)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root}: exists and is not a folder")
    out = out_root / run_name(config, target, options)
    report_path, ticket_path = out / "report.json", out / "ticket.pt"
    if not args.force and _finished(out):
        print(f"sslth: {out} already holds this run (use --force to redo it)")
        print((out / "report.txt").read_text() if (out / "report.txt").is_file() else "")
        return EXIT_OK
    code, ticket = _prune_and_print(model, options)
    if ticket is None:
        return code
    out.mkdir(parents=True, exist_ok=True)
    ticket.save(ticket_path)
    text = str(ticket.report)
    (out / "report.txt").write_text(text + "\n")
    (out / "settings.json").write_text(json.dumps(settings(config, options), indent=2) + "\n")
    # report.json last, written whole then renamed: its presence marks the run as finished
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(ticket.report.to_dict(), indent=2) + "\n")
    tmp.replace(report_path)
    print(f"sslth: wrote {out}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """Print what ``prune`` would start from and its estimated cost; exit 1 when some layer has
    no sizes within ``max_random_params`` (``prune`` would refuse the request)."""
    config = load_config(args.config)
    options = config.options({**overrides(PruneOptions, args), "progress": False})
    _, target = load_target(config, options)
    result = plan(target, options, calibrate=not args.no_calibrate)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return EXIT_OK if result.within_limits else EXIT_NOT_FOUND


def _finished(out: Path) -> bool:
    """A run is finished when its ticket exists and its report.json is a complete JSON
    object (an empty or truncated one is an interrupted run)."""
    report_path = out / "report.json"
    if not (report_path.is_file() and (out / "ticket.pt").is_file()):
        return False
    try:
        report = json.loads(report_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(report, dict) and "certified_error" in report


def cmd_verify(args: argparse.Namespace) -> int:
    """Load (which validates the file and recomputes the report), then compare: exit 1 with one
    line when the recomputed ticket misses its stored ε or density, or differs from the report
    stored in the file."""
    if args.samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {args.samples}")
    if not Path(args.ticket).is_file():
        raise ConfigError(f"{args.ticket}: no ticket file there")
    device = resolve_device(args.device or "cpu")
    ticket = sslth.load(args.ticket, device=device, samples=args.samples)
    report = ticket.report
    print(report)
    problems = verification_problems(ticket)
    if problems:
        print(f"sslth: verification failed: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(
        f"sslth: verified: certified error {report.certified_error:.6g} <= ε = "
        f"{ticket.epsilon:g}, density {report.density:.6g} <= {ticket.density_limit:g}, and the "
        "stored report matches the recomputation"
    )
    return EXIT_OK


_CERTIFIED = ("certified_error", "certified_error_exact", "rounding_error")
_COMPARED = (*_CERTIFIED, "density", "density_block")
_COUNTED = ("random_params", "ticket_params", "target_params")


def verification_problems(ticket: sslth.Ticket) -> list[str]:
    """What is wrong with a loaded ticket, recomputed (empty when nothing is)."""
    report, stored = ticket.report, ticket.stored_report
    problems = []
    if not report.meets_epsilon:  # the report is recomputed at ticket.epsilon
        problems.append(
            f"recomputed certified error {report.certified_error:.6g} exceeds the stored "
            f"ε = {ticket.epsilon:g}"
        )
    if not report.meets_density:
        problems.append(
            f"recomputed density {report.density:.6g} exceeds the requested "
            f"{ticket.density_limit:g}"
        )
    if stored is None:
        problems.append("the file holds no report to compare with")
        return problems
    # the certified numbers agree up to the norms' library rounding (recomputation_tolerance);
    # the densities are ratios of counts, computed the same way: they must be equal
    tolerance = recomputation_tolerance(len(ticket.specs))
    for name in _COMPARED:
        mine, theirs = getattr(report, name), getattr(stored, name)
        if not math.isclose(mine, theirs, rel_tol=tolerance if name in _CERTIFIED else 0.0):
            problems.append(f"stored {name} {theirs!r} != recomputed {mine!r}")
    for name in _COUNTED:
        if getattr(report, name) != getattr(stored, name):
            problems.append(
                f"stored {name} {getattr(stored, name)} != recomputed {getattr(report, name)}"
            )
    for name in ("n", "k"):
        if getattr(report, name) != getattr(stored, name):
            problems.append(
                f"stored {name} {getattr(stored, name)} != recomputed {getattr(report, name)}"
            )
    for name in ("epsilon", "radius", "density_limit"):
        if not math.isclose(getattr(stored, name), getattr(report, name), rel_tol=1e-12):
            problems.append(f"stored report's {name} differs from the file's")
    return problems


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sslth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"sslth {sslth.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="build a ticket for a small built-in target")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    add_arguments(demo, PruneOptions)
    demo.set_defaults(func=cmd_demo)

    prune = commands.add_parser("prune", help="build a ticket from a config file")
    prune.add_argument("--config", required=True, help="a TOML file, see configs/")
    prune.add_argument("--out", default="runs", help="results go to OUT/<name of the run>")
    prune.add_argument("--force", action="store_true", help="redo a finished run")
    prune.add_argument("--quiet", action="store_true", help="no progress bars")
    add_arguments(prune, PruneOptions)
    prune.set_defaults(func=cmd_prune)

    preview = commands.add_parser(
        "plan",
        help="show n, k, the random network's size and the estimated time and memory of "
        "prune, without running it",
    )
    preview.add_argument("--config", required=True, help="a TOML file, see configs/")
    preview.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the timing sample: sizes and memory only, no time estimate",
    )
    preview.add_argument("--json", action="store_true", help="print the plan as JSON")
    add_arguments(preview, PruneOptions)
    preview.set_defaults(func=cmd_plan)

    verify = commands.add_parser("verify", help="load a ticket file and re-certify it")
    verify.add_argument("ticket")
    verify.add_argument("--device", default=None)
    verify.add_argument("--samples", type=int, default=10_000)
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader gone (| head) shows here, not at exit
        return code
    except BrokenPipeError:
        # nothing more can reach the reader; point stdout at /dev/null so that Python's own
        # flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except TicketNotFound as error:
        print(f"sslth: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except SslthError as error:
        print(f"sslth: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
