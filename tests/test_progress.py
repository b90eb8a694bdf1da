"""sslth.progress: the bar and its events go to stderr, and a percentage never falls within a
step (each step restarts the bar under its reason instead of growing one total)."""

import io
import re

from sslth.progress import Progress


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
