"""The HTTP API and the web page over one library: `create_app(collection)` builds it, no globals.

Every route reads through one serving Collection guarded by a lock (its Store holds one SQLite
connection); index jobs run in a background thread with their own Collection (SQLite WAL lets
queries go on while a job writes; the serving Collection reloads FAISS when the generation moves).
"""

import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer import errors
from indexer.config import DEFAULT_MAX_PIXELS
from search.collection import Collection
from search.web import thumbs

log = logging.getLogger("dinosearch.api")

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded query image
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, headers and the small fields
MAX_UPLOAD_PIXELS = DEFAULT_MAX_PIXELS  # same guard as the indexer: a 200 MP photo still works
MAX_K = 1000
MAX_ID = 2**63 - 1  # SQLite's integer range; larger ids would overflow, not just miss
TOKEN_COOKIE = "dinosearch_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # Host headers accepted without a token
FILE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}

# Our typed errors -> (HTTP status, code). The first matching class (most specific first) wins.
ERROR_STATUS: list[tuple[type[errors.DinosearchError], int, str]] = [
    (errors.DecompressionBomb, 413, "too_many_pixels"),
    (errors.UnsupportedImage, 415, "unsupported_image"),
    (errors.ImageError, 422, "bad_image"),
    (errors.NotFound, 404, "not_found"),
    (errors.NoLibrary, 409, "no_library"),
    (errors.ModelMismatch, 409, "model_mismatch"),
    (errors.ReadOnlyLibrary, 409, "read_only_library"),
    (errors.LibraryError, 500, "library_error"),
    (errors.BadQuery, 400, "bad_query"),
    (errors.WeightsUnavailable, 503, "weights_unavailable"),
    (errors.UnknownModel, 503, "unknown_model"),
    (errors.DinosearchError, 400, "error"),
]
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "upload_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
    422: "invalid_request",
}


# --- response models ----------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class HitModel(BaseModel):
    rank: int
    id: int
    path: str
    score: float


class QueryResponse(BaseModel):
    """The `dinosearch query --json` object."""

    query: list[str]
    model: str
    results: list[HitModel]


class ImageMeta(BaseModel):
    id: int
    path: str
    name: str
    size: int | None
    width: int | None
    height: int | None
    format: str | None
    taken: str | None
    hash: str | None
    status: str
    error: str | None
    indexed_at: str | None


class IndexRequest(BaseModel):
    path: str = Field(description="A folder under one of the roots (absolute, or relative to one)")
    retry_failed: bool = False


class JobModel(BaseModel):
    id: str
    path: str
    state: str = Field(description="running, done or failed")
    stage: str | None = Field(description="hash or embed while running")
    done: int
    total: int
    rate: float = Field(description="items per second in the current stage")
    eta_seconds: float | None
    elapsed_seconds: float
    failures: list[dict[str, str]]
    summary: dict[str, Any] | None = Field(description="the `index --json` object, when done")
    error: ErrorBody | None


class RootsResponse(BaseModel):
    roots: list[str]


class DecisionRequest(BaseModel):
    action: Literal["distinct", "keep-both", "unmark"] = Field(
        description="distinct: not duplicates; keep-both: duplicates, but both stay; "
        "unmark: forget the decision"
    )
    ids: list[int] = Field(min_length=2, max_length=2, description="Two image ids")


class PlanRequest(BaseModel):
    """The options of GET /api/duplicates, plus what the plan does."""

    threshold: str = Field("auto", description="auto (calibrated) or a raw cosine")
    precision: float = Field(0.99, ge=0.5, le=1.0)
    within: str | None = Field(None, description="Only images under this folder")
    include_similar: bool = False
    keep: str | None = Field(
        None, max_length=2000, description="Keep-best policy, e.g. 'resolution > oldest'"
    )
    action: Literal["trash", "move", "hardlink", "symlink", "delete"] = "trash"
    move_to: str | None = Field(None, description="Destination of move, under a --root")


class KeeperRequest(BaseModel):
    group: int = Field(ge=1, description="The group's number in the plan")
    id: int = Field(ge=1, le=MAX_ID, description="The image to keep in that group")


class ApplyRequest(BaseModel):
    plan_id: str | None = Field(None, description="A plan made by POST /api/plan")
    plan: dict[str, Any] | None = Field(None, description="A whole (edited) plan instead")
    confirm: bool = Field(False, description="Without it: a dry run; nothing is touched")


