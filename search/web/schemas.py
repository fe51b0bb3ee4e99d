"""The API's request and response models (pydantic): what /docs shows and requests are checked
against."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from indexer.config import DEFAULT_ACTION, DEFAULT_PRECISION, PRECISION_RANGE

MAX_K = 1000
MAX_ID = 2**63 - 1  # SQLite's integer range; larger ids would overflow, not just miss


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
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=2, max_length=2, description="Two image ids"
    )


class DupQuery(BaseModel):
    """The options of GET /api/duplicates (its query parameters): the `DupOptions` of a run."""

    threshold: str = Field("auto", description="auto (calibrated) or a raw cosine")
    precision: float = Field(DEFAULT_PRECISION, ge=PRECISION_RANGE[0], le=PRECISION_RANGE[1])
    within: str | None = Field(None, description="Only images under this folder")
    include_similar: bool = False
    burst_window: str | None = Field(
        None, max_length=20, description="Bursts only within this of capture time, e.g. 10s"
    )
    reference: list[str] = Field(
        [], max_length=50, description="Folders whose files are never acted on (kept)"
    )
    rotations: bool = Field(
        False, description="Also find copies turned 90/180/270 degrees or mirrored (slower)"
    )

    def options(self) -> dict[str, Any]:
        """The keyword arguments of the facade's DupOptions."""
        fields = self.model_dump(include=set(DupQuery.model_fields))
        return {**fields, "reference": tuple(self.reference)}


class PlanRequest(DupQuery):
    """The options of GET /api/duplicates, plus what the plan does."""

    keep: str | None = Field(
        None, max_length=2000, description="Keep-best policy, e.g. 'resolution > oldest'"
    )
    # config.PLAN_ACTIONS but "keep" (tests/test_one_home.py holds them equal)
    action: Literal["trash", "move", "hardlink", "symlink", "delete"] = DEFAULT_ACTION
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


class FolderModel(BaseModel):
    path: str
    name: str
    depth: int = Field(description="Folders below the library's top folder")
    images: int = Field(description="Images directly in this folder")
    total: int = Field(description="Images in it and every folder below")


class FoldersResponse(BaseModel):
    top: str = Field(description="The deepest folder every indexed image lies under")
    folders: list[FolderModel] = Field(description="Parents before children")


class MonthModel(BaseModel):
    month: str = Field(description="YYYY-MM of the EXIF capture time")
    images: int


class YearModel(BaseModel):
    year: str
    images: int
    months: list[MonthModel]


class TimelineResponse(BaseModel):
    years: list[YearModel]
    undated: int = Field(description="Images without a capture time (month=none)")


class BrowseImage(BaseModel):
    id: int
    path: str
    name: str
    folder: str
    size: int | None
    width: int | None
    height: int | None
    format: str | None
    taken: str | None


class BrowseResponse(BaseModel):
    images: list[BrowseImage]
    total: int = Field(description="Images matching the filter, all pages together")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last")


class FolderSelectRequest(BaseModel):
    folder: str = Field(max_length=4096, description="An absolute folder (files under it)")
    choice: Literal["keep", "act"] = Field(
        description="keep: every file under the folder stays; act: each gets the plan's action "
        "(each group keeps one file; reference files and other protected files stay)"
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
