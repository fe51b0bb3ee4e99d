"""The HTTP API and the web page over one library: `create_app(collection)` builds it, no globals.

Every route reads through one serving Collection guarded by a lock (its Store holds one SQLite
connection); index jobs run in a background thread with their own Collection (SQLite WAL lets
queries go on while a job writes; the serving Collection reloads FAISS when the generation moves).

Here: the factory and its wiring. The routes are in routes_search.py, routes_browse.py and
routes_cleanup.py, their models in schemas.py, shared state and background work in jobs.py, the
error mapping in errors.py and the Host/token/size guard in guard.py. /docs and /redoc load their
assets from the fastapi-offline package, not a CDN.
"""

import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from indexer.config import DEFAULT_MAX_PIXELS
from indexer.files import IMAGE_EXTENSIONS
from search.collection import Collection
from search.web import routes_browse as library
from search.web import routes_cleanup as cleanup
from search.web import routes_curate as curation
from search.web import routes_flags, watching
from search.web import routes_search as browse
from search.web.errors import add_error_handlers
from search.web.guard import LOOPBACK_HOSTS, TOKEN_COOKIE, Guard
from search.web.jobs import AppState, get_state
from search.web.schemas import (
    ERROR_RESPONSES,
    BrowseResponse,
    FoldersResponse,
    QueryResponse,
    TimelineResponse,
)

__all__ = ["LOOPBACK_HOSTS", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
PICKER_ACCEPT = ",".join(["image/*", *sorted(IMAGE_EXTENSIONS)])
DOCS_STATIC_URL = "/static-docs"  # Swagger UI and ReDoc, served from the package: /docs offline
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded query image
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, headers and the small fields
MAX_UPLOAD_PIXELS = DEFAULT_MAX_PIXELS  # same guard as the indexer: a 200 MP photo still works
APPLY_STARTED = {"description": 'With "confirm": true: {run, plan, state}; poll /api/apply/{run}'}


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

    app = FastAPIOffline(  # FastAPI, its /docs and /redoc assets local instead of a CDN
        static_url=DOCS_STATIC_URL,
        title="dinosearch",
        version="0.1.0",
        lifespan=lifespan,
        description="Image similarity search over a local DINOv2 library.",
    )
    app.state.dinosearch = state
    add_error_handlers(app)
    app.add_middleware(
        Guard,
        token=token,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_upload_bytes + FORM_OVERHEAD_BYTES,
    )
    app.include_router(_api_routes())
    app.include_router(curation.router())  # outliers, clusters
    app.add_api_route("/", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _api_routes() -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES)
    router.add_api_route("/healthz", browse.healthz, methods=["GET"])
    router.add_api_route("/api/stats", browse.stats, methods=["GET"])
    router.add_api_route(
        "/api/search", browse.search, methods=["POST"], response_model=QueryResponse
    )
    router.add_api_route("/api/images/{image_id}", browse.image_meta, methods=["GET"])
    router.add_api_route(
        "/api/images/{image_id}/similar",
        browse.similar,
        methods=["GET"],
        response_model=QueryResponse,
    )
    router.add_api_route(
        "/api/images/{image_id}/thumbnail",
        browse.thumbnail,
        methods=["GET"],
        response_class=Response,
    )
    router.add_api_route(
        "/api/images/{image_id}/file",
        browse.original,
        methods=["GET"],
        response_class=FileResponse,
    )
    router.add_api_route("/api/duplicates", cleanup.duplicates, methods=["GET"])
    router.add_api_route("/api/flags", routes_flags.flags, methods=["GET"])
    router.add_api_route("/api/duplicates/decisions", cleanup.list_decisions, methods=["GET"])
    router.add_api_route("/api/duplicates/decisions", cleanup.decide, methods=["POST"])
    router.add_api_route("/api/plan", cleanup.make_plan, methods=["POST"])
    router.add_api_route("/api/plan/{plan_id}", cleanup.get_plan, methods=["GET"])
    router.add_api_route("/api/plan/{plan_id}/keep", cleanup.choose_keeper, methods=["POST"])
    router.add_api_route("/api/plan/{plan_id}/folder", cleanup.select_folder, methods=["POST"])
    router.add_api_route(
        "/api/apply", cleanup.apply, methods=["POST"], responses={202: APPLY_STARTED}
    )
    router.add_api_route("/api/apply/{run_id}", cleanup.run_status, methods=["GET"])
    router.add_api_route("/api/undo", cleanup.undo, methods=["POST"], status_code=202)
    router.add_api_route("/api/roots", browse.list_roots, methods=["GET"])
    router.add_api_route("/api/watch", watching.watch_status, methods=["GET"])
    router.add_api_route("/api/index", browse.start_index, methods=["POST"], status_code=202)
    router.add_api_route("/api/jobs/{job_id}", browse.job_status, methods=["GET"])
    router.add_api_route(
        "/api/folders", library.folders, methods=["GET"], response_model=FoldersResponse
    )
    router.add_api_route(
        "/api/timeline", library.timeline, methods=["GET"], response_model=TimelineResponse
    )
    router.add_api_route(
        "/api/browse", library.browse, methods=["GET"], response_model=BrowseResponse
    )
    return router


def _page(request: Request) -> Response:
    """The web page; `/?token=...` keeps the token in a same-site cookie for the page."""
    state = get_state(request)
    given = request.query_params.get("token")
    if given is not None and state.token and secrets.compare_digest(given, state.token):
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return response
    # the file picker offers every extension the library indexes (RAW too), not image/* only
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    html = html.replace('accept="image/*"', f'accept="{PICKER_ACCEPT}"')
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})
