"""dinosearch indexer: walk, decode, embed and store an image library."""

__version__ = "0.1.0"
