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
