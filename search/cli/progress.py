"""Progress on a terminal: count, rate and ETA on stderr, redrawn at most a few times a second."""

import sys
import time

REDRAW_EVERY_S = 0.2
RATE_AFTER_S = 0.5  # a rate over less time (or one item) says nothing: "-" until then


def rate(counted: int, elapsed: float) -> float | None:
    """Items per second, or None while that says nothing (under RATE_AFTER_S, or no item timed):
    the first tick of a stage comes right after its first item, over ~0 s."""
    if elapsed < RATE_AFTER_S or counted < 1:
        return None
    return counted / elapsed


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class TerminalProgress:
    """A callable (stage, done, total) that draws one line; silent when stderr is not a TTY."""

    LABELS = {
        "hash": "hashing",
        "embed": "embedding",
        "dups": "searching",
        "calibrate": "calibrating: known copies embedded",
    }

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.stage: str | None = None
        self.started, self.last = 0.0, 0.0
        self.first = 0  # items already done at the stage's first tick: not timed by us

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.finish()
            self.stage, self.started, self.first = stage, now, done
        if now - self.last < REDRAW_EVERY_S and done < total:
            return
        self.last = now
        per_s = rate(done - self.first, now - self.started)
        eta = format_seconds((total - done) / per_s) if per_s and done < total else "-"
        shown = "-/s" if per_s is None else f"{per_s:.1f}/s"
        label = self.LABELS.get(stage, stage)
        self.stream.write(f"\r{label} {done}/{total}  {shown}  ETA {eta}   ")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.stage = None
