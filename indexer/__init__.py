"""dinosearch indexer: walk, decode, embed and store an image library."""

__version__ = "0.1.0"

from indexer.privacy import stay_local  # noqa: E402

stay_local()  # before any library is imported: see indexer/privacy.py
