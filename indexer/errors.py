"""The exception tree: one base class, one subclass per case a user can act on."""


class DinosearchError(Exception):
    """Base class of every error dinosearch raises on purpose."""

    exit_code = 1


class WeightsUnavailable(DinosearchError):
    """Model weights are neither cached nor downloadable."""

    exit_code = 2


class UnknownModel(DinosearchError):
    """A --model string names nothing we can load."""

    exit_code = 2


class LibraryError(DinosearchError):
    """The library directory is missing, damaged or from another version."""


class DiskFull(LibraryError):
    """The device holding the library has no space left."""

    def __init__(self, directory):
        super().__init__(
            f"no space left on the device holding {directory}: everything committed so far is "
            "kept; free some space and re-run to continue"
        )


class ReadOnlyLibrary(LibraryError):
    """A command that writes was asked to write into a library that cannot be written."""

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


class NoLibrary(LibraryError):
    """No library at the given path (nothing indexed yet)."""


class ModelMismatch(LibraryError):
    """The library holds vectors of another model than the one asked for."""


class ImageError(DinosearchError):
    """An image could not be read or decoded."""


class UnsupportedImage(ImageError):
    """Not an image format we can read (or not an image at all)."""


class DecompressionBomb(ImageError):
    """An image claims more pixels than the configured limit."""


class BadQuery(DinosearchError):
    """A query that cannot be answered as asked."""


class NotFound(DinosearchError):
    """An id or path that is not in the library."""