class UndoRequest(BaseModel):
    plan_id: str
    confirm: bool = Field(False, description="Without it: nothing is restored (400)")


class RunModel(BaseModel):
    id: str
    kind: str = Field(description="apply or undo")
    plan: str
    state: str = Field(description="running, done or failed")
    elapsed_seconds: float
    result: dict[str, Any] | None = Field(description="the `apply --json` / `undo --json` object")
    error: ErrorBody | None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}


# --- state --------------------------------------------------------------------------------------


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
        self.plans: dict[str, Any] = {}  # plan id -> search.cleanup.plan.Plan (also under plans/)
        self.runs: dict[str, Run] = {}

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
            import torch  # noqa: F401 - the slow imports happen outside the lock
            import transformers  # noqa: F401

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


def get_state(request: Request) -> AppState:
    return request.app.state.dinosearch


State = Annotated[AppState, Depends(get_state)]
ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="An image id from a search")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many results")]


# --- the app ------------------------------------------------------------------------------------


def create_app(
    collection: Collection,
    *,
    root: list[str | Path] | tuple[str | Path, ...] | str | Path | None = None,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_upload_pixels: int | None = MAX_UPLOAD_PIXELS,
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The API and web page over `collection`; `root` confines index jobs, `token` guards all."""
    roots = [root] if isinstance(root, str | Path) else list(root or [])
    state = AppState(
        collection, [Path(r) for r in roots], token, max_upload_bytes, max_upload_pixels
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        with state.lock:
            collection.close()

    app = FastAPI(
        title="dinosearch",
        version="0.1.0",
        lifespan=lifespan,
        description="Image similarity search over a local DINOv2 library.",
    )
    app.state.dinosearch = state
    _add_error_handlers(app)
    app.add_middleware(
        Guard,
        token=token,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_upload_bytes + FORM_OVERHEAD_BYTES,
    )
    app.include_router(_api_routes())
    app.add_api_route("/", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _api_routes():
    from fastapi import APIRouter

    router = APIRouter(responses=ERROR_RESPONSES)
    router.add_api_route("/healthz", healthz, methods=["GET"])
    router.add_api_route("/api/stats", stats, methods=["GET"])
    router.add_api_route("/api/search", search, methods=["POST"], response_model=QueryResponse)
    router.add_api_route("/api/images/{image_id}", image_meta, methods=["GET"])
    router.add_api_route(
        "/api/images/{image_id}/similar", similar, methods=["GET"], response_model=QueryResponse
    )
    router.add_api_route(
        "/api/images/{image_id}/thumbnail", thumbnail, methods=["GET"], response_class=Response
    )
    router.add_api_route(
        "/api/images/{image_id}/file", original, methods=["GET"], response_class=FileResponse
    )
    router.add_api_route("/api/duplicates", duplicates, methods=["GET"])
    router.add_api_route("/api/duplicates/decisions", list_decisions, methods=["GET"])
    router.add_api_route("/api/duplicates/decisions", decide, methods=["POST"])
    router.add_api_route("/api/plan", make_plan, methods=["POST"])
    router.add_api_route("/api/plan/{plan_id}", get_plan, methods=["GET"])
    router.add_api_route("/api/plan/{plan_id}/keep", choose_keeper, methods=["POST"])
    router.add_api_route("/api/apply", apply, methods=["POST"])
    router.add_api_route("/api/apply/{run_id}", run_status, methods=["GET"])
    router.add_api_route("/api/undo", undo, methods=["POST"], status_code=202)
    router.add_api_route("/api/roots", list_roots, methods=["GET"])
    router.add_api_route("/api/index", start_index, methods=["POST"], status_code=202)
    router.add_api_route("/api/jobs/{job_id}", job_status, methods=["GET"])
    return router


# --- routes -------------------------------------------------------------------------------------


def _page(request: Request) -> Response:
    """The web page; `/?token=...` keeps the token in a same-site cookie for the page."""
    state = get_state(request)
    given = request.query_params.get("token")
    if given is not None and state.token and secrets.compare_digest(given, state.token):
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return response
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def healthz() -> dict[str, str]:
    """Liveness: answers as long as the server runs (the library may still be empty)."""
    return {"status": "ok"}


def stats(state: State) -> dict[str, Any]:
    """The `dinosearch info --json` object."""
    with state.reading() as coll:
        return coll.info()


def search(
    state: State,
    file: Annotated[UploadFile, File(description="The query image")],
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
) -> dict[str, Any]:
    """Images most similar to an uploaded one: the `query --json` object."""
    data = _read_upload(file, state.max_upload_bytes)
    with state.lock:
        state.collection.embedder()  # load the model once, under the store lock (reads meta)
    with state.embed_lock:
        vector = state.collection.vector_for_bytes(data, state.max_upload_pixels)
    with state.reading() as coll:
        result = coll.search_vector(vector, k)
    result.query = [file.filename or "upload"]
    return result.to_json()


def image_meta(state: State, image_id: ImageId) -> ImageMeta:
    """What the library knows about one image (never its vector)."""
    row = _row(state, image_id, ok_only=False)
    keys = ImageMeta.model_fields.keys() - {"name"}
    return ImageMeta(name=os.path.basename(row["path"]), **{k: row.get(k) for k in keys})


def similar(state: State, image_id: ImageId, k: K = 10) -> dict[str, Any]:
    """Neighbours of an indexed image: the `query --json` object (the image itself ranks first)."""
    with state.reading() as coll:
        return coll.similar(image_id, k).to_json()


def thumbnail(
    state: State,
    image_id: ImageId,
    size: Annotated[int, Query(ge=16, le=4096, description="Longest side in px")] = 256,
) -> Response:
    """An upright JPEG thumbnail, cached under the library's thumbs/ (size snapped up)."""
    row = _current_file(state, image_id)
    size = thumbs.snap_size(size)
    cached = thumbs.cache_path(state.collection.directory, row["hash"], size)
    headers = {"Cache-Control": "private, max-age=86400"}
    if cached.is_file():
        return FileResponse(cached, media_type="image/jpeg", headers=headers)
    data = thumbs.render(row["path"], size, state.max_upload_pixels)
    thumbs.store(cached, data)
    return Response(data, media_type="image/jpeg", headers=headers)


def original(state: State, image_id: ImageId) -> FileResponse:
    """The original file, only if it is an indexed image, unchanged since it was indexed."""
    row = _current_file(state, image_id)
    media = FILE_TYPES.get(row["format"] or "", "application/octet-stream")
    return FileResponse(
        row["path"],
        media_type=media,
        filename=os.path.basename(row["path"]),
        content_disposition_type="inline",
    )


def duplicates(
    state: State,
    threshold: Annotated[str, Query(description="auto (calibrated) or a raw cosine")] = "auto",
    precision: Annotated[float, Query(ge=0.5, le=1.0)] = 0.99,
    within: Annotated[str | None, Query(description="Only images under this folder")] = None,
    include_similar: bool = False,
) -> dict[str, Any]:
    """Duplicate groups in tiers: the `dinosearch dups --json` object."""
    from search.dups.run import DupOptions

    options = DupOptions(
        threshold=threshold, precision=precision, within=within, include_similar=include_similar
    )
    with state.reading() as coll:
        return coll.duplicates(options).to_json()


# --- acting on duplicates: decisions, plans, apply, undo -----------------------------------------

PlanId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="A plan id")]
PLAN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_PLANS = 50  # plans kept in memory (all are also written under the library's plans/)


