"""The routes of browsing the whole library: its folders, the capture-date timeline, and pages of
images (keyset cursor: the page never holds more than one page). The function names are the API's
operation ids."""

import os
from typing import Annotated, Literal

from fastapi import Query

from search.web.jobs import State
from search.web.schemas import BrowseImage, BrowseResponse, FoldersResponse, TimelineResponse

MAX_PAGE = 500  # images in one page (the library module refuses more)

Folder = Annotated[
    str | None, Query(max_length=4096, description="An absolute folder, as /api/folders lists it")
]


def folders(state: State) -> FoldersResponse:
    """Every folder with indexed images (and the folders above them, up to the library's top),
    each with its image count and the count under it."""
    with state.reading() as coll:
        top, found = coll.browser().folders()
    return FoldersResponse.model_validate({"top": top, "folders": [f.__dict__ for f in found]})


def timeline(state: State, folder: Folder = None) -> TimelineResponse:
    """Indexed images by year and month of capture (EXIF), under `folder` if given."""
    with state.reading() as coll:
        return TimelineResponse(**coll.browser().timeline(folder).to_json())


def browse(
    state: State,
    folder: Folder = None,
    month: Annotated[
        str | None, Query(max_length=7, description="YYYY, YYYY-MM, or none (no capture time)")
    ] = None,
    recursive: Annotated[bool, Query(description="Include the folder's subfolders")] = True,
    sort: Annotated[
        Literal["path", "taken"], Query(description="path, or capture time (undated last)")
    ] = "path",
    cursor: Annotated[
        str | None, Query(max_length=8192, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Images in this page")] = 100,
) -> BrowseResponse:
    """One page of the library's indexed images, filtered by folder and capture month."""
    with state.reading() as coll:
        page = coll.browser().page(folder, month, recursive, sort, cursor, limit)
    images = [
        BrowseImage(name=os.path.basename(r["path"]), folder=os.path.dirname(r["path"]), **r)
        for r in page.images
    ]
    return BrowseResponse(images=images, total=page.total, next_cursor=page.next_cursor)
