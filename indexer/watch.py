"""Watched folders: file-system events become batches of folders to index again.

watchdog reports creates, changes, moves and deletes (inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows, or polling for network shares where those see nothing).
Events are collected until the tree has been quiet for `quiet_s` (a copy of 500 photos is one
batch, not 500) or `max_delay_s` has passed since the first. A batch names the topmost folders
that changed; indexing them again lets the indexer do what it always does: a moved or renamed
file or folder keeps its vectors (found by content hash, both ends are in the same batch), a
deleted one leaves the library, a half-copied file that failed is retried when it changes again.

A watched root that disappears (an unmounted drive, a renamed or removed folder) or that turns
into another file system's empty mount point is *gone*: nothing under it is removed from the
library; when it comes back it is walked whole once.
"""

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from indexer.errors import BadQuery, LibraryError
from indexer.files import is_excluded, is_image_name
from indexer.paths import is_under, under_any

if TYPE_CHECKING:  # watchdog is imported only for --watch
    from watchdog.observers.api import BaseObserver, ObservedWatch

QUIET_S = 2.0  # a batch waits for this long without events
MAX_DELAY_S = 30.0  # ... but never longer than this after its first event
CHECK_S = 2.0  # how often the roots are checked for being there
POLL_S = 5.0  # the polling observer's interval


@dataclass
class Batch:
    """What changed since the last batch."""

    roots: list[str] = field(default_factory=list)  # folders to index again (topmost only)
    events: int = 0
    gone: list[str] = field(default_factory=list)  # watched roots that disappeared
    back: list[str] = field(default_factory=list)  # watched roots that are there again

    def to_json(self) -> dict:
        return {"roots": self.roots, "events": self.events, "gone": self.gone, "back": self.back}


def _identity(path: str) -> int | None:
    """The file system a root lives on (its device), or None when it is not there."""
    try:
        return os.stat(path).st_dev if os.path.isdir(path) else None
    except OSError:
        return None