def list_decisions(state: State) -> dict[str, Any]:
    """Every "not duplicates" / "keep both" decision, keyed by content hash."""
    from search.dups.decisions import list_decisions as listed

    with state.reading() as coll:
        return {"decisions": listed(coll.store())}


def decide(state: State, body: DecisionRequest) -> dict[str, Any]:
    """Mark two images distinct, or duplicates to keep both, or forget that; later duplicate
    searches and plans leave a decided pair out. Stored by content hash (survives renames)."""
    from search.dups import decisions

    if body.ids[0] == body.ids[1]:
        raise errors.BadQuery("ids: two different images")
    a, b = (_row(state, i)["path"] for i in body.ids)
    with state.reading() as coll:
        coll.store().require_writable("recording a decision")
        if body.action == "unmark":
            removed = decisions.unmark(coll.store(), a, b)
            return {"action": "unmark", "ids": body.ids, "removed": removed}
        done = decisions.mark(coll.store(), a, b, body.action)
    return {"action": body.action, "ids": body.ids, "decision": done}


def make_plan(state: State, body: PlanRequest) -> dict[str, Any]:
    """Build a plan (the `dups --plan` JSON) for the duplicate groups; nothing is touched.

    The plan is kept under its id for POST /api/plan/{id}/keep and POST /api/apply."""
    from search.cleanup.plan import build_plan
    from search.dups.run import DupOptions

    policy = _policy(body.keep)
    move_to = _destination(state, body.move_to) if body.action == "move" else None
    options = DupOptions(
        threshold=body.threshold,
        precision=body.precision,
        within=body.within,
        include_similar=body.include_similar,
    )
    with state.reading() as coll:
        report = coll.duplicates(options)
        plan = build_plan(report, coll.store(), policy, body.action, move_to)
    _keep_plan(state, plan)
    return _plan_json(state, plan)


