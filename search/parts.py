"""What the rooms below the facade receive of a library: its parts, never the facade itself.

`Collection` (search/collection.py) opens each part lazily and passes itself down typed as
`Parts`, so a room (search/dups, search/curate) sees only these members: the store, the model,
the derived FAISS file and the vector look-ups built on them. What *combines* rooms (clusters over
duplicate groups, keep-lists over plans and flags) is the facade's work and is not here: a room
gets such results handed in, and never calls back up. tests/test_parts.py keeps it so.
"""

from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.decode import Recipe
from indexer.library.store import Store
from search.knn import QueryResult, VectorIndex


class Embedding(Protocol):
    """A loaded model as the rooms use it (indexer/model.py Embedder, indexer/onnx_runtime.py)."""

    recipe: Recipe  # the preprocessing its vectors were made with
    dim: int

    @property
    def id(self) -> str: ...

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, D) float32, unit length."""
        ...


class Parts(Protocol):
    """One library's parts, opened on first need (by Collection)."""

    @property
    def directory(self) -> Path:
        """The library directory (its side files: turned views, plans)."""
        ...

    def store(self, create: bool = False) -> Store:
        """The rows, vectors, calibration and decisions (indexer/library/store.py)."""
        ...

    def embedder(self) -> Embedding:
        """The library's model (loaded on first call: seconds)."""
        ...

    def vector_index(self) -> VectorIndex:
        """The derived FAISS file, brought up to date with the rows."""
        ...

    def vector_for_file(self, path: str) -> np.ndarray:
        """A file's vector: the stored one when indexed and unchanged, else embedded."""
        ...

    def vectors_for_files(self, paths: list[str]) -> np.ndarray:
        """Each file's vector, as vector_for_file (all decoded before the model loads)."""
        ...

    def search_vector(self, vector: np.ndarray, k: int, within: str | None = None) -> QueryResult:
        """The k nearest library images to a vector (under `within` when given)."""
        ...
