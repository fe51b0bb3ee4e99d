"""The exception tree: one base class, one subclass per case a user can act on.

Each class carries what both edges answer with: `exit_code` for the command line (search/cli/app.py
prints one line and exits with it) and `http_status` + `code` for the HTTP API (search/web/errors.py
answers `{"error": {"code", "message"}}` with that status). A subclass inherits both unless it says
otherwise, so a new error is answered the way its family is."""


class DinosearchError(Exception):
    """Base class of every error dinosearch raises on purpose."""

    exit_code = 1
    http_status = 400
    code = "error"


class WeightsUnavailable(DinosearchError):
    """Model weights are neither cached nor downloadable."""

    exit_code = 2
    http_status = 503
    code = "weights_unavailable"


class UnknownModel(DinosearchError):
    """A --model string names nothing we can load."""

    exit_code = 2
    http_status = 503
    code = "unknown_model"


class RuntimeUnavailable(DinosearchError):
    """An optional runtime (onnxruntime, Ray, timm) is not installed or cannot serve as asked:
    the message says what to install or what to ask for instead. Not the request's fault, so
    the API answers 503, as for weights it cannot load."""

    exit_code = 2
    http_status = 503
    code = "runtime_unavailable"


class LibraryError(DinosearchError):
    """The library directory is missing, damaged or from another version."""

    http_status = 500
    code = "library_error"


class DiskFull(LibraryError):
    """The device holding the library has no space left."""

    def __init__(self, directory):
        super().__init__(
            f"no space left on the device holding {directory}: everything committed so far is "
            "kept; free some space and re-run to continue"
        )


class ReadOnlyLibrary(LibraryError):
    """A command that writes was asked to write into a library that cannot be written."""

    http_status = 409
    code = "read_only_library"

    def __init__(self, directory, why: str, doing: str, way_out: str | None = None):
        way_out = way_out or (
            "run it where the library can be written, or copy the library to writable storage"
        )
        super().__init__(
            f"library {directory} is read-only ({why}): {doing} needs to write to it; {way_out}"
        )


class LibraryBusy(LibraryError):
    """Another process (or job) is writing the library; says which, and since when."""

    exit_code = 75  # EX_TEMPFAIL: try again later
    http_status = 409
    code = "library_busy"


class NoLibrary(LibraryError):
    """No library at the given path (nothing indexed yet)."""

    http_status = 409
    code = "no_library"


class ModelMismatch(LibraryError):
    """The library holds vectors of another model than the one asked for."""

    http_status = 409
    code = "model_mismatch"


class ImageError(DinosearchError):
    """An image could not be read or decoded."""

    http_status = 422
    code = "bad_image"


class UnsupportedImage(ImageError):
    """Not an image format we can read (or not an image at all)."""

    http_status = 415
    code = "unsupported_image"


class DecompressionBomb(ImageError):
    """An image claims more pixels than the configured limit."""

    http_status = 413
    code = "too_many_pixels"


class BadQuery(DinosearchError):
    """A query that cannot be answered as asked."""

    code = "bad_query"


class NotFound(DinosearchError):
    """An id, job, plan, run or path that is not in the library (or not served)."""

    http_status = 404
    code = "not_found"


class Forbidden(DinosearchError):
    """Something this server was started not to allow (indexing or moving without --root, a
    folder outside the roots)."""

    http_status = 403
    code = "forbidden"


class Conflict(DinosearchError):
    """The request clashes with the library's state now: a file changed since it was indexed, or
    another index job, apply or undo already running (one at a time)."""

    http_status = 409
    code = "conflict"


class TooLarge(DinosearchError):
    """An upload over the server's byte limit."""

    http_status = 413
    code = "upload_too_large"