def get_plan(state: State, plan_id: PlanId) -> dict[str, Any]:
    """A plan made earlier (the `dups --plan` JSON, with image ids)."""
    return _plan_json(state, _stored_plan(state, plan_id))


def choose_keeper(state: State, plan_id: PlanId, body: KeeperRequest) -> dict[str, Any]:
    """Keep another file of one group of a stored plan; the old kept file gets the plan's action.
    Returns the updated plan."""
    plan = _stored_plan(state, plan_id)
    group = next((g for g in plan.groups if g.group == body.group), None)
    if group is None:
        raise errors.NotFound(f"plan {plan_id} has no group {body.group}")
    path = _row(state, body.id)["path"]
    if not any(f.path == path for f in group.files):
        raise errors.NotFound(f"image {body.id} is not in group {body.group} of the plan")
    _set_keeper(plan, group, path)
    _keep_plan(state, plan)
    return _plan_json(state, plan)


def apply(state: State, body: ApplyRequest) -> JSONResponse:
    """Apply a stored plan (`plan_id`) or a posted one (`plan`). Without `"confirm": true` it is
    a dry run (200, nothing touched); with it, 202 and a run to poll at /api/apply/{id}."""
    if (body.plan_id is None) == (body.plan is None):
        raise errors.BadQuery("give plan_id (a plan from POST /api/plan) or plan, not both")
    plan = _stored_plan(state, body.plan_id) if body.plan_id else _posted_plan(state, body.plan)
    _check_plan_files(state, plan)
    if body.plan is not None:
        _keep_plan(state, plan)  # an edited plan replaces the stored one of its id
    if not body.confirm:
        from search.cleanup.apply import apply_plan

        result = apply_plan(None, plan, dry_run=True)  # a dry run reads the disk only
        summary = plan.summary()
        message = 'dry run: nothing was changed; send "confirm": true to apply'
        return JSONResponse({**result.to_json(), "summary": summary, "message": message})
    run = _start_run(state, "apply", plan)
    return JSONResponse({"run": run.id, "plan": plan.id, "state": run.state}, 202)


def undo(state: State, body: UndoRequest) -> dict[str, Any]:
    """Restore what an applied plan moved, trashed or linked (needs `"confirm": true`)."""
    if not PLAN_ID.match(body.plan_id):
        raise errors.NotFound(f"no plan {body.plan_id!r}")
    if not body.confirm:
        raise errors.BadQuery('undo changes files: send "confirm": true')
    with state.reading() as coll:
        applied = (
            coll.store()
            .db.execute("select 1 from journal where plan_id = ? limit 1", [body.plan_id])
            .fetchone()
        )
    if not applied:
        raise errors.NotFound(f"plan {body.plan_id} was never applied to this library")
    run = _start_run(state, "undo", body.plan_id)
    return {"run": run.id, "plan": body.plan_id, "state": run.state}


def run_status(state: State, run_id: str) -> RunModel:
    """An apply or undo run: its state and, when done, the `apply --json` object."""
    run = state.runs.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return run.to_model()


def _policy(text: str | None):
    from search.cleanup.policy import parse_policy

    if text is not None and ">" not in text and os.path.exists(os.path.expanduser(text.strip())):
        raise errors.BadQuery("keep: give the criteria themselves, not a file on the server")
    return parse_policy(text or None)


