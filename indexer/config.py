"""Library location, environment overrides and defaults."""

import os
from pathlib import Path
from typing import Final

import platformdirs

ENV_INDEX = "DINOSEARCH_INDEX"
ENV_MODEL = "DINOSEARCH_MODEL"
DEFAULT_MODEL = "dinov2-small"
RUNTIMES = ("auto", "torch", "onnx")  # what runs the model (indexer/runtime.py)
DTYPES = ("auto", "fp32", "fp16", "bf16", "int8")
DEVICES = ("auto", "cpu", "cuda", "mps")  # where torch runs the model (indexer/model.py)
INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")  # the FAISS index of a library (search/knn.py)
# What a clean-up plan may do with a file (search/cleanup/plan.py); a new plan's default action
PLAN_ACTIONS = ("keep", "trash", "move", "hardlink", "symlink", "delete")
DEFAULT_ACTION: Final = "trash"
EXPORT_FORMATS = ("parquet",)  # what `export` writes (search/upkeep/export.py)
DEFAULT_PRECISION = 0.99  # the precision `--threshold auto` is calibrated to (dups, clusters)
PRECISION_RANGE = (0.5, 1.0)  # the targets one may ask for
DEFAULT_K = 10  # neighbours a query lists
DEFAULT_OUTLIERS = 50  # images `outliers` lists
DEFAULT_MIN_CLUSTER = 2  # the smallest cluster `clusters` lists (1: singletons too)

# A 200-megapixel phone photo (16320 x 12240 = 199.8 MP) must index; Pillow's own guard stops at
# about 179 MP. Anything claiming more than this is refused from its header, before decoding.
DEFAULT_MAX_PIXELS = 250_000_000

DEFAULT_BATCH_SIZE = 16
DEFAULT_DECODE_TIMEOUT_S = 60.0  # a 200 MP PNG decodes in ~10 s here; a hang is cut at this
DEFAULT_DECODE_MEMORY_BYTES = 4 << 30  # address space per worker: a 200 MP image needs < 2 GiB
DB_NAME = "library.db"
INDEX_PREFIX = "vectors"  # FAISS files are vectors.<generation>.faiss


def default_library_dir() -> Path:
    """The per-user data directory, unless DINOSEARCH_INDEX says otherwise."""
    if env := os.environ.get(ENV_INDEX):
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("dinosearch")) / "library"


def default_model() -> str:
    return os.environ.get(ENV_MODEL) or DEFAULT_MODEL
