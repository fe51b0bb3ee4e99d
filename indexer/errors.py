"""The exception tree: one base class, one subclass per case a user can act on.

Each class carries, on its class line, what both edges answer with: `exit_code` for the command
line (search/cli/app.py prints one line and exits with it) and `http_status` + `code` for the HTTP
API (search/web/errors.py answers `{"error": {"code", "message"}}` with that status). A subclass
inherits them unless it says otherwise, so a new error is answered the way its family is."""


class DinosearchError(Exception):
    """Base class of every error dinosearch raises on purpose."""

    exit_code = 1
    http_status = 400
    code = "error"

    def __init_subclass__(
        cls, http_status: int | None = None, code: str | None = None, exit_code: int | None = None
    ):
        """A family's answer, on its class line: `class NoLibrary(LibraryError, http_status=409,
        code="no_library")`; what a subclass does not say it inherits."""
        super().__init_subclass__()
        for name, value in (("http_status", http_status), ("code", code), ("exit_code", exit_code)):
            if value is not None:
                setattr(cls, name, value)


class WeightsUnavailable(DinosearchError, http_status=503, code="weights_unavailable", exit_code=2):
    """Model weights are neither cached nor downloadable."""


class UnknownModel(DinosearchError, http_status=503, code="unknown_model", exit_code=2):
    """A --model string names nothing we can load."""


class RuntimeUnavailable(DinosearchError, http_status=503, code="runtime_unavailable", exit_code=2):
    """An optional runtime (onnxruntime, Ray, timm) is not installed or cannot serve as asked:
    the message says what to install or what to ask for instead. Not the request's fault, so
    the API answers 503, as for weights it cannot load."""


class LibraryError(DinosearchError, http_status=500, code="library_error"):
    """The library directory is missing, damaged or from another version."""


class DiskFull(LibraryError):
    """The device holding the library has no space left."""

    def __init__(self, directory):
        super().__init__(
            f"no space left on the device holding {directory}: everything committed so far is "
            "kept; free some space and re-run to continue"
        )


class ReadOnlyLibrary(LibraryError, http_status=409, code="read_only_library"):
    """A command that writes was asked to write into a library that cannot be written."""

    def __init__(self, directory, why: str, doing: str, way_out: str | None = None):
        way_out = way_out or (
            "run it where the library can be written, or copy the library to writable storage"
        )
        super().__init__(
            f"library {directory} is read-only ({why}): {doing} needs to write to it; {way_out}"
        )


class LibraryBusy(LibraryError, http_status=409, code="library_busy", exit_code=75):
    """Another process (or job) is writing the library; says which, and since when. Exit 75 is
    EX_TEMPFAIL: try again later."""


class NoLibrary(LibraryError, http_status=409, code="no_library"):
    """No library at the given path (nothing indexed yet)."""


class ModelMismatch(LibraryError, http_status=409, code="model_mismatch"):
    """The library holds vectors of another model than the one asked for."""


class ImageError(DinosearchError, http_status=422, code="bad_image"):
    """An image could not be read or decoded."""


class UnsupportedImage(ImageError, http_status=415, code="unsupported_image"):
    """Not an image format we can read (or not an image at all)."""


class DecompressionBomb(ImageError, http_status=413, code="too_many_pixels"):
    """An image claims more pixels than the configured limit."""


class BadQuery(DinosearchError, code="bad_query"):
    """A query that cannot be answered as asked."""


class NotFound(DinosearchError, http_status=404, code="not_found"):
    """An id, job, plan, run or path that is not in the library (or not served)."""


class Forbidden(DinosearchError, http_status=403, code="forbidden"):
    """Something this server was started not to allow (indexing or moving without --root, a
    folder outside the roots)."""


class Conflict(DinosearchError, http_status=409, code="conflict"):
    """The request clashes with the library's state now: a file changed since it was indexed, or
    another index job, apply or undo already running (one at a time)."""


class TooLarge(DinosearchError, http_status=413, code="upload_too_large"):
    """An upload over the server's byte limit."""