def _destination(state: AppState, given: str | None) -> str:
    """Where `move` puts files: a folder (existing or not) under a --root."""
    if not state.roots:
        raise HTTPException(403, "moving files from the web is off: start serve with --root DIR")
    if not given:
        raise errors.BadQuery("move_to: the folder (under a --root) to move duplicates to")
    base = Path(given) if os.path.isabs(given) else state.roots[0] / given
    real = Path(os.path.realpath(base))
    if not any(real == r or r in real.parents for r in state.roots):
        raise HTTPException(403, f"move_to {given!r} is not under a served --root")
    return str(real)


def _keep_plan(state: AppState, plan) -> None:
    """Keep the plan in memory and under the library's plans/ (so `dinosearch undo` finds it)."""
    from indexer.library.store import read_only_reason

    folder = state.collection.directory / "plans"
    if not read_only_reason(state.collection.directory):  # else in memory: it can't be applied
        folder.mkdir(exist_ok=True)
        plan.write(str(folder / f"{plan.id}.json"))
    with state.jobs_lock:
        state.plans.pop(plan.id, None)
        state.plans[plan.id] = plan
        while len(state.plans) > MAX_PLANS:
            state.plans.pop(next(iter(state.plans)))


def _plan_file_path(state: AppState, plan_id: str) -> Path:
    return state.collection.directory / "plans" / f"{plan_id}.json"


def _stored_plan(state: AppState, plan_id: str):
    from search.cleanup.plan import read_plan

    if not PLAN_ID.match(plan_id):
        raise errors.NotFound(f"no plan {plan_id!r}")
    with state.jobs_lock:
        plan = state.plans.get(plan_id)
    if plan is not None:
        return plan
    if not _plan_file_path(state, plan_id).is_file():
        raise errors.NotFound(f"no plan {plan_id!r}: make one with POST /api/plan")
    return read_plan(str(_plan_file_path(state, plan_id)))


def _posted_plan(state: AppState, data: dict):
    """A whole plan from the client: checked like a plan file, for this library only; its
    sidecars are worked out again here (a posted list of companions is not trusted)."""
    from search.cleanup.plan import PlanError, _attach_companions, _from_json, check_plan

    try:
        plan = _from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"plan is malformed ({exc!r}); make one with POST /api/plan") from None
    if not isinstance(plan.id, str) or not PLAN_ID.match(plan.id):
        raise PlanError("plan id: 32 hex digits, as POST /api/plan makes them")
    here = os.path.realpath(state.collection.directory)
    if not isinstance(plan.library, str) or os.path.realpath(plan.library) != here:
        raise PlanError("the plan is for another library")
    check_plan(plan)
    for f in (f for g in plan.groups for f in g.files):
        f.companions = []
    _attach_companions(plan.groups)
    return plan


def _check_plan_files(state: AppState, plan) -> None:
    """Only indexed files are acted on (or kept), and `move` only into a --root."""
    from search.cleanup.plan import check_plan

    check_plan(plan)
    paths = {f.path for g in plan.groups for f in g.files}
    with state.reading() as coll:
        store = coll.store()
        known = {p for p in paths if (row := store.image_by_path(p)) and row["status"] == "ok"}
        done = store.db.execute(  # files this plan already moved or trashed: "already" again
            "select path from journal where plan_id = ? and state = 'done'", [plan.id]
        )
        known |= {r[0] for r in done} & paths
    if missing := sorted(paths - known):
        raise errors.NotFound(f"not an indexed image of this library: {missing[0]}")
    if any(f.action == "move" for g in plan.groups for f in g.files):
        plan.move_to = _destination(state, plan.move_to)


def _set_keeper(plan, group, path: str) -> None:
    """Make `path` the kept file of `group`; actions, deltas and sidecars follow."""
    from search.cleanup import captures
    from search.cleanup.plan import LINKS, _attach_companions, _common_root, _deltas, facts_for

    old = group.keep
    facts = {f.path: facts_for(_facts_row(f)) for f in group.files}
    key = captures.capture_key(path)
    kept = next(f for f in group.files if f.path == path)
    for f in group.files:
        f.note, f.deltas = None, None if f.path == path else _deltas(facts[f.path], facts[path])
        if f.path == path:
            f.action = "keep"
        elif captures.capture_key(f.path) == key:
            f.action, f.note = "keep", "same capture as the kept file (another rendition)"
        elif plan.action in LINKS and f.hash != kept.hash:
            f.action = "keep"
            f.note = f"not byte-identical to the kept file: {plan.action} would lose it"
        else:
            f.action = plan.action
    group.keep = path
    group.files.sort(key=lambda f: f.path != path)
    group.reason = {
        "criterion": "chosen",
        "kept": os.path.basename(path),
        "runner_up": os.path.basename(old),
        "runner_up_path": old,
        "text": f"chosen by hand (the policy kept {os.path.basename(old)})",
    }
    if old == path:
        group.reason["text"] = "chosen by hand (also the policy's choice)"
    for f in (f for g in plan.groups for f in g.files):
        f.companions = []
    _attach_companions(plan.groups)
    plan.root = _common_root([f.path for _, f in plan.files() if f.action != "keep"])


