"""Benchmark the batched fixed-size subset-sum solver against the methods it replaces.

For each seeded instance family: instances per second and fraction solved for our ``auto`` and
``exact`` methods, and, on samples of the same instances in the same run, for (a) pure-Python
``itertools.combinations`` enumeration (the method of earlier strong-lottery-ticket code; it stops
at the first subset within tolerance) and (b) ``scipy.optimize.milp`` (HiGHS; binary x,
sum x = k, z - delta <= v.x <= z + delta), the open-source stand-in for the published Gurobi MIP.
Baseline rates are extrapolated from their samples.

    python scripts/bench_subset_sum.py                      # all families, CPU, ~3 minutes
    python scripts/bench_subset_sum.py --device cuda --batch 1000000 --families pensia
    python scripts/bench_subset_sum.py --out table.md       # or table.json

With ``--cpu-compare N`` the first N instances of each family are also solved with ``auto`` on
the CPU (``--cpu-threads`` threads, default 1) in the same run, so a GPU rate can be set against
a CPU rate on the same instances; the CPU rate is extrapolated to the whole batch. ``--json``
writes the rows, with that comparison, as JSON (as ``--out x.json`` does, besides ``--out``).

    python scripts/bench_subset_sum.py --families pensia --batch 1000000 --device cuda \
        --cpu-compare 20000 --json pensia.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sslth.subset_sum import solve

# name: (m, k, delta, value law, target sd, fraction valid, default batch)
FAMILIES: dict[str, tuple] = {
    "pensia": (32, 5, 1e-4, "product", 0.03, 1.0, 200_000),
    "tight": (24, 12, 1e-6, "product", 0.03, 1.0, 5_000),
    "sparse": (128, 3, 1e-4, "product", 0.03, 1.0, 20_000),
    "wide": (512, 8, 1e-6, "product", 0.03, 1.0, 2_000),
    # C(20, 5) * 2 * delta * f_5(0) ~ 0.7 expected solutions: about half solvable
    "threshold": (20, 5, 4e-5, "product", 0.03, 1.0, 20_000),
    # what the construction asks for: sign split (about half valid), k = 3..10 per row
    "construction": (40, (3, 10), 1e-4, "product", 0.03, 0.5, 100_000),
}


@dataclass
class Row:
    family: str
    batch: int
    auto_rate: float
    auto_solved: float
    auto_infeasible: float
    exact_rate: float
    exact_solved: float
    exact_infeasible: float
    exact_exhausted: float
    itertools_rate: float
    itertools_solved: float
    itertools_sample: int
    milp_rate: float
    milp_solved: float
    milp_sample: int
    device: str = "cpu"
    auto_seconds: float = math.nan  # the timed auto call on the whole batch
    # --cpu-compare: auto on the first cpu_sample instances on the CPU (nan / 0 when not asked)
    cpu_rate: float = math.nan
    cpu_solved: float = math.nan
    cpu_sample: int = 0
    cpu_threads: int = 0
    cpu_same_status: int = 0  # rows of the sample with the same solved and infeasible flags


def make_family(name: str, batch: int, seed: int):
    """Seeded instances of one family: (values, targets, k, tol, valid) as CPU tensors."""
    m, k, delta, law, sd, p_valid, _ = FAMILIES[name]
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1
    if law == "product":
        values = values * (torch.rand(batch, m, generator=g, dtype=torch.float64) * 2 - 1)
    targets = torch.randn(batch, generator=g, dtype=torch.float64) * sd
    valid = torch.ones(batch, m, dtype=torch.bool)
    if p_valid < 1.0:
        # the construction's sign split leaves each candidate usable with probability ~1/2
        valid = torch.rand(batch, m, generator=g) < p_valid
    if isinstance(k, tuple):
        kt = torch.randint(k[0], k[1] + 1, (batch,), generator=g)
        kt = torch.minimum(kt, valid.sum(dim=1))
        valid[kt == 0, 0] = True
        kt = kt.clamp(min=1)
    else:
        kt = torch.full((batch,), k)
    tol = torch.full((batch,), delta, dtype=torch.float64)
    return values, targets, kt, tol, valid


def _timed_solve(values, targets, k, tol, valid, method, device):
    args = [t.to(device) for t in (values, targets, k, tol, valid)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = solve(*args[:4], valid=args[4], method=method, generator=torch.Generator().manual_seed(0))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, res


def itertools_baseline(values, targets, k, tol, valid, budget_s: float, max_subsets: int):
    """Pure-Python enumeration of combinations, first hit wins; returns (rate, solved, n)."""
    solved = 0
    n = 0
    t0 = time.perf_counter()
    for b in range(values.shape[0]):
        v = values[b].tolist()
        idx = valid[b].nonzero().squeeze(1).tolist()
        z, d, kb = float(targets[b]), float(tol[b]), int(k[b])
        for count, combo in enumerate(itertools.combinations(idx, kb)):
            if abs(sum(v[i] for i in combo) - z) < d:
                solved += 1
                break
            if count >= max_subsets:
                break
        n += 1
        if time.perf_counter() - t0 > budget_s:
            break
    dt = time.perf_counter() - t0
    return n / dt, solved / n, n


def milp_baseline(values, targets, k, tol, valid, budget_s: float, time_limit: float):
    """One scipy.optimize.milp (HiGHS) per instance; returns (rate, solved, n)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    solved = 0
    n = 0
    t0 = time.perf_counter()
    for b in range(values.shape[0]):
        v = values[b].numpy()
        m = v.shape[0]
        z, d, kb = float(targets[b]), float(tol[b]), int(k[b])
        upper = valid[b].numpy().astype(float)  # invalid candidates fixed to 0
        cons = [
            LinearConstraint(np.ones((1, m)), kb, kb),
            LinearConstraint(v[None, :], z - d, z + d),
        ]
        res = milp(
            np.zeros(m),
            constraints=cons,
            integrality=np.ones(m),
            bounds=Bounds(0, upper),
            options={"time_limit": time_limit},
        )
        if res.x is not None:
            x = np.round(res.x)
            if x.sum() == kb and abs(float(v @ x) - z) < d:  # HiGHS tolerances are ~1e-7
                solved += 1
        n += 1
        if time.perf_counter() - t0 > budget_s:
            break
    dt = time.perf_counter() - t0
    return n / dt, solved / n, n


