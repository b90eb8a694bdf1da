"""Run with the address space capped at what importing sslth takes plus 2 GiB, and try absurd
sizes on ``plan``, ``prune`` and the command line: each must end in one sslth error line (or
work), never in a traceback or an allocation the cap refuses. Prints one JSON line per case:
{"case", "outcome": "refused" | "ok" | "crash", "message"}. Used by tests/test_sizes.py."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import tempfile
import traceback
from pathlib import Path

import torch
from torch import nn

import sslth
from sslth.certificate import _landmarks
from sslth.cli import main

GiB = 2**30
CONFIGS = {
    "widths [1e8, 2]": "[target]\nkind='random'\nwidths=[100000000, 2]\n",
    "widths [2, 1e8]": "[target]\nkind='random'\nwidths=[2, 100000000]\n",
    "widths [1e5, 1e5]": "[target]\nkind='random'\nwidths=[100000, 100000]\n",
    "widths [2^63-1, 2]": "[target]\nkind='random'\nwidths=[9223372036854775807, 2]\n",
    "widths [0, 2]": "[target]\nkind='random'\nwidths=[0, 2]\n",
    "widths [-3, 2]": "[target]\nkind='random'\nwidths=[-3, 2]\n",
    "conv on 1e6 x 1e6": "[target]\nkind='random'\nlayers=['conv 1 2 3']\n"
    "[prune]\ninput_shape=[1, 1000000, 1000000]\n",
    "conv 1e5 channels": "[target]\nkind='random'\nlayers=['conv 100000 4 3']\n"
    "[prune]\ninput_shape=[100000, 8, 8]\n",
    "conv input_shape 0": "[target]\nkind='random'\nlayers=['conv 1 2 3']\n"
    "[prune]\ninput_shape=[1, 0, 5]\n",
    "conv input_shape -1": "[target]\nkind='random'\nlayers=['conv 1 2 3']\n"
    "[prune]\ninput_shape=[1, -1, 5]\n",
}
CONV = nn.Sequential(nn.Conv2d(1, 2, 3))
API = {
    "plan conv on 2^40 x 2^40": lambda: sslth.plan(
        CONV, 0.1, 0.5, input_shape=[1, 2**40, 2**40], calibrate=False
    ),
    "prune conv on 1e5 x 1e5": lambda: sslth.prune(
        CONV, 0.1, 0.5, input_shape=[1, 100_000, 100_000], progress=False
    ),
    "prune conv on 0 x 5": lambda: sslth.prune(CONV, 0.1, 0.5, input_shape=[1, 0, 5]),
    "plan dense, input_shape 1e12": lambda: sslth.plan(
        nn.Sequential(nn.Linear(3, 2)), 0.1, 0.5, input_shape=[10**12], calibrate=False
    ),
    "plan max_random_params 1e30": lambda: sslth.plan(
        nn.Sequential(nn.Linear(3, 2)), 0.1, 0.5, max_random_params=10**30, calibrate=False
    ),
    "landmarks of a 1x300x300 input": lambda: _landmarks(300 * 300, 1.0).shape,
}


def evaluate_300x300_conv_ticket() -> str:
    """A 1 x 300 x 300 conv ticket (n = 1, every unit kept) evaluated: its certificate and
    empirical check, whose axis points once asked 65 GB and whose conv batches 1.7 GB."""
    from sslth.construct import specs_for
    from sslth.masks import PairMasks

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))
    target = sslth.as_target(model.double(), input_shape=[1, 300, 300])
    specs = specs_for(target, [1] * len(target.layers), 0)
    masks = []
    for spec in specs:
        second = torch.ones(spec.d_out, spec.hidden, *spec.kind.kernel_shape, dtype=torch.bool)
        second[:, spec.weight_neurons :] &= spec.kind.constant_taps().view(spec.kind.kernel_shape)
        masks.append(PairMasks(spec, torch.ones(spec.hidden, dtype=torch.bool), second))
    ticket = sslth.Ticket(
        target, specs, masks, seed=0, epsilon=1e9, radius=1.0, tolerances=[0.1] * len(specs)
    )
    report = ticket.evaluate(samples=64, ascent_steps=1)
    return f"certified {report.certified_error:.4g}, empirical {report.empirical_error:.4g}"


def _cap() -> None:
    status = Path("/proc/self/status").read_text()
    peak = int(status.split("VmPeak:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (peak + 2 * GiB, peak + 2 * GiB))


def _run(name: str, call) -> dict:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result = call()
    except sslth.SslthError as error:
        return {"case": name, "outcome": "refused", "message": str(error)}
    except BaseException:  # noqa: BLE001  (any other exception is the finding)
        return {"case": name, "outcome": "crash", "message": traceback.format_exc()[-600:]}
    if isinstance(result, int) and result == 2:  # the command line's usage error
        return {"case": name, "outcome": "refused", "message": err.getvalue().strip()}
    return {"case": name, "outcome": "ok", "message": str(result)[:200]}


def run() -> None:
    _cap()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        for name, text in CONFIGS.items():
            path = Path(folder) / "c.toml"
            path.write_text(
                text + ("" if "[prune]" in text else "[prune]\n") + "epsilon=0.1\ndensity=0.5\n"
            )
            for command in ("plan", "prune"):
                argv = [command, "--config", str(path)]
                argv += ["--no-calibrate"] if command == "plan" else ["--quiet", "--out", folder]
                print(json.dumps(_run(f"sslth {command}: {name}", lambda a=argv: main(a))))
    for name, call in API.items():
        print(json.dumps(_run(name, call)), flush=True)
    if "--slow" in sys.argv:
        case = "a 1x300x300 conv ticket evaluated"
        print(json.dumps(_run(case, evaluate_300x300_conv_ticket)), flush=True)


if __name__ == "__main__":
    run()
    sys.exit(0)