def _facts_row(f) -> dict:
    return {
        "path": f.path,
        "width": f.width,
        "height": f.height,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "taken": f.taken,
    }


def _plan_json(state: AppState, plan) -> dict[str, Any]:
    """The plan JSON, plus `image_ids` (path -> id) for thumbnails; a plan posted back with it
    is read as is (the extra key is ignored)."""
    paths = [f.path for _, f in plan.files()]
    with state.reading() as coll:
        store = coll.store()
        ids = {p: row["id"] for p in paths if (row := store.image_by_path(p))}
    return {**plan.to_json(), "image_ids": ids}


def _start_run(state: AppState, kind: str, plan) -> Run:
    plan_id = plan if isinstance(plan, str) else plan.id
    with state.jobs_lock:
        if busy := state.busy():
            raise HTTPException(409, busy)
        run = Run(uuid.uuid4().hex, kind, plan_id)
        state.runs[run.id] = run
    thread = threading.Thread(
        target=_run_actions, args=(state, run, plan), name=f"{kind}-{run.id[:8]}", daemon=True
    )
    thread.start()
    return run


def _run_actions(state: AppState, run: Run, plan) -> None:
    """Apply or undo with a Store of its own (the journal makes a killed run resumable)."""
    from search.cleanup.apply import apply_plan, undo_plan

    coll = state.job_collection()
    try:
        store = coll.store()
        store.require_writable(run.kind)
        if run.kind == "apply":
            path = str(_plan_file_path(state, plan.id))
            result = apply_plan(store, plan, dry_run=False, plan_path=path)
        else:
            result = undo_plan(store, plan)
        coll.vector_index()  # the FAISS file follows the rows now, as after an index job
        run.result, run.state = result.to_json(), "done"
    except Exception as exc:
        _, code, message = _describe(exc)
        run.error, run.state = ErrorBody(code=code, message=message), "failed"
    finally:
        run.finished = time.monotonic()
        coll.close()


def list_roots(state: State) -> RootsResponse:
    """The folders index jobs may read (the server's --root options)."""
    return RootsResponse(roots=[str(r) for r in state.roots])


def start_index(state: State, body: IndexRequest) -> dict[str, str]:
    """Start indexing a folder under a root in the background; poll /api/jobs/{id}."""
    folder = _folder_under_roots(state, body.path)
    with state.jobs_lock:
        if busy := state.busy():
            raise HTTPException(409, busy)
        job = Job(uuid.uuid4().hex, str(folder))
        state.jobs[job.id] = job
    thread = threading.Thread(
        target=_run_job,
        args=(state, job, body.retry_failed),
        name=f"index-{job.id[:8]}",
        daemon=True,
    )
    thread.start()
    return {"job": job.id, "path": job.path}


def job_status(state: State, job_id: str) -> JobModel:
    """Progress of an index job: count, rate, ETA, failures; the summary when done."""
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job.to_model()


# --- helpers ------------------------------------------------------------------------------------