class Watcher:
    """Watches roots (folders) and hands out Batches; use as a context manager."""

    def __init__(
        self,
        roots: Iterable[str],
        skip: Iterable[str] = (),
        poll: bool = False,
        exclude: Iterable[str] = (),
        include_hidden: bool = False,
        quiet_s: float | None = None,
        max_delay_s: float | None = None,
        check_s: float | None = None,
    ):
        self.roots = [os.path.abspath(os.path.expanduser(str(r))) for r in roots]
        for root in self.roots:
            if not os.path.isdir(root):
                raise BadQuery(f"--watch needs folders: {root} is not one")
        self.skip = [os.path.realpath(s) for s in skip] + [os.path.abspath(s) for s in skip]
        self.poll, self.exclude, self.include_hidden = poll, tuple(exclude), include_hidden
        self.quiet_s = quiet_s or QUIET_S
        self.max_delay_s, self.check_s = max_delay_s or MAX_DELAY_S, check_s or CHECK_S
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._events = 0
        self._first = self._last = 0.0
        self._device = {r: _identity(r) for r in self.roots}
        self._watches: dict[str, ObservedWatch] = {}
        self._observer: BaseObserver | None = None

    # --- the observer ---------------------------------------------------------------------------

    def __enter__(self) -> "Watcher":
        from watchdog.observers import Observer  # ~0.1 s, only for --watch
        from watchdog.observers.polling import PollingObserver

        self._observer = PollingObserver(timeout=POLL_S) if self.poll else Observer()
        for root in self.roots:
            self._schedule(root)
        self._observer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    @property
    def observer(self) -> "BaseObserver":
        if self._observer is None:
            raise RuntimeError("the watcher is not running: use it as `with Watcher(...)`")
        return self._observer

    def _schedule(self, root: str) -> None:
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                watcher._event(root, event)

        try:
            self._watches[root] = self.observer.schedule(Handler(), root, recursive=True)
        except OSError as exc:  # e.g. the inotify watch limit: say which knob to turn
            raise LibraryError(
                f"cannot watch {root}: {exc.strerror or exc}"
                + (
                    " (raise fs.inotify.max_user_watches, or use --watch-poll)"
                    if "inotify" in str(exc) or getattr(exc, "errno", 0) == 28
                    else ""
                )
            ) from None

    def _unschedule(self, root: str) -> None:
        watch = self._watches.pop(root, None)
        if watch is not None:
            try:
                self.observer.unschedule(watch)
            except (KeyError, OSError):
                pass  # the folder went first: the observer has dropped it already

    # --- events ---------------------------------------------------------------------------------

    def _event(self, root: str, event) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (event.is_directory and kind == "modified"):
            return  # a folder's "modified" is its entries changing: those come as their own
        paths = [event.src_path] + ([event.dest_path] if getattr(event, "dest_path", "") else [])
        folders = set()
        for i, path in enumerate(os.fsdecode(p) for p in paths):
            if not self._relevant(root, path, event.is_directory):
                continue
            moved_in = event.is_directory and (kind == "created" or (kind == "moved" and i == 1))
            folders.add(path if moved_in else os.path.dirname(path))
        if not folders:
            return
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first = now
            self._pending.update(folders)
            self._events += 1
            self._last = now
            self._cond.notify_all()

    def _relevant(self, root: str, path: str, is_dir: bool) -> bool:
        if under_any(path, self.skip):
            return False  # the library's own files (it may live inside a watched folder)
        if not is_under(path, root):
            return False
        rel = os.path.relpath(path, root)
        parts = rel.split(os.sep)
        if not self.include_hidden and any(p.startswith(".") for p in parts if p != os.curdir):
            return False  # hidden files and folders, editors' and downloaders' temp files
        if self.exclude and is_excluded(os.path.normpath(rel), parts[-1], self.exclude):
            return False
        return is_dir or is_image_name(path)

    # --- batches --------------------------------------------------------------------------------

    def next_batch(self, stop: threading.Event | None = None) -> Batch | None:
        """Block until something changed (events gone quiet, or a root went or came back);
        None once `stop` is set."""
        stop = stop or threading.Event()
        next_check = time.monotonic() + self.check_s
        while not stop.is_set():
            batch = Batch()
            now = time.monotonic()
            if now >= next_check:
                self._check_roots(batch)
                next_check = now + self.check_s
            with self._cond:
                due = self._pending and (
                    now - self._last >= self.quiet_s or now - self._first >= self.max_delay_s
                )
                if due:
                    batch.roots, batch.events = self.topmost(self._pending), self._events
                    self._pending, self._events = set(), 0
                if batch.roots or batch.gone or batch.back:
                    return batch
                wait = min(self.quiet_s, max(0.05, next_check - now))
                if self._pending:
                    wait = max(0.05, min(wait, self.quiet_s - (now - self._last)))
                self._cond.wait(timeout=wait)
        return None

    def _check_roots(self, batch: Batch) -> None:
        for root in self.roots:
            was, now = self._device[root], _identity(root)
            if was is not None and now != was:  # gone, or an empty mount point in its place
                self._device[root] = None
                self._unschedule(root)
                with self._cond:  # what was pending under it waits for its return
                    self._pending = {p for p in self._pending if not is_under(p, root)}
                batch.gone.append(root)
            elif was is None and now is not None and self._looks_back(root):
                self._device[root] = now
                self._schedule(root)
                batch.back.append(root)

    def _looks_back(self, root: str) -> bool:
        """A root is back when it is a folder with something in it (an unmounted drive's mount
        point is an empty folder: walking it would tell the indexer every photo was deleted)."""
        try:
            with os.scandir(root) as entries:
                return any(True for _ in entries)
        except OSError:
            return False

    def topmost(self, folders: set[str]) -> list[str]:
        """The folders to walk again: each made to exist (a deleted folder's nearest existing
        parent inside its root) and none below another."""
        existing = set()
        for folder in folders:
            root = next((r for r in self.roots if is_under(folder, r)), None)
            if root is None or self._device.get(root) is None:
                continue
            while folder != root and not os.path.isdir(folder):
                folder = os.path.dirname(folder)
            existing.add(folder)
        return sorted(f for f in existing if not any(f != o and is_under(f, o) for o in existing))


def keep_current(
    watcher: Watcher,
    index: Callable[[list[str]], object],
    on_batch: Callable[[Batch, object | None, Exception | None], None],
    stop: threading.Event | None = None,
) -> None:
    """Index each batch's folders until `stop` is set. A batch that fails on the library (disk
    full, read-only, busy) is reported and retried with the next one; nothing is lost."""
    retry: set[str] = set()
    while (batch := watcher.next_batch(stop)) is not None:
        roots = watcher.topmost(set(batch.roots) | set(batch.back) | retry)
        if batch.gone:
            retry -= {r for r in retry if any(is_under(r, g) for g in batch.gone)}
        if not roots:
            on_batch(batch, None, None)
            continue
        batch.roots = roots
        try:
            summary = index(roots)
        except LibraryError as exc:
            retry = set(roots)
            on_batch(batch, None, exc)
            continue
        retry = set()
        on_batch(batch, summary, None)
