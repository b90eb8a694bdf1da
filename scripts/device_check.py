"""One prepared device check: CUDA tests, solver and prune benchmarks, the digits demo.

    python scripts/device_check.py --out DIR                      # one GPU: about 3-5 min, <= 7.5
    python scripts/device_check.py --quick --device cpu --out DIR  # any CPU: under 3 minutes

Made to run once, unattended, on a machine whose python already has CUDA PyTorch (and pytest,
scikit-learn, scipy, matplotlib) and that reaches no network: from a fresh checkout it installs
only the project (``pip install --no-deps --no-build-isolation -e .``, offline), then runs

    1. the CUDA tests (``pytest -m cuda``; with ``--device cpu`` the tests of tests/test_cuda.py
       run with the CPU standing in for the GPU, ``SSLTH_TEST_DEVICE=cpu``);
    2. ``bench_subset_sum.py`` on ``pensia`` at B = 10^6 on the device, and auto on the first
       50,000 of the same instances on one CPU thread in the same run, and their ratio;
    3. ``bench_prune.py --count-ops`` on 784-500-10 on the device (and on ``lenet5`` where
       bench_prune.py's --help names it, then 2048-2048-10 timed only, with what the budget
       leaves: both run last), each with its goal on one H100/H200 and its operator count;
    4. the digits demo on the device (its ``--device``; ``--device cpu`` also hides the GPUs
       with ``CUDA_VISIBLE_DEVICES=``); the step fails unless its report names the device;
    5. ``attack_device.py``: float32 tickets (dense and conv) certified on the device and attacked
       under ``torch.backends.cudnn.benchmark = True`` with TF32 off and on; the step fails if
       any observed error exceeds its certificate (issue 23).

Each step runs in its own process group under a time limit (its own cap and what is left of the
overall budget); a step that fails or times out is recorded (status, exit code, the tail of its
output) and the next one runs. Everything lands in DIR (or ``$OUT``) as it happens: the full
log ``device_check.log``, the table ``device_check.md`` rewritten after every step, and each
step's JSON, so a run killed from outside still leaves the finished steps' results. At most
eight files are written there. The table is printed at the end. Exit status: 0 when every step
passed or was skipped for a stated reason, 1 otherwise. Only the standard library is used here,
so the driver itself works even where the project's imports do not.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

QUERY = "--query-gpu=driver_version,memory.total"
REPO = Path(__file__).resolve().parent.parent
LOG_NAME = "device_check.log"
TABLE_NAME = "device_check.md"

# Seconds. The full check must end within 8 minutes on one H100, starts included: the overall
# budget leaves half a minute for the interpreter, the environment probe and the table.
FULL_BUDGET = 450.0
QUICK_BUDGET = 170.0
# a step with less time than this left is not started (it could not finish anyway)
MIN_STEP = {False: 15.0, True: 5.0}
# after SIGTERM, how long a step's process group gets before SIGKILL
KILL_GRACE = 10.0
TAIL_LINES = 25
# Each step's own limit in seconds, (full, --quick), in the order they run; the overall budget
# cuts the later ones short if the earlier ones ran long. Full: install 10-20 s expected, the
# CUDA tests ~30 s, the solver at 10^6 ~20 s, 784-500-10 (95 s on a 2-core CPU) a few seconds
# to a minute, digits ~15 s; lenet5, optional, gets what is left.
CAPS = {
    "install": (90, 60),
    "cuda-tests": (100, 60),
    "subset-sum": (120, 45),
    "prune-784-500-10": (150, 40),
    "digits": (90, 60),
    "soundness-float32": (120, 60),
    "prune-lenet5": (150, 0),
    "prune-2048-2048-10": (150, 0),
    "prune-resnet20": (150, 0),
}
# the prune goals on one H100/H200 (issue 22), printed beside each measured prune
PRUNE_GOALS = {
    "784-500-10": 2.0,
    "lenet5": 2.0,
    "2048-2048-10": 15.0,
    "64-32-10": None,
    "resnet20": 60.0,
}
BIG_TARGET_PARAMS = 1_200_000_000  # max_random_params 2048-2048-10 needs (about 1.1e9)

# the CPU side of step 2: auto on this many of the same instances, on one thread, extrapolated
CPU_SAMPLE = {False: 50_000, True: 2_000}
SUBSET_SUM_BATCH = {False: 1_000_000, True: 20_000}
# the LeNet-5 step needs a GPU-sized budget; on a CPU in --quick it is not attempted
PRUNE_TARGET = {False: "784-500-10", True: "64-32-10"}


@dataclass
class Step:
    key: str
    title: str
    cap: tuple[float, float]  # seconds: (full, --quick)
    status: str = "pending"
    rc: int | None = None
    seconds: float | None = None
    limit: float | None = None
    result: str = ""
    tail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("OK", "SKIP")


def _md(text: str) -> str:
    """One table cell: no newlines, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _fmt(value, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _probe(cmd: list[str], timeout: float = 30.0, env: dict | None = None, cwd: Path = REPO) -> str:
    """A short command's stripped output, or why there is none."""
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
    except FileNotFoundError:
        return f"{cmd[0]}: not found"
    except subprocess.TimeoutExpired:
        return f"{cmd[0]}: no answer in {timeout:.0f} s"
    out = (done.stdout.strip() or done.stderr.strip()).splitlines()
    text = "; ".join(line.strip() for line in out if line.strip())
    return text if done.returncode == 0 else f"(exit {done.returncode}) {text}"


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.device = args.device
        self.cuda = args.device.startswith("cuda")
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = self.out / LOG_NAME
        self.table = self.out / TABLE_NAME
        self.python = args.python
        self.budget = args.budget or (QUICK_BUDGET if self.quick else FULL_BUDGET)
        self.start = time.monotonic()
        self.deadline = self.start + self.budget
        # step outputs that must not count against the eight files of OUT (digits' folder)
        self.scratch = Path(tempfile.mkdtemp(prefix="device_check_"))
        self.child: subprocess.Popen | None = None
        self.header: list[str] = []
        titles = {
            "install": "pip install --no-deps -e . (offline)",
            "cuda-tests": "1. pytest -m cuda",
            "subset-sum": "2. bench_subset_sum pensia, device vs 1 CPU thread",
            "prune-784-500-10": f"3. bench_prune {PRUNE_TARGET[self.quick]}",
            "digits": "4. digits demo",
            "soundness-float32": "5. float32 attack, cuDNN benchmark, TF32 off and on",
            "prune-lenet5": "3b. bench_prune lenet5 (if bench_prune has it)",
            "prune-2048-2048-10": "3c. bench_prune 2048-2048-10 (what the budget leaves)",
            "prune-resnet20": "3d. bench_prune resnet20 at eps 1 (its default there)",
        }
        self.steps = [Step(key, title, CAPS[key]) for key, title in titles.items()]
        self.env = self._child_env()

    # ------------------------------------------------------------------ environment
    def _child_env(self) -> dict:
        env = dict(os.environ)
        # a step killed at its limit still leaves everything it printed in the log
        env["PYTHONUNBUFFERED"] = "1"
        # the checkout is importable even if the editable install fails
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env["MPLBACKEND"] = "Agg"  # headless figures
        # never wait for a network that is not there
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INDEX"] = "1"
        env["PIP_ROOT_USER_ACTION"] = "ignore"
        env["SSLTH_TEST_DEVICE"] = self.device
        if not self.cuda:
            # a CPU run is a CPU run even on a GPU machine (the digits demo may have no device
            # option)
            env["CUDA_VISIBLE_DEVICES"] = ""
        if self.quick:
            # the solver issues many small ops: on a busy 2-core CPU, two OpenMP threads wait on
            # each other and run tens of times slower than one
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def describe_machine(self) -> None:
        # one interpreter start (torch's import is seconds on a busy CPU) for torch and sslth
        torch_info = _probe(
            [
                self.python,
                "-c",
                "import torch, sslth; c = torch.cuda.is_available(); "
                "print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
                "{torch.backends.cudnn.version()}, CUDA available: {c}' + "
                "(f', {torch.cuda.device_count()} device(s), device 0: "
                "{torch.cuda.get_device_name(0)}' if c else '')); "
                "print(f'sslth {sslth.__version__} from {sslth.__file__}')",
            ],
            timeout=90,
            env=self.env,
        )
        commit = _probe(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=10)
        if commit.startswith(("git:", "(exit")):
            commit = "unknown (not a git checkout)"
        elif _probe(["git", "-C", str(REPO), "status", "--porcelain"], timeout=20):
            commit += " (with uncommitted changes)"
        mode = "quick" if self.quick else "full"
        self.header = [
            f"# sslth device check ({mode}, --device {self.device})",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
            f"- GPU (`nvidia-smi -L`): {_probe(['nvidia-smi', '-L'])}",
            f"- driver, GPU memory: {_probe(['nvidia-smi', QUERY, '--format=csv,noheader'])}",
            f"- {torch_info}",
            f"- python {platform.python_version()} ({self.python}), {os.cpu_count()} CPUs, "
            f"{platform.machine()}, {platform.platform()}",
            f"- commit: {commit}",
            f"- budget: {self.budget:.0f} s overall; each step under its own limit",
        ]
        with open(self.log, "a") as log:
            log.write("\n".join(self.header) + "\n\n")

    # ------------------------------------------------------------------ running a step
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step, cmd: list[str], env: dict | None = None) -> None:
        """Run ``cmd`` as ``step`` under its limit; its output goes to the log."""
        limit = min(step.cap[int(self.quick)], self.remaining())
        if limit < MIN_STEP[self.quick]:
            step.status, step.result = "NOT RUN", f"time budget spent ({self.budget:.0f} s)"
            return
        step.limit = limit
        self._banner(f"{step.key}: {' '.join(cmd)} (limit {limit:.0f} s)")
        t0 = time.monotonic()
        with open(self.log, "a") as log:
            offset = log.tell()  # append mode: the end of the file
            # its own process group, so that a timeout also ends whatever it started
            self.child = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                step.rc = self.child.wait(timeout=limit)
                step.status = "OK" if step.rc == 0 else "FAIL"
            except subprocess.TimeoutExpired:
                self._kill_child()
                step.rc = self.child.returncode
                step.status = "TIMEOUT"
            finally:
                self.child = None
        step.seconds = time.monotonic() - t0
        step.tail = self._tail(offset)
        with open(self.log, "a") as log:
            log.write(
                f"\n[device_check] {step.key}: {step.status} (exit {step.rc}) "
                f"in {step.seconds:.1f} s\n"
            )

    def _kill_child(self) -> None:
        if self.child is None:
            return
        for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.child.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.child.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _banner(self, text: str) -> None:
        print(f"[device_check] {text}", flush=True)
        with open(self.log, "a") as log:
            log.write(f"\n===== {text}\n")

    def _tail(self, offset: int) -> str:
        with open(self.log, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        # progress bars redraw with carriage returns: keep only their last state
        lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return "\n".join([line for line in lines if line.strip()][-TAIL_LINES:])

    def skip(self, step: Step, reason: str) -> None:
        step.status, step.result = "SKIP", reason
        self._banner(f"{step.key}: skipped ({reason})")

    # ------------------------------------------------------------------ the steps
    def install(self, step: Step) -> None:
        # from another folder and without PYTHONPATH: does the interpreter itself find sslth?
        find = "import importlib.util as u; s = u.find_spec('sslth'); print(s and s.origin)"
        where = _probe(
            [self.python, "-c", find],
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            cwd=Path(tempfile.gettempdir()),
        )
        if where != "None" and not where.startswith(("(exit", self.python)):
            # never re-point an existing install (a developer's, from another checkout): the
            # steps import this checkout first anyway, through PYTHONPATH
            self.skip(step, f"sslth is already installed ({where})")
            return
        # no build isolation: an isolated build would download setuptools, and there is no
        # network; --no-index: fail at once rather than retry an index that cannot be reached
        cmd = [self.python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
        self.run(step, cmd + ["--no-index", "-e", str(REPO)])
        if step.status == "OK":
            step.result = "installed (editable)"
        else:
            step.result = "install failed; the steps import the checkout through PYTHONPATH"

    def cuda_tests(self, step: Step) -> None:
        pytest = [self.python, "-m", "pytest", "-m", "cuda", "-q", "-rfEs"]
        self.run(step, pytest + ["-p", "no:cacheprovider", "tests"])
        summary = [line for line in step.tail.splitlines() if _is_pytest_summary(line)]
        step.result = summary[-1].strip("= ") if summary else ""
        if step.status == "OK" and self.cuda and "skipped" in step.result:
            if "passed" not in step.result:
                # every CUDA test skipped on the GPU machine: nothing was checked
                step.status = "FAIL"
                step.notes.append("no CUDA test ran on a run that asked for CUDA")
            else:
                step.notes.append("some CUDA tests skipped on a CUDA run (reasons in the log)")
        if not self.cuda:
            step.result += " (tests/test_cuda.py with the CPU standing in for the GPU)"

    def subset_sum(self, step: Step) -> None:
        path = self.out / "subset_sum.json"
        path.unlink(missing_ok=True)
        cmd = [
            self.python, "scripts/bench_subset_sum.py",
            "--families", "pensia",
            "--batch", str(SUBSET_SUM_BATCH[self.quick]),
            "--device", self.device,
            "--cpu-compare", str(CPU_SAMPLE[self.quick]),
            "--cpu-threads", "1",
            "--json", str(path),
        ]  # fmt: skip
        if self.quick:
            cmd += ["--exact-batch", "2000", "--baseline-seconds", "0.5", "--threads", "1"]
        else:
            cmd += ["--baseline-seconds", "2"]
        if self.quick or importlib.util.find_spec("scipy") is None:
            cmd.append("--no-milp")
        self.run(step, cmd)
        if path.exists():
            step.result = _summary(_subset_sum_result, path)

    def prune(self, step: Step, target: str, extra: tuple[str, ...] = ("--count-ops",)) -> None:
        """bench_prune.py on ``target`` (``extra``: its further options; by default it also
        counts the operators, in a second prune)."""
        path = self.out / f"prune_{target}.json"
        path.unlink(missing_ok=True)
        cmd = [self.python, "scripts/bench_prune.py", "--target", target, "--device", self.device]
        cmd += ["--json", str(path), "--no-network", *extra]
        self.run(step, cmd)
        if path.exists():
            step.result = _summary(_prune_result, path)
            data = json.loads(path.read_text())
            if step.status == "OK" and not str(data.get("device")).startswith(self.device):
                step.status = "FAIL"
                step.notes.append(f"pruned on {data.get('device')}, not {self.device}")

    def lenet5(self, step: Step) -> None:
        if self.quick:
            self.skip(step, "not run in --quick (a GPU-sized step)")
            return
        usage = _probe([self.python, "scripts/bench_prune.py", "--help"], 60, self.env)
        if "lenet5" not in usage.lower():
            self.skip(step, "bench_prune.py --help does not name lenet5")
            return
        self.prune(step, "lenet5")

    def big(self, step: Step) -> None:
        if self.quick:
            self.skip(step, "not run in --quick (a GPU-sized step, ~9.5 GiB)")
            return
        # timed only: counting its operators would take a second, long prune
        self.prune(step, "2048-2048-10", ("--max-random-params", str(BIG_TARGET_PARAMS)))

    def resnet20(self, step: Step) -> None:
        if self.quick:
            self.skip(step, "not run in --quick (a GPU-sized step: ~2-5 h on a 2-core CPU)")
            return
        self.prune(step, "resnet20", ())  # timed only (issue 20's goal: <= 60 s on one GPU)

    def digits(self, step: Step) -> None:
        if importlib.util.find_spec("sklearn") is None:
            self.skip(step, "scikit-learn is not installed")
            return
        folder = self.scratch / "digits"
        cmd = [self.python, "scripts/digits_demo.py", "--out", str(folder)]
        cmd += ["--device", self.device]  # every digits demo takes it (digits.demo_parser)
        if self.quick:
            cmd += ["--epochs", "100", "--no-figures"]
        self.run(step, cmd)
        for name in ("report.json", "logits.png", "masks.png"):
            if (folder / name).exists():
                shutil.copyfile(folder / name, self.out / f"digits_{name}")
        report = folder / "report.json"
        if report.exists():
            step.result = _summary(_digits_result, report)
            data = json.loads(report.read_text())
            ran_on = str(data.get("report", {}).get("device", "?"))
            if step.status == "OK" and not ran_on.startswith(self.device.split(":")[0]):
                step.status = "FAIL"
                step.notes.append(f"the demo pruned on {ran_on}, not {self.device}")

    def soundness(self, step: Step) -> None:
        # in the scratch folder: OUT already holds its eight files; the table has the figures
        path = self.scratch / "soundness_float32.json"
        cmd = [self.python, "scripts/attack_device.py", "--device", self.device]
        cmd += ["--json", str(path)] + (["--quick"] if self.quick else [])
        self.run(step, cmd)
        if path.exists():
            step.result = _summary(_soundness_result, path)

    # ------------------------------------------------------------------ the table
    def write_table(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.start
        lines = list(self.header) + [
            f"- elapsed: {elapsed:.0f} s" + ("" if final else " (still running)"),
            "",
            "| step | what | status | exit | time (s) | limit (s) | result |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in self.steps:
            result = s.result
            if s.notes:
                result = "; ".join(s.notes) + (f" — {result}" if result else "")
            if not s.ok and s.status not in ("pending", "running") and s.tail:
                last = s.tail.splitlines()[-1]
                result = f"{result} — last output: {last}" if result else last
            lines.append(
                f"| {s.key} | {_md(s.title)} | {s.status} | {'' if s.rc is None else s.rc} "
                f"| {_fmt(s.seconds, '.1f')} | {_fmt(s.limit, '.0f')} | {_md(result)[:600]} |"
            )
        lines.append("")
        lines.append(
            f"Step 2's CPU rate is measured on the first {CPU_SAMPLE[self.quick]:,} of the same "
            f"{SUBSET_SUM_BATCH[self.quick]:,} instances (same seed) on one CPU thread, in the "
            "same run, and extrapolated to the whole batch; the ratio is the device's auto rate "
            "over that CPU rate."
        )
        for s in self.steps:
            if s.status in ("FAIL", "TIMEOUT", "KILLED") and s.tail:
                lines += ["", f"### {s.key}: {s.status} (exit {s.rc}), end of its output", ""]
                lines += ["```", s.tail, "```"]
        text = "\n".join(lines) + "\n"
        self.table.write_text(text)
        return text

    def main(self) -> int:
        def stop(signum, _frame):
            # killed from outside: end the step in flight, keep what is done, say so
            self._kill_child()
            for s in self.steps:
                if s.status == "running":
                    s.status, s.result = "KILLED", f"the check got signal {signum}"
            self.write_table(final=True)
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.describe_machine()
        self.write_table()
        actions = {
            "install": self.install,
            "cuda-tests": self.cuda_tests,
            "subset-sum": self.subset_sum,
            # --quick: one timed prune only (its budget on a busy 2-core CPU has no room for
            # the counted second one; the full run counts)
            "prune-784-500-10": lambda s: self.prune(
                s, PRUNE_TARGET[self.quick], () if self.quick else ("--count-ops",)
            ),
            "digits": self.digits,
            "soundness-float32": self.soundness,
            "prune-lenet5": self.lenet5,
            "prune-2048-2048-10": self.big,
            "prune-resnet20": self.resnet20,
        }
        try:
            for step in self.steps:
                step.status = "running"
                self.write_table()
                try:
                    actions[step.key](step)
                except Exception as error:  # a bug here must not cost the other steps
                    step.status, step.result = "FAIL", f"device_check: {error!r}"
                if step.status == "running":
                    step.status = "FAIL"
                print(f"[device_check] {step.key}: {step.status}", flush=True)
                self.write_table()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
        table = self.write_table(final=True)
        with open(self.log, "a") as log:
            log.write("\n" + table)
        print("\n" + table, flush=True)
        print(f"[device_check] wrote {self.table} and {self.log}", flush=True)
        return 0 if all(s.ok for s in self.steps) else 1


def _summary(describe, path: Path) -> str:
    """One step's figures from its JSON; a file not as expected is said, not fatal."""
    try:
        return describe(json.loads(path.read_text()))
    except Exception as error:
        return f"could not read {path.name}: {error!r}"


def _is_pytest_summary(line: str) -> bool:
    words = ("passed", "failed", "skipped", "error", "deselected", "no tests ran")
    return any(w in line for w in words) and (" in " in line or line.startswith("="))


def _subset_sum_result(data: dict) -> str:
    r = data["rows"][0]
    text = (
        f"{r['device']}: auto {_fmt(r['auto_rate'])} inst/s on B = {r['batch']:,} "
        f"({_fmt(r['auto_seconds'], '.2f')} s; solved {r['auto_solved']:.5f}, proved "
        f"infeasible {r['auto_infeasible']:.5f}); exact {_fmt(r['exact_rate'])} inst/s"
    )
    if r.get("cpu_sample"):
        text += (
            f"; 1 CPU thread: {_fmt(r['cpu_rate'])} inst/s on the first {r['cpu_sample']:,} "
            f"(extrapolated {_fmt(r['batch'] / r['cpu_rate'], ',.1f')} s for all); "
            f"**ratio {_fmt(r['auto_rate'] / r['cpu_rate'], ',.1f')}×**; same solved/infeasible "
            f"on {r['cpu_same_status']:,}/{r['cpu_sample']:,}"
        )
    if r.get("milp_sample"):
        text += f"; auto/MILP {_fmt(r['auto_rate'] / r['milp_rate'])}×"
    return text


def _prune_result(d: dict) -> str:
    gpu = d.get("peak_gpu_gib")
    goal = PRUNE_GOALS.get(d.get("target"))
    goal_text = f" (goal on one H100/H200: ≤ {goal:g} s)" if goal else ""
    ops = d.get("operators")
    ops_text = (
        f"; {ops:,} torch operators, {d['sync_like']:,} host-sync-like (one worker thread)"
        if ops is not None
        else "; operators not counted"
    )
    return (
        f"{d['device']}: {_fmt(d['wall_s'], '.2f')} s end to end{goal_text} "
        f"({', '.join(f'{k} {v:.2f}' for k, v in d.get('steps_s', {}).items())}); "
        f"m = {d['m']:,}, n = {d['n']}, k = {d['k']}, density {d['density']:.4g} "
        f"(≤ {d['density_limit']:g}); certified {d['certified_error']:.4g} "
        f"(ε = {d['epsilon']:g}), empirical {d['empirical_error']:.3g}; peak host "
        f"{_fmt(d['peak_host_gib'], '.2f')} GiB"
        + (f", GPU {gpu:.2f} GiB" if gpu else "")
        + ops_text
    )


def _soundness_result(d: dict) -> str:
    parts = []
    for row in d["rows"]:
        name = f"{row['case']} TF32 {'on' if row['tf32'] else 'off'}"
        if "refused" in row:
            parts.append(f"{name}: refused")
        else:
            parts.append(f"{name}: {row['ratio']:.3f} (rounding part {row['rounding_ratio']:.3g})")
    return f"worst observed/certified {d['worst_ratio']:.4f} on {d['device']}; " + "; ".join(parts)


def _digits_result(d: dict) -> str:
    t = d.get("timings", {})
    return (
        f"pruned on {d.get('report', {}).get('device', '?')}: accuracy target "
        f"{d['target_accuracy']:.4f}, ticket {d['ticket_accuracy']:.4f} (predictions equal: "
        f"{d['predictions_equal']}); ε = {d['epsilon']:.4g}, certified {d['certified_error']:.4g}, "
        f"max logit deviation {d['max_logit_deviation']:.3g}; density {d['density']:.4g}; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in t.items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("folder", nargs="?", help="output folder (or --out, or $OUT)")
    parser.add_argument("--out", default=None, help="output folder (default: $OUT)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes: a CPU in < 2 min")
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help=f"overall seconds (default {FULL_BUDGET:.0f}, {QUICK_BUDGET:.0f} with --quick)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    args = parser.parse_args(argv)
    args.out = args.out or args.folder or os.environ.get("OUT")
    if not args.out:
        parser.error("give the output folder: --out DIR, a folder argument, or $OUT")
    if args.device.split(":")[0] not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    return Check(args).main()


if __name__ == "__main__":
    sys.exit(main())
