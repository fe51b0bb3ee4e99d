"""The routes of searching and browsing the library (stats, search, images, thumbnails) and of
indexing folders under the served roots. The function names are the API's operation ids."""

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import File, Form, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from indexer import errors
from indexer.config import DEFAULT_K
from search.web import jobs, thumbs
from search.web.jobs import AppState, State
from search.web.schemas import MAX_ID, MAX_K, ImageMeta, IndexRequest, JobModel, RootsResponse

FILE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}

ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="An image id from a search")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many results")]


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
    k: Annotated[int, Form(ge=1, le=MAX_K)] = DEFAULT_K,
) -> dict[str, Any]:
    """Images most similar to an uploaded one: the `query --json` object."""
    data = _read_upload(file, state.max_upload_bytes)
    with state.lock:
        state.collection.embedder()  # load the model once, under the store lock (reads meta)
    with state.embed_lock:
        vector = state.collection.vector_for_bytes(data, state.max_upload_pixels, file.filename)
    with state.reading() as coll:
        result = coll.search_vector(vector, k)
    result.query = [file.filename or "upload"]
    return result.to_json()


def image_meta(state: State, image_id: ImageId) -> ImageMeta:
    """What the library knows about one image (never its vector)."""
    row = state.row(image_id, ok_only=False)
    keys = ImageMeta.model_fields.keys() - {"name"}
    return ImageMeta.model_validate(
        {"name": os.path.basename(row["path"]), **{k: row.get(k) for k in keys}}
    )


def similar(state: State, image_id: ImageId, k: K = DEFAULT_K) -> dict[str, Any]:
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
    library, pixels = state.collection.directory, state.max_upload_pixels
    found = thumbs.cached_or_rendered(library, row["hash"], row["path"], size, pixels)
    headers = {"Cache-Control": "private, max-age=86400"}
    if isinstance(found, Path):
        return FileResponse(found, media_type="image/jpeg", headers=headers)
    return Response(found, media_type="image/jpeg", headers=headers)


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


# --- indexing from the web ----------------------------------------------------------------------


def list_roots(state: State) -> RootsResponse:
    """The folders index jobs may read (the server's --root options)."""
    return RootsResponse(roots=[str(r) for r in state.roots])


def start_index(state: State, body: IndexRequest) -> dict[str, str]:
    """Start indexing a folder under a root in the background; poll /api/jobs/{id}."""
    job = jobs.start_job(state, _folder_under_roots(state, body.path), body.retry_failed)
    return {"job": job.id, "path": job.path}


def job_status(state: State, job_id: str) -> JobModel:
    """Progress of an index job: count, rate, ETA, failures; the summary when done."""
    job = state.jobs.get(job_id)
    if job is None:
        raise errors.NotFound(f"no job {job_id!r}")
    return job.to_model()


# --- helpers ------------------------------------------------------------------------------------


def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise errors.TooLarge(f"upload is larger than {limit // (1024 * 1024)} MB")
    if not data:
        raise errors.ImageError("the uploaded file is empty (0 bytes)")
    return data


def _current_file(state: AppState, image_id: int) -> dict:
    """The row of an indexed image whose file is still the one that was indexed."""
    row = state.row(image_id)
    try:
        st = os.stat(row["path"])
    except OSError:
        raise errors.NotFound(f"image {image_id} is gone from disk; re-index its folder") from None
    if st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
        raise errors.Conflict(f"image {image_id} changed since it was indexed; re-index it")
    return row


def _folder_under_roots(state: AppState, given: str) -> Path:
    """Resolve `given` (symlinks and .. included) and require it to lie under a root."""
    if not state.roots:
        raise errors.Forbidden("indexing from the web is off: start serve with --root DIR")
    candidates = [Path(given)] if os.path.isabs(given) else [r / given for r in state.roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if real.is_dir() and state.under_roots(real):
            return real
    raise errors.NotFound(f"no folder {given!r} under the served roots")
