"""The float32 soundness attack on a device, under cuDNN benchmark mode with TF32 off and on.

    python scripts/attack_device.py --device cuda --json OUT.json
    python scripts/attack_device.py --device cpu --quick --json OUT.json   # the dry run

Float32 tickets (a dense MLP with biases and a small CNN) are pruned on the CPU, exported, moved
to the device, and certified there by ``sslth.certify`` — which reads the TF32 settings at
certification time and uses TF32's unit roundoff when they allow it. With
``torch.backends.cudnn.benchmark = True`` (cuDNN may pick any algorithm, FFT and Winograd among
them), each network is attacked with ``tests.attack.worst_gap`` (the module run on the device,
the target in float64), once with TF32 off and once on. The JSON holds each case's certified
bound, the worst gap found and their ratio; a ratio above 1 is a false certificate. On the CPU
cuDNN's switches change nothing and TF32's legacy switch sets the float32 matmul precision to
'high', which sslth refuses on the CPU (the dry run checks the plumbing and that refusal).
Exit status 1 if any ratio exceeds 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sslth  # noqa: E402
from sslth.config import random_target  # noqa: E402
from tests.attack import QUICK, float64_copy, worst_gap  # noqa: E402

TINY = {"starts": 4, "steps": 10, "restarts": 0, "screen": 256, "grid": 0, "jitter": 32}
TINY["alone"] = 8


class OnDevice(nn.Module):
    """Runs ``network`` on ``device`` on inputs of per-example ``shape``, for the attack, which
    searches a flat ball on the CPU."""

    def __init__(self, network: nn.Module, shape: tuple[int, ...], device="cpu") -> None:
        super().__init__()
        self.network, self.shape, self.device = network, shape, torch.device(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(x.shape[0], *self.shape).to(self.device)
        return self.network(images).reshape(x.shape[0], -1).cpu()


def _cases(quick: bool) -> list[dict]:
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3))
    torch.manual_seed(0)
    conv = conv.double()
    dense = random_target([4, 8, 3] if quick else [16, 32, 8], bias=True, seed=1)
    return [
        {"name": "dense", "target": dense, "input_shape": None, "radius": 1.0},
        {"name": "conv", "target": conv, "input_shape": (1, 6, 6), "radius": 1.0},
    ]


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cudnn.benchmark = True


def _attack(case: dict, ticket, cpu_network, device: torch.device, knobs: dict) -> dict:
    """Certify the exported float32 ticket on ``device`` and attack it twice: against the
    float64 target (the whole certificate) and against the float64 copy of the ticket itself
    (its rounding part alone, which is what the device's arithmetic affects)."""
    start = time.perf_counter()
    network = copy.deepcopy(cpu_network).to(device)
    dim, shape = ticket.target.input_size, tuple(ticket.target.input_shape)
    try:
        certificate = sslth.certify(ticket.target, network, case["radius"])
    except sslth.NotATicketError as error:  # e.g. TF32's 'high' precision on a CPU
        return {"case": case["name"], "refused": str(error)}
    exact_ticket = OnDevice(float64_copy(cpu_network), shape)
    ran = OnDevice(network, shape, device)
    options = {"module64": exact_ticket, "kinks": False, **knobs}
    whole = worst_gap(
        OnDevice(float64_copy(case["target"]), shape), ran, case["radius"], dim, **options
    )
    rounding = worst_gap(exact_ticket, ran, case["radius"], dim, **options)
    return {
        "case": case["name"],
        "arithmetic": certificate.arithmetic,
        "certified": certificate.bound,
        "observed": whole.gap,
        "ratio": whole.gap / certificate.bound,
        "rounding_certified": certificate.rounding,
        "rounding_observed": rounding.gap,
        "rounding_ratio": rounding.gap / certificate.rounding,
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small cases and attack")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    knobs = TINY if args.quick else QUICK
    rows, worst = [], 0.0
    for case in _cases(args.quick):
        _set_tf32(False)  # the legacy TF32 switch also sets the CPU's float32 precision
        ticket = sslth.prune(
            case["target"], 0.2, 0.6, radius=case["radius"], input_shape=case["input_shape"],
            dtype="float32", progress=False, empirical_samples=200, device="cpu",
        )  # fmt: skip
        # pruned on the CPU (the default device is cuda where there is one): the float64 copies
        # the attack reasons with must stay on the CPU, and only the certified copy moves
        exported = ticket.export()
        for tf32 in (False, True):
            _set_tf32(tf32)
            row = _attack(case, ticket, exported, device, knobs)
            row["tf32"] = tf32
            rows.append(row)
            worst = max([worst, row.get("ratio", 0.0), row.get("rounding_ratio", 0.0)])
            shown = row.get("refused") or (
                f"{row['arithmetic']}: observed/certified {row['ratio']:.4f}, rounding part "
                f"{row['rounding_observed']:.3g}/{row['rounding_certified']:.3g} = "
                f"{row['rounding_ratio']:.4f}"
            )
            print(f"{case['name']:6} tf32={tf32!s:5} {shown}", flush=True)
    _set_tf32(False)
    result = {"device": str(device), "cudnn_benchmark": True, "worst_ratio": worst, "rows": rows}
    args.json.write_text(json.dumps(result, indent=2))
    print(f"worst observed/certified: {worst:.4f}")
    return 1 if worst > 1 else 0


if __name__ == "__main__":
    raise SystemExit(main())
