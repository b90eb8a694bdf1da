"""scripts/device_check.py, the one prepared GPU check, run here in its CPU form so it cannot rot.

On the GPU machine it runs once, unattended, with no chance to fix it there: every step it calls
(the CUDA tests with the CPU standing in, both benchmarks, the digits demo) runs here with
``--quick --device cpu``, and must pass.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "device_check.py"
STEPS = [
    "install",
    "cuda-tests",
    "subset-sum",
    "prune-784-500-10",
    "digits",
    "soundness-float32",
    "prune-lenet5",
    "prune-2048-2048-10",
]
STATUSES = ("OK", "SKIP", "FAIL", "TIMEOUT", "NOT RUN", "KILLED")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=400,  # the script's own budget is 170 s; this only guards against a hang
    )
    return done, out


@pytest.mark.slow
def test_quick_cpu_run_passes_every_step(quick_run):
    done, out = quick_run
    table = out / "device_check.md"
    log = out / "device_check.log"
    assert table.is_file() and log.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    text = table.read_text()
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in STEPS:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(STEPS), text
    for key, cells in rows.items():
        assert cells[2] in STATUSES, (key, cells)
        assert cells[2] in ("OK", "SKIP"), f"step {key} is {cells[2]}:\n{text}"
    assert done.returncode == 0, text + done.stderr[-3000:]
    # the table names the machine and versions, and ends the log and the output
    assert "nvidia-smi -L" in text and re.search(r"torch \d+\.\d+", text)
    assert "| step |" in log.read_text() and "| step |" in done.stdout


@pytest.mark.slow
def test_quick_run_results_are_real(quick_run):
    """Each step left its figures: the solver's CPU comparison, the prune, the digits ticket."""
    _, out = quick_run
    text = (out / "device_check.md").read_text()
    assert re.search(r"ratio [\d.,]+×", text), text
    assert re.search(r"\d+ passed", text), text
    # the quick run times one prune and says its operators were not counted (the full run
    # counts them in a second prune)
    assert re.search(r"64-32-10 .*s end to end.*operators not counted", text), text
    assert re.search(r"worst observed/certified [\d.]+ on cpu", text), text
    for name in ("subset_sum.json", "prune_64-32-10.json", "digits_report.json"):
        assert (out / name).is_file(), name
    # at most the eight files the device tool brings back
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8
