"""Progress that tells the truth: instances solved against instances to solve, a clock that
ticks during long steps, and every new step announced with its reason.

Everything goes to stderr (stdout carries reports and ``--json``). Each step (a layer's
instances, a re-solve, a refine) gets its own total: the bar restarts at 0% under the step's
reason instead of growing one total, whose percentage would jump backwards (100% → 60%) each
time a later step adds work.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from tqdm.auto import tqdm

TICKER_NAME = "sslth-progress-ticker"


class Progress:
    """A progress bar over subset-sum instances (or any unit of work), safe to update from
    worker threads. A context manager: ``with Progress(...) as progress:`` closes the bar and
    stops its ticker thread however the block ends.

    Args:
        enabled: draw the bar and print the events (``prune(progress=...)``).
        description: the bar's label.
        tick: seconds between refreshes of the elapsed time while nothing finishes.
        stream: where the bar and the events go (default: ``sys.stderr`` at construction).
    """

    def __init__(
        self, enabled: bool, description: str, tick: float = 0.5, stream: TextIO | None = None
    ) -> None:
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self._lock = threading.Lock()
        self._bar = tqdm(
            total=0,
            desc=description,
            unit="inst",
            unit_scale=True,
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
            file=self.stream,
        )
        self._stop = threading.Event()
        self._ticker = None
        if enabled:
            self._ticker = threading.Thread(
                target=self._tick, args=(tick,), name=TICKER_NAME, daemon=True
            )
            self._ticker.start()

    def _tick(self, tick: float) -> None:
        while not self._stop.wait(tick):
            with self._lock:
                self._bar.refresh()

    def add(self, count: int, reason: str) -> None:
        """A new step of ``count`` units of work, because of ``reason`` (shown on the bar, and
        printed as a line so the log keeps it). The bar restarts at 0 of ``count`` (plus what
        the previous step left pending, none when steps run one after another): within a step
        the percentage only rises."""
        with self._lock:
            pending = max(int(self._bar.total or 0) - int(self._bar.n), 0)
            self._bar.set_postfix_str(reason, refresh=False)
            self._bar.reset(total=int(count) + pending)
        self.event(reason)

    def update(self, count: int) -> None:
        """``count`` units of work finished."""
        with self._lock:
            self._bar.update(int(count))

    def event(self, text: str) -> None:
        """Print one line above the bar (nothing when disabled)."""
        if self.enabled:
            tqdm.write(f"sslth: {text}", file=self.stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the ticker thread and close the bar (idempotent)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._bar.close()
