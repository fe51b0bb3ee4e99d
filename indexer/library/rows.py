"""The records the store reads and writes."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    id: str
    dim: int
    recipe: str  # Recipe.to_json()
    runtime: dict | None = None  # how the vectors were made: runtime, dtype (int8: its gate)

    @property
    def precision(self) -> str:
        """ "int8" or "float": int8 and float vectors never share a library (a library from
        before runtimes were recorded was made by torch in a float type)."""
        return "int8" if (self.runtime or {}).get("dtype") == "int8" else "float"


@dataclass(frozen=True, slots=True)
class Known:
    """What the library holds about one path (slots: an incremental run over 10M files holds
    10M of these)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str


@dataclass
class ImageRow:
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str = "ok"
    error: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken: str | None = None
    vector: bytes | None = None