def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is larger than {limit // (1024 * 1024)} MB")
    if not data:
        raise errors.ImageError("the uploaded file is empty (0 bytes)")
    return data


def _row(state: AppState, image_id: int, ok_only: bool = True) -> dict:
    with state.reading() as coll:
        row = coll.store().image(image_id)
    if row is None or (ok_only and row["status"] != "ok"):
        raise errors.NotFound(f"no indexed image with id {image_id}")
    return row


def _current_file(state: AppState, image_id: int) -> dict:
    """The row of an indexed image whose file is still the one that was indexed."""
    row = _row(state, image_id)
    try:
        st = os.stat(row["path"])
    except OSError:
        raise errors.NotFound(f"image {image_id} is gone from disk; re-index its folder") from None
    if st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
        raise HTTPException(409, f"image {image_id} changed since it was indexed; re-index it")
    return row


def _folder_under_roots(state: AppState, given: str) -> Path:
    """Resolve `given` (symlinks and .. included) and require it to lie under a root."""
    if not state.roots:
        raise HTTPException(403, "indexing from the web is off: start serve with --root DIR")
    candidates = [Path(given)] if os.path.isabs(given) else [r / given for r in state.roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if real.is_dir() and any(real == r or r in real.parents for r in state.roots):
            return real
    raise errors.NotFound(f"no folder {given!r} under the served roots")


def _run_job(state: AppState, job: Job, retry_failed: bool) -> None:
    from indexer.job import IndexOptions

    coll = state.job_collection()
    try:
        summary = coll.index([job.path], IndexOptions(retry_failed=retry_failed), job.progress)
        job.summary, job.state = summary.to_json(), "done"
    except Exception as exc:
        _, code, message = _describe(exc)
        job.error, job.state = ErrorBody(code=code, message=message), "failed"
    finally:
        job.finished = time.monotonic()
        coll.close()


# --- errors and the guard -----------------------------------------------------------------------


def _describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for any exception; never a stack trace to the client."""
    if isinstance(exc, errors.DinosearchError):
        status, code = next((s, c) for cls, s, c in ERROR_STATUS if isinstance(exc, cls))
        return status, code, str(exc)
    if isinstance(exc, HTTPException):
        return exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail)
    log.error("unexpected error", exc_info=exc)
    return 500, "internal", "internal server error (see the server's log)"


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """One mapping for all: typed errors, HTTP errors, bad requests and anything unexpected."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, StarletteHTTPException) and not isinstance(exc, HTTPException):
            exc = HTTPException(exc.status_code, exc.detail)
        status, code, message = _describe(exc)
        return error_response(status, code, message, getattr(exc, "headers", None))

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("loc", ("",))[0] == "path" for p in problems):
            return error_response(404, "not_found", "no such resource")  # /api/images/../x, etc.
        return error_response(422, "invalid_request", _validation_message(problems))

    for cls in (errors.DinosearchError, StarletteHTTPException):
        app.add_exception_handler(cls, handle)  # anything else: Guard answers 500 (_describe)
    app.add_exception_handler(RequestValidationError, invalid)


def _validation_message(problems: list[dict]) -> str:
    parts = [
        f"{'.'.join(str(x) for x in p.get('loc', ())[1:]) or 'request'}: {p.get('msg')}"
        for p in problems[:5]
    ]
    return "; ".join(parts)


class Guard:
    """ASGI middleware: Host check (no token), bearer token (if set) and a request size cap.

    Pure ASGI so it covers everything, /docs and static files included, before any body is read.
    """

    def __init__(
        self, app: ASGIApp, token: str | None, allowed_hosts: tuple[str, ...], max_body_bytes: int
    ):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes
        self.allowed_hosts = set(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, self.max_body_bytes), tracking_send)
        except Exception as exc:  # answered here, not re-raised: the connection stays usable
            if started:
                raise
            status, code, message = _describe(exc)
            await error_response(status, code, message)(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Response | None:
        if self.token is None and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            # DNS rebinding: a web page on another origin may point its name at 127.0.0.1
            return error_response(
                421, "misdirected_request", "unexpected Host header; use http://127.0.0.1:PORT/"
            )
        if self.token is not None and not self._authorised(scope, headers):
            return error_response(
                401,
                "unauthorized",
                "missing or wrong token: send 'Authorization: Bearer <token>' "
                "or open /?token=<token> once",
                {"WWW-Authenticate": "Bearer"},
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return error_response(
                413,
                "upload_too_large",
                f"request body over {self.max_body_bytes // (1024 * 1024)} MB",
            )
        return None

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return secrets.compare_digest(auth[7:].strip().encode(), self.token.encode())
        cookie = _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
        if cookie is not None:
            return secrets.compare_digest(cookie.encode(), self.token.encode())
        # the page's first load, /?token=..., sets the cookie (checked again in _page)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0]
        return scope["path"] == "/" and secrets.compare_digest(given.encode(), self.token.encode())


def _capped(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive (chunked uploads have no Content-Length) and stop early."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body over {limit // (1024 * 1024)} MB")
        return message

    return wrapped


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
