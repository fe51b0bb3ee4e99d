"""Library location, environment overrides and defaults."""

import os
from pathlib import Path

import platformdirs

ENV_INDEX = "DINOSEARCH_INDEX"
ENV_MODEL = "DINOSEARCH_MODEL"
DEFAULT_MODEL = "dinov2-small"
RUNTIMES = ("auto", "torch", "onnx")  # what runs the model (indexer/runtime.py)
DTYPES = ("auto", "fp32", "fp16", "bf16", "int8")

# A 200-megapixel phone photo (16320 x 12240 = 199.8 MP) must index; Pillow's own guard stops at
# about 179 MP. Anything claiming more than this is refused from its header, before decoding.
DEFAULT_MAX_PIXELS = 250_000_000

DEFAULT_BATCH_SIZE = 16
DB_NAME = "library.db"
INDEX_PREFIX = "vectors"  # FAISS files are vectors.<generation>.faiss


def default_library_dir() -> Path:
    """The per-user data directory, unless DINOSEARCH_INDEX says otherwise."""
    if env := os.environ.get(ENV_INDEX):
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("dinosearch")) / "library"


def default_model() -> str:
    return os.environ.get(ENV_MODEL) or DEFAULT_MODEL
