"""The routes of curating a training set: outliers and clusters (the CLI's `outliers --json` and
`clusters --json` objects), with their response models. `router()` is included by app.py."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from indexer.config import (
    DEFAULT_MIN_CLUSTER,
    DEFAULT_OUTLIERS,
    DEFAULT_PRECISION,
    PRECISION_RANGE,
)
from search.web.jobs import State
from search.web.schemas import ERROR_RESPONSES

MAX_OUTLIERS = 10_000


class OutlierModel(BaseModel):
    rank: int
    id: int
    path: str
    score: float
    nearest: str | None
    copies: int = 0  # other images that are copies of this one, not listed on their own
    copy_paths: list[str] = []


class OutliersResponse(BaseModel):
    """The `dinosearch outliers --json` object."""

    outliers: list[OutlierModel]
    stats: dict[str, Any]


class ClusterRef(BaseModel):
    path: str
    id: int


class ClusterMember(BaseModel):
    path: str
    id: int
    score: float
    similarity: float | None = None


class ClusterModel(BaseModel):
    id: int
    size: int
    representative: ClusterRef
    members: list[ClusterMember]


class ClustersResponse(BaseModel):
    """The `dinosearch clusters --json` object."""

    clusters: list[ClusterModel]
    stats: dict[str, Any]


def outliers(
    state: State,
    n: Annotated[
        int, Query(ge=1, le=MAX_OUTLIERS, description="How many to list")
    ] = DEFAULT_OUTLIERS,
    within: Annotated[str | None, Query(description="Only images under this folder")] = None,
) -> dict[str, Any]:
    """The images least like the rest of the library, most unusual first."""
    with state.reading() as coll:
        return coll.curation().outliers(n, within).to_json()


def clusters(
    state: State,
    threshold: Annotated[str, Query(description="auto (calibrated) or a raw cosine")] = "auto",
    precision: Annotated[
        float, Query(ge=PRECISION_RANGE[0], le=PRECISION_RANGE[1])
    ] = DEFAULT_PRECISION,
    min_size: Annotated[
        int, Query(ge=1, description="Smallest cluster listed")
    ] = DEFAULT_MIN_CLUSTER,
    within: Annotated[str | None, Query(description="Only images under this folder")] = None,
) -> dict[str, Any]:
    """Every image in one cluster of look-alikes; duplicate groups never split."""
    with state.reading() as coll:
        return coll.curation().clusters(threshold, precision, within, min_size).to_json()


def router() -> APIRouter:
    routes = APIRouter(responses=ERROR_RESPONSES)
    routes.add_api_route(
        "/api/outliers", outliers, methods=["GET"], response_model=OutliersResponse
    )
    routes.add_api_route(
        "/api/clusters", clusters, methods=["GET"], response_model=ClustersResponse
    )
    return routes
