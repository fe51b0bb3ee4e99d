"""Progress on a terminal: count, rate and ETA on stderr, redrawn at most a few times a second."""

import sys
import time

REDRAW_EVERY_S = 0.2


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class TerminalProgress:
    """A callable (stage, done, total) that draws one line; silent when stderr is not a TTY."""

    LABELS = {"hash": "hashing", "embed": "embedding", "dups": "searching"}

    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.stage, self.started, self.last = None, 0.0, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.finish()
            self.stage, self.started = stage, now
        if now - self.last < REDRAW_EVERY_S and done < total:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = format_seconds((total - done) / rate) if rate > 0 and done < total else "-"
        label = self.LABELS.get(stage, stage)
        self.stream.write(f"\r{label} {done}/{total}  {rate:.1f}/s  ETA {eta}   ")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.stage = None