def cpu_compare(values, targets, k, tol, valid, res, n: int, threads: int) -> dict:
    """Time ``auto`` on the first n instances on the CPU with ``threads`` torch threads (then
    restored) and count the rows whose solved/infeasible flags match ``res`` (the device's)."""
    n = min(n, values.shape[0])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sl = slice(0, n)
        # same warm-up as the device side: combination tables, allocator
        _timed_solve(values[:256], targets[:256], k[:256], tol[:256], valid[:256], "auto", "cpu")
        dt, cpu = _timed_solve(values[sl], targets[sl], k[sl], tol[sl], valid[sl], "auto", "cpu")
    finally:
        torch.set_num_threads(before)
    same = (cpu.solved == res.solved[:n].cpu()) & (cpu.infeasible == res.infeasible[:n].cpu())
    return {
        "cpu_rate": n / dt,
        "cpu_solved": float(cpu.solved.double().mean()),
        "cpu_sample": n,
        "cpu_threads": threads,
        "cpu_same_status": int(same.sum()),
    }


def run_family(name: str, args) -> Row:
    batch = args.batch or FAMILIES[name][6]
    values, targets, k, tol, valid = make_family(name, batch, args.seed)
    dev = args.device
    # warm-up on a slice: combination tables, allocator, CUDA context
    _timed_solve(values[:256], targets[:256], k[:256], tol[:256], valid[:256], "auto", dev)
    dt, res = _timed_solve(values, targets, k, tol, valid, "auto", dev)
    auto_rate, auto_solved = batch / dt, float(res.solved.double().mean())
    auto_infeasible = float(res.infeasible.double().mean())
    n_ex = min(batch, args.exact_batch)
    dt_e, ex = _timed_solve(
        values[:n_ex], targets[:n_ex], k[:n_ex], tol[:n_ex], valid[:n_ex], "exact", dev
    )
    solvable_missed = int((ex.solved.cpu() & ~res.solved[:n_ex].cpu()).sum())
    if solvable_missed:
        print(f"  {name}: auto missed {solvable_missed} of {n_ex} rows that exact solved")
    it = itertools_baseline(values, targets, k, tol, valid, args.baseline_seconds, 5_000_000)
    mp = (math.nan, math.nan, 0)
    if not args.no_milp:
        mp = milp_baseline(values, targets, k, tol, valid, args.baseline_seconds, 20.0)
    extra = {"device": dev, "auto_seconds": dt}
    if args.cpu_compare:
        extra |= cpu_compare(
            values, targets, k, tol, valid, res, args.cpu_compare, args.cpu_threads
        )
    return Row(
        name,
        batch,
        auto_rate,
        auto_solved,
        auto_infeasible,
        n_ex / dt_e,
        float(ex.solved.double().mean()),
        float(ex.infeasible.double().mean()),
        float(ex.budget_exhausted.double().mean()),
        it[0],
        it[1],
        it[2],
        mp[0],
        mp[1],
        mp[2],
        **extra,
    )


