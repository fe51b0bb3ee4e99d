"""What the routes share (AppState: the serving Collection, its lock, settings, plans) and the
background work they start: index jobs and apply/undo runs, each with a Collection of its own
(SQLite WAL lets queries go on while a job writes)."""

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from indexer import errors
from indexer.paths import under_any
from search.collection import Collection, IndexOptions
from search.web.errors import error_body
from search.web.schemas import ErrorBody, JobModel, RunModel

if TYPE_CHECKING:  # watching.py imports this module
    from search.web.watching import Watching

log = logging.getLogger("dinosearch.api")

MAX_PLANS = 50  # plans kept in memory (all are also written under the library's plans/)


@dataclass
class Job:
    """One background indexing run and its progress, as reported by indexer.job."""

    id: str
    path: str
    state: str = "running"
    stage: str | None = None
    done: int = 0
    total: int = 0
    stage_started: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    summary: dict | None = None
    error: ErrorBody | None = None

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage, self.stage_started = stage, time.monotonic()
        self.done, self.total = done, total

    def succeeded(self, summary: dict) -> None:
        self.summary, self.state = summary, "done"

    def to_model(self) -> JobModel:
        now = self.finished or time.monotonic()
        rate = self.done / max(now - self.stage_started, 1e-9) if self.done else 0.0
        left = self.total - self.done
        eta = left / rate if rate > 0 and self.state == "running" else None
        failures = (self.summary or {}).get("failed", [])
        return JobModel(
            id=self.id,
            path=self.path,
            state=self.state,
            stage=self.stage,
            done=self.done,
            total=self.total,
            rate=round(rate, 3),
            eta_seconds=None if eta is None else round(eta, 1),
            elapsed_seconds=round(now - self.started, 3),
            failures=failures,
            summary=self.summary,
            error=self.error,
        )


@dataclass
class Run:
    """One background apply (or undo) of a plan."""

    id: str
    kind: str
    plan: str
    state: str = "running"
    result: dict | None = None
    error: ErrorBody | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def succeeded(self, result: dict) -> None:
        self.result, self.state = result, "done"

    def to_model(self) -> RunModel:
        elapsed = (self.finished or time.monotonic()) - self.started
        return RunModel(
            id=self.id,
            kind=self.kind,
            plan=self.plan,
            state=self.state,
            elapsed_seconds=round(elapsed, 3),
            result=self.result,
            error=self.error,
        )


class AppState:
    """What routes share: the serving Collection and its lock, settings, and index jobs."""

    def __init__(
        self,
        collection: Collection,
        roots: list[Path],
        token: str | None,
        max_upload_bytes: int,
        max_upload_pixels: int | None,
    ):
        self.collection = collection
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.token = token
        self.max_upload_bytes, self.max_upload_pixels = max_upload_bytes, max_upload_pixels
        self.lock = threading.Lock()  # the Store's one SQLite connection and the FAISS index
        self.embed_lock = threading.Lock()  # the model: one forward pass at a time
        self.jobs: dict[str, Job] = {}
        self.jobs_lock = threading.Lock()  # also guards plans and runs
        self.plans: dict = {}  # plan id -> search.cleanup.plan.Plan (also under plans/)
        self.runs: dict[str, Run] = {}
        self.watching: Watching | None = None  # serve --watch

    def busy(self) -> str | None:
        """What is writing to the library now (an index job, an apply or undo), or None."""
        if any(j.state == "running" for j in self.jobs.values()):
            return "an index job is running; wait for it to finish"
        if any(r.state == "running" for r in self.runs.values()):
            return "a plan is being applied or undone; wait for it to finish"
        return None

    def preload(self) -> None:
        """Load the model now rather than at the first search; errors wait for that search."""
        try:
            self.collection.import_runtime()  # the slow imports happen outside the lock
            with self.lock:
                self.collection.embedder()
        except Exception as exc:
            log.warning("model not loaded yet: %s", exc)

    @contextmanager
    def reading(self) -> Iterator[Collection]:
        with self.lock:
            yield self.collection

    def job_collection(self) -> Collection:
        """A Collection of its own for a job thread (its own SQLite connection)."""
        c = self.collection
        return Collection(
            c.directory, model=c.model_arg, device=c.device, dtype=c.dtype, index_type=c.index_type
        )

    def row(self, image_id: int, ok_only: bool = True) -> dict:
        """The library's row of an image (indexed ones only, unless ok_only is False)."""
        with self.reading() as coll:
            row = coll.image(image_id)
        if row is None or (ok_only and row["status"] != "ok"):
            raise errors.NotFound(f"no indexed image with id {image_id}")
        return row

    def under_roots(self, real: Path) -> bool:
        """Whether a resolved path is one of the served --root folders or lies under one."""
        return under_any(str(real), (str(r) for r in self.roots))

    def remember(self, plan) -> None:
        """Keep the plan in memory (the newest MAX_PLANS) and under the library's plans/ (so
        `dinosearch undo` finds it); a read-only library keeps it in memory only."""
        self.collection.save_plan(plan)  # files only, no SQLite: needs no lock
        with self.jobs_lock:
            self.plans.pop(plan.id, None)
            self.plans[plan.id] = plan
            while len(self.plans) > MAX_PLANS:
                self.plans.pop(next(iter(self.plans)))


def get_state(request: Request) -> AppState:
    return request.app.state.dinosearch


State = Annotated[AppState, Depends(get_state)]


# --- background work ----------------------------------------------------------------------------


def start_job(state: AppState, folder: Path, retry_failed: bool) -> Job:
    """Start indexing `folder` in the background (409 while the library is being written)."""
    with state.jobs_lock:
        if busy := state.busy():
            raise errors.Conflict(busy)
        job = Job(uuid.uuid4().hex, str(folder))
        state.jobs[job.id] = job
    options = IndexOptions(retry_failed=retry_failed)
    work = partial(Collection.index, paths=[job.path], options=options, progress=job.progress)
    _spawn(state, job, f"index-{job.id[:8]}", work)
    return job


def start_run(state: AppState, kind: str, plan) -> Run:
    """Start applying a plan (kind "apply") or undoing one (kind "undo", `plan` its id); the
    journal makes a killed run resumable."""
    plan_id = plan if isinstance(plan, str) else plan.id
    with state.jobs_lock:
        if busy := state.busy():
            raise errors.Conflict(busy)
        run = Run(uuid.uuid4().hex, kind, plan_id)
        state.runs[run.id] = run
    if kind == "apply":
        path = str(state.collection.plan_file(plan_id))
        work = partial(Collection.apply, plan=plan, dry_run=False, plan_path=path)
    else:
        work = partial(Collection.undo, plan_id=plan_id)
    _spawn(state, run, f"{kind}-{run.id[:8]}", work)
    return run


def _spawn(state: AppState, task: Job | Run, name: str, work: Callable) -> None:
    """Run `work` (a Collection method, its arguments bound) in a daemon thread for `task`."""
    thread = threading.Thread(target=_carry_out, args=(state, task, work), name=name, daemon=True)
    thread.start()


def _carry_out(state: AppState, task: Job | Run, work: Callable) -> None:
    """Do `work(collection)` with a Collection of its own; record its JSON, or its error."""
    coll = state.job_collection()
    try:
        task.succeeded(work(coll).to_json())
    except Exception as exc:
        task.error, task.state = error_body(exc), "failed"
    finally:
        task.finished = time.monotonic()
        coll.close()
