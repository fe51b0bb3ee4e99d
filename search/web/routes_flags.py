"""GET /api/flags: the images with quality flags, as `dinosearch flags --json`."""

from typing import Annotated, Any

from fastapi import Query

from search.web.jobs import State


def flags(
    state: State,
    flag: Annotated[
        str | None,
        Query(max_length=200, description="Only these flags, comma-separated: dark,blurry"),
    ] = None,
    within: Annotated[str | None, Query(description="Only images under this folder")] = None,
) -> dict[str, Any]:
    """Images that are dark, overexposed, blurry, low-information, grey, oddly shaped or tiny."""
    with state.reading() as coll:
        return coll.flags(flag, within).to_json()
