"""Planted dangerous mutants on the trust paths, and whether the suite kills each one.

Each mutant is one text substitution in one file of the certificate, the rounding term, module
reading, the probe, network reading or ticket loading, chosen to fail in the *dangerous*
direction: a bound too small, a density too low, a tampered file accepted, a dressed module
accepted. For each, the script copies the repository to a temporary folder, applies the
substitution there (never to the checkout), and runs the named test files with ``pytest -x``;
the mutant is killed when pytest fails. ``tests/test_golden.py`` is never run: a golden-value
catch does not count (re-recording the golden file would accept the mutant).

    python3 scripts/mutate_trust.py                 # every mutant (~30-60 min on 2 busy cores)
    python3 scripts/mutate_trust.py --only 3 7      # some of them
    python3 scripts/mutate_trust.py --list          # what is planted

Results: docs/testing.md ("Dangerous mutants on the trust paths").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CERTIFICATE = [
    "tests/test_certificate.py",
    "tests/test_rounding.py",
    "tests/test_reference.py",
    "tests/test_bias.py",
]
SETTINGS = ["tests/test_rounding.py", "tests/test_arithmetic_settings.py"]
READING = ["tests/test_modules.py", "tests/test_network.py"]
LOADING = ["tests/test_ticket.py", "tests/test_load_refusals.py", "tests/test_trust.py"]


@dataclass(frozen=True)
class Mutant:
    path: str
    old: str
    new: str
    tests: list[str]
    why: str


MUTANTS = [
    # ---- the exact part of the certificate (sslth/certificate.py)
    Mutant(
        "sslth/certificate.py",
        "pair_error * (radius_in + error)",
        "pair_error * radius_in",
        CERTIFICATE,
        "E_i multiplies r_{i-1} only, not r_{i-1} + err_{i-1}",
    ),
    Mutant(
        "sslth/certificate.py",
        "new_error = weight_norm * error + ",
        "new_error = ",
        CERTIFICATE,
        "the incoming error is not carried through P_i",
    ),
    Mutant(
        "sslth/certificate.py",
        "* spread * (1 + 1e-12)",
        "* (1 + 1e-12)",
        CERTIFICATE + ["tests/test_conv.py"],
        "a conv bias error counted at one position",
    ),
    Mutant(
        "sslth/certificate.py",
        "return kind.operator_norm(weight) * (1 + NORM_RELATIVE_ERROR)",
        "return kind.operator_norm(weight) * (1 - 1e-3)",
        CERTIFICATE,
        "operator norms rounded down",
    ),
    Mutant(
        "sslth/certificate.py",
        "radius_in = (weight_norm * radius_in + float(",
        "radius_in = (weight_norm * radius_in + 0 * float(",
        CERTIFICATE,
        "the target's bias left out of r_i",
    ),
    Mutant(
        "sslth/certificate.py",
        "gamma = 2 * (op.stats.terms_per_entry + 1) * _U64",
        "gamma = 0.0",
        CERTIFICATE,
        "A and B's own float64 rounding dropped",
    ),
    Mutant(
        "sslth/certificate.py",
        "both = (reads == 1) & (c != 0)",
        "both = (reads == 1) & (c > 0)",
        CERTIFICATE + READING,
        "a neuron with an input and a negative bias accepted",
    ),
    Mutant(
        "sslth/certificate.py",
        "if bool((reads > 1).any()):",
        "if bool((reads > 2).any()):",
        CERTIFICATE + READING,
        "a neuron reading two inputs accepted",
    ),
    # ---- the rounding part (sslth/certificate.py rounding_bound, sslth/rounding.py)
    Mutant(
        "sslth/certificate.py",
        "arithmetic.gamma(stats.second_fan_in) * output_magnitude",
        "arithmetic.gamma(stats.first_fan_in) * output_magnitude",
        CERTIFICATE,
        "V's rounding with U's fan-in (the audit's mutant: 120x too small)",
    ),
    Mutant(
        "sslth/certificate.py",
        "            signed * delta\n",
        "            delta\n",
        CERTIFICATE,
        "the incoming deviation not amplified by S",
    ),
    Mutant(
        "sslth/certificate.py",
        "* (math.sqrt(2.0) * abs_norm * (z + delta)",
        "* (abs_norm * (z + delta)",
        CERTIFICATE,
        "the sqrt(2) of |V||U||x| dropped",
    ),
    Mutant(
        "sslth/certificate.py",
        "            + hidden_error\n            + arithmetic.gamma",
        "            + arithmetic.gamma",
        CERTIFICATE,
        "U's rounding not carried into Δ",
    ),
    Mutant(
        "sslth/certificate.py",
        "z = (signed * z + offset) * (1 + 1e-12)",
        "z = (signed * z) * (1 + 1e-12)",
        CERTIFICATE,
        "the pair's offset left out of Z",
    ),
    Mutant(
        "sslth/certificate.py",
        "        if terms:\n",
        "        if False:\n",
        CERTIFICATE + ["tests/test_conv.py"],
        "average pooling's rounding dropped",
    ),
    Mutant(
        "sslth/certificate.py",
        "live = (a != 0) | (c > 0)",
        "live = a != 0",
        CERTIFICATE,
        "bias neurons not counted as live (V's fan-in and |V| too small)",
    ),
    Mutant(
        "sslth/certificate.py",
        "+ (c != 0)).max()))",
        ").max()))",
        CERTIFICATE,
        "U's fan-in without the bias term",
    ),
    Mutant(
        "sslth/certificate.py",
        "(row_abs_max * self.column_abs_max).sqrt().sum()",
        "(row_abs_max * self.column_abs_max).sqrt().max()",
        CERTIFICATE + ["tests/test_network.py"],
        "N_V over one tap only",
    ),
    Mutant(
        "sslth/rounding.py",
        "torch.float32: 2.0**-24,",
        "torch.float32: 2.0**-25,",
        CERTIFICATE,
        "float32 unit roundoff halved",
    ),
    Mutant(
        "sslth/rounding.py",
        "else mu / (1.0 - mu)",
        "else mu",
        CERTIFICATE,
        "γ_m = m u (first order only)",
    ),
    Mutant(
        "sslth/rounding.py",
        'if value not in ("none", "ieee")',
        'if value == "bf16"',
        SETTINGS,
        "oneDNN/backends fp32_precision 'tf32' accepted",
    ),
    Mutant(
        "sslth/rounding.py",
        'if precision != "highest":',
        'if precision == "medium":',
        SETTINGS,
        "float32 matmul precision 'high' accepted on the CPU",
    ),
    Mutant(
        "sslth/rounding.py",
        "if convolution and nnpack and not mkldnn:",
        "if False:",
        SETTINGS,
        "NNPACK's fast convolutions accepted",
    ),
    Mutant(
        "sslth/rounding.py",
        '("mkldnn.conv.",) if convolution else ()',
        "()",
        SETTINGS,
        "oneDNN conv fp32_precision ignored (the audit's mutant)",
    ),
    # ---- module reading (sslth/modules.py, sslth/probe.py, sslth/network.py)
    Mutant(
        "sslth/modules.py",
        "and cls.__module__ == prune.__name__",
        "",
        READING,
        "a pruning hook class from outside torch accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if key.endswith(suffix) and key[: -len(suffix)] not in pruned:",
        "if False:",
        READING,
        "stray weight_orig/weight_mask accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if type(value) not in (torch.Tensor, nn.Parameter):",
        "if False:",
        READING,
        "tensor subclasses accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "defined = sorted(set(vars(klass)) - _SUBCLASS_MAY_DEFINE)",
        'defined = sorted(k for k in vars(klass) if k == "forward")',
        READING,
        "a subclass defining _conv_forward, __getattr__ or a weight property accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if parametrize.is_parametrized(module):\n        return",
        "if False:\n        return",
        READING,
        "parametrizations accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if torch._C._len_torch_function_stack() or",
        "if False and",
        READING,
        "an active TorchFunctionMode accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if module._forward_hooks or",
        "if False and",
        READING,
        "forward hooks accepted",
    ),
    Mutant(
        "sslth/modules.py",
        'return "is compiled (module.compile())',
        "return None  # ",
        READING,
        "compiled modules accepted",
    ),
    Mutant(
        "sslth/modules.py",
        "if name not in pruned_names(module):\n        return None",
        'if not hasattr(module, name + "_orig"):\n        return None',
        READING,
        "pruning state read by its name, not by the hook (the old reading)",
    ),
    Mutant(
        "sslth/probe.py",
        "return _compare(out, reference, tolerance)",
        "return _compare(out, reference, tolerance * 1e6)",
        READING,
        "the probe's tolerance a million times too loose",
    ),
    Mutant(
        "sslth/probe.py",
        "if bool((excess > 0).any()):",
        "if False:",
        READING,
        "the probe never refuses",
    ),
    Mutant(
        "sslth/network.py",
        '(effective_parameter(module, "bias") != 0).any()',
        '(effective_parameter(module, "bias") != 0).all()',
        READING,
        "a second layer with a partly non-zero bias accepted (the audit's mutant)",
    ),
    Mutant(
        "sslth/network.py",
        "if len(dtypes) > 1 or len(devices) > 1:",
        "if len(dtypes) > 2 or len(devices) > 1:",
        READING + CERTIFICATE,
        "a network mixing float32 and float64 layers accepted",
    ),
    Mutant(
        "sslth/network.py",
        "convolution = any(isinstance(m, nn.Conv2d) for m in modules)",
        "convolution = False",
        SETTINGS + READING,
        "convolution settings not checked for conv tickets",
    ),
    # ---- loading (sslth/ticket.py)
    Mutant(
        "sslth/ticket.py",
        'if payload.get("content_sha256") != _content_digest(payload):',
        'if "content_sha256" in payload and payload["content_sha256"] != _content_digest(payload):',
        LOADING,
        "a file without its digest accepted",
    ),
    Mutant(
        "sslth/ticket.py",
        'if payload.get("content_sha256") != _content_digest(payload):',
        'if str(payload.get("content_sha256")).lower()[:64] != _content_digest(payload):',
        LOADING,
        "a retyped digest accepted",
    ),
]


def _copy_tree(destination: Path) -> None:
    for name in ("sslth", "tests", "pyproject.toml", "configs"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, destination / name)


def run(mutant: Mutant, workdir: Path) -> tuple[str, float]:
    """ "killed", "survived" or "invalid" (the text to replace is not there exactly once)."""
    path = workdir / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return "invalid", 0.0
    path.write_text(original.replace(mutant.old, mutant.new))
    env = {**os.environ, "PYTHONPATH": str(workdir), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    tests = [t for t in mutant.tests if t != "tests/test_golden.py"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=1800,
        )
        verdict = "survived" if result.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        verdict = "killed"  # a hang is noticed
    finally:
        path.write_text(original)
    return verdict, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=int, nargs="*", help="mutant numbers to run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--workers", type=int, default=2, help="mutants tested at once")
    args = parser.parse_args()
    chosen = [(i, m) for i, m in enumerate(MUTANTS) if not args.only or i in args.only]
    if args.list:
        for index, mutant in chosen:
            print(f"{index:3} {mutant.path:18} {mutant.why}")
        return 0
    counts = {"killed": 0, "survived": 0, "invalid": 0}
    shares = [chosen[start :: args.workers] for start in range(args.workers)]

    def work(share: list[tuple[int, Mutant]]) -> None:
        with tempfile.TemporaryDirectory(prefix="sslth-mutants-") as folder:
            workdir = Path(folder)
            _copy_tree(workdir)
            for index, mutant in share:
                verdict, seconds = run(mutant, workdir)
                counts[verdict] += 1
                print(
                    f"{index:3} {verdict:8} {seconds:6.0f}s {mutant.path:18} {mutant.why}",
                    flush=True,
                )

    with ThreadPoolExecutor(args.workers) as pool:  # each worker drives its own pytest runs
        list(pool.map(work, shares))
    valid = counts["killed"] + counts["survived"]
    print(
        f"killed {counts['killed']}/{valid} ({counts['killed'] / max(valid, 1):.0%}); "
        f"invalid {counts['invalid']}"
    )
    return 0 if counts["invalid"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
