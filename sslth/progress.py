"""Progress that tells the truth: instances solved against instances to solve, a clock that
ticks during long steps, and every change of the total announced with its reason."""

from __future__ import annotations

import threading
import time

from tqdm.auto import tqdm


class Progress:
    """A progress bar over subset-sum instances (or any unit of work), safe to update from
    worker threads.

    Args:
        enabled: draw the bar and print the events (``prune(progress=...)``).
        description: the bar's label.
        tick: seconds between refreshes of the elapsed time while nothing finishes.
    """

    def __init__(self, enabled: bool, description: str, tick: float = 0.5) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar = tqdm(
            total=0,
            desc=description,
            unit="inst",
            unit_scale=True,
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
        )
        self._stop = threading.Event()
        self._ticker = None
        if enabled:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True)
            self._ticker.start()

    def _tick(self, tick: float) -> None:
        while not self._stop.wait(tick):
            with self._lock:
                self._bar.refresh()

    def add(self, count: int, reason: str) -> None:
        """``count`` more units of work, because of ``reason`` (shown on the bar, and printed
        as a line so the log keeps it)."""
        with self._lock:
            self._bar.total += int(count)
            self._bar.set_postfix_str(reason, refresh=True)
        self.event(reason)

    def update(self, count: int) -> None:
        with self._lock:
            self._bar.update(int(count))

    def event(self, text: str) -> None:
        """Print one line above the bar (nothing when disabled)."""
        if self.enabled:
            tqdm.write(f"sslth: {text}")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._bar.close()


class Stopwatch:
    """Seconds spent in named steps, printed as each finishes when ``progress`` is on."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress

    def add(self, name: str, seconds: float, detail: str = "") -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if self.progress is not None:
            self.progress.event(f"{name} {seconds:.2f} s" + (f" ({detail})" if detail else ""))

    def time(self, name: str, detail: str = ""):
        watch = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()
                return self

            def __exit__(self, *exc):
                watch.add(name, time.perf_counter() - self.start, detail)

        return _Timer()
