"""``sslth plan`` against the prune it estimates, each in a fresh process (issue 22).

    python scripts/bench_plan.py [--targets digits,196-100-10,784-500-10,lenet5] [--dir DIR]
                                 [--json PATH]

For each target it writes a config file, runs ``sslth plan --config F --json`` and then
``sslth prune --config F --quiet --force``, each a fresh ``python -m sslth.cli`` process, and
prints the plan's estimates beside what the prune measured: the whole prune's time (the sum of
the report's ``timings``: all of ``sslth.prune``) against the plan's expected time and range, and
the prune process's peak resident memory (GNU time's ``%M``)
against the plan's peak; then the plan's own time (``planning_seconds``, inside the process)
and its process's wall time (which adds importing torch, as the prune's process does), and the
plan process's CPU time over the prune process's, each less the CPU time of importing
``sslth.cli`` (a share that a loaded machine changes less than it changes wall times). The
load average (``os.getloadavg``) is printed before each run: the times scale with it, the
ratios far less.

Targets: ``digits`` is the 64-32-10 MLP of :mod:`sslth.experiments.digits` (trained, seed 0,
ε half its smallest test margin, R the largest image norm, density ≤ 0.1); ``W1-W2-…`` a random
MLP (Gaussian, spectral norm 1, no biases) at ε = 0.01, density ≤ 0.1; ``lenet5`` the LeNet-5
of ``scripts/bench_prune.py`` (biases, operator norms ≤ 1, 1×28×28) at ε = 0.01, density ≤ 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"  # GNU time: -f %M is the peak resident KiB of its child
LENET_LAYERS = [
    "conv 1 6 5", "relu", "maxpool 2", "conv 6 16 5", "relu", "maxpool 2", "flatten",
    "linear 256 120", "relu", "linear 120 84", "relu", "linear 84 10",
]  # fmt: skip


def _digits_config(folder: Path) -> str:
    from sslth.experiments import digits

    data = digits.load_data(0)
    model = digits.train_mlp(data)
    with torch.no_grad():
        logits = model.double()(data.x_test.double())
    epsilon = digits.choose_epsilon(digits.smallest_margin(logits))
    torch.save(model.float().state_dict(), folder / "digits-mlp.pt")
    return (
        '[target]\nkind = "state_dict"\npath = "digits-mlp.pt"\nwidths = [64, 32, 10]\n\n'
        f"[prune]\nepsilon = {epsilon!r}\nradius = {data.radius!r}\ndensity = 0.1\n"
    )


def _lenet_config(folder: Path) -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_prune import lenet5

    torch.save(lenet5(0).state_dict(), folder / "lenet5.pt")
    return (
        f'[target]\nkind = "state_dict"\npath = "lenet5.pt"\nlayers = {json.dumps(LENET_LAYERS)}'
        "\n\n[prune]\ninput_shape = [1, 28, 28]\nepsilon = 0.01\ndensity = 0.1\nseed = 0\n"
    )


def write_config(name: str, folder: Path) -> Path:
    """The config file of a target named as on the command line."""
    if name == "digits":
        text = _digits_config(folder)
    elif name == "lenet5":
        text = _lenet_config(folder)
    else:
        widths = [int(width) for width in name.split("-")]
        text = (
            f'[target]\nkind = "random"\nwidths = {widths}\nspectral_norm = 1.0\nseed = 0\n\n'
            "[prune]\nepsilon = 0.01\ndensity = 0.1\nseed = 0\n"
        )
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def run_cli(args: list[str], cwd: Path, module: str = "sslth.cli") -> tuple[str, dict]:
    """stdout and the wall seconds, CPU seconds and peak resident bytes of one fresh
    ``python -m sslth.cli`` (``module``: another command, e.g. ``-c``), measured by GNU time: a
    child's own ``ru_maxrss`` would include this process's memory at the fork (its digits MLP
    and torch, ~400 MiB), which a small ``time`` process does not have."""
    command = [sys.executable, "-m", module] if module != "-c" else [sys.executable, "-c"]
    with tempfile.NamedTemporaryFile("r") as usage:
        result = subprocess.run(
            [GNU_TIME, "-f", "%M %e %U %S", "-o", usage.name, *command, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"sslth {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        kib, wall, user, system = usage.read().split()[-4:]
    return result.stdout, dict(
        wall=float(wall), cpu=float(user) + float(system), peak=int(kib) * 1024
    )


def measure(name: str, folder: Path, imports: float) -> dict:
    """Plan, then prune, one target; ``imports`` is the CPU seconds of importing sslth.cli
    (both processes pay it; the plan's CPU share is given without it)."""
    config = write_config(name, folder)
    load_plan = os.getloadavg()[0]
    out, plan_process = run_cli(["plan", "--config", str(config), "--json"], folder)
    planned = json.loads(out)
    load_prune = os.getloadavg()[0]
    runs = folder / "runs"
    _, prune_process = run_cli(
        ["prune", "--config", str(config), "--quiet", "--force", "--out", str(runs)], folder
    )
    report = json.loads(max(runs.glob("*/report.json"), key=os.path.getmtime).read_text())
    prune = sum(report["timings"].values())
    low, high = planned["total_seconds"]
    return dict(
        target=name,
        load=(load_plan, load_prune),
        estimate=planned["expected_seconds"],
        low=low,
        high=high,
        prune=prune,
        time_ratio=planned["expected_seconds"] / prune,
        peak_estimate=planned["peak_bytes"],
        peak=prune_process["peak"],
        memory_ratio=planned["peak_bytes"] / prune_process["peak"],
        planning=planned["planning_seconds"],
        planning_share=planned["planning_seconds"] / prune,
        cpu_share=(plan_process["cpu"] - imports) / (prune_process["cpu"] - imports),
        plan_process=plan_process,
        prune_process=prune_process,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="digits,196-100-10,784-500-10,lenet5")
    parser.add_argument("--dir", type=Path, default=None, help="where configs and runs go")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="sslth-bench-plan-"))
    folder.mkdir(parents=True, exist_ok=True)
    _, importing = run_cli(["import sslth.cli"], folder, module="-c")
    rows = []
    for name in args.targets.split(","):
        row = measure(name, folder, importing["cpu"])
        rows.append(row)
        mib = 1024**2
        print(
            f"{name}: load {row['load'][0]:.1f}/{row['load'][1]:.1f} | time: plan "
            f"{row['estimate']:.3g} s ({row['low']:.3g}-{row['high']:.3g}) vs prune "
            f"{row['prune']:.3g} s, ratio {row['time_ratio']:.2f} | peak: plan "
            f"{row['peak_estimate'] / mib:.0f} MiB vs {row['peak'] / mib:.0f} MiB, ratio "
            f"{row['memory_ratio']:.2f} | plan itself {row['planning']:.2f} s "
            f"({100 * row['planning_share']:.1f}% of the prune; CPU beyond imports "
            f"{100 * row['cpu_share']:.1f}%); processes: plan "
            f"{row['plan_process']['wall']:.1f} s, prune {row['prune_process']['wall']:.1f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