def markdown(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| family | m | k | δ | B | auto inst/s | auto solved | auto proved infeasible "
        "| exact inst/s | exact solved "
        "| exact proved infeasible | exact budget out | itertools inst/s (n) | itertools solved "
        "| MILP inst/s (n) | MILP solved | auto / itertools | auto / MILP |",
        "|---" * 18 + "|",
    ]
    for r in rows:
        m, k, delta = FAMILIES[r.family][:3]
        ks = f"{k[0]}–{k[1]}" if isinstance(k, tuple) else str(k)
        lines.append(
            f"| {r.family} | {m} | {ks} | {delta:g} | {r.batch} | {r.auto_rate:,.0f} "
            f"| {r.auto_solved:.5f} | {r.auto_infeasible:.5f} "
            f"| {r.exact_rate:,.0f} | {r.exact_solved:.5f} "
            f"| {r.exact_infeasible:.5f} | {r.exact_exhausted:.3f} "
            f"| {r.itertools_rate:,.2f} ({r.itertools_sample}) | {r.itertools_solved:.2f} "
            f"| {r.milp_rate:,.2f} ({r.milp_sample}) | {r.milp_solved:.2f} "
            f"| {r.auto_rate / r.itertools_rate:,.0f}× | {r.auto_rate / r.milp_rate:,.0f}× |"
        )
    return "\n".join(lines)


def comparison_lines(rows: list[Row]) -> list[str]:
    """One line per family that was also timed on the CPU (--cpu-compare)."""
    lines = []
    for r in rows:
        if not r.cpu_sample:
            continue
        lines.append(
            f"CPU comparison, {r.family}: auto on {r.cpu_threads} CPU thread(s), the first "
            f"{r.cpu_sample:,} of the same {r.batch:,} instances: {r.cpu_rate:,.0f} inst/s "
            f"(extrapolated to all {r.batch:,}: {r.batch / r.cpu_rate:,.1f} s); auto on "
            f"{r.device}: {r.auto_rate:,.0f} inst/s ({r.auto_seconds:.2f} s), "
            f"{r.auto_rate / r.cpu_rate:,.1f}× the CPU rate; same solved/infeasible status on "
            f"{r.cpu_same_status:,} of {r.cpu_sample:,} rows"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset")
    p.add_argument("--batch", type=int, default=0, help="instances per family (0: its default)")
    p.add_argument("--exact-batch", type=int, default=20_000, help="rows also run with exact")
    p.add_argument(
        "--baseline-seconds",
        type=float,
        default=4.0,
        help="wall time per family for each baseline's sample",
    )
    p.add_argument("--no-milp", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=None, help="write the table (.md) or the rows (.json)")
    p.add_argument("--json", default=None, help="also write the rows (and header) as JSON")
    p.add_argument(
        "--cpu-compare",
        type=int,
        default=0,
        metavar="N",
        help="also time auto on the first N instances on the CPU (0: no)",
    )
    p.add_argument("--cpu-threads", type=int, default=1, help="torch threads for --cpu-compare")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.families.split(","):
        rows.append(run_family(name, args))
        print(f"  done {name}", flush=True)
    threads = torch.get_num_threads()
    dev = args.device
    if dev.startswith("cuda"):
        dev = torch.cuda.get_device_name(torch.device(dev))
    header = (
        f"Device: {dev} ({threads} CPU threads, {platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, seed {args.seed}."
    )
    table = markdown(rows, header)
    extra = comparison_lines(rows)
    print(table)
    for line in extra:
        print(line)
    data = {"header": header, "rows": [asdict(r) for r in rows]}
    if args.out:
        with open(args.out, "w") as f:
            if args.out.endswith(".json"):
                json.dump(data, f, indent=1)
            else:
                f.write(table + "\n" + "".join("\n" + line + "\n" for line in extra))
    if args.json:
        data |= {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "torch_threads": threads,
            "comparison": extra,
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
