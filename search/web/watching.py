"""`serve --watch PATH`: the server keeps the library current as the folders change.

A background thread runs the facade's watch loop with a Collection of its own. Each batch that
has work shows up as an index job (so the page's job list and `busy()` see it, and a page
apply waits for it: both take the library's writer lock), and GET /api/watch says what the
watcher is doing: watching, indexing, a folder gone (unmounted), the last batch and its summary.
"""

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel

from search.collection import IndexOptions
from search.web.errors import error_body
from search.web.jobs import AppState, Job, State
from search.web.schemas import ErrorBody, JobModel

log = logging.getLogger("dinosearch.api")


class WatchBatch(BaseModel):
    at: str
    roots: list[str]
    events: int
    gone: list[str]
    back: list[str]
    summary: dict | None = None
    error: str | None = None


class WatchModel(BaseModel):
    folders: list[str]
    poll: bool
    state: str  # off | starting | watching | indexing | failed
    gone: list[str]  # watched folders not there now (unmounted?): nothing of them is removed
    batches: int
    last: WatchBatch | None = None
    job: JobModel | None = None  # the batch being indexed now
    error: ErrorBody | None = None  # why the watcher stopped (state "failed")


@dataclass
class Watching:
    folders: list[str]
    poll: bool
    state: str = "starting"
    gone: set[str] = field(default_factory=set)
    batches: int = 0
    last: WatchBatch | None = None
    job: Job | None = None
    error: ErrorBody | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def to_model(self) -> WatchModel:
        job = self.job.to_model() if self.job and self.job.state == "running" else None
        return WatchModel(
            folders=self.folders,
            poll=self.poll,
            state=self.state,
            gone=sorted(self.gone),
            batches=self.batches,
            last=self.last,
            job=job,
            error=self.error,
        )


def start_watch(state: AppState, folders: list[str], poll: bool = False) -> Watching:
    """Watch `folders` in a daemon thread for as long as the server runs."""
    watching = Watching([str(f) for f in folders], poll)
    state.watching = watching
    thread = threading.Thread(target=_watch, args=(state, watching), name="watch", daemon=True)
    thread.start()
    return watching


def _watch(state: AppState, watching: Watching) -> None:
    coll = state.job_collection()

    def progress(stage: str, done: int, total: int) -> None:
        if watching.job is None:  # the first sign of work in a batch: it becomes a job
            job = Job(uuid.uuid4().hex, ", ".join(watching.folders))
            with state.jobs_lock:
                state.jobs[job.id] = job
            watching.job, watching.state = job, "indexing"
        watching.job.progress(stage, done, total)

    def on_batch(batch, summary, error) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if batch is not None:
            watching.gone = (watching.gone | set(batch.gone)) - set(batch.back)
            watching.batches += 1
            watching.last = WatchBatch(
                at=stamp,
                **batch.to_json(),
                summary=summary.to_json() if summary else None,
                error=str(error) if error else None,
            )
        if job := watching.job:
            if summary is not None:
                job.succeeded(summary.to_json())
            else:
                job.error, job.state = error_body(error) if error else None, "failed"
            job.finished = time.monotonic()
            watching.job = None
        watching.state = "watching"

    try:
        coll.watch(
            watching.folders, IndexOptions(), progress, on_batch, watching.stop, watching.poll
        )
    except Exception as exc:  # weights gone, a folder that cannot be watched: say so, stop
        log.warning("watching stopped: %s", exc)
        watching.error, watching.state = error_body(exc), "failed"
        if watching.job and watching.job.state == "running":
            watching.job.error, watching.job.state = error_body(exc), "failed"
            watching.job.finished = time.monotonic()
    finally:
        coll.close()


def watch_status(state: State) -> WatchModel:
    """What `serve --watch` is doing: its folders, state, the batch being indexed, the last."""
    watching = getattr(state, "watching", None)
    if watching is None:
        return WatchModel(folders=[], poll=False, state="off", gone=[], batches=0)
    return watching.to_model()
