"""sslth.progress: the bar and its events go to stderr, a percentage never falls within a
step (each step restarts the bar under its reason instead of growing one total), and the bar's
ticker thread never outlives a prune."""

import io
import re
import threading
import time

import pytest

import sslth
from sslth.config import random_target
from sslth.progress import TICKER_NAME, Progress


def _percentages(text: str) -> list[tuple[str, int]]:
    """(reason on the bar, percentage) in the order tqdm drew them."""
    drawn = []
    for frame in re.split(r"[\r\n]", text):
        found = re.search(r"(\d+)%\|.*\[.*, (.+)\]", frame)
        if found:
            drawn.append((found.group(2), int(found.group(1))))
    return drawn


def test_each_step_counts_up_to_its_own_total(capsys):
    stream = io.StringIO()
    progress = Progress(True, "sslth: solving", tick=60.0, stream=stream)
    progress._bar.mininterval, progress._bar.miniters = 0.0, 1  # draw every update
    progress.add(10, "layer 1: 10 instances")
    progress.update(4)
    progress.update(6)
    progress.add(15, "layer 2: 15 instances")  # the old single total: 10/25 = 40% after 100%
    for _ in range(5):
        progress.update(3)
    progress.event("round 1: done")
    progress.close()
    drawn = _percentages(stream.getvalue())
    steps = [reason for reason, _ in drawn]
    assert "layer 1: 10 instances" in steps and "layer 2: 15 instances" in steps
    for step in set(steps):
        shown = [percent for reason, percent in drawn if reason == step]
        assert shown[0] == 0 and shown[-1] == 100, (step, shown)
    # the percentage falls only where a new step restarts the bar at 0
    for (before, low), (after, high) in zip(drawn[:-1], drawn[1:], strict=True):
        assert high >= low or (high == 0 and after != before), drawn
    assert "sslth: round 1: done" in stream.getvalue()
    assert capsys.readouterr().out == ""  # nothing on stdout


def test_disabled_progress_writes_nothing(capsys):
    stream = io.StringIO()
    progress = Progress(False, "sslth: solving", stream=stream)
    progress.add(3, "step")
    progress.update(3)
    progress.event("ignored")
    progress.close()
    assert stream.getvalue() == "" and capsys.readouterr() == ("", "")


def test_the_default_stream_is_stderr(capsys):
    progress = Progress(True, "sslth: solving", tick=60.0)
    progress.event("to stderr")
    progress.close()
    out, err = capsys.readouterr()
    assert out == "" and "sslth: to stderr" in err


def _tickers() -> set[threading.Thread]:
    """sslth's own ticker threads (tqdm keeps one monitor thread per process: not ours)."""
    return {t for t in threading.enumerate() if t.name == TICKER_NAME}


def test_the_context_manager_stops_the_ticker_even_on_an_error():
    before = _tickers()
    with pytest.raises(RuntimeError, match="inside"):
        with Progress(True, "test") as progress:
            assert _tickers() - before, "an enabled bar runs a ticker thread"
            raise RuntimeError("inside")
    assert progress._stop.is_set()
    assert _tickers() == before


@pytest.mark.parametrize(
    "options,error",
    [
        ({"n": 2, "k": 5}, sslth.ConfigError),  # raised by the solve, after the bar started
        # raised by the plan: 40 weights hold the n = 1 pair (30), not the n the plan needs
        ({"max_random_params": 40}, sslth.TicketNotFound),
    ],
)
def test_a_failing_prune_leaves_no_thread_behind(options, error, capsys):
    before = _tickers()
    with pytest.raises(error):
        sslth.prune(random_target([3, 2]), 0.1, 1.0, progress=True, **options)
    deadline = time.monotonic() + 5  # a stopped ticker ends within one tick (0.5 s)
    while _tickers() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tickers() - before == set()


def test_a_real_prune_counts_each_step_up_to_its_total(capsys):
    """A prune with growth-prone sizes and refine: on stderr only, every drawn frame of a step
    shows a count that never falls and never passes the step's total (the bar whose total grew
    went 100% -> 60%), and stdout stays empty (``--json`` stays clean)."""
    sslth.prune(random_target([8, 16, 4], seed=0), 0.05, 0.3, progress=True, empirical_samples=200)
    out, err = capsys.readouterr()
    assert out == ""
    counts: dict[str, list[tuple[float, float]]] = {}
    for frame in re.split(r"[\r\n]", err):
        found = re.search(r"\| *([\d.]+)/([\d.]+) \[[^,\]]*, [^,\]]*, (.+)\]\s*$", frame)
        if found:  # "… 160/256 [00:00<00:00, 1.47kinst/s, layer 1 (8→16): 256 instances …]"
            done, total, step = float(found.group(1)), float(found.group(2)), found.group(3)
            counts.setdefault(step, []).append((done, total))
    assert any(step.startswith("layer 1 ") for step in counts), err[-2000:]
    for step, frames in counts.items():
        assert len({total for _, total in frames}) == 1, (step, frames)  # the total never grows
        done = [d for d, _ in frames]
        assert done == sorted(done) and done[-1] <= frames[0][1], (step, frames)
